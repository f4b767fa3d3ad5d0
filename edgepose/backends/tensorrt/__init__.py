"""TensorRT backend, engine building and the engine cache (runs on the Jetson), by concern:
``common`` (the tensorrt import, logger, messages), ``cuda`` (device memory), ``build`` (engines and
their cache), ``runtime`` (:class:`TensorrtBackend`); the bundle format is :mod:`edgepose.trt_cache`.

One code path for TensorRT 8.x and 10.x:

- engines: ``build_serialized_network`` (8.0+ and 10); workspace through
  ``set_memory_pool_limit`` (8.4+) or ``max_workspace_size`` (8.0–8.3); explicit-batch networks
  (the flag is needed before 10 and deprecated in 10);
- execution: named tensors (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``: 8.5+ and 10) where the engine has them, else bindings
  (``get_binding_index``, ``set_binding_shape``, ``execute_async_v2``: 8.0–8.4);
- device memory: cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
  releases), pycuda as a fall-back.

INT8: explicit quantization (the bundle's symmetric Q/DQ ONNX) on TensorRT >= 8.5 GPUs; implicit
INT8 (FP32 ONNX + the bundle's calibration cache, header rewritten for this TensorRT) on 8.0–8.4
and on the DLA. A GPU without fast INT8 (Jetson Nano, Maxwell) gets an fp16 engine, said aloud.

Engines are cached beside the bundle (``BUNDLE/engines``; ``EDGEPOSE_TRT_CACHE`` or
``~/.cache/edgepose/engines`` when the bundle is read-only) under a key of everything the plan
depends on (:func:`edgepose.trt_cache.engine_key`); an engine whose key names another TensorRT
version or GPU is never deserialised: the bundle is rebuilt, with a message.
"""
from .build import build_engine
from .common import MISSING_CUDA, MISSING_TRT, TRTEXEC_ENGINE, trt_version
from .cuda import Cuda
from .runtime import TensorrtBackend

__all__ = ["TensorrtBackend", "build_engine", "trt_version", "Cuda", "MISSING_TRT", "MISSING_CUDA",
           "TRTEXEC_ENGINE"]
