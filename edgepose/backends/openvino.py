"""OpenVINO backend (CPU): reads the same .onnx files as the onnxruntime backend.

On x86 CPUs with AVX512-VNNI / AMX its int8 kernels run edgepose's u8s8 Q/DQ models 1.2-1.4x
faster than onnxruntime's (README, INT8 section; ``benchmarks/openvino_speed.py``). Its int8
convolutions accumulate in int32 like the device kernels; results are scored like onnxruntime's
host int8 kernels, not bit-exact (``exact_int8`` is onnxruntime's mode and is refused here).
"""
import os
import threading
from typing import Dict, Optional, Sequence

import numpy as np

from ..errors import ModelError, first_line
from ..metadata import ONNX_KEY, from_props
from .base import Backend, TensorSpec


def _shape(partial_shape) -> list:
    return [d.get_length() if d.is_static else None for d in partial_shape]


def _framework_props(model) -> Dict[str, str]:
    """The ONNX metadata_props, which OpenVINO's ONNX reader keeps under rt_info['framework']."""
    if not model.has_rt_info(["framework"]):
        return {}
    keys = model.get_rt_info(["framework"]).astype(dict)
    return {k: model.get_rt_info(["framework", k]).astype(str) for k in keys if k.startswith(ONNX_KEY)}


class OpenvinoBackend(Backend):
    """An OpenVINO compiled model on the CPU. ``threads`` sets INFERENCE_NUM_THREADS; inference
    precision is always f32 (OpenVINO's default on AVX512-BF16/AMX CPUs is bf16, which would
    change the float layers' results silently); one stream, latency hint."""

    name = "openvino"

    def __init__(self, path: str, threads: Optional[int] = None, device: str = "CPU"):
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise ModelError("openvino is not installed: pip install 'edgepose[openvino]'")
        self.path, self.threads, self.device = path, threads, device
        core = ov.Core()
        try:
            model = core.read_model(path)
        except Exception as e:
            raise ModelError("%s is not a model OpenVINO can read: %s"
                             % (os.path.basename(path), first_line(e)))
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(int(threads))
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:
            raise ModelError("OpenVINO cannot compile %s for %s: %s"
                             % (os.path.basename(path), device, first_line(e)))
        self.inputs = [TensorSpec(p.get_any_name(), _shape(p.get_partial_shape()),
                                  p.get_element_type().to_dtype()) for p in model.inputs]
        self.outputs = [TensorSpec(p.get_any_name(), _shape(p.get_partial_shape()),
                                   p.get_element_type().to_dtype()) for p in model.outputs]
        self.meta = from_props(_framework_props(model))
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request is not re-entrant; a session is shared
        self._version = ov.get_version()

    def run(self, feeds: Dict[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        names = list(output_names) if output_names else [o.name for o in self.outputs]
        known = set(o.name for o in self.outputs)
        missing = [n for n in names if n not in known]
        if missing:
            raise ModelError("inference failed: no output named %s" % ", ".join(missing))
        try:
            with self._lock:
                res = self._request.infer(feeds)
                outs = {n: np.array(res[self.compiled.output(n)]) for n in names}
        except Exception as e:
            raise ModelError("inference failed: %s" % first_line(e))
        return outs

    def describe(self) -> str:
        return "openvino %s on %s (f32 inference precision)" % (self._version.split("-")[0], self.device)
