"""What a source string names, and what its outputs are called: THE rules for ``edgepose infer``,
``track``, Ray and :func:`edgepose.frames.open_source`.

- ``image``: one image file; ``folder``: a folder of images (``track`` also reads a folder of
  frames as a video);
- ``video``: a video file, a camera (``0``, ``/dev/video0``), a GStreamer pipeline (contains
  ``!``) or a URL (contains ``://``: rtsp, http, ...).
"""
import os
from typing import Optional

from .io import input_kind

__all__ = ["stream_kind", "source_kind", "source_name", "image_id"]


def stream_kind(source: str) -> "Optional[str]":
    """camera (an index) | v4l2 (a /dev/ device) | gstreamer (a pipeline) | url, or None for a
    file or folder."""
    if source.isdigit():
        return "camera"
    if source.startswith("/dev/"):
        return "v4l2"
    if "!" in source:
        return "gstreamer"
    if "://" in source:
        return "url"
    return None


def source_kind(source: str) -> str:
    """image | folder | video (see the module's doc); a missing or unsupported file is an
    InputError naming it."""
    if stream_kind(source) is not None:
        return "video"
    return input_kind(source)


def source_name(source: str) -> str:
    """The stem its outputs are named after: the file's or folder's, else camera / stream."""
    kind = stream_kind(source)
    if kind in ("camera", "gstreamer", "url"):
        return "camera" if kind == "camera" else "stream"
    return os.path.splitext(os.path.basename(source.rstrip("/")))[0] or "stream"


def image_id(path: str, default: int) -> int:
    """COCO image id of an image file: its stem when all digits (COCO's file names), else
    ``default`` (the image's position in its folder)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else default
