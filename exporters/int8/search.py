"""Quantize, gate, and search: the one road every INT8 target takes.

:func:`gated_quantize` quantizes (a ``quantize_fn`` callback per target; default
:func:`.qdq.quantize_qdq`), checks the result with the accuracy gate (:mod:`.gate`), and when the
budget is missed searches the fastest mixed-precision configuration that meets it (conv units,
:mod:`.units`, ranked by measured sensitivity); when none does it raises :class:`ExportError` and
leaves no artifact. Trials are scored on a subset of the held-out frames first
(:func:`trial_subset`); the choice is confirmed on all of them.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import ExportError
from edgepose.evaluate import coco_pairs

from .gate import LABEL_FREE_GATE, N_BOOT, accuracy_report, final_line, host_speed, why_missed
from .kernels import int8_kernel_class
from .qdq import prepare_model, quantize_qdq
from .stats import ranges_from_stats
from .units import conv_macs, conv_units, sensitivity_inputs, unit_sensitivity

__all__ = ["TRIAL_FRAMES", "PREPARE_KEYS", "trial_subset", "prepare", "gated_quantize", "bisect_units"]

# search trials are scored on this many held-out frames (spread over the sources); the chosen
# configuration is then confirmed on all of them
TRIAL_FRAMES = 32
# bootstrap resamples on the subset: enough to tell a clear miss from one that needs every frame
TRIAL_BOOT = 200
# the bisection stops when the float-unit count is known to 1/SEARCH_GRANULARITY of the units
# (a few more float layers, minutes less search)
SEARCH_GRANULARITY = 16


class HoldoutSubset:
    """Some of a calibration set's held-out frames (``holdout_index``: their positions in the
    full set, so cached float results are shared)."""

    def __init__(self, cs, index: Sequence[int]):
        self.holdout_index = [int(i) for i in index]
        self.holdout_images = [cs.holdout_images[i] for i in self.holdout_index]
        boxes = getattr(cs, "holdout_boxes", None)
        self.holdout_boxes = [boxes[i] for i in self.holdout_index] if boxes else None
        ids = list(getattr(cs, "holdout_ids", None) or range(len(cs.holdout_images)))
        self.holdout_ids = [ids[i] for i in self.holdout_index]


def trial_subset(cs, n: int = TRIAL_FRAMES):
    """``n`` held-out frames evenly spread over the set (and so over its sources), or the set
    itself when it is not larger."""
    total = len(getattr(cs, "holdout_images", []) or [])
    if total <= n or n <= 0:
        return cs
    return HoldoutSubset(cs, np.linspace(0, total - 1, n).round().astype(int).tolist())


# quantize_kwargs that configure the exact float rewrites (prepare_model), not the Q/DQ writing
PREPARE_KEYS = ("fold", "equalize", "alpha", "equalize_concat")


def prepare(fp32_path: str, calib, quantize_kwargs: Optional[Dict[str, Any]] = None):
    """:func:`edgepose.exporters.int8.qdq.prepare_model` with the rewrite options among
    ``quantize_kwargs`` (and range histograms when its calibration method needs them)."""
    qkw = quantize_kwargs or {}
    method = str(qkw.get("method", "minmax")).lower()
    hist = method != "minmax" and not method.startswith("ort-")
    return prepare_model(fp32_path, calib, histograms=hist, **{k: qkw[k] for k in PREPARE_KEYS if k in qkw})


def gated_quantize(fp32_path: str, out_path: str, cs, meta, quantize_kwargs: Optional[Dict[str, Any]] = None,
                   max_ap_drop: float = 1.0, coco=None, images_dir=None,
                   log: Optional[Callable[[str], None]] = None, search: bool = True,
                   max_label_free_drop: float = LABEL_FREE_GATE, threads: Optional[int] = None,
                   measure_speed: bool = True, sensitivity_frames: int = 1,
                   max_float_mac_fraction: float = 0.9, enforce: bool = True,
                   host_kernels: bool = False,
                   quantize_fn: Optional[Callable[[Any, str, List[str]], Dict[str, Any]]] = None,
                   prepared=None, reference_path: Optional[str] = None,
                   cache: Optional[Dict[Any, Any]] = None, trial_frames: int = TRIAL_FRAMES,
                   ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Quantize ``fp32_path`` to ``out_path`` and gate it; returns (quant info, report).

    ``quantize_fn(prepared, out_path, keep_float) -> info`` writes one configuration (default:
    :func:`edgepose.exporters.int8.qdq.quantize_qdq` with ``quantize_kwargs`` on the prepared
    model): the one search serves every target. When the full-INT8 model misses the budget:
    rank the conv units by measured sensitivity (output noise when only that unit is quantized,
    on held-out inputs), then find the smallest k such that keeping the k most sensitive units
    in float passes the gate (fewest float layers = fastest). Raises ExportError (and removes
    ``out_path``) when even that fails. When the passing configuration keeps
    ``max_float_mac_fraction`` or more of the compute in float, it is still written (it is the
    fastest one within the budget), with ``report["warning"]`` and the frontier.
    ``enforce=False`` (``--no-gate``): quantize as asked, measure and report, never search or
    fail. ``host_kernels``: the final report also scores this CPU's int8 kernels.
    ``prepared``: the float model already prepared (:func:`.qdq.prepare_model`) on
    ``cs.calib``; ``reference_path``: the float model the quantized one is scored against
    (default ``fp32_path``; TFLite compares with its own float graph). ``cache``: a dict shared
    by calls with the same float model and held-out frames (its outputs are computed once).

    Speed: every configuration is first scored on ``trial_frames`` held-out frames spread over
    the sources (no bootstrap); a miss there whose interval reaches the budget is decided on all
    frames. The search bisects over the count of float units (:func:`bisect_units`: about 4
    trials, where probing upwards from 1 took 8-10);
    the choice is confirmed on all frames (when the subset was optimistic, the bisection goes on
    with every frame from there). Units are ranked on a half-size frame (:func:`.units.sensitivity_inputs`).
    One progress line per step, with the time left.
    """
    log = log or (lambda m: None)
    t0 = time.time()
    if prepared is None:
        prepared = prepare(fp32_path, cs.calib, quantize_kwargs)
    qkw = {k: v for k, v in (quantize_kwargs or {}).items() if k not in PREPARE_KEYS}
    user_keep = list(qkw.pop("keep_float", []) or [])
    ref_path = reference_path or fp32_path
    cache = {} if cache is None else cache
    macs = conv_macs(prepared.model, cs.calib[0])
    sub = trial_subset(cs, trial_frames) if enforce else cs
    n_all = len(getattr(cs, "holdout_images", []) or [])
    n_sub = len(getattr(sub, "holdout_images", []) or [])
    has_coco = bool(coco_pairs(coco, images_dir))
    state = {"written": None, "trial_s": [], "escalated_s": []}
    total = sum(macs.values()) or 1.0
    if quantize_fn is None:
        def quantize_fn(prep, path, keep):
            return quantize_qdq(fp32_path, path, cs.calib, prepared=prep, keep_float=keep, **qkw)

    def attempt(keep: List[str], frames=None, escalate: bool = True) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        frames = cs if frames is None else frames
        ta = time.time()
        want = sorted(set(user_keep + keep))
        if state["written"] == want and state.get("info") is not None:
            info = state["info"]            # this configuration is on disk already (subset, then all)
        else:
            info = quantize_fn(prepared, out_path, want)
        state["written"], state["info"] = want, info
        rep = accuracy_report(ref_path, out_path, frames, meta, coco=coco, images_dir=images_dir,
                              max_ap_drop=max_ap_drop, max_label_free_drop=max_label_free_drop,
                              threads=threads, cache=cache,
                              n_boot=N_BOOT if (frames is cs or has_coco) else TRIAL_BOOT)
        if frames is sub:
            state["trial_s"].append(time.time() - ta)
        if frames is not cs:
            rep["scored_on"] = "%d of %d held-out frames" % (n_sub, n_all)
            lo_sub = (rep.get("label_free_drop_ci95") or [0.0])[0]
            if escalate and not has_coco and not rep["passed"] and lo_sub <= max_label_free_drop:
                # a miss the subset cannot tell from a pass (its 95 % interval reaches the
                # budget): decided on every held-out frame
                sub_drop = rep.get("label_free_drop", 100.0)
                te = time.time()
                rep = accuracy_report(ref_path, out_path, cs, meta, coco=coco, images_dir=images_dir,
                                      max_ap_drop=max_ap_drop, max_label_free_drop=max_label_free_drop,
                                      threads=threads, cache=cache)
                rep["scored_on"] = "all %d held-out frames (on %d: drop %.1f, interval from %.1f: undecided)" % (
                    n_all, n_sub, sub_drop, lo_sub)
                state["escalated_s"].append(time.time() - te)
        rep["keep_float"] = list(info.get("keep_float", sorted(set(user_keep + keep))))
        ff = sum(macs.get(n, 0.0) for n in rep["keep_float"]) / total
        rep["float_mac_fraction"] = round(ff, 4)
        rep["int8_mac_fraction"] = round(1.0 - ff, 4)
        return info, rep

    def finish(info, rep):
        if host_kernels:
            log("scoring this CPU's own int8 kernels on the %d held-out frames (%.0f s so far)" % (n_all, time.time() - t0))
            h = accuracy_report(ref_path, out_path, cs, meta, coco=coco, images_dir=images_dir,
                                max_ap_drop=max_ap_drop, max_label_free_drop=max_label_free_drop,
                                threads=threads, cache=cache, exact=False)
            rep["host"] = {k: h[k] for k in ("agreement_ap", "agreement_ap_ci95", "label_free_drop",
                                             "ap_quant", "ap_drop", "ap_drop_ci95", "oks_agreement",
                                             "people_quant", "passed") if k in h}
            rep["host"]["kernels"] = int8_kernel_class()
        if measure_speed and str(out_path).endswith(".onnx"):
            log("measuring INT8 against FP32 on this CPU (1 and all threads, back to back)")
            hs = host_speed(fp32_path, out_path, cs.calib[0])
            rep["speed"] = hs["per_threads"]
            rep["host_speed"] = hs
            rep["verdict"] = final_line(rep)
        rep["quantize_seconds"] = round(time.time() - t0, 1)
        return info, rep

    if not enforce:
        info, rep = attempt([])
        rep["gate_enforced"] = False
        if not rep["passed"]:
            rep["warning"] = ("the INT8 accuracy budget is missed (%s) and the gate is off: not fit "
                              "for deployment" % why_missed(rep))
            log("WARNING: " + rep["warning"])
        return finish(info, rep)
    screened = sub is not cs
    if screened:
        log("scoring full INT8 on %d of the %d held-out frames first" % (n_sub, n_all))
        info, rep = attempt([], sub)
        if rep["passed"] and not _on_all(rep):
            log("  passes there (%s): scoring on all %d held-out frames" % (_short(rep), n_all))
            info, rep = attempt([])
    else:
        log("scoring full INT8 on the %d held-out frames" % n_all)
        info, rep = attempt([])
    tried = [_trial(0, [], rep)]
    if not rep["passed"] and search:
        log("INT8 accuracy gate missed (%s): searching mixed precision" % why_missed(rep))
        ts = time.time()
        units = conv_units(prepared.model)
        already = set(rep["keep_float"])
        units = [u for u in units if not set(u) <= already]
        # uint8 fake quantization ranks the units for every target: ranking in TensorRT's own
        # format (symmetric activation ranges) was measured worse on tf-pose jetson-int8 (43 %
        # of conv MACs int8 in 169 s, against 64 % in 100 s)
        ranges = ranges_from_stats(prepared.stats)
        n_sens = max(1, min(sensitivity_frames, len(cs.holdout_inputs) or len(cs.calib)))
        frames = sensitivity_inputs(prepared.model, list(cs.holdout_inputs[:n_sens]) or list(cs.calib[:n_sens]),
                                    int(meta.stride or 8))
        sens = unit_sensitivity(prepared.model, units, ranges, frames, threads=threads)
        order = [units[i] for i in np.argsort(-np.asarray(sens), kind="stable")]
        ranked = [(u, float(sens[units.index(u)])) for u in order]
        log("  %d conv units ranked by sensitivity (once, on %d frame%s at %s) in %.0f s" % (
            len(order), n_sens, "s" if n_sens > 1 else "", "x".join(map(str, frames[0].shape)), time.time() - ts))
        steps = [0]
        results: Dict[int, Tuple[Dict[str, Any], Dict[str, Any]]] = {}   # units in float -> newest (info, rep)

        def keep_k(k: int) -> List[str]:
            return sorted({n for u in order[:k] for n in u})

        gran = max(1, len(order) // SEARCH_GRANULARITY)

        def record(k: int, frames) -> Tuple[Dict[str, Any], Dict[str, Any]]:
            """The k most sensitive units in float, scored on ``frames``; kept in the frontier."""
            inf_k, rep_k = attempt(keep_k(k), frames)
            tried.append(_trial(k, keep_k(k), rep_k))
            results[k] = (inf_k, rep_k)
            return inf_k, rep_k

        def step(k: int, frames, lo: int, hi: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
            # a subset miss whose interval reaches the budget is decided on every frame: a false
            # miss early in the bisection would send it to the upper half (measured on tf-pose
            # rpi-int8: 18 % int8 instead of 52 %); a subset pass is confirmed on all at the end
            inf_k, rep_k = record(k, frames)
            steps[0] += 1
            left = _search_time_left(state["trial_s"], lo, hi, k, rep_k["passed"], gran,
                                     n_all / max(1, n_sub) if frames is not cs else 0.0,
                                     state["escalated_s"])
            log("  search step %d: %d most sensitive units in float: %s (%s; %s, %.0f s so far)" % (
                steps[0], k, _short(rep_k), rep_k.get("scored_on", "all %d held-out frames" % n_all),
                left, time.time() - ts))
            return inf_k, rep_k

        def smallest_passing(lo: int, frames, top=None):
            found = bisect_units(len(order), gran, lo, lambda k, a, b: step(k, frames, a, b), top)
            return None if found is None else (found[0],) + tuple(found[1])

        def confirm(k: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
            inf_k, rep_k = record(k, cs)
            log("  confirming %d units in float on all %d held-out frames: %s" % (k, n_all, _short(rep_k)))
            return inf_k, rep_k

        found = smallest_passing(0, sub)
        best = None
        if found is not None and screened and not _on_all(found[2]):
            k = found[0]
            inf_k, rep_k = confirm(k)
            if rep_k["passed"]:
                best = (inf_k, rep_k)
            else:
                # the subset was optimistic at k: the next larger count that passed, confirmed on
                # every frame, bounds the bisection that goes on with every frame from k (on
                # tf-pose jetson-int8 with --bias-correction: 28 units confirmed in 1 trial,
                # where bisecting up to every unit took 4 and ended at 44)
                lo, top = k, None
                for k2 in sorted(j for j, (_, r) in results.items() if j > k and r["passed"]):
                    res2 = results[k2] if _on_all(results[k2][1]) else confirm(k2)
                    if res2[1]["passed"]:
                        top = (k2, res2)
                        break
                    lo = k2
                found = smallest_passing(lo, cs, top)
                best = (found[1], found[2]) if found is not None else None
        elif found is not None:
            best = (found[1], found[2])
        if best is not None:
            info, rep = best
            chosen = sorted(set(user_keep + rep["keep_float"]))
            if state["written"] != chosen:          # the chosen one, on disk
                state["info"], state["written"] = quantize_fn(prepared, out_path, chosen), chosen
        rep["sensitivity_ranking"] = [{"nodes": u, "noise_db": round(sv, 2)} for u, sv in ranked]
        rep["search_seconds"] = round(time.time() - ts, 1)
    rep["search"] = tried
    if not rep["passed"]:
        _remove(out_path)
        err = ExportError("INT8 accuracy gate failed: %s%s" % (
            why_missed(rep), "; no mixed-precision configuration met it" if search else ""))
        err.frontier = tried
        err.report = rep
        raise err
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
    return finish(info, rep)


def bisect_units(n: int, gran: int, lo: int, trial: Callable[[int, int, int], Tuple[Any, Dict[str, Any]]],
                 top: Optional[Tuple[int, Tuple[Any, Dict[str, Any]]]] = None):
    """The smallest k in (lo, n] (to ``gran`` units) whose trial passes, by bisection between lo
    and n (every unit in float: the float model, which passes and is tried only when nothing
    smaller does). ``trial(k, lo, hi) -> (info, rep)`` with ``rep["passed"]``. Returns
    ``(k, (info, rep))`` or None. About log2(16) = 4 trials at 1/16 granularity, whatever k is.
    ``top``: ``(k, (info, rep))`` already known to pass, the upper end instead of n.
    """
    hi, best = top if top is not None else (n, None)
    while hi - lo > gran:
        mid = (lo + hi) // 2
        res = trial(mid, lo, hi)
        if res[1]["passed"]:
            hi, best = mid, res
        else:
            lo = mid
    if best is None:
        res = trial(hi, lo, hi)
        if not res[1]["passed"]:
            return None
        best = res
    return hi, best


def _search_time_left(trial_s: List[float], lo: int, hi: int, k: int, passed: bool, gran: int,
                      confirm_factor: float, escalated_s: Sequence[float] = ()) -> str:
    """'about N s left': the bisection steps still to go (until the open interval is ``gran``
    units wide) times the mean step time, plus the confirmation on all frames
    (``confirm_factor`` subset trials). A step's time is a subset trial's plus, as measured so
    far, its share of the undecided misses rescored on every frame (``escalated_s``)."""
    if not trial_s:
        return "time left unknown"
    lo2, hi2 = (lo, k) if passed else (k, hi)
    n = 0
    while hi2 - lo2 > gran:
        lo2 = (lo2 + hi2) // 2
        n += 1
    mean = float(np.mean(trial_s))
    per_step = mean + float(np.sum(escalated_s)) / len(trial_s)
    return "about %.0f s left" % (n * per_step + confirm_factor * mean)


def _on_all(rep: Dict[str, Any]) -> bool:
    """Whether ``rep`` was scored on every held-out frame (a trial on the subset says how many)."""
    return rep.get("scored_on", "all").startswith("all")


def _trial(k: int, keep: List[str], rep: Dict[str, Any]) -> Dict[str, Any]:
    t = {"units_float": k, "keep_float": sorted(keep), "passed": rep["passed"],
         "scored_on": rep.get("scored_on", "all"),
         "oks_agreement": round(rep["oks_agreement"], 4),
         "float_mac_fraction": rep.get("float_mac_fraction", 0.0)}
    for key in ("agreement_ap", "label_free_drop", "ap_quant", "ap_drop"):
        if key in rep:
            t[key] = rep[key]
    return t


def _frontier_text(tried: List[Dict[str, Any]]) -> str:
    parts = []
    for t in tried:
        acc = ("AP drop %.1f" % t["ap_drop"]) if "ap_drop" in t else ("label-free drop %.1f" % t.get("label_free_drop", 100.0))
        parts.append("%d%% float MACs -> %s" % (round(100 * t.get("float_mac_fraction", 0.0)), acc))
    return "; ".join(parts)


def _short(rep: Dict[str, Any]) -> str:
    s = "label-free AP drop %.2f" % rep.get("label_free_drop", 100.0)
    if "ap_quant" in rep:
        s += ", AP %.3f (drop %.2f)" % (rep["ap_quant"], rep["ap_drop"])
    s += ", %.0f%% of conv MACs int8" % (100 * rep.get("int8_mac_fraction", 1.0))
    return s + (" PASS" if rep["passed"] else " fail")


def _remove(path: str) -> None:
    try:
        if os.path.exists(path):
            os.remove(path)
    except OSError:
        pass
