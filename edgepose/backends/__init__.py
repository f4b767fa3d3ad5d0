"""Backends behind one small interface: ``load_backend(path)`` picks one by file type.

- ``.onnx``                          → onnxruntime
- ``.tflite``                        → ai-edge-litert (tflite-runtime as a fall-back import)
- ``.engine`` / ``.plan`` / a bundle directory → TensorRT
"""
import os
from typing import Optional, Sequence

from ..errors import ModelError
from .base import Backend, TensorSpec

__all__ = ["Backend", "TensorSpec", "load_backend", "backend_kind"]


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


def load_backend(path: str, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, **kwargs) -> Backend:
    """Load a model file with the backend its type calls for."""
    if not os.path.exists(path):
        raise ModelError("model file not found: %s" % path)
    kind = backend_kind(path)
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
