"""Calibration sources: folder, video, COCO; deterministic selection; clear errors."""
import json
import os

import cv2
import numpy as np
import pytest

from edgepose.calibration import CalibrationSet, load_samples
from edgepose.errors import EdgeposeError, InputError
from edgepose.metadata import ModelMeta
from edgepose.preprocess import preprocess_bottomup, preprocess_topdown
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS, COCO17_KEYPOINTS


def _bottomup_meta(dynamic=True, h=64, w=80):
    return ModelMeta({
        "family": "bottomup", "arch": "test",
        "input": {"name": "x", "layout": "NCHW", "height": h, "width": w, "channel_order": "BGR",
                  "mean": [128, 128, 128], "std": [256, 256, 256], "dynamic_hw": dynamic},
        "outputs": {"heatmaps": {"name": "h", "layout": "NCHW"}, "pafs": {"name": "p", "layout": "NCHW"}},
        "stride": 8, "keypoints": CMU18_KEYPOINTS, "limbs": [list(l) for l in CMU18_LIMBS]})


def _topdown_meta():
    return ModelMeta({
        "family": "topdown", "arch": "test",
        "input": {"name": "x", "layout": "NCHW", "height": 64, "width": 48, "channel_order": "RGB",
                  "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
        "outputs": {"heatmaps": {"name": "h", "layout": "NCHW"}},
        "stride": 4, "keypoints": COCO17_KEYPOINTS})


def _img(i, h=48, w=64):
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i in range(12):
        cv2.imwrite(str(d / ("img%02d.png" % i)), _img(i))
    (d / "notes.txt").write_text("not an image")
    return str(d)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("vid") / "v.avi")
    vw = cv2.VideoWriter(p, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert vw.isOpened()
    for i in range(30):
        f = np.full((48, 64, 3), i * 8, np.uint8)   # frame i has brightness 8*i
        vw.write(f)
    vw.release()
    return p


def test_folder_deterministic_and_uses_runtime_preprocessing(folder):
    meta = _bottomup_meta()
    a = load_samples(folder, meta, n=6, holdout=3, seed=0)
    b = load_samples(folder, meta, n=6, holdout=3, seed=0)
    assert isinstance(a, CalibrationSet)
    assert len(a.calib) == 6 and len(a.holdout_images) == 3 and len(a.holdout_inputs) == 3
    assert a.calib_ids == b.calib_ids and a.holdout_ids == b.holdout_ids
    assert a.source_hash == b.source_hash
    assert not set(a.calib_ids) & set(a.holdout_ids)
    # 9 of 12 images, evenly spaced, the text file ignored
    assert all(i.startswith("img") for i in a.calib_ids + a.holdout_ids)
    # exactly what the runtime's preprocessing gives
    name = a.calib_ids[0]
    ref, _ = preprocess_bottomup(cv2.imread(os.path.join(folder, name)), meta)
    np.testing.assert_array_equal(a.calib[0], ref)
    assert a.calib[0].dtype == np.float32 and a.calib[0].shape[0] == 1
    # another seed: another split of the same samples, another hash
    c = load_samples(folder, meta, n=6, holdout=3, seed=1)
    assert sorted(c.calib_ids + c.holdout_ids) == sorted(a.calib_ids + a.holdout_ids)
    assert c.holdout_ids != a.holdout_ids and c.source_hash != a.source_hash
    assert "6 samples + 3 held out" in a.describe()


def test_video_every_nth_frame(video):
    meta = _bottomup_meta()
    a = load_samples(video, meta, n=4, holdout=2, every=5)
    ids = sorted(a.calib_ids + a.holdout_ids, key=lambda s: int(s[5:]))
    assert ids == ["frame0", "frame5", "frame10", "frame15", "frame20", "frame25"]
    # the frames are the right ones: brightness 8*i (MJPG is lossy: +-3)
    for fid, img in zip(a.holdout_ids, a.holdout_images):
        i = int(fid[5:])
        assert abs(float(img.mean()) - 8 * i) < 3
    b = load_samples(video, meta, n=4, holdout=2, every=5)
    assert a.source_hash == b.source_hash and a.calib_ids == b.calib_ids
    # default: spread over the whole video
    d = load_samples(video, meta, n=3, holdout=1)
    assert sorted(int(s[5:]) for s in d.calib_ids + d.holdout_ids) == [0, 10, 19, 29]


def test_coco_bottomup_images_and_topdown_crops(tmp_path):
    d = tmp_path
    images, anns = [], []
    for i in range(3):
        cv2.imwrite(str(d / ("im%d.jpg" % i)), _img(i, 120, 160))
        images.append({"id": i + 1, "file_name": "im%d.jpg" % i, "height": 120, "width": 160})
        for j in range(2):
            anns.append({"id": 10 * i + j, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "num_keypoints": 3, "bbox": [10 + 40 * j, 20, 30, 60],
                         "keypoints": [0] * 51, "area": 1800})
    anns.append({"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 1, "num_keypoints": 0,
                 "bbox": [0, 0, 50, 50], "keypoints": [0] * 51, "area": 2500})
    ann = d / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns,
                               "categories": [{"id": 1, "name": "person"}]}))
    bu = load_samples(str(ann), _bottomup_meta(), n=2, holdout=1)
    assert sorted(bu.calib_ids + bu.holdout_ids) == ["im0.jpg", "im1.jpg", "im2.jpg"]
    td = load_samples(str(ann), _topdown_meta(), n=4, holdout=2)
    assert len(td.calib) == 4 and len(td.holdout_boxes) == 2
    assert all(x.shape == (1, 3, 64, 48) for x in td.calib)
    assert "ann99" not in td.calib_ids + td.holdout_ids     # crowd annotation skipped
    # a held-out crop equals the runtime's top-down preprocessing of its box
    img = td.holdout_images[0]
    ref, _ = preprocess_topdown(img, np.asarray([td.holdout_boxes[0]]), _topdown_meta())
    np.testing.assert_array_equal(td.holdout_inputs[0], ref)


