"""Video reading: THE frame source behind every reader of frames in edgepose (``edgepose infer`` /
``track`` and :func:`edgepose.video.run_video`, :class:`edgepose.io.VideoReader`, the calibration
samples of a video, Ray's frame ranges).

:class:`FrameSource` opens (:func:`open_source`) a video file, a folder of images, a camera
index (``0``), a V4L2 device (``/dev/video0``), a GStreamer pipeline string (anything with
``!``: the Jetson CSI camera is :func:`gstreamer_csi`), an RTSP/HTTP(S) URL (the rules of
:mod:`edgepose.sources`), or any object with ``read()`` and ``release()`` (picamera2 wrappers);
a source that cannot be opened is one line (FFmpeg's and OpenCV's own log lines are off while
it opens: :func:`quiet_ffmpeg`). Files and folders are *finite* and can seek; cameras and
streams are *live*.

Frames are numbered from 0 and timed (``index / fps`` for files and folders, the wall clock for
live sources); a frame that cannot be decoded is skipped, counted and keeps its number. A file
seeks with ``CAP_PROP_POS_FRAMES`` and the frame it lands on is checked against its timestamp
(a codec may land elsewhere than asked), falling back to decoding from the start;
:meth:`FrameSource.frames` reads every ``step``-th frame (the others are grabbed, not
converted) and checks each one's timestamp.
"""
import contextlib
import os
import time
from typing import Container, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from .errors import InputError
from .log import logger

__all__ = ["FrameSource", "open_source", "gstreamer_csi", "quiet_ffmpeg", "SeekMismatch"]


class SeekMismatch(Exception):
    """After a seek: a frame's timestamp does not give the frame number it was given (the
    numbering of the frames read since the seek cannot be trusted)."""


def quiet_ffmpeg() -> None:
    """FFmpeg's own log lines (e.g. "moov atom not found") would come before edgepose's one-line
    error about the same file: turn them off before OpenCV opens its first video (FFmpeg reads
    the level once). Called where a source opens, never at import; a level the user set in
    OPENCV_FFMPEG_LOGLEVEL is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV's own warnings (and FFmpeg's) off while a source opens: a failure is reported in
    one line."""
    quiet_ffmpeg()
    try:
        lg = cv2.utils.logging
        old = lg.getLogLevel()
        lg.setLogLevel(lg.LOG_LEVEL_ERROR)
    except AttributeError:
        yield
        return
    try:
        yield
    finally:
        lg.setLogLevel(old)


def _has_gstreamer() -> bool:
    return any(ln.strip().startswith("GStreamer") and "YES" in ln
               for ln in cv2.getBuildInformation().splitlines())


def gstreamer_csi(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30,
                  flip: int = 0, out_width: Optional[int] = None, out_height: Optional[int] = None) -> str:
    """The Jetson CSI camera pipeline: nvarguscamerasrc (NVMM NV12 from the ISP) -> nvvidconv
    (BGRx) -> BGR appsink keeping only the newest buffer."""
    ow, oh = out_width or width, out_height or height
    return ("nvarguscamerasrc sensor-id=%d ! "
            "video/x-raw(memory:NVMM), width=(int)%d, height=(int)%d, format=(string)NV12, framerate=(fraction)%d/1 ! "
            "nvvidconv flip-method=%d ! video/x-raw, width=(int)%d, height=(int)%d, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
            % (sensor_id, width, height, fps, flip, ow, oh))


Frame = Tuple[int, float, Optional[np.ndarray]]


