"""Backends behind one small interface: ``load_backend(path)`` picks one by file type.

- ``.onnx``                          → onnxruntime
- ``.tflite``                        → ai-edge-litert (tflite-runtime as a fall-back import)
- ``.engine`` / ``.plan`` / a bundle directory → TensorRT

``backend=`` picks one explicitly: ``"onnxruntime"``, ``"openvino"`` (an ``.onnx`` file on the
CPU), ``"tflite"``, ``"tensorrt"``; ``None`` or ``"auto"``: by file type as above.
"""
import os
from typing import Optional, Sequence

from ..errors import ModelError
from .base import Backend, TensorSpec

__all__ = ["Backend", "TensorSpec", "load_backend", "backend_kind", "BACKENDS", "companion_backend"]

BACKENDS = ("onnxruntime", "openvino", "tflite", "tensorrt")
_FITS = {"openvino": "onnxruntime"}  # the file type (backend_kind) an explicit backend also reads


def backend_kind(path: str) -> str:
    if os.path.isdir(path):
        return "tensorrt"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        return "onnxruntime"
    if ext == ".tflite":
        return "tflite"
    if ext in (".engine", ".plan", ".trt"):
        return "tensorrt"
    raise ModelError("%s: unknown model type %r (expected .onnx, .tflite, .engine or a bundle directory)"
                     % (path, ext or "(no extension)"))


def check_backend(backend: Optional[str], exact_int8: bool = False) -> Optional[str]:
    """``backend`` normalised (None for auto), or a one-line error for a name or combination
    that cannot work; called before any file is read."""
    if backend in (None, "", "auto"):
        return None
    if backend not in BACKENDS:
        raise ModelError("unknown backend %r (choose auto, %s)" % (backend, ", ".join(BACKENDS)))
    if exact_int8 and backend != "onnxruntime":
        raise ModelError("exact_int8 is onnxruntime's exact Q/DQ evaluation (graph optimisations "
                         "off): it cannot run on backend %s" % backend)
    return backend


def _reads(backend: str, kind: str) -> bool:
    """Whether the explicit ``backend`` runs a model file of type ``kind`` (:func:`backend_kind`)."""
    return _FITS.get(backend, backend) == kind


def companion_backend(model, backend: Optional[str], own: Optional[str] = None) -> Optional[str]:
    """The backend for a companion model (a person detector) ``model``: ``own`` when given
    (checked when loaded), else the pose model's ``backend`` where it reads this file type, else
    None (by file type). So ``--backend openvino`` runs an .onnx detector with OpenVINO too, and a
    .tflite pose model's detector.onnx still runs with onnxruntime. A ``model`` that is not a
    path (a detector object) keeps its own backend: only ``own`` is checked."""
    own = check_backend(own)
    if own is not None or not isinstance(model, (str, os.PathLike)):
        return own
    backend = check_backend(backend)
    path = os.fspath(model)
    if backend is None or not os.path.exists(path):
        return None
    try:
        kind = backend_kind(path)
    except ModelError:
        return None
    return backend if _reads(backend, kind) else None


def load_backend(path: str, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, backend: Optional[str] = None,
                 **kwargs) -> Backend:
    """Load a model file with ``backend`` (None / "auto": the one its file type calls for)."""
    backend = check_backend(backend, bool(kwargs.get("exact_int8")))
    if not os.path.exists(path):
        raise ModelError("model file not found: %s" % path)
    kind = backend_kind(path)
    if backend is not None and not _reads(backend, kind):
        fits = [b for b in BACKENDS if _reads(b, kind)]
        raise ModelError("backend %s cannot run %s (backends for this model type: %s)"
                         % (backend, os.path.basename(path), ", ".join(fits)))
    if backend == "openvino":
        if providers:
            raise ModelError("providers are onnxruntime's: they do not apply to backend openvino")
        kwargs.pop("exact_int8", None)
        from .openvino import OpenvinoBackend
        return OpenvinoBackend(path, threads=threads, **kwargs)
    if kind == "onnxruntime":
        from .onnxruntime import OrtBackend
        return OrtBackend(path, threads=threads, providers=providers,
                          exact_int8=bool(kwargs.pop("exact_int8", False)))
    kwargs.pop("exact_int8", None)  # TFLite's and TensorRT's int8 kernels accumulate in int32
    if kind == "tflite":
        from .tflite import TfliteBackend
        return TfliteBackend(path, threads=threads, **kwargs)
    from .tensorrt import TensorrtBackend
    return TensorrtBackend(path, **kwargs)
