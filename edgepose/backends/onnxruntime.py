"""ONNX Runtime backend."""
import os
from typing import Dict, Optional, Sequence

import numpy as np

from ..errors import ModelError, first_line
from ..metadata import from_props
from .base import Backend, TensorSpec

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _dim(d):
    return d if isinstance(d, int) else None


class OrtBackend(Backend):
    """onnxruntime session. ``providers`` e.g. ``["CUDAExecutionProvider"]``; a provider that
    this onnxruntime build lacks is an error, never a silent fall-back to the CPU.

    ``exact_int8=True`` runs a Q/DQ (INT8) model as written: graph optimisations off, so
    onnxruntime does not fuse QuantizeLinear/DequantizeLinear around a Conv into its own int8
    kernels; every QuantizeLinear rounds and saturates, every DequantizeLinear rescales, and the
    Conv runs in float on the dequantized integers. That is what an int32-accumulating device
    kernel (TensorRT, ARM dot-product, x86 VNNI) computes, up to float32 rounding of the sums
    (~1e-7 relative), and it does not depend on this CPU's int8 kernels (x86 without VNNI
    saturates 16-bit intermediate sums in onnxruntime's u8s8/s8s8 convolutions). Accuracy
    figures meant for a device come from this mode; it runs about as fast as FP32."""

    name = "onnxruntime"

    def __init__(self, path: str, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, exact_int8: bool = False):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("onnxruntime is not installed: pip install 'edgepose[ort]'")
        self.path = path
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in available]
        if missing:
            raise ModelError("onnxruntime provider(s) %s not available in this build (available: %s)"
                             % (", ".join(missing), ", ".join(available)))
        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if exact_int8
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        self.exact_int8 = bool(exact_int8)
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as e:
            msg = first_line(e)
            raise ModelError("%s is not a loadable ONNX model: %s" % (os.path.basename(path), msg))
        used = self.session.get_providers()
        if providers[0] not in used:
            raise ModelError("onnxruntime did not enable %s (session runs on %s)" % (providers[0], used))
        self.providers = used
        self.threads = threads
        self.inputs = [TensorSpec(i.name, [_dim(d) for d in i.shape], _ORT_TYPES.get(i.type, np.float32))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, [_dim(d) for d in o.shape], _ORT_TYPES.get(o.type, np.float32))
                        for o in self.session.get_outputs()]
        self.meta = from_props(dict(self.session.get_modelmeta().custom_metadata_map))

    def run(self, feeds: Dict[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        names = list(output_names) if output_names else [o.name for o in self.outputs]
        try:
            outs = self.session.run(names, feeds)
        except Exception as e:
            msg = first_line(e)
            raise ModelError("inference failed: %s" % msg)
        return dict(zip(names, outs))

    def describe(self) -> str:
        return "onnxruntime %s on %s%s" % (self._ort_version(), ",".join(self.providers),
                                           " (exact Q/DQ: graph optimisations off)" if self.exact_int8 else "")

    @staticmethod
    def _ort_version() -> str:
        import onnxruntime as ort
        return ort.__version__
