"""Runtime core: metadata, preprocessing geometry, IO errors, result conversion."""
import json
import os

import cv2
import numpy as np
import pytest

from edgepose.errors import InputError, ModelError
from edgepose.io import VideoReader, input_kind, read_image
from edgepose.files import atomic_path, write_json
from edgepose.metadata import ModelMeta, embed_onnx, from_props
from edgepose.preprocess import (apply_affine, box_to_center_size, bottomup_input_size, crop_matrix,
                                 heatmap_to_input, invert_affine, normalize, preprocess_bottomup,
                                 preprocess_topdown)
from edgepose.results import PoseResult
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS, CMU18_TO_COCO17, COCO17_KEYPOINTS


def bu_meta(**over):
    d = {"family": "bottomup", "input": {"name": "image", "layout": "NHWC", "height": 64, "width": 96,
                                         "channel_order": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1],
                                         "dynamic_hw": True},
         "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NHWC"},
                     "pafs": {"name": "pafs", "layout": "NHWC"}},
         "stride": 8, "keypoints": CMU18_KEYPOINTS, "limbs": CMU18_LIMBS, "to_coco17": CMU18_TO_COCO17}
    d.update(over)
    return ModelMeta(d)


def td_meta():
    return ModelMeta({"family": "topdown",
                      "input": {"name": "image", "layout": "NCHW", "height": 64, "width": 48,
                                "channel_order": "RGB", "mean": [123.675, 116.28, 103.53],
                                "std": [58.395, 57.12, 57.375]},
                      "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NCHW"}},
                      "stride": 4, "keypoints": COCO17_KEYPOINTS})


# --- metadata --------------------------------------------------------------------------------
def test_metadata_defaults_and_json_roundtrip():
    m = bu_meta()
    assert m.decode["refine"] and m.get("heatmap_offset") == 0.5
    assert ModelMeta.from_json(m.to_json()) == m
    assert td_meta().get("heatmap_offset") == 0.0
    assert td_meta().get("crop")["padding"] == 1.25


def test_metadata_onnx_roundtrip():
    onnx = pytest.importorskip("onnx")
    model = onnx.ModelProto()
    model.metadata_props.add(key="producer_note", value="kept")
    embed_onnx(model, bu_meta())
    embed_onnx(model, bu_meta(arch="x"))  # re-embedding replaces, does not duplicate
    props = {p.key: p.value for p in model.metadata_props}
    assert props["producer_note"] == "kept"
    assert sum(p.key == "edgepose" for p in model.metadata_props) == 1
    assert from_props(props).get("arch") == "x"


@pytest.mark.parametrize("bad,msg", [
    ({"family": "sideways"}, "family"),
    ({"stride": None, "input": None}, "input"),
])
def test_metadata_rejects_bad(bad, msg):
    d = bu_meta().data
    for k, v in bad.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    with pytest.raises(ModelError, match=msg):
        ModelMeta(d)
    with pytest.raises(ModelError, match="JSON"):
        ModelMeta.from_json("{not json")


# --- preprocessing ---------------------------------------------------------------------------
def test_bottomup_size_dynamic_and_static():
    m = bu_meta()
    H, W, s = bottomup_input_size((480, 640), m, 368)
    assert (H, W) == (368, 496) and s == pytest.approx(368 / 480)
    H, W, s = bottomup_input_size((480, 640), bu_meta(input={**m.input, "dynamic_hw": False}))
    assert (H, W) == (64, 96) and s == pytest.approx(min(64 / 480, 96 / 640))


def test_bottomup_preprocess_layout_and_inverse():
    img = np.zeros((100, 150, 3), np.uint8)
    img[50, 75] = (10, 20, 30)
    m = bu_meta()
    x, tr = preprocess_bottomup(img, m, 200)
    assert x.shape == (1, 200, 304, 3) and x.dtype == np.float32
    # pixel centres: (u + .5) = (x + .5) * 2, so (75, 50) -> (150.5, 100.5)
    assert np.allclose(tr.input_to_image(np.array([[150.5, 100.5]])), [[75.0, 50.0]], atol=0.02)
    nchw = bu_meta(input={**m.input, "layout": "NCHW", "channel_order": "RGB", "mean": [1, 2, 3], "std": [2, 2, 2]})
    y = normalize(img[None], nchw)
    assert y.shape == (1, 3, 100, 150)
    assert y[0, :, 50, 75].tolist() == [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2]


def test_heatmap_to_input_conventions():
    assert heatmap_to_input(np.array([0.0]), 8, 0.5)[0] == pytest.approx(3.5)
    assert heatmap_to_input(np.array([2.0]), 4, 0.0)[0] == pytest.approx(8.0)