class FrameSource:
    """Frames of one source. ``read()`` -> ``(frame_index, time_s, frame)``, or None at the end.

    ``kind``: file | folder | camera | v4l2 | gstreamer | url | custom; ``live``: True for
    cameras and streams; ``fps`` (the one given, else the container's or the camera's, else 30);
    ``frame_count`` (files: the container's, an estimate for some, exact after
    :meth:`count_frames`; folders: the images; else 0); ``size`` (width, height) of the frames
    (files: the first frame's, read when opening; else known after the first frame);
    ``skipped``: frames that could not be decoded (counted and skipped); ``ended_early``: a file
    that stopped before its announced frame count; ``eof``: the source has ended; ``pts_ok``:
    every file frame :meth:`frames` gave had its own number in its timestamp; ``seeked``: the
    last :meth:`seek` landed by seeking (not by decoding from the start).
    """

    MAX_BAD_IN_A_ROW = 16

    def __init__(self, spec, width: Optional[int] = None, height: Optional[int] = None,
                 fps: Optional[float] = None, mjpg: bool = False):
        with _quiet_opencv():
            self._open(spec, width, height, fps, mjpg)

    @classmethod
    def video_file(cls, path: str, fps: Optional[float] = None) -> "FrameSource":
        """A video file and nothing else (no camera, stream or folder): one-line InputError for
        a missing, empty or unopenable file, or one without a readable frame."""
        path = os.fspath(path)
        self = cls.__new__(cls)
        with _quiet_opencv():
            self._reset(path)
            self._open_file(path, fps)
        return self

    # -- opening ------------------------------------------------------------------------------
    def _reset(self, spec) -> None:
        self.spec = spec
        self.name = str(spec)
        self.cap = None
        self.size: Optional[Tuple[int, int]] = None
        self.skipped = 0
        self.ended_early = self.eof = self.seeked = False
        self.pts_ok = True
        self.last_pts: Optional[int] = None     # the number the last frame's timestamp gives
        self._index = 0                          # the number of the next frame to grab
        self._pending: Optional[Tuple[Frame, Optional[int]]] = None   # read, not handed out yet
        self._t0: Optional[float] = None
        self._paths: Optional[List[str]] = None
        self._cap_fps = 0.0

    def _open(self, spec, width, height, fps, mjpg) -> None:
        self._reset(spec)
        if not isinstance(spec, (str, int)) and hasattr(spec, "read"):
            self.kind, self.live, self.cap = "custom", True, spec
            self.name = type(spec).__name__
            self.fps = float(fps or 30.0)
            self.frame_count = 0
            return
        from .io import input_kind, list_images
        from .sources import stream_kind

        text = str(spec)
        stream = stream_kind(text)
        if stream == "camera":
            self.kind, self.live = "camera", True
            self.cap = cv2.VideoCapture(int(text), cv2.CAP_V4L2)
            if not self.cap.isOpened():
                self.cap = cv2.VideoCapture(int(text))
            if not self.cap.isOpened():
                raise InputError("cannot open camera %s (ls /dev/video*; v4l2-ctl --list-devices)" % text)
        elif stream == "v4l2":
            self.kind, self.live = "v4l2", True
            if not os.path.exists(text):
                raise InputError("camera device not found: %s (ls /dev/video*)" % text)
            self.cap = cv2.VideoCapture(text, cv2.CAP_V4L2)
            if not self.cap.isOpened():
                raise InputError("cannot open camera device %s (busy, or not a capture device)" % text)
        elif stream == "gstreamer":
            self.kind, self.live = "gstreamer", True
            if not _has_gstreamer():
                raise InputError("this OpenCV has no GStreamer support, needed for the pipeline %r "
                                 "(on a Jetson use JetPack's python3-opencv)" % text[:60])
            self.cap = cv2.VideoCapture(text, cv2.CAP_GSTREAMER)
            if not self.cap.isOpened():
                raise InputError("cannot open the GStreamer pipeline %r" % text[:80])
        elif stream == "url":
            self.kind, self.live = "url", True
            self.cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
            if not self.cap.isOpened():
                raise InputError("cannot open the stream %s (unreachable, or not a video stream)" % text)
        elif os.path.isdir(text):
            self.kind, self.live = "folder", False
            self._paths = list_images(text)
            if not self._paths:
                raise InputError("no images found in %s" % text)
            self.fps = float(fps or 30.0)
            self.frame_count = len(self._paths)
            return
        else:
            if input_kind(text) != "video":
                raise InputError("not a video, an image folder or a camera: %s" % text)
            self._open_file(text, fps)
            return
        if width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, fps)
        if mjpg:
            self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._set_fps(fps)
        self.frame_count = 0

    def _set_fps(self, fps) -> None:
        self._cap_fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = float(fps or (self._cap_fps if 0 < self._cap_fps < 1000 else 30.0))

    def _open_file(self, path: str, fps) -> None:
        """A video file: the one-line checks (missing, empty, not a video or an unsupported codec,
        no readable frame); its first frame is read now (``size``) and handed out first."""
        if not os.path.exists(path):
            raise InputError("video not found: %s" % path)
        if os.path.getsize(path) == 0:
            raise InputError("video file is empty: %s" % path)
        self.kind, self.live = "file", False
        self._capture()
        self._set_fps(fps)
        self.frame_count = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        first = self._next(True)
        if first is None:
            self.release()
            raise InputError("video has no readable frames: %s" % path)
        self._pending = (first, self.last_pts)

    def _capture(self) -> None:
        self.cap = cv2.VideoCapture(self.name)
        if not self.cap.isOpened():
            raise InputError("cannot open video (not a video or unsupported codec): %s" % self.name)

    def _rewind(self) -> None:
        """A file from its first frame again, as freshly opened."""
        self.release()
        with _quiet_opencv():
            self._capture()
        self._index, self._pending, self.skipped = 0, None, 0
        self.eof = self.ended_early = self.seeked = False

    # -- reading ------------------------------------------------------------------------------
    def _frame(self, f) -> Optional[np.ndarray]:
        if f is None or not isinstance(f, np.ndarray) or f.size == 0 or f.ndim not in (2, 3):
            return None
        if f.ndim == 2:
            return cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
        if f.shape[2] == 4:                      # XBGR8888 camera configurations
            return cv2.cvtColor(f, cv2.COLOR_BGRA2BGR)
        if f.shape[2] == 1:
            return cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
        if f.shape[2] != 3 or f.dtype != np.uint8:
            return None
        return f

    def _pts(self) -> Optional[int]:
        """The frame number the last grabbed frame's timestamp gives (None: no container fps)."""
        if self._cap_fps <= 0:
            return None
        return int(round(self.cap.get(cv2.CAP_PROP_POS_MSEC) * self._cap_fps / 1000.0))

    def _next(self, decode=True) -> "Optional[Frame]":
        """The next frame, ``(index, time_s, frame)``; ``decode``: True, False or a test of the
        frame's number: a frame not decoded is grabbed (the codec's work, no conversion) and
        comes as None. Undecodable frames are skipped and counted; None at the end (``eof``)."""
        if self._pending is not None:
            got, self.last_pts = self._pending
            self._pending = None
            return got
        if self._t0 is None:
            self._t0 = time.perf_counter()
        bad = 0
        while True:
            want = decode(self._index + bad) if callable(decode) else decode
            if self.kind == "folder":
                if self._index >= len(self._paths):
                    self.eof = True
                    return None
                i, path = self._index, self._paths[self._index]
                self._index += 1
                f = cv2.imread(path, cv2.IMREAD_COLOR) if want else None
                if want and f is None:
                    self.skipped += 1
                    logger.warning("skipped an unreadable image: %s" % path)
                    continue
                return self._deliver(i, i / self.fps, f)
            if self.kind == "custom":
                ok, f = self.cap.read()
                want = True
            else:
                ok, f = self.cap.grab(), None
                if ok and want:
                    ok, f = self.cap.retrieve()
            if ok and want:
                f = self._frame(f)
            if ok and (f is not None or not want):
                if bad:               # frames the decoder could not deliver, before this one
                    self.skipped += bad
                    logger.warning("skipped %d undecodable frame(s) before frame %d of %s"
                                   % (bad, self._index + bad, self.name))
                    self._index += bad
                i = self._index
                self._index += 1
                t = i / self.fps if not self.live else time.perf_counter() - self._t0
                self.last_pts = self._pts() if self.kind == "file" else None
                return self._deliver(i, t, f)
            bad += 1
            if bad < self.MAX_BAD_IN_A_ROW and (self.live and ok or (
                    self.kind == "file" and self._index + bad <= self.frame_count)):
                continue              # try the next frame
            if self.kind == "file" and self.frame_count and self._index < self.frame_count:
                self.ended_early = True
            elif self.live and ok:
                self.skipped += bad
            self.eof = True
            return None

    def _deliver(self, i: int, t: float, f) -> "Frame":
        if f is not None and self.size is None:
            self.size = (int(f.shape[1]), int(f.shape[0]))
        return i, t, f

    def read(self) -> Optional[Tuple[int, float, np.ndarray]]:
        """The next frame as ``(index, time_s, BGR uint8 frame)``, or None at the end. Frames that
        cannot be decoded are skipped and counted; the end of a file before its announced length
        is recorded in ``ended_early``."""
        return self._next(True)

    def frames(self, end: Optional[int] = None, step: int = 1,
               only: Optional[Container[int]] = None) -> Iterator[Tuple[int, float, np.ndarray]]:
        """``(index, time_s, frame)`` of the frames from here up to frame ``end`` (exclusive;
        None: to the end of the source) whose number is a multiple of ``step`` and, where given,
        in ``only``; the frames between are grabbed, not converted. Each file frame is checked
        against its timestamp (``round(POS_MSEC * fps / 1000)`` must be its number): ``pts_ok``
        turns False at the first that is not; after a :meth:`seek` that landed by seeking
        (``seeked``) such a frame raises :class:`SeekMismatch`."""
        step = int(step)
        if step < 1:
            raise InputError("step must be >= 1, got %d" % step)

        def wanted(i):
            return i % step == 0 and (only is None or i in only)

        while True:
            got = self._next(wanted)
            if got is None:
                return
            i, t, f = got
            if end is not None and i >= end:
                return
            if not wanted(i):
                continue
            if self.kind == "file" and self.last_pts != i:
                if self.seeked:
                    raise SeekMismatch("%s: frame %d has the timestamp of frame %s"
                                       % (self.name, i, self.last_pts))
                self.pts_ok = False
            yield i, t, f

    def __iter__(self) -> Iterator[Tuple[int, float, np.ndarray]]:
        return self.frames()

    # -- seeking, counting --------------------------------------------------------------------
    def _finite(self, what: str) -> None:
        if self.live:
            raise InputError("%s is a camera or a stream: it cannot %s" % (self.name, what))

    def seek(self, index: int, fast: bool = True) -> bool:
        """Files and folders: make frame ``index`` the next one :meth:`read` returns (numbered
        ``index``; an undecodable one: the next decodable). A file with ``fast`` seeks with
        ``CAP_PROP_POS_FRAMES`` (FFmpeg goes to the keyframe before and decodes forward) and
        checks the frame it lands on against its timestamp; where that frame is not the one asked
        (or the container has no frame rate), and without ``fast``, the file is decoded from its
        start up to ``index`` (always right, slower). Returns True where it landed by seeking
        (``seeked``: the frames that follow are checked too, see :meth:`frames`), False where it
        decoded forward. A camera or a stream: InputError."""
        self._finite("seek")
        index = int(index)
        if index < 0:
            raise InputError("cannot seek to frame %d of %s" % (index, self.name))
        self.seeked = False
        if self.kind == "folder":
            self._index, self._pending = index, None
            self.eof = index >= len(self._paths)
            return True
        tried = False
        if fast and index > 0 and self._cap_fps > 0:
            tried = True
            if self.cap.set(cv2.CAP_PROP_POS_FRAMES, index):
                self._index, self._pending, self.eof = index, None, False
                got = self._next(True)
                if got is not None and self.last_pts == got[0]:
                    self._pending = (got, self.last_pts)
                    self.seeked = True
                    return True
        pos = self._pending[0][0] if self._pending is not None else self._index
        if tried or pos > index:
            self._rewind()
        elif pos == index:
            return False
        else:
            self._pending = None
        while self._index < index:
            got = self._next(lambda i: i >= index)
            if got is None:
                break
            if got[0] >= index:
                self._pending = (got, self.last_pts)
                break
        return False

    def count_frames(self) -> int:
        """The exact number of frames of a file (every frame grabbed, none converted: the
        container's count is an estimate for some) or folder, kept in ``frame_count``; the
        source is at its first frame afterwards."""
        self._finite("be counted")
        if self.kind == "folder":
            self.seek(0)
            return self.frame_count
        self.seek(0, fast=False)
        last = -1
        while True:
            got = self._next(False)
            if got is None:
                break
            last = got[0]
        self.frame_count = last + 1
        self._rewind()
        return self.frame_count

    def release(self) -> None:
        if self.cap is not None:
            with contextlib.suppress(Exception):
                self.cap.release()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def open_source(spec, **kw) -> "FrameSource":
    """A :class:`FrameSource` for ``spec`` (see the module docstring); one-line InputError if it
    cannot be opened."""
    return spec if isinstance(spec, FrameSource) else FrameSource(spec, **kw)
