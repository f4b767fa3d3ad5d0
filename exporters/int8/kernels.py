"""Which int8 convolution kernels this CPU gives onnxruntime, and whether they are exact.

onnxruntime's fused u8s8 / s8s8 convolutions on x86 with AVX2 or AVX-512 but without VNNI use
VPMADDUBSW, which adds two u8 x s8 products in a *saturating* 16-bit sum: 2 x 255 x 127 = 64770
does not fit, so large activations times large weights are clipped (onnxruntime's quantization
documentation names U8U8 or ``reduce_range`` as the remedies). With VNNI (VPDPBUSD: AVX512-VNNI,
AVX-VNNI) or on ARM the products are accumulated in int32, exactly. TensorRT and TFLite's
kernels accumulate in int32 as well.

:func:`int8_kernel_class` names the class from the CPU's flags *and* checks it with a probe: a
one-layer Q/DQ convolution whose exact result needs more than 16 bits per product pair, run by
onnxruntime's optimised kernels and compared with the same graph run exactly.
:func:`cpu_int8_format` names the format that certainly fits this host: u8s8 where the kernels
are exact, U8U8 (uint8 weights, zero point 128: 8-bit precision kept, products summed in 32 bits)
where they saturate. :func:`cpu_int8_candidates` is what ``cpu-int8`` tries, in order: that one
alone where the kernels are exact; u8s7 (7-bit weights: every product pair fits 16 bits, at u8s8
speed) and then U8U8 where they saturate. ``EDGEPOSE_INT8_KERNELS=exact|saturating`` overrides
the probe (for tests and for exporting on one machine for another).
"""
from __future__ import annotations

import functools
import os
import platform
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["cpu_flags", "int8_kernel_class", "probe_u8s8_saturation", "probe_model", "cpu_int8_format",
           "cpu_int8_candidates", "check_format", "FORMATS"]

# cpu-int8 formats: activation type, weight type, reduce_range
FORMATS: Dict[str, Dict[str, Any]] = {
    "u8s8": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": False},
    "u8u8": {"activation_type": "uint8", "weight_type": "uint8", "reduce_range": False},
    "u8s7": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": True},
}


