"""A stand-in for picamera2 (Raspberry Pi OS's python3-picamera2) for tests and emulated runs.

It implements the part of ``picamera2.Picamera2``'s contract a capture loop uses, as documented
(Picamera2 manual, "Configuration" and "Appendix A: Pixel and image formats"):

- ``Picamera2(camera_num=0)``; ``create_preview_configuration`` / ``create_still_configuration`` /
  ``create_video_configuration(main={...}, lores=None, raw=None, ..., controls={...})`` return a
  configuration dict whose ``main`` stream has ``size`` (w, h) and ``format`` (defaults: preview
  and video XBGR8888 at 640x480 / 1280x720, still BGR888 at the sensor size);
- ``configure(config)`` only while stopped; ``start(config=None)``, ``stop()``, ``close()``,
  context manager; ``capture_array(name="main")`` only while started;
- ``capture_array`` returns ``uint8`` arrays laid out as the real formats are in memory:
  ``RGB888`` (h, w, 3) as B, G, R; ``BGR888`` (h, w, 3) as R, G, B; ``XRGB8888`` (h, w, 4) as
  B, G, R, 255; ``XBGR8888`` (h, w, 4) as R, G, B, 255.

Frames come from ``FAKE_PICAMERA2_SOURCE`` (a video, an image or a folder of images, looped and
resized to the configured size); without it, a moving synthetic pattern. Each call is appended to
``FAKE_PICAMERA2_LOG`` (JSON lines) when that is set, so a test can check the camera's lifecycle.
"""
import glob
import json
import os

import numpy as np

__all__ = ["Picamera2"]
__version__ = "0.3-fake"

_SENSOR = (2304, 1296)          # Camera Module 3's full-resolution mode
_FORMATS = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}


def _log(event, **kw):
    path = os.environ.get("FAKE_PICAMERA2_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dict(event=event, **kw)) + "\n")


class _Frames:
    """BGR frames from FAKE_PICAMERA2_SOURCE, looped."""

    def __init__(self):
        import cv2
        self.cv2 = cv2
        src = os.environ.get("FAKE_PICAMERA2_SOURCE")
        self.images, self.cap, self.i = None, None, 0
        if src and os.path.isdir(src):
            self.images = sorted(p for p in glob.glob(os.path.join(src, "*"))
                                 if p.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")))
        elif src and src.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")):
            self.images = [src]
        elif src:
            self.cap = cv2.VideoCapture(src)
            if not self.cap.isOpened():
                raise RuntimeError("fake picamera2: cannot open %s" % src)
        self.src = src

    def next(self):
        self.i += 1
        if self.images:
            img = self.cv2.imread(self.images[(self.i - 1) % len(self.images)], self.cv2.IMREAD_COLOR)
            if img is None:
                raise RuntimeError("fake picamera2: cannot read %s" % self.images[(self.i - 1) % len(self.images)])
            return img
        if self.cap is not None:
            ok, img = self.cap.read()
            if not ok:
                self.cap.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
                ok, img = self.cap.read()
            if not ok:
                raise RuntimeError("fake picamera2: %s has no frames" % self.src)
            return img
        y, x = np.mgrid[0:240, 0:320]
        return np.stack([(x + 4 * self.i) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8)


def camera_frame(bgr, size, fmt):
    """A BGR image as picamera2 hands it out for ``size`` (w, h) and ``fmt``."""
    import cv2
    w, h = size
    if bgr.shape[1] != w or bgr.shape[0] != h:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    if fmt == "RGB888":         # [B, G, R] in memory
        return np.ascontiguousarray(bgr)
    if fmt == "BGR888":         # [R, G, B]
        return np.ascontiguousarray(bgr[..., ::-1])
    alpha = np.full(bgr.shape[:2] + (1,), 255, np.uint8)
    if fmt == "XRGB8888":       # [B, G, R, 255]
        return np.concatenate([bgr, alpha], -1)
    if fmt == "XBGR8888":       # [R, G, B, 255]
        return np.concatenate([bgr[..., ::-1], alpha], -1)
    raise ValueError("fake picamera2: format %r not supported" % fmt)


class Picamera2:
    def __init__(self, camera_num=0, tuning=None):
        self.camera_num = camera_num
        self.camera_properties = {"Model": "imx708", "PixelArraySize": _SENSOR}
        self.camera_config = None
        self.started = False
        self.is_open = True
        self._frames = None
        _log("init", camera_num=camera_num)

    # configurations ---------------------------------------------------------------------------
    def _configuration(self, use_case, main, default_main, lores=None, raw=None, controls=None,
                       buffer_count=4, **kw):
        m = dict(default_main)
        m.update(main or {})
        if m["format"] not in _FORMATS:
            raise ValueError("fake picamera2: format %r not supported" % m["format"])
        m["size"] = tuple(int(v) for v in m["size"])
        cfg = {"use_case": use_case, "main": m, "lores": lores, "raw": raw,
               "controls": dict(controls or {}), "buffer_count": buffer_count}
        cfg.update(kw)
        return cfg

    def create_preview_configuration(self, main={}, lores=None, raw=None, transform=None, colour_space=None,
                                     buffer_count=4, controls={}, display="main", encode="main", **kw):
        return self._configuration("preview", main, {"format": "XBGR8888", "size": (640, 480)},
                                   lores, raw, controls, buffer_count)

    def create_still_configuration(self, main={}, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=1, controls={}, display=None, encode=None, **kw):
        return self._configuration("still", main, {"format": "BGR888", "size": _SENSOR},
                                   lores, raw, controls, buffer_count)

    def create_video_configuration(self, main={}, lores=None, raw=None, transform=None, colour_space=None,
                                   buffer_count=6, controls={}, display="main", encode="main", **kw):
        return self._configuration("video", main, {"format": "XBGR8888", "size": (1280, 720)},
                                   lores, raw, controls, buffer_count)

    def configure(self, camera_config=None):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None:
            camera_config = self.create_preview_configuration()
        elif isinstance(camera_config, str):
            camera_config = getattr(self, "create_%s_configuration" % camera_config)()
        self.camera_config = camera_config
        _log("configure", use_case=camera_config["use_case"], size=list(camera_config["main"]["size"]),
             format=camera_config["main"]["format"], controls=camera_config["controls"])

    # lifecycle --------------------------------------------------------------------------------
    def start(self, config=None, show_preview=None):
        if not self.is_open:
            raise RuntimeError("Camera is closed")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self._frames is None:
            self._frames = _Frames()
        self.started = True
        _log("start")

    def stop(self):
        self.started = False
        _log("stop")

    def close(self):
        if self.started:
            self.stop()
        self.is_open = False
        _log("close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # capture ----------------------------------------------------------------------------------
    def capture_array(self, name="main", wait=None, signal_function=None):
        if not self.started:
            raise RuntimeError("fake picamera2: capture_array before start() (the real one blocks)")
        if name != "main":
            raise ValueError("fake picamera2: only the main stream is modelled, not %r" % name)
        m = self.camera_config["main"]
        frame = camera_frame(self._frames.next(), m["size"], m["format"])
        _log("capture", shape=list(frame.shape))
        return frame