def test_real_video_and_coco(assets):
    meta = _bottomup_meta(h=184, w=216)
    v = load_samples(os.path.join(assets, "videos", "arm_wrestling.mp4"), meta, n=6, holdout=2)
    assert len(v.calib) == 6 and v.calib[0].shape == (1, 3, 184, 248)
    c = load_samples(os.path.join(assets, "coco", "test_coco.json"), meta, n=3, holdout=1)
    assert len(c.calib) == 3 and len(c.holdout_images) == 1


def test_bad_sources(tmp_path, folder):
    meta = _bottomup_meta()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        load_samples(str(empty), meta)
    with pytest.raises(InputError, match="not found"):
        load_samples(str(tmp_path / "missing"), meta)
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(InputError, match="broken.mp4"):
        load_samples(str(bad_video), meta)
    with pytest.raises(InputError, match="need 40"):
        load_samples(folder, meta, n=32, holdout=8)
    bad_img_dir = tmp_path / "bad"
    bad_img_dir.mkdir()
    (bad_img_dir / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="unreadable"):
        load_samples(str(bad_img_dir), meta, n=1, holdout=0)
    notjson = tmp_path / "x.json"
    notjson.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_samples(str(notjson), meta)
    with pytest.raises(InputError, match="unknown type"):
        load_samples(os.path.join(folder, "notes.txt"), meta)
    with pytest.raises(EdgeposeError):
        load_samples(folder, meta, n=0)


def test_wrong_size_for_static_model(tmp_path):
    meta = _bottomup_meta(dynamic=False, h=256, w=256)
    d = tmp_path / "small"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / ("s%d.png" % i)), _img(i, 32, 40))   # 256/32 = 8x upscale
    with pytest.raises(InputError, match="too small for the static 256x256"):
        load_samples(str(d), meta, n=2, holdout=1)
    with pytest.raises(InputError, match="static 256x256 input; height=128"):
        load_samples(str(d), meta, n=2, holdout=1, height=128)


def test_several_sources_share_the_samples(folder, video):
    meta = _bottomup_meta()
    s = load_samples([folder, video], meta, n=8, holdout="auto")
    # 12 images + 30 frames: 8 calibration; 'auto' holds out the rest (34), each source split alike
    assert len(s.calib) == 8 and len(s.holdout_images) == 34
    assert {d["source"] for d in s.sources} == {folder, video}
    by = {d["source"]: d for d in s.sources}
    assert by[folder]["used"] == 12 and by[video]["used"] == 30
    assert sum(d["used"] - d["holdout"] for d in s.sources) == 8
    ids = s.calib_ids + s.holdout_ids
    assert len(set(ids)) == len(ids) and any(i.startswith("v.avi:frame") for i in ids)
    assert any(i.startswith(os.path.basename(folder) + ":img") for i in ids)
    assert not set(s.calib_ids) & set(s.holdout_ids)
    assert len(s.holdout_inputs) == 34 and s.holdout_inputs[-1].shape[:2] == (1, 3)   # made on use
    again = load_samples([folder, video], meta, n=8, holdout="auto")
    assert again.source_hash == s.source_hash and again.holdout_ids == s.holdout_ids
    assert "2 sources" in s.describe()
    with pytest.raises(InputError, match="given twice"):
        load_samples([folder, folder], meta, n=2, holdout=1)
    with pytest.raises(InputError, match="not found"):
        load_samples([folder, folder + "_missing"], meta, n=2, holdout=1)
    with pytest.raises(EdgeposeError, match="holdout must be a count or 'auto'"):
        load_samples(folder, meta, n=2, holdout="most")