def cpu_flags() -> set:
    """CPU feature flags (x86 ``flags``, ARM ``Features``) from /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return set()
    flags = set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(val.split())
    return flags


def _name_from_flags(machine: str, flags: set) -> str:
    m = machine.lower()
    if m in ("x86_64", "amd64", "i686", "x86"):
        if "avx512_vnni" in flags:
            return "x86-avx512-vnni"
        if "avx_vnni" in flags:
            return "x86-avx-vnni"
        if "avx512bw" in flags:
            return "x86-avx512 (no VNNI)"
        if "avx2" in flags:
            return "x86-avx2 (no VNNI)"
        return "x86-sse"
    if m in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64 (no dot product)"
    if m.startswith("arm"):
        return "arm32"
    return m or "unknown"


def probe_model():
    """(model, input): the saturation probe, a 64-channel 1x1 Q/DQ convolution with all
    activations 255 and all weights 127. Its exact output is 64 (2 x 255 x 127 = 64770 per
    product pair); kernels that sum product pairs in 16 bits saturate to ~half of it."""
    from onnx import TensorProto, helper, numpy_helper
    C = 64
    s_x, s_w = 1.0 / 255.0, 1.0 / 127.0
    exact = C * 255 * 127 * s_x * s_w            # = 64
    s_y = exact * 1.25 / 255.0
    inits = [
        numpy_helper.from_array(np.array(s_x, np.float32), "sx"),
        numpy_helper.from_array(np.array(0, np.uint8), "zx"),
        numpy_helper.from_array(np.full((1, C, 1, 1), 127, np.int8), "wq"),
        numpy_helper.from_array(np.array([s_w], np.float32), "sw"),
        numpy_helper.from_array(np.array([0], np.int8), "zw"),
        numpy_helper.from_array(np.array(s_y, np.float32), "sy"),
        numpy_helper.from_array(np.array(0, np.uint8), "zy"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["out"]),
    ]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 4, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 4, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m, np.ones((1, C, 4, 4), np.float32)


@functools.lru_cache(maxsize=1)
def probe_u8s8_saturation() -> Optional[bool]:
    """True when onnxruntime's optimised u8s8 convolution saturates on this CPU (the
    :func:`probe_model` conv computed ~2x too small), False when it is exact, None when
    onnxruntime is missing or the probe cannot run."""
    try:
        import onnxruntime as ort
        m, x = probe_model()
    except ImportError:
        return None
    try:
        outs = []
        for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            so.log_severity_level = 3
            so.intra_op_num_threads = 1
            s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            outs.append(float(s.run(None, {"x": x})[0].mean()))
    except Exception:
        return None
    fused, ref = outs
    return bool(abs(fused - ref) > 0.05 * abs(ref))


@functools.lru_cache(maxsize=1)
def int8_kernel_class() -> Dict[str, Any]:
    """{"name", "saturates_u8s8", "exact_int32", "source"} for this CPU and onnxruntime."""
    name = _name_from_flags(platform.machine(), cpu_flags())
    forced = os.environ.get("EDGEPOSE_INT8_KERNELS", "").strip().lower()
    if forced in ("exact", "saturating"):
        sat: Optional[bool] = forced == "saturating"
        source = "EDGEPOSE_INT8_KERNELS=%s" % forced
    else:
        sat = probe_u8s8_saturation()
        source = "probe (one saturating-size Q/DQ conv, optimised vs exact)"
        if sat is None:     # no probe: trust the flags
            sat = name.startswith("x86") and "vnni" not in name
            source = "CPU flags"
    return {"name": name, "saturates_u8s8": bool(sat), "exact_int32": not sat, "source": source}


def check_format(requested: Optional[str]) -> Optional[str]:
    """``requested`` when it names one of :data:`FORMATS`, None for the host's choice (None, "" or
    "auto"); ExportError for anything else."""
    if requested in (None, "", "auto"):
        return None
    if requested not in FORMATS:
        from edgepose.errors import ExportError
        raise ExportError("unknown cpu-int8 format %r (choose from auto, %s)" % (requested, ", ".join(FORMATS)))
    return requested


def cpu_int8_format(requested: Optional[str] = None) -> Dict[str, Any]:
    """The cpu-int8 format for this host: ``requested`` (a :data:`FORMATS` key) or, by default,
    u8s8 where the kernels are exact and u8u8 where u8s8 saturates. Returns the format's
    quantizer options plus ``format``, ``kernels`` and ``why``."""
    k = int8_kernel_class()
    if check_format(requested) is not None:
        fmt, why = requested, "requested"
    elif k["saturates_u8s8"]:
        fmt, why = "u8u8", ("this CPU's u8s8 kernels saturate 16-bit sums (%s): U8U8 keeps 8-bit weights "
                            "and sums in 32 bits" % k["name"])
    else:
        fmt, why = "u8s8", "this CPU's u8s8 kernels accumulate exactly in int32 (%s)" % k["name"]
    return dict(FORMATS[fmt], format=fmt, kernels=k, why=why)


def cpu_int8_candidates(requested: Optional[str] = None) -> List[Dict[str, Any]]:
    """The formats ``cpu-int8`` tries, in order (see the module docstring): ``requested``
    alone when given, else :func:`cpu_int8_format`'s choice, preceded by u8s7 where the
    kernels saturate."""
    k = int8_kernel_class()
    if requested not in (None, "", "auto") or not k["saturates_u8s8"]:
        return [cpu_int8_format(requested)]
    return [dict(cpu_int8_format("u8s7"), why="this CPU's u8s8 kernels saturate 16-bit sums (%s): "
                 "7-bit weights keep every product pair within 16 bits" % k["name"]),
            dict(cpu_int8_format(), why="u8s7 missed the budget; U8U8 keeps 8-bit weights and sums "
                 "in 32 bits")]
