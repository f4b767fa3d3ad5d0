"""The video pipeline: sources, overlapped stages equal to sequential ones, outputs, live sources
dropping stale frames, and bad input (unopenable, truncated, corrupt frames, Ctrl-C)."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgepose.errors import InputError
from edgepose.io import VideoReader
from edgepose.video import open_source, run_video

from conftest import write_clip

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def clip(assets, tmp_path_factory):
    """The first 24 frames of arm_wrestling.mp4 (two people)."""
    return write_clip(os.path.join(assets, "videos", "arm_wrestling.mp4"),
                      tmp_path_factory.mktemp("clip") / "clip.mp4", 24)


@pytest.fixture(scope="module")
def est(tfpose_model):
    from edgepose.pipelines import load_estimator
    return load_estimator(tfpose_model, threads=1, height=128)


def _lines(path):
    with open(path) as f:
        return [json.loads(ln) for ln in f]


def test_pipelined_equals_sequential_and_writes_every_output(clip, est, tmp_path):
    from edgepose.track import Tracker

    outs = {}
    for mode in (False, True):
        d = tmp_path / str(mode)
        st = run_video(clip, est, Tracker(), out_video=str(d / "v.mp4"), jsonl=str(d / "v.jsonl"),
                       csv=str(d / "v.csv"), plot=str(d / "v.png"), pipelined=mode)
        assert st["frames_processed"] == st["frames_read"] == 24 and st["frames_dropped"] == 0
        outs[mode] = _lines(d / "v.jsonl")
        assert len(VideoReader(str(d / "v.mp4")).__iter__().__next__().shape) == 3
        assert sum(1 for _ in VideoReader(str(d / "v.mp4"))) == 24
        assert cv2.imread(str(d / "v.png")) is not None
        rows = open(d / "v.csv").read().splitlines()
        assert rows[0] == "frame,time_s,track_id,person_score,keypoint,x,y,score" and len(rows) > 24
        assert not [n for n in os.listdir(d) if n.startswith(".")]          # no temporaries left
    assert outs[True] == outs[False]
    rec = outs[True]
    assert [r["frame"] for r in rec] == list(range(24))
    assert rec[1]["time_s"] == pytest.approx(1 / 28.0, abs=1e-3)
    people = [p for r in rec for p in r["people"]]
    assert people, "tf-pose finds the people of arm_wrestling.mp4"
    p = people[0]
    assert set(p) == {"track_id", "score", "box", "keypoints", "coco17"}
    assert p["track_id"] >= 1 and len(p["keypoints"]) == 18 and len(p["coco17"]) == 17 and len(p["box"]) == 4


def test_sources_that_cannot_be_opened_fail_in_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    empty = tmp_path / "empty"
    empty.mkdir()
    for spec, msg in ((str(tmp_path / "missing.mp4"), "not found"), (str(bad), "cannot open video"),
                      (str(empty), "no images"), ("/dev/video99", "not found"),
                      ("rtsp://127.0.0.1:9/none", "cannot open the stream")):
        with pytest.raises(InputError, match=msg) as e:
            open_source(spec)
        assert "\n" not in str(e.value)


def test_a_truncated_file_gives_what_it_holds_and_a_playable_output(clip, est, tmp_path):
    data = open(clip, "rb").read()
    cut = tmp_path / "cut.mp4"
    # mp4v in an mp4 container: the index is at the end, so a cut file does not open at all;
    # an AVI (index optional) cut in half plays up to the cut
    avi = write_clip(clip, tmp_path / "clip.avi", fourcc="MJPG")
    data = open(avi, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    st = run_video(str(cut), est, out_video=str(tmp_path / "o.mp4"), jsonl=str(tmp_path / "o.jsonl"))
    n = st["frames_processed"]
    assert 0 < n < 24 and st["ended_early"]
    assert sum(1 for _ in VideoReader(str(tmp_path / "o.mp4"))) == n
    assert len(_lines(tmp_path / "o.jsonl")) == n


def test_a_corrupt_frame_is_counted_skipped_and_numbered_around(clip, est, tmp_path):
    avi = write_clip(clip, tmp_path / "c.avi", fourcc="MJPG")
    data = bytearray(open(avi, "rb").read())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(soi) == 24
    data[soi[10] + 2:soi[10] + 400] = bytes(398)          # frame 10's JPEG headers destroyed
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    st = run_video(str(bad), est, out_video=str(tmp_path / "o.mp4"), jsonl=str(tmp_path / "o.jsonl"))
    assert st["frames_skipped"] == 1 and st["frames_processed"] == 23 and not st["ended_early"]
    assert [r["frame"] for r in _lines(tmp_path / "o.jsonl")] == [i for i in range(24) if i != 10]
    assert sum(1 for _ in VideoReader(str(tmp_path / "o.mp4"))) == 23


def test_unreadable_images_in_a_folder_are_counted_and_skipped(assets, est, tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    src = sorted(os.listdir(os.path.join(assets, "coco")))
    jpgs = [n for n in src if n.endswith(".jpg")][:3]
    for n in jpgs:
        shutil.copy(os.path.join(assets, "coco", n), d / n)
    (d / (jpgs[0][:-4] + "_broken.jpg")).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    st = run_video(str(d), est, jsonl=str(tmp_path / "f.jsonl"))
    assert st["frames_skipped"] == 1 and st["frames_processed"] == 3


def test_ctrl_c_finalises_the_outputs(clip, est, tmp_path):
    def stop_at_5(i, t, img, res):
        if i == 5:
            raise KeyboardInterrupt

    for mode in (False, True):
        v, j = str(tmp_path / ("i%d.mp4" % mode)), str(tmp_path / ("i%d.jsonl" % mode))
        st = run_video(clip, est, out_video=v, jsonl=j, pipelined=mode, on_result=stop_at_5)
        assert st["interrupted"]
        n = sum(1 for _ in VideoReader(v))
        assert n == st["frames_processed"] >= 5
        assert [r["frame"] for r in _lines(j)] == list(range(n))


class FakeCamera:
    """A live source delivering frames faster than the model can take them."""

    def __init__(self, frames, n=60):
        self.frames, self.n, self.i = frames, n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        return True, f

    def release(self):
        pass


def test_live_sources_drop_stale_frames_files_never_do(clip, est):
    frames = [f for f in VideoReader(clip)]
    seen = []
    slow = lambda img: (__import__("time").sleep(0.03), est(img))[1]   # noqa: E731
    slow.meta = est.meta
    st = run_video(FakeCamera(frames, 60), slow, on_result=lambda i, t, img, r: seen.append(i))
    assert st["live"] and st["frames_dropped"] > 0
    assert st["frames_processed"] + st["frames_dropped"] == st["frames_read"] == 60
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    st = run_video(clip, slow)
    assert st["frames_dropped"] == 0 and st["frames_processed"] == 24


def test_cli_track_writes_jsonl_and_video_and_refuses_bad_input(clip, tfpose_model, tmp_path):
    exe = [sys.executable, "-m", "edgepose"]
    out = tmp_path / "o"
    r = subprocess.run(exe + ["track", tfpose_model, clip, "--height", "128", "--out", str(out),
                              "--json", str(out / "t.jsonl"), "--threads", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    assert len(_lines(out / "t.jsonl")) == 24 and (out / "clip.mp4").exists()
    for args, msg in ((["track", tfpose_model, str(tmp_path / "nope.mp4")], "not found"),
                      (["track", tfpose_model, clip, "--beta", "-1"], "beta"),
                      (["track", tfpose_model, clip, "--max-fps", "0"], "max-fps"),
                      (["track", tfpose_model, clip, "--min-hits", "0"], "min-hits")):
        r = subprocess.run(exe + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


def test_plot_draws_every_track_with_a_legend_and_y_as_in_the_image(tmp_path):
    from edgepose.draw import _palette
    from edgepose.video import _Trajectories, plot_trajectories

    traj = _Trajectories()
    K = 3
    for tid in range(1, 12):                 # 11 tracks, the last ones short
        n = 40 - 2 * tid
        rows = []
        for i in range(n):
            kp = np.ones((K, 3), np.float32)
            kp[:, 0] = 100 + 3 * i           # moving right ...
            kp[:, 1] = 50 + 4 * i            # ... and down the image
            rows.append((i / 25.0, kp))
        traj.data[tid] = rows
    path = str(tmp_path / "p.png")
    plot_trajectories(traj, ["nose", "neck", "hip"], path, size=(800, 120))
    img = cv2.imread(path)
    head = img.shape[0] - 11 * 120
    assert img.shape[1] == 800 and head > 20, "one row per track, all 11 of them, under a header"
    cols = _palette(K)
    for k in range(K):                       # the legend shows every keypoint's colour
        assert np.all(img[:head] == cols[k], axis=2).sum() > 5, k
    for r in range(11):
        row = img[head + 120 * r: head + 120 * (r + 1)]
        for x0, x1, downwards in ((0, 400, False), (400, 800, True)):
            near = np.abs(row[:, x0:x1].astype(int) - np.array(cols[K - 1])).sum(2) < 60   # drawn last
            ys, xs = np.nonzero(near)
            assert len(xs) > 10, (r, x0)
            early, late = ys[xs <= np.percentile(xs, 10)].mean(), ys[xs >= np.percentile(xs, 90)].mean()
            # x grows upwards on the left; y grows downwards on the right, as in the image
            assert (late > early) if downwards else (late < early), (r, x0, early, late)


def test_jsonl_missing_keypoints_are_zeros_in_both_schemas():
    from edgepose.results import PoseResult
    from edgepose.schema import CMU18_KEYPOINTS, CMU18_TO_COCO17
    from edgepose.video import frame_record

    kp = np.tile(np.array([[10.0, 20.0, 0.9]], np.float32), (18, 1))
    kp[0] = (-1, -1, 0)                      # the nose: COCO index 0
    kp[4] = (-1, -1, 0)                      # the right wrist: COCO index 10
    rec = frame_record(3, 0.1, PoseResult(kp[None], [0.8], CMU18_KEYPOINTS, (), CMU18_TO_COCO17,
                                          track_ids=[7]))
    p = rec["people"][0]
    assert p["keypoints"][0] == p["keypoints"][4] == [0, 0, 0]
    assert p["coco17"][0] == p["coco17"][10] == [0, 0, 0]
    assert p["keypoints"][1] == [10.0, 20.0, 0.9] and p["coco17"][5] == [10.0, 20.0, 0.9]
    assert p["track_id"] == 7 and rec["frame"] == 3
