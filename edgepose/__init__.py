"""edgepose: trained 2D human-pose networks from PyTorch to fast, correct edge deployment.

    import edgepose
    pose = edgepose.load("model.onnx")
    cv2.imwrite("out.jpg", pose("img.jpg").draw())

Top-level names are imported on first use, so ``import edgepose`` stays cheap (no OpenCV,
onnxruntime or torch) and changes nothing in the environment: ``load`` (edgepose.pose),
``Tracker`` (edgepose.track), ``run_video`` (edgepose.video), ``export`` (edgepose.exporters.api,
needs the ``export`` extra), ``PoseResult`` (edgepose.results)."""
import importlib as _importlib
import sys as _sys
import types as _types

from ._version import __version__
from .errors import EdgeposeError, ExportError, InputError, ModelError

_LAZY = {
    "load": ("edgepose.pose", "load"),
    "Pose": ("edgepose.pose", "Pose"),
    "PoseResult": ("edgepose.results", "PoseResult"),
    "Tracker": ("edgepose.track", "Tracker"),
    "run_video": ("edgepose.video", "run_video"),
    "export": ("edgepose.exporters.api", "export"),
}

__all__ = ["__version__", "EdgeposeError", "ExportError", "InputError", "ModelError"] + sorted(_LAZY)


def _no_export(*args, **kwargs):
    """edgepose.export on a device's Python (< 3.8): the exporters need torch and onnx."""
    raise ExportError("edgepose.export needs Python >= 3.8 (torch, onnx); this is Python %d.%d: export "
                      "on a workstation and copy the artifact here" % _sys.version_info[:2])


class _LazyModule(_types.ModuleType):
    # A module subclass rather than PEP 562's module __getattr__, which Python 3.6 lacks.
    def __getattr__(self, name):
        if name == "export" and _sys.version_info < (3, 8):
            return _no_export
        if name in _LAZY:
            mod, attr = _LAZY[name]
            value = getattr(_importlib.import_module(mod), attr)
            setattr(self, name, value)
            return value
        raise AttributeError("module 'edgepose' has no attribute %r" % name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_LAZY))


_sys.modules[__name__].__class__ = _LazyModule
