"""Calibration data through the runtime's own preprocessing (installed as ``edgepose.calibration``).

The work is in :mod:`edgepose.calibration.samples`: ``load_samples(source, meta)`` gives a
deterministic :class:`~edgepose.calibration.samples.CalibrationSet` (calibration and held-out
model inputs) from image folders, videos and COCO files; ``check_sources`` checks sources in one
line before any work."""
from .samples import IMAGE_EXTS, VIDEO_EXTS, CalibrationSet, check_sources, load_samples

__all__ = ["CalibrationSet", "load_samples", "check_sources", "IMAGE_EXTS", "VIDEO_EXTS"]
