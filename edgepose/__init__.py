"""edgepose: trained 2D human-pose networks from PyTorch to fast, correct edge deployment."""
from ._version import __version__
from .errors import EdgeposeError, ExportError, InputError, ModelError

__all__ = ["__version__", "EdgeposeError", "ExportError", "InputError", "ModelError"]

import os as _os

# FFmpeg's own log lines (e.g. "moov atom not found") would come before edgepose's one-line error
# about the same file; edgepose reports what failed itself. Set OPENCV_FFMPEG_LOGLEVEL to see them.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
