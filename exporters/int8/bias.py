"""Sequential empirical bias correction (``quantize_qdq(bias_correction=True)``,
``--bias-correction``; off by default, see :func:`edgepose.exporters.int8.qdq.quantize_qdq` for
the measurements): :func:`float_conv_means` of the float model, :func:`bias_correction_deltas`
measured on the Q/DQ model conv by conv, :func:`apply_bias_deltas` to the float model.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from edgepose.errors import ExportError

from .graph import copy_model, input_name, load_model, toposort, use_counts
from .stats import QuantStats, collect_stats

__all__ = ["bias_correction_deltas", "float_conv_means", "apply_bias_deltas"]


def _np_quantize(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    info = np.iinfo(zp.dtype)
    if scale.ndim == 1 and scale.size > 1:
        shp = [1] * x.ndim
        shp[axis] = -1
        scale, zpf = scale.reshape(shp), zp.reshape(shp).astype(np.float32)
    else:
        zpf = zp.astype(np.float32)
    y = np.rint(x / scale) + zpf   # rint: half to even, as QuantizeLinear
    return np.clip(y, info.min, info.max).astype(zp.dtype)


def _np_dequantize(x: np.ndarray, scale: np.ndarray, zp: Optional[np.ndarray], axis: int) -> np.ndarray:
    zp = np.zeros((), np.float32) if zp is None else zp
    if scale.ndim == 1 and scale.size > 1:
        shp = [1] * x.ndim
        shp[axis] = -1
        scale, zp = scale.reshape(shp), zp.reshape(shp)
    return ((x.astype(np.float32) - zp.astype(np.float32)) * scale).astype(np.float32)


def bias_correction_deltas(qdq_model, float_means: Dict[str, np.ndarray],
                           calib_inputs: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """Sequential empirical bias correction (Nagel et al. 2019, sec. 4.2, measured form).

    Runs the Q/DQ model over ``calib_inputs`` node by node in topological order, every
    intermediate tensor held for all inputs (a tensor is freed after its last consumer). At each
    Conv named in ``float_means`` ({conv name: per-output-channel mean of the float model's conv
    output}), the mean error E[y_quant - y_float] per output channel is measured with the convs
    before it already corrected, its output is shifted by it, and the walk goes on: errors do not
    compound. Returns {conv name: error}; subtract it from that conv's bias. Conv and Q/DQ run in
    torch / numpy; other ops in onnx's reference evaluator.
    """
    import torch
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    m = copy_model(qdq_model)
    toposort(m)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    in_name = input_name(m)
    uses = use_counts(m)
    env: Dict[str, List[np.ndarray]] = {in_name: [np.asarray(x, np.float32) for x in calib_inputs]}
    k = len(calib_inputs)

    def get(t):
        if t in env:
            return env[t]
        if t in consts:
            return [consts[t]] * k
        raise ExportError("bias correction: tensor %s is not computed before its use" % t)

    deltas: Dict[str, np.ndarray] = {}
    with torch.no_grad():
        for n in m.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            op = n.op_type
            ins = [get(t) if t else [None] * k for t in n.input]
            if op == "QuantizeLinear" and len(n.input) == 3 and n.input[1] in consts and n.input[2] in consts:
                outs = [[_np_quantize(x, consts[n.input[1]], consts[n.input[2]], attrs.get("axis", 1))
                         for x in ins[0]]]
            elif op == "DequantizeLinear" and n.input[1] in consts and (len(n.input) < 3 or n.input[2] in consts):
                zp = consts[n.input[2]] if len(n.input) > 2 and n.input[2] else None
                if n.input[0] in consts:
                    v = _np_dequantize(consts[n.input[0]], consts[n.input[1]], zp, attrs.get("axis", 1))
                    outs = [[v] * k]
                else:
                    outs = [[_np_dequantize(x, consts[n.input[1]], zp, attrs.get("axis", 1)) for x in ins[0]]]
            elif op == "Conv" and len(attrs.get("kernel_shape", [1, 1])) == 2 \
                    and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
                p = list(attrs.get("pads", [0, 0, 0, 0]))
                w = torch.from_numpy(np.array(ins[1][0], np.float32))   # a writable copy
                b = ins[2][0] if len(ins) > 2 and ins[2][0] is not None else None
                b = torch.from_numpy(np.array(b, np.float32)) if b is not None else None
                ys = []
                for x in ins[0]:
                    xt = torch.from_numpy(np.array(x, np.float32))
                    if any(p):
                        xt = torch.nn.functional.pad(xt, (p[1], p[3], p[0], p[2]))
                    ys.append(torch.nn.functional.conv2d(xt, w, b, list(attrs.get("strides", [1, 1])), 0,
                                                         list(attrs.get("dilations", [1, 1])),
                                                         int(attrs.get("group", 1))).numpy())
                fm = float_means.get(n.name)
                if fm is not None and ys and ys[0].ndim == 4 and ys[0].shape[1] == np.size(fm):
                    mean_q = np.mean([y.mean(axis=(0, 2, 3), dtype=np.float64) for y in ys], axis=0)
                    d = mean_q - np.asarray(fm, np.float64).reshape(-1)
                    deltas[n.name] = d
                    sh = d.astype(np.float32).reshape(1, -1, 1, 1)
                    ys = [y - sh for y in ys]
                outs = [ys]
            else:
                ev = ReferenceEvaluator(n)
                per = [ev.run(None, {t: ins[j][i] for j, t in enumerate(n.input) if t}) for i in range(k)]
                outs = [[per[i][o] for i in range(k)] for o in range(len(n.output))]
            for t, v in zip(n.output, outs):
                if t:
                    env[t] = v
            for t in n.input:
                if t in env:
                    uses[t] -= 1
                    if uses[t] <= 0 and t != in_name:
                        del env[t]
    return deltas


def float_conv_means(model, calib_inputs: Sequence[np.ndarray],
                     stats: Optional[QuantStats] = None) -> Dict[str, np.ndarray]:
    """{conv name: per-output-channel mean of its output} of the float ``model``."""
    model = load_model(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    have = stats.channel_mean if stats is not None else {}
    need = [n.output[0] for n in convs if n.output[0] not in have]
    if need:
        have = dict(have)
        have.update(collect_stats(model, calib_inputs, tensors=need).channel_mean)
    return {n.name: np.asarray(have[n.output[0]]) for n in convs if n.output[0] in have}


def apply_bias_deltas(model, deltas: Dict[str, np.ndarray]):
    """A copy of the float ``model`` with ``deltas[conv]`` subtracted from each conv's bias (a
    bias is added where a conv has none; a bias shared by several nodes is duplicated)."""
    from onnx import numpy_helper
    m = copy_model(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = use_counts(m)
    for n in m.graph.node:
        d = deltas.get(n.name)
        if n.op_type != "Conv" or d is None:
            continue
        d = np.asarray(d, np.float64).reshape(-1)
        old = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if old is not None and old not in inits:
            continue  # a computed bias: leave it
        b = numpy_helper.to_array(inits[old]).astype(np.float64) if old else np.zeros(d.shape)
        new = (b - d).astype(np.float32)
        if old and uses.get(old, 0) == 1:
            inits[old].CopyFrom(numpy_helper.from_array(new, old))
        else:
            name = n.name + "_bias_corrected"
            m.graph.initializer.append(numpy_helper.from_array(new, name))
            if len(n.input) > 2:
                n.input[2] = name
            else:
                n.input.append(name)
    return m
