"""Timing a pipeline: the stages of one estimator, and the per-person cost of a top-down one.
``edgepose bench`` and ``benchmarks/`` call these; no test times anything."""
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .preprocess import check_image

__all__ = ["bench_estimator", "benchmark_people"]


def _stage_stats(values: List[float]) -> dict:
    a = np.asarray(values, np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean()), "min": float(a.min())}


def bench_estimator(est, img, runs: int = 50, warmup: int = 5) -> dict:
    """Median/p90 of the pipeline's stages over ``runs`` calls after ``warmup`` calls."""
    keys = ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms")
    rec = {k: [] for k in keys}
    people = 0
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        res = est(img)
        total = (time.perf_counter() - t0) * 1e3
        if i < warmup:
            continue
        for k in keys[:3]:
            rec[k].append(res.timings.get(k, 0.0))
        rec["total_ms"].append(total)
        people = len(res)
        if "detect_ms" in res.timings:
            rec.setdefault("detect_ms", []).append(res.timings["detect_ms"])
    out = {k: _stage_stats(v) for k, v in rec.items()}
    out["people"] = people
    return out


def _bench_boxes(img_hw: Tuple[int, int], n: int, seed: int = 0) -> np.ndarray:
    """``n`` person-shaped boxes (h = 2.2 w) spread over the image, reproducible."""
    h, w = img_hw
    rng = np.random.RandomState(seed)
    bh = rng.uniform(0.3, 0.8, n) * h
    bw = bh / 2.2
    x = rng.uniform(0, 1, n) * np.maximum(w - bw, 1)
    y = rng.uniform(0, 1, n) * np.maximum(h - bh, 1)
    return np.stack([x, y, bw, bh], 1)


def _stats(v: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(v, np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min())}


def benchmark_people(est, img: np.ndarray, counts: Sequence[int] = (1, 5, 20),
                     runs: int = 20, warmup: int = 2) -> Dict[str, Any]:
    """Per-person cost of ``est`` for 1, 5, 20 boxes: all crops in one call vs one call per box.

    Returns ``{"detector_ms": stats or None, "counts": {n: {"batched": {...}, "per_box": {...}}}}``
    where each mode holds median ``total_ms``, ``per_person_ms`` and the stage medians
    (``preprocess_ms``, ``inference_ms``, ``postprocess_ms``). OKS NMS is off while timing
    (synthetic boxes overlap); times are wall-clock medians over ``runs``, the two modes
    interleaved run by run so that both see the same machine load.
    """
    img = check_image(img)
    out: Dict[str, Any] = {"runs": int(runs), "image": [int(img.shape[1]), int(img.shape[0])],
                           "detector_ms": None, "counts": {}}
    if est.detector is not None:
        ts = []
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            est.detector(img)
            if i >= warmup:
                ts.append((time.perf_counter() - t0) * 1e3)
        out["detector_ms"] = _stats(ts)
    saved = (est.max_batch, est.oks_nms_threshold)
    try:
        est.oks_nms_threshold = 0.0
        modes = (("batched", saved[0]), ("per_box", 1))
        for n in counts:
            boxes = _bench_boxes(img.shape[:2], int(n))
            tot = {m: [] for m, _ in modes}
            st = {m: {"preprocess_ms": [], "inference_ms": [], "postprocess_ms": []} for m, _ in modes}
            for i in range(warmup + runs):
                for mode, mb in modes:  # interleaved: both modes see the same machine load
                    est.max_batch = mb
                    t0 = time.perf_counter()
                    r = est(img, boxes=boxes)
                    dt = (time.perf_counter() - t0) * 1e3
                    if i >= warmup:
                        tot[mode].append(dt)
                        for k in st[mode]:
                            st[mode][k].append(r.timings.get(k, 0.0))
            row = {}
            for mode, _ in modes:
                med = float(np.median(tot[mode]))
                row[mode] = {"total_ms": med, "per_person_ms": med / n,
                             "p90_ms": float(np.percentile(tot[mode], 90)),
                             **{k: float(np.median(v)) for k, v in st[mode].items()}}
            if est.fixed_batch is not None:
                row["batched"]["note"] = "fixed-batch model: chunks of %d" % est.fixed_batch
            out["counts"][str(int(n))] = row
    finally:
        est.max_batch, est.oks_nms_threshold = saved
    return out
