"""Exporters (``edgepose.exporters``): checkpoints → PyTorch models → verified ONNX with metadata,
foreign ONNX import with a spec, and the deployment targets behind one dispatcher.

    from edgepose.exporters import export, TARGETS
    report = export("checkpoint_iter_370000.pth", target="onnx", out="lwop.onnx")

Heavy dependencies (torch, onnx, onnxruntime, onnxsim) are imported when a function runs.
"""
from .api import INT8_TARGETS, TARGETS, default_output, export, source_kind

__all__ = ["export", "TARGETS", "INT8_TARGETS", "default_output", "source_kind"]