def test_topdown_crop_geometry():
    m = td_meta()
    c, s = box_to_center_size([10, 20, 30, 80], 48 / 64, 1.25)
    assert np.allclose(c, [25, 60]) and np.allclose(s, [75, 100])
    M = crop_matrix(c, s, (48, 64))
    # box centre -> crop centre; inverse maps back
    assert np.allclose(apply_affine(M, c), [23.5, 31.5])
    Minv = invert_affine(M)
    pts = np.array([[3.0, 7.0], [40.0, 50.0]])
    assert np.allclose(apply_affine(Minv, apply_affine(M, pts)), pts)
    img = np.zeros((120, 90, 3), np.uint8)
    img[60, 25] = 255
    batch, mats = preprocess_topdown(img, np.array([[10, 20, 30, 80]]), m)
    assert batch.shape == (1, 3, 64, 48)
    u, v = apply_affine(mats[0], [25, 60])
    r = batch[0, 0]  # R channel, normalised: the dot is the brightest pixel
    yy, xx = np.unravel_index(np.argmax(r), r.shape)
    assert abs(xx - u) <= 1 and abs(yy - v) <= 1
    empty, mats = preprocess_topdown(img, np.zeros((0, 4)), m)
    assert empty.shape == (0, 3, 64, 48) and mats == []


@pytest.mark.parametrize("img,msg", [
    (None, "empty"), (np.zeros((10, 10, 3), np.float32), "uint8"), (np.zeros((1, 5, 3), np.uint8), "small"),
    (np.zeros((10, 10, 2), np.uint8), "H×W×3"),
])
def test_bad_images(img, msg):
    with pytest.raises(InputError, match=msg):
        preprocess_bottomup(img, bu_meta())


# --- IO --------------------------------------------------------------------------------------
def test_io_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="cannot decode"):
        read_image(str(bad))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        VideoReader(str(empty))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(InputError):
        VideoReader(str(junk))
    with pytest.raises(InputError, match="unsupported"):
        t = tmp_path / "x.txt"
        t.write_text("x")
        input_kind(str(t))


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    write_json(str(target), {"a": 1})
    assert json.load(open(target)) == {"a": 1} and os.listdir(tmp_path) == ["out.json"]


# --- results ---------------------------------------------------------------------------------
def test_results_coco17_conversion():
    kp = np.full((1, 18, 3), -1.0, np.float32)
    kp[0, :, 2] = 0
    kp[0, 0] = (10, 20, 0.9)  # nose
    kp[0, 1] = (11, 30, 0.8)  # neck: no COCO keypoint
    kp[0, 2] = (5, 35, 0.7)   # r_shoulder -> COCO 6
    r = PoseResult(kp, [0.5], CMU18_KEYPOINTS, to_coco17=CMU18_TO_COCO17)
    c = r.coco17()
    assert c.shape == (1, 17, 3)
    assert c[0, 0].tolist() == pytest.approx([10, 20, 0.9])
    assert c[0, 6].tolist() == pytest.approx([5, 35, 0.7])
    assert c[0, 5].tolist() == [0, 0, 0]
    res = r.to_coco_results(7)
    assert res[0]["image_id"] == 7 and len(res[0]["keypoints"]) == 51 and res[0]["score"] == 0.5
    assert r.person_boxes()[0].tolist() == pytest.approx([5, 20, 6, 15])


def test_run_video_on_a_live_source_writes_annotated_video_and_releases(tmp_path):
    from edgepose.video import run_video

    class Frames:
        def __init__(self, n):
            self.frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(n)]
            self.released = False

        def read(self):
            return (True, self.frames.pop(0)) if self.frames else (False, None)

        def release(self):
            self.released = True

    kp = np.zeros((1, 18, 3), np.float32)
    kp[0, :2] = [[10, 10, 0.9], [20, 20, 0.9]]
    est = lambda img: PoseResult(kp, [0.9], CMU18_KEYPOINTS, skeleton=[(0, 1)])  # noqa: E731
    src = Frames(5)
    out = tmp_path / "live.mp4"
    st = run_video(src, est, out_video=str(out), jsonl=str(tmp_path / "live.jsonl"), pipelined=False)
    assert st["frames_processed"] == 5 and st["live"]
    assert src.released and out.stat().st_size > 0
    assert VideoReader(str(out)).size == (64, 48)
    lines = [json.loads(ln) for ln in open(str(tmp_path / "live.jsonl"))]
    assert [ln["frame"] for ln in lines] == list(range(5))
    assert lines[0]["people"][0]["keypoints"][0] == [10.0, 10.0, 0.9]
    st = run_video(Frames(5), est, max_frames=2)      # pipelined: a live source may drop the stale one
    assert st["frames_read"] == 2 and st["frames_processed"] + st["frames_dropped"] == 2


def test_cli_parses_without_the_exporters_and_export_says_why(tmp_path):
    """The device's Python (3.6 on JetPack 4.6) cannot import the exporters: the CLI still parses
    and runs infer/track there, and export refuses in one line, before any work."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgepose", "export", str(tmp_path / "nope.pth"), "--target",
                        "cpu-int8", "-o", str(tmp_path / "x.onnx")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd=str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if sys.version_info < (3, 8):
        assert "edgepose export needs Python >= 3.8" in r.stderr
    assert not os.listdir(str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "edgepose", "infer", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd=str(tmp_path))
    assert r.returncode == 0 and "usage" in r.stdout
