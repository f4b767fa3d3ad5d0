"""Range statistics of the float model on the calibration inputs, and ranges from them.

:func:`collect_stats` runs the float model once over the calibration inputs and keeps, per
activation tensor, a streaming min/max (and for percentile/MSE/entropy a fixed-size histogram).
Memory is bounded by ``n_tensors x bins`` whatever the number of samples: unlike onnxruntime's
Entropy/Percentile calibrators it never holds every intermediate output of every sample (about
8.6 GB for 32 images at 368x368). ``method="ort-entropy"`` / ``"ort-percentile"`` use
onnxruntime's own calibrators (:func:`ort_calibrate`): those do hold everything, so their memory
is estimated first and they refuse above ``max_memory_mb``.

:func:`ranges_from_stats` turns statistics into ``{tensor: (min, max)}``: ``minmax``,
``percentile`` (per tensor), ``mse`` (the clipping that minimises the expected squared
quantization error of that tensor, on its histogram), ``entropy`` (KL, TensorRT-style).
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import ExportError
from edgepose.files import scratch_dir as _scratch_dir

from .graph import augment_outputs, cpu_session, float_tensors, input_name, load_model

__all__ = ["METHODS", "DEFAULT_BINS", "DEFAULT_MAX_MEMORY_MB", "QuantStats", "check_method",
           "estimate_ort_calibrator_memory_mb", "collect_stats", "ranges_from_stats", "ort_calibrate"]

# the calibration methods (ort-*: onnxruntime's own calibrators)
METHODS = ("minmax", "percentile", "mse", "entropy", "ort-entropy", "ort-percentile")
DEFAULT_BINS = 2048
DEFAULT_MAX_MEMORY_MB = 4096


def check_method(method) -> str:
    """The calibration method ``method`` names (lower case); ExportError for an unknown one."""
    method = str(method).lower()
    if method not in METHODS:
        raise ExportError("unknown calibration method %r (choose from %s)" % (method, ", ".join(METHODS)))
    return method


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


def estimate_ort_calibrator_memory_mb(model, calib_inputs: Sequence[np.ndarray]) -> float:
    """What onnxruntime's histogram calibrators hold: every float activation of every sample."""
    model = load_model(model)
    sess = cpu_session(augment_outputs(model, float_tensors(model)).SerializeToString())
    outs = sess.run(None, {sess.get_inputs()[0].name: calib_inputs[0]})
    per = sum(o.nbytes for o in outs if isinstance(o, np.ndarray))
    return per * len(calib_inputs) / 2.0 ** 20


def collect_stats(model, calib_inputs: Sequence[np.ndarray], histograms: bool = False,
                  bins: int = DEFAULT_BINS, tensors: Optional[Sequence[str]] = None,
                  threads: Optional[int] = None) -> QuantStats:
    """Streaming min/max (and histograms on a second pass) of every float activation."""
    model = load_model(model)
    if not calib_inputs:
        raise ExportError("no calibration inputs")
    tensors = list(tensors) if tensors is not None else float_tensors(model)
    aug = augment_outputs(model, tensors)
    sess = cpu_session(aug.SerializeToString(), threads)
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


def ort_calibrate(model, calib_inputs, which: str, percentile: float,
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
    name = input_name(model)

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
