"""The accuracy gate of every quantized export.

``accuracy_report(float_model, quant_model, holdout, meta)`` runs both models through the real
runtime (:func:`edgepose.pipelines.load_estimator`: the same preprocessing, inference and C++
post-processing as ``edgepose infer``) on the held-out frames. A quantized ONNX model runs
**exactly** (``exact_int8``: its Q/DQ graph as written, what TensorRT's and ARM's int32-accumulating
kernels compute), never through this CPU's own int8 kernels, which on x86 without VNNI saturate
16-bit sums; a TFLite model runs in the TFLite interpreter, whose int8 kernels accumulate in
int32 on x86 too (``tests/test_tflite.py`` checks one layer against an int32 reference).
``accuracy_report(..., exact=False)`` scores this CPU's own int8 kernels instead;
``gated_quantize(..., host_kernels=True)`` adds those figures to the report, labelled with the
kernel class.

The report:

* **label-free** (no annotations needed): ``agreement_ap``, the COCO AP (pycocotools, OKS
  0.50:0.95) of the quantized model scored against the float model's own detections as ground
  truth, with a bootstrap 95 % interval over the held-out images; ``label_free_drop`` is
  100 x (1 - agreement_ap). Plus diagnostics: ``oks_agreement``, keypoint displacement, people
  counts.
* **with annotations** (``coco``: one COCO keypoints file or several ``(file, images dir)``
  pairs, pooled): ``ap_float``, ``ap_quant`` and ``ap_drop`` (AP points), with a paired
  bootstrap 95 % interval of the drop.
* ``resolves_budget``: whether the interval is narrow enough to tell the budget from zero; when
  it is not the report says so (``resolution_note``).

The gate: with annotations ``ap_drop <= max_ap_drop``; without them
``label_free_drop <= max_label_free_drop`` (default :data:`LABEL_FREE_GATE`, set from the
measurements in ``benchmarks/int8_gate.py``: see its docstring).

``gated_quantize`` quantizes, checks, and when the budget is missed searches the fastest
mixed-precision configuration that meets it (layers ranked by measured sensitivity); when none
does it raises :class:`ExportError` and leaves no artifact. :func:`save_report` writes the JSON and,
beside it, a PNG of float and INT8 poses side by side on the held-out frames where they differ
most.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import ExportError
from edgepose.evaluate import coco_pairs

__all__ = ["accuracy_report", "gated_quantize", "prepare", "LABEL_FREE_GATE", "match_people",
           "save_report", "format_report", "relative_speed", "host_speed", "speed_verdict", "final_line",
           "MIN_USEFUL_SPEEDUP"]

# label-free gate: the largest 100 x (1 - agreement AP) a model may show on the held-out frames
# without annotations (see benchmarks/int8_gate.py for how it tracks the true AP drop)
LABEL_FREE_GATE = 10.0
# float people the label-free AP ignores (as COCO ignores people too unclear to label): person
# score below this, or fewer COCO keypoints than this (see benchmarks/int8_gate.py)
LABEL_FREE_MIN_SCORE = 0.4
LABEL_FREE_MIN_KEYPOINTS = 1
# a held-out set smaller than this is reported as unable to resolve a 1-point budget
MIN_RESOLVING_FRAMES = 100
N_BOOT = 1000
# frames shown in the comparison PNG
PNG_FRAMES = 4


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


def _holdout(holdout) -> Tuple[List[np.ndarray], Optional[List[List[float]]]]:
    """Images (and top-down boxes) from a CalibrationSet or a plain list of images."""
    if hasattr(holdout, "holdout_images"):
        return list(holdout.holdout_images), getattr(holdout, "holdout_boxes", None)
    if holdout is None:
        return [], None
    return list(holdout), None


def _sigmas(meta) -> np.ndarray:
    from edgepose.schema import oks_sigmas
    return oks_sigmas(meta.num_keypoints, meta.get("to_coco17"))


def match_people(ref: np.ndarray, other: np.ndarray, sig: np.ndarray) -> List[Tuple[int, int, float]]:
    """Greedy one-to-one matching by OKS: [(i_ref, j_other, oks)]."""
    if len(ref) == 0 or len(other) == 0:
        return []
    from edgepose.evaluate import oks_matrix
    m = oks_matrix(ref, other, sig)
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


def _estimator(path: str, threads: Optional[int], exact: bool = True):
    from edgepose.pipelines import load_estimator
    return load_estimator(path, threads=threads, exact_int8=exact)


def _run(est, img, box=None):
    if box is not None:
        return est(img, boxes=np.asarray([box], np.float32))
    return est(img)


def _eval_poses(res) -> np.ndarray:
    """Keypoints scored by the label-free AP: COCO-17 when the schema maps, else its own."""
    return res.coco17() if res.to_coco17 is not None else np.asarray(res.keypoints, np.float64)


def label_free_agreement(float_results: Sequence[Any], quant_results: Sequence[Any],
                         sizes: Sequence[Tuple[int, int]], meta, min_score: float = LABEL_FREE_MIN_SCORE,
                         min_keypoints: int = LABEL_FREE_MIN_KEYPOINTS, n_boot: int = N_BOOT) -> Dict[str, Any]:
    """The label-free figures: COCO AP (pycocotools) of the quantized model's people scored
    against the float model's people as ground truth, on the same frames, with a bootstrap 95 %
    interval over the frames. Float people scoring below ``min_score`` or with fewer than
    ``min_keypoints`` keypoints are ignored regions (a detection there is neither a hit nor a
    false positive): the float model itself is unsure of them. ``*_results``: PoseResults."""
    from edgepose.evaluate import KeypointEval, bootstrap, interval, load_coco, pseudo_ground_truth, \
        results_entries
    coco17 = bool(meta.get("to_coco17"))
    K = 17 if coco17 else meta.num_keypoints
    gt = load_coco(pseudo_ground_truth([_eval_poses(r) for r in float_results], sizes, K,
                                       scores=[r.scores for r in float_results], min_score=min_score,
                                       min_keypoints=min_keypoints))
    ids = list(range(1, len(float_results) + 1))
    ke = KeypointEval(gt, results_entries([_eval_poses(r) for r in quant_results],
                                          [r.scores for r in quant_results]), ids,
                      sigmas=None if coco17 else _sigmas(meta))
    lf = ke.ap()
    n_gt = sum(1 for a in gt.dataset["annotations"] if not a["iscrowd"])
    if not np.isfinite(lf):    # the float model found nobody it is sure of
        lf = 1.0 if sum(len(r) for r in quant_results) == 0 else 0.0
    lo, hi = interval(bootstrap(ke.ap, len(ids), n_boot))
    if not np.isfinite(lo):
        lo = hi = lf
    return {"agreement_ap": round(float(lf), 4), "agreement_ap_ci95": [round(lo, 4), round(hi, 4)],
            "label_free_drop": round(100.0 * (1.0 - lf), 2),
            "label_free_drop_ci95": [round(100.0 * (1.0 - hi), 2), round(100.0 * (1.0 - lo), 2)],
            "label_free_reference_people": n_gt, "label_free_rule": {"min_score": min_score,
                                                                     "min_keypoints": min_keypoints}}


def accuracy_report(float_model_path: str, quant_model_path: str, holdout_images, meta=None,
                    coco=None, images_dir=None, max_ap_drop: float = 1.0,
                    max_label_free_drop: float = LABEL_FREE_GATE, threads: Optional[int] = None,
                    cache: Optional[Dict[str, Any]] = None, exact: bool = True,
                    n_boot: int = N_BOOT) -> Dict[str, Any]:
    """Float vs quantized on the held-out frames, and COCO AP of both with annotations.

    ``cache``: a dict reused across calls with the same float model and frames (the float side
    is computed once). ``exact``: run a Q/DQ ONNX model exactly (the device's arithmetic);
    False: with this CPU's int8 kernels."""
    from edgepose.evaluate import KeypointEval, bootstrap, interval, load_coco, merge_coco
    cache = {} if cache is None else cache
    if meta is None:
        from edgepose.metadata import read_onnx_meta
        meta = read_onnx_meta(float_model_path)
    images, boxes = _holdout(holdout_images)
    sig = _sigmas(meta)
    t0 = time.time()
    if "ef" not in cache:
        cache["ef"] = _estimator(float_model_path, threads, exact=False)
    ef = cache["ef"]
    eq = _estimator(quant_model_path, threads, exact=exact)
    pf_all, pq_all = [], []
    disp: List[float] = []
    per_img: List[float] = []
    change: List[float] = []
    oks_sum, denom, nf, nq, lost = 0.0, 0, 0, 0, 0
    index = list(getattr(holdout_images, "holdout_index", None) or range(len(images)))
    for i, img in enumerate(images):
        box = boxes[i] if boxes else None
        if ("pf", index[i]) not in cache:     # the float side: once per frame
            cache[("pf", index[i])] = _run(ef, img, box)
        rf = cache[("pf", index[i])]
        rq = _run(eq, img, box)
        pf_all.append(rf)
        pq_all.append(rq)
        pf, pq = np.asarray(rf.keypoints, np.float64), np.asarray(rq.keypoints, np.float64)
        nf += len(pf)
        nq += len(pq)
        matches = match_people(pf, pq, sig)
        s, most = sum(m[2] for m in matches), max(len(pf), len(pq))
        oks_sum += s
        denom += most
        per_img.append(float(s / most) if most else 1.0)
        # how much the float model's confident people change (what the picture shows): 1 - OKS
        # of each confident float person to its match (1 when lost), summed
        conf = [a for a in range(len(pf)) if float(np.asarray(rf.scores)[a]) >= LABEL_FREE_MIN_SCORE
                and int(np.sum(pf[a][:, 2] > 0)) >= 3] if len(pf) else []
        got = {a: o for a, _, o in matches}
        change.append(float(sum(1.0 - got.get(a, 0.0) for a in conf)))
        for a, b, _ in matches:
            both = (pf[a][:, 2] > 0) & (pq[b][:, 2] > 0)
            lost += int(np.sum((pf[a][:, 2] > 0) & ~(pq[b][:, 2] > 0)))
            if np.any(both):
                disp.extend(np.linalg.norm(pf[a][both, :2] - pq[b][both, :2], axis=1).tolist())
    rep: Dict[str, Any] = {
        "evaluation": ("exact Q/DQ (integer arithmetic as the device computes it)"
                       if exact and str(quant_model_path).endswith(".onnx") else
                       "TFLite interpreter (int32-accumulating int8 kernels)"
                       if str(quant_model_path).endswith(".tflite") else "as loaded"),
        "holdout_frames": len(images),
        "people_float": nf, "people_quant": nq,
        "mean_displacement_px": float(np.mean(disp)) if disp else None,
        "median_displacement_px": float(np.median(disp)) if disp else None,
        "keypoints_lost": lost,
        "oks_agreement": float(oks_sum / denom) if denom else (1.0 if nf == nq == 0 else 0.0),
        "max_ap_drop": float(max_ap_drop),
        "max_label_free_drop": float(max_label_free_drop),
    }
    # ---- label-free: AP of the quantized model against the float model's detections ----------
    if images:
        rep.update(label_free_agreement(pf_all, pq_all, [img.shape[:2] for img in images], meta, n_boot=n_boot))
    # ---- with annotations: the true AP drop -------------------------------------------------
    pairs = coco_pairs(coco, images_dir)
    if pairs:
        from edgepose.evaluate import evaluate_coco
        key = ("coco", tuple(pairs))
        if key not in cache:
            doc = merge_coco(pairs)
            cache[key] = (load_coco(doc), evaluate_coco(ef, pairs, None))
        gt_coco, rf = cache[key]
        rqc = evaluate_coco(eq, pairs, None)
        img_ids = sorted(gt_coco.getImgIds())
        if key + ("ke",) not in cache:     # the float side is evaluated once per cache
            cache[key + ("ke",)] = KeypointEval(gt_coco, rf["results"], img_ids)
        kf = cache[key + ("ke",)]
        kq = KeypointEval(gt_coco, rqc["results"], img_ids)
        apf, apq = float(rf["stats"]["AP"]), float(rqc["stats"]["AP"])
        d = bootstrap(lambda idx: 100.0 * (kf.ap(idx) - kq.ap(idx)), len(img_ids), n_boot)
        lo, hi = interval(d)
        rep.update({"ap_float": apf, "ap_quant": apq, "ap_drop": round(100.0 * (apf - apq), 3),
                    "ap_drop_ci95": [round(lo, 2), round(hi, 2)],
                    "coco": [p[0] for p in pairs], "coco_images": len(img_ids),
                    "coco_people": int(sum(1 for a in gt_coco.dataset["annotations"]
                                           if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0))),
                    "stats_float": rf["stats"], "stats_quant": rqc["stats"]})
        rep["gate"] = "ap_drop <= %.2f AP points (COCO annotations, %d images)" % (max_ap_drop, len(img_ids))
        rep["passed"] = bool(rep["ap_drop"] <= max_ap_drop + 1e-9)
        half = (hi - lo) / 2.0
        rep["resolves_budget"] = bool(half <= max_ap_drop)
        if not rep["resolves_budget"]:
            rep["frames_to_resolve"] = _frames_to_resolve(len(img_ids), half, max_ap_drop, 1)
            rep["resolution_note"] = (
                "the annotated set (%d images, %d people) is too small to resolve a %.1f-point budget: "
                "the 95%% interval of the AP drop is [%.1f, %.1f] points" % (
                    len(img_ids), rep["coco_people"], max_ap_drop, lo, hi))
    else:
        rep["gate"] = ("label-free AP drop (INT8 vs the float model's own detections) <= %.1f points "
                       "on %d held-out frames" % (max_label_free_drop, len(images)))
        rep["passed"] = bool(len(images) > 0 and rep.get("label_free_drop", 100.0) <= max_label_free_drop + 1e-9)
        if not images:
            rep["gate"] += ": no held-out frames, cannot pass"
        if images:
            lo, hi = rep["label_free_drop_ci95"]
            rep["resolves_budget"] = bool(len(images) >= MIN_RESOLVING_FRAMES and (hi - lo) / 2.0 <= max_label_free_drop)
            if not rep["resolves_budget"]:
                rep["frames_to_resolve"] = _frames_to_resolve(len(images), (hi - lo) / 2.0, max_label_free_drop,
                                                              MIN_RESOLVING_FRAMES)
                rep["resolution_note"] = (
                    "%d held-out frames (95%% interval of the label-free drop [%.1f, %.1f]) cannot resolve "
                    "the %.1f-point budget: give --calib more frames from more sources (>= %d held out)"
                    % (len(images), lo, hi, max_label_free_drop, MIN_RESOLVING_FRAMES))
    # the frames where the two differ most, for the comparison picture
    # the frames where the float model's confident people change most, for the comparison
    # picture (not frames where float finds only unsure fragments)
    worst = sorted(range(len(images)), key=lambda k: (-change[k], per_img[k]))[:PNG_FRAMES]
    ids = list(getattr(holdout_images, "holdout_ids", None) or range(len(images)))
    rep["_examples"] = [(images[k], pf_all[k], pq_all[k], per_img[k], ids[k]) for k in worst]
    rep["most_different_frames"] = [{"frame": str(ids[k]), "oks_agreement": round(per_img[k], 3),
                                     "confident_people_change": round(change[k], 3)} for k in worst]
    rep["seconds"] = round(time.time() - t0, 2)
    return rep


def _frames_to_resolve(n: int, half: float, budget: float, floor: int) -> int:
    """Held-out frames whose 95 % interval would be about as narrow as ``budget`` (a bootstrap
    interval narrows as 1/sqrt(frames)), at least ``floor``."""
    if not np.isfinite(half):
        return int(max(floor, n + 1))
    need = n * (half / budget) ** 2 if budget > 0 and half > 0 else 0.0
    return int(max(floor, n + 1 if half > budget else n, int(np.ceil(need))))


def _gate_word(rep: Dict[str, Any]) -> str:
    if not rep.get("passed"):
        return "FAILED"
    if rep.get("resolves_budget") is False:
        return "UNRESOLVED (passes on these %d frames, too few to tell; about %d would resolve it)" % (
            rep.get("coco_images", rep.get("holdout_frames", 0)), rep.get("frames_to_resolve", MIN_RESOLVING_FRAMES))
    hs = rep.get("host_speed")
    if hs and hs["speedup"] < hs.get("min_useful_speedup", MIN_USEFUL_SPEEDUP):
        return "PASSED on accuracy; %.2fx FP32 on this CPU: no speed-up here" % hs["speedup"]
    return "PASSED"


def final_line(rep: Dict[str, Any], target: str = "cpu-int8") -> str:
    """The export's last line: what INT8 buys on this host (cpu-int8) and whether the accuracy
    verdict is resolved, in one line."""
    parts = []
    if rep.get("host_speed"):
        parts.append(speed_verdict(rep["host_speed"]))
    elif target != "cpu-int8":
        parts.append("%s: INT8 speed is the device's (%s), not measured on this CPU" % (
            target, "TensorRT on Jetson" if target.startswith("jetson") else "TFLite on ARM"))
    if not rep.get("passed"):
        parts.append("accuracy budget MISSED (%s; gate off): not fit for deployment" % _why(rep))
    elif rep.get("resolves_budget") is False:
        n = rep.get("coco_images", rep.get("holdout_frames", 0))
        parts.append("accuracy UNRESOLVED: %d %s cannot tell the %.1f-point budget (drop %s); about %d would: "
                     "give --calib %s" % (
                         n, "annotated images" if "coco_images" in rep else "held-out frames",
                         rep["max_ap_drop"] if "ap_drop" in rep else rep["max_label_free_drop"],
                         ("%.1f [%.1f, %.1f]" % ((rep["ap_drop"],) + tuple(rep["ap_drop_ci95"]))) if "ap_drop" in rep
                         else ("%.1f [%.1f, %.1f]" % ((rep.get("label_free_drop", 0.0),) + tuple(rep.get("label_free_drop_ci95", (0, 0))))),
                         rep.get("frames_to_resolve", MIN_RESOLVING_FRAMES),
                         "more images or videos" if "coco_images" not in rep else "/ --coco more annotated images"))
    else:
        parts.append("accuracy PASSED (%s)" % (
            ("AP drop %.2f <= %.2f" % (rep["ap_drop"], rep["max_ap_drop"])) if "ap_drop" in rep else
            ("label-free drop %.1f <= %.1f on %d frames" % (rep.get("label_free_drop", 0.0), rep["max_label_free_drop"],
                                                           rep.get("holdout_frames", 0)))))
    return "; ".join(p for p in parts if p)


def format_report(rep: Dict[str, Any]) -> str:
    lines = ["accuracy (float vs int8, %s, %d held-out frames): label-free AP drop %s, OKS agreement %.3f, "
             "people %d -> %d" % (rep.get("evaluation", "?"), rep.get("holdout_frames", 0),
                                  ("%.1f [%.1f, %.1f]" % ((rep["label_free_drop"],) + tuple(rep["label_free_drop_ci95"])))
                                  if "label_free_drop" in rep else "n/a",
                                  rep.get("oks_agreement", 0.0), rep.get("people_float", 0), rep.get("people_quant", 0))]
    if "ap_float" in rep:
        lines.append("COCO AP: float %.3f, int8 %.3f (drop %.2f points, 95%% interval [%.1f, %.1f])"
                     % (rep["ap_float"], rep["ap_quant"], rep["ap_drop"], rep["ap_drop_ci95"][0], rep["ap_drop_ci95"][1]))
    if rep.get("host"):
        h = rep["host"]
        lines.append("on this host's int8 kernels (%s): label-free AP drop %s%s" % (
            h.get("kernels", {}).get("name", "?"), h.get("label_free_drop", "n/a"),
            (", AP %.3f" % h["ap_quant"]) if "ap_quant" in h else ""))
    verdict = _gate_word(rep)
    lines.append("gate: %s -> %s" % (rep.get("gate"), verdict))
    if rep.get("resolution_note"):
        lines.append("note: " + rep["resolution_note"])
    if rep.get("keep_float"):
        lines.append("mixed precision: %d layers kept in float: %s"
                     % (len(rep["keep_float"]), ", ".join(rep["keep_float"])))
    if rep.get("int8_mac_fraction") is not None:
        lines.append("compute in int8: %.1f%% of conv MACs" % (100 * rep["int8_mac_fraction"]))
    if rep.get("speed"):
        for s in (rep["speed"] if isinstance(rep["speed"], list) else [rep["speed"]]):
            line = ("speed (onnxruntime, %s thread(s), %s runs, back to back): float %.1f ms, int8 %.1f ms, %.2fx wall"
                    % (s.get("threads", "?"), s.get("runs", "?"), s.get("float_ms", float("nan")),
                       s.get("int8_ms", float("nan")), s.get("speedup", float("nan"))))
            if "cpu_speedup" in s:
                line += "; CPU time %.1f -> %.1f ms, %.2fx" % (s["float_cpu_ms"], s["int8_cpu_ms"], s["cpu_speedup"])
            lines.append(line)
    if rep.get("warning"):
        lines.append("WARNING: " + rep["warning"])
    return "\n".join(lines)


def comparison_png(rep: Dict[str, Any], path: str, cell: Tuple[int, int] = (420, 300)) -> Optional[str]:
    """Float (left) and INT8 (right) poses on the held-out frames where they differ most (lowest
    per-frame OKS agreement), each frame letterboxed into a ``cell`` (width, height)."""
    import cv2
    from edgepose.draw import draw_poses
    from edgepose.files import atomic_path
    ex = rep.get("_examples") or []
    if not ex:
        return None
    cw, ch = cell
    bar = 20
    rows = []
    for img, rf, rq, agree, name in ex:
        s = min(cw / float(img.shape[1]), ch / float(img.shape[0]))
        w, h = max(1, int(round(img.shape[1] * s))), max(1, int(round(img.shape[0] * s)))
        cells = []
        for res, label in ((rf, "float"), (rq, "int8")):
            c = np.zeros((ch + bar, cw, 3), np.uint8)
            drawn = cv2.resize(draw_poses(img, res), (w, h), interpolation=cv2.INTER_AREA)
            y0, x0 = bar + (ch - h) // 2, (cw - w) // 2
            c[y0:y0 + h, x0:x0 + w] = drawn
            text = "%s: %d people | %s | OKS agr. %.2f" % (label, len(res), str(name).split(":")[-1][:30], agree)
            cv2.putText(c, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(c)
        rows.append(np.hstack([cells[0], np.full((ch + bar, 4, 3), 255, np.uint8), cells[1]]))
    with atomic_path(path) as tmp:     # the temporary name keeps the .png extension
        if not cv2.imwrite(tmp, np.vstack(rows)):
            raise ExportError("cannot write %s" % path)
    return path


def _strip_private(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_private(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, list):
        return [_strip_private(v) for v in x]
    return x


def report_json(rep: Dict[str, Any]) -> str:
    return json.dumps(_strip_private(rep), indent=1, sort_keys=True, default=_json_default)


def save_report(rep: Dict[str, Any], path: str, accuracy: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write the report JSON at ``path`` and the comparison PNG beside it (``.png`` for
    ``.json``); ``accuracy``: the part holding the held-out examples (default ``rep``)."""
    from edgepose.files import write_atomic
    acc = rep if accuracy is None else accuracy
    png = (path[:-5] if path.endswith(".json") else path) + ".png"
    written = {}
    if comparison_png(acc, png):
        acc["comparison_png"] = os.path.basename(png)
        written["png"] = png
    write_atomic(path, report_json(rep))
    written["json"] = path
    acc.pop("_examples", None)      # images: drawn, not kept in the returned report
    return written


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# quantize_kwargs that configure the exact float rewrites (prepare_model), not the Q/DQ writing
PREPARE_KEYS = ("fold", "equalize", "alpha", "equalize_concat")


def prepare(fp32_path: str, calib, quantize_kwargs: Optional[Dict[str, Any]] = None):
    """:func:`edgepose.exporters.quantize.prepare_model` with the rewrite options among
    ``quantize_kwargs`` (and range histograms when its calibration method needs them)."""
    from edgepose.exporters import quantize as q
    qkw = quantize_kwargs or {}
    method = str(qkw.get("method", "minmax")).lower()
    hist = method != "minmax" and not method.startswith("ort-")
    return q.prepare_model(fp32_path, calib, histograms=hist, **{k: qkw[k] for k in PREPARE_KEYS if k in qkw})


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
    :func:`edgepose.exporters.quantize.quantize_qdq` with ``quantize_kwargs`` on the prepared
    model): the one search serves every target. When the full-INT8 model misses the budget:
    rank the conv units by measured sensitivity (output noise when only that unit is quantized,
    on held-out inputs), then find the smallest k such that keeping the k most sensitive units
    in float passes the gate (fewest float layers = fastest). Raises ExportError (and removes
    ``out_path``) when even that fails. When the passing configuration keeps
    ``max_float_mac_fraction`` or more of the compute in float, it is still written (it is the
    fastest one within the budget), with ``report["warning"]`` and the frontier.
    ``enforce=False`` (``--no-gate``): quantize as asked, measure and report, never search or
    fail. ``host_kernels``: the final report also scores this CPU's int8 kernels.
    ``prepared``: the float model already prepared (:func:`quantize.prepare_model`) on
    ``cs.calib``; ``reference_path``: the float model the quantized one is scored against
    (default ``fp32_path``; TFLite compares with its own float graph). ``cache``: a dict shared
    by calls with the same float model and held-out frames (its outputs are computed once).

    Speed: every configuration is first scored on ``trial_frames`` held-out frames spread over
    the sources (no bootstrap); only one that passes there is scored on all of them, and the
    search's choice is confirmed on all frames (when the subset was optimistic, the search goes
    on with every frame from there). One progress line per step, with the time left.
    """
    from edgepose.exporters import quantize as q
    log = log or (lambda m: None)
    t0 = time.time()
    if prepared is None:
        prepared = prepare(fp32_path, cs.calib, quantize_kwargs)
    qkw = {k: v for k, v in (quantize_kwargs or {}).items() if k not in PREPARE_KEYS}
    user_keep = list(qkw.pop("keep_float", []) or [])
    ref_path = reference_path or fp32_path
    cache = {} if cache is None else cache
    macs = q.conv_macs(prepared.model, cs.calib[0])
    sub = trial_subset(cs, trial_frames) if enforce else cs
    n_all = len(getattr(cs, "holdout_images", []) or [])
    n_sub = len(getattr(sub, "holdout_images", []) or [])
    has_coco = bool(coco_pairs(coco, images_dir))
    state = {"written": None, "trial_s": []}
    total = sum(macs.values()) or 1.0
    if quantize_fn is None:
        def quantize_fn(prep, path, keep):
            return q.quantize_qdq(fp32_path, path, cs.calib, prepared=prep, keep_float=keep, **qkw)

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
                rep = accuracy_report(ref_path, out_path, cs, meta, coco=coco, images_dir=images_dir,
                                      max_ap_drop=max_ap_drop, max_label_free_drop=max_label_free_drop,
                                      threads=threads, cache=cache)
                rep["scored_on"] = "all %d held-out frames (on %d: drop %.1f, interval from %.1f: undecided)" % (
                    n_all, n_sub, sub_drop, lo_sub)
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
            from edgepose.exporters.cpu_kernels import int8_kernel_class
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
                              "for deployment" % _why(rep))
            log("WARNING: " + rep["warning"])
        return finish(info, rep)
    screened = sub is not cs
    if screened:
        log("scoring full INT8 on %d of the %d held-out frames first" % (n_sub, n_all))
        info, rep = attempt([], sub)
        if rep["passed"] and not rep["scored_on"].startswith("all"):
            log("  passes there (%s): scoring on all %d held-out frames" % (_short(rep), n_all))
            info, rep = attempt([])
    else:
        log("scoring full INT8 on the %d held-out frames" % n_all)
        info, rep = attempt([])
    tried = [_trial(0, [], rep)]
    if not rep["passed"] and search:
        log("INT8 accuracy gate missed (%s): searching mixed precision" % _why(rep))
        ts = time.time()
        units = q.conv_units(prepared.model)
        already = set(rep["keep_float"])
        units = [u for u in units if not set(u) <= already]
        ranges = q.ranges_from_stats(prepared.stats)
        n_sens = max(1, min(sensitivity_frames, len(cs.holdout_inputs) or len(cs.calib)))
        frames = list(cs.holdout_inputs[:n_sens]) or list(cs.calib[:n_sens])
        sens = q.unit_sensitivity(prepared.model, units, ranges, frames, threads=threads)
        order = [units[i] for i in np.argsort(-np.asarray(sens), kind="stable")]
        ranked = [(u, float(sens[units.index(u)])) for u in order]
        log("  %d conv units ranked by sensitivity (once, on %d frames) in %.0f s" % (len(order), n_sens, time.time() - ts))
        steps = [0]

        def keep_k(k: int) -> List[str]:
            return sorted({n for u in order[:k] for n in u})

        def step(k: int, frames, lo: int, hi: Optional[int]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
            # while probing upwards (hi unknown) a subset miss just probes on: the bisection
            # below and the confirmation on all frames decide the boundary
            inf_k, rep_k = attempt(keep_k(k), frames, escalate=hi is not None)
            steps[0] += 1
            tried.append(_trial(k, keep_k(k), rep_k))
            left = _search_time_left(state["trial_s"], lo, hi if hi is not None else len(order), k,
                                     rep_k["passed"], n_all / max(1, n_sub) if screened else 1.0)
            log("  search step %d: %d most sensitive units in float: %s (%s; %s, %.0f s so far)" % (
                steps[0], k, _short(rep_k), rep_k.get("scored_on", "all %d held-out frames" % n_all),
                left, time.time() - ts))
            return inf_k, rep_k

        def smallest_passing(lo: int, frames):
            """The smallest k > lo whose configuration passes on ``frames``: probe geometrically
            (cheap configurations first), then bisect. (k, info, rep) or None."""
            k, hi, best = (lo * 2 if lo else 1), None, None
            while best is None:
                k = min(k, len(order))
                inf_k, rep_k = step(k, frames, lo, None)
                if rep_k["passed"]:
                    hi, best = k, (inf_k, rep_k)
                elif k >= len(order):
                    return None
                else:
                    lo, k = k, k * 2
            while hi - lo > max(1, len(order) // SEARCH_GRANULARITY):
                mid = (lo + hi) // 2
                inf_k, rep_k = step(mid, frames, lo, hi)
                if rep_k["passed"]:
                    hi, best = mid, (inf_k, rep_k)
                else:
                    lo = mid
            return hi, best[0], best[1]

        found = smallest_passing(0, sub)
        best = None
        if found is not None and screened and not found[2].get("scored_on", "all").startswith("all"):
            k = found[0]
            inf_k, rep_k = attempt(keep_k(k))          # the choice, on every held-out frame
            tried.append(_trial(k, keep_k(k), rep_k))
            log("  confirming %d units in float on all %d held-out frames: %s" % (k, n_all, _short(rep_k)))
            if rep_k["passed"]:
                best = (inf_k, rep_k)
            else:                                       # the subset was optimistic: go on with every frame
                found = smallest_passing(k, cs)
                best = (found[1], found[2]) if found is not None else None
        elif found is not None:
            best = (found[1], found[2])
        if best is not None:
            info, rep = best
            if state["written"] != sorted(set(user_keep + rep["keep_float"])):
                state["info"] = quantize_fn(prepared, out_path, sorted(set(user_keep + rep["keep_float"])))  # the chosen one, on disk
                state["written"] = sorted(set(user_keep + rep["keep_float"]))
        rep["sensitivity_ranking"] = [{"nodes": u, "noise_db": round(sv, 2)} for u, sv in ranked]
        rep["search_seconds"] = round(time.time() - ts, 1)
    rep["search"] = tried
    if not rep["passed"]:
        _remove(out_path)
        err = ExportError("INT8 accuracy gate failed: %s%s" % (
            _why(rep), "; no mixed-precision configuration met it" if search else ""))
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


def _search_time_left(trial_s: List[float], lo: int, hi: int, k: int, passed: bool, confirm_factor: float) -> str:
    """'about N s left': the bisection steps still to go (log2 of the open interval) times the
    mean trial time, plus the confirmation on all frames."""
    if not trial_s:
        return "time left unknown"
    lo2, hi2 = (lo, k) if passed else (k, hi)
    n = int(np.ceil(np.log2(max(1, hi2 - lo2)))) if hi2 - lo2 > 1 else 0
    if not passed and k < hi:
        n += 1
    mean = float(np.mean(trial_s))
    return "about %.0f s left" % (n * mean + confirm_factor * mean)


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


def relative_speed(float_path: str, quant_path: str, x: np.ndarray, threads: int = 1,
                   runs: int = 15, min_seconds: float = 0.0) -> Dict[str, Any]:
    """Both models on this CPU (onnxruntime, its own int8 kernels), measured back to back in one
    run, runs interleaved (robust to load drift): the median **wall** time and the median
    **CPU** time (process time of all threads: unlike wall time it does not grow when other
    processes take the cores) of each, and their ratios (``speedup``: wall, ``cpu_speedup``).
    Thread-pool spinning is off in both sessions: with it on, the idle session's spinning threads
    steal the cores the other one runs on (measured: LW OpenPose at 2 threads reads 1.7x with
    spinning, 2.9x without, against 2.9-3.6x for each session timed alone) and spinning burns CPU
    time that is not work. ``min_seconds``: keep going past ``runs`` until this much time."""
    import onnxruntime as ort

    def sess(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])

    sf, sq = sess(float_path), sess(quant_path)
    feed_f = {sf.get_inputs()[0].name: x}
    feed_q = {sq.get_inputs()[0].name: x}
    for _ in range(2):
        sf.run(None, feed_f)
        sq.run(None, feed_q)
    tf, tq, cf, cq = [], [], [], []
    t_start = time.perf_counter()
    while len(tf) < runs or time.perf_counter() - t_start < min_seconds:
        a, ca = time.perf_counter(), time.process_time()
        sf.run(None, feed_f)
        b, cb = time.perf_counter(), time.process_time()
        sq.run(None, feed_q)
        c, cc = time.perf_counter(), time.process_time()
        tf.append(b - a)
        tq.append(c - b)
        cf.append(cb - ca)
        cq.append(cc - cb)
    mf, mq = 1e3 * float(np.median(tf)), 1e3 * float(np.median(tq))
    pf, pq = 1e3 * float(np.median(cf)), 1e3 * float(np.median(cq))
    return {"threads": threads, "float_ms": round(mf, 2), "int8_ms": round(mq, 2),
            "speedup": round(mf / mq, 2) if mq > 0 else None,
            "float_cpu_ms": round(pf, 2), "int8_cpu_ms": round(pq, 2),
            "cpu_speedup": round(pf / pq, 2) if pq > 0 else None, "runs": len(tf),
            "input": "x".join(str(d) for d in x.shape)}


# INT8 that buys less than this over FP32 on this CPU is reported as no speed-up
MIN_USEFUL_SPEEDUP = 1.2


def host_speed(float_path: str, quant_path: str, x: np.ndarray, runs: int = 10) -> Dict[str, Any]:
    """INT8 against FP32 on this host, 1 thread and all threads (:func:`relative_speed`), with
    the kernel class and the figure that sums it up: ``speedup`` = the CPU-time ratio at 1
    thread (the compute INT8 saves, whatever else runs on the machine)."""
    from edgepose.exporters.cpu_kernels import int8_kernel_class
    n = max(1, os.cpu_count() or 1)
    rows = [relative_speed(float_path, quant_path, x, threads=t, runs=runs) for t in sorted({1, n})]
    return {"kernels": int8_kernel_class(), "per_threads": rows, "speedup": rows[0]["cpu_speedup"],
            "wall_speedup_all_threads": rows[-1]["speedup"], "all_threads": n,
            "min_useful_speedup": MIN_USEFUL_SPEEDUP}


def speed_verdict(hs: Optional[Dict[str, Any]]) -> str:
    """The one line that says what INT8 buys on this host, e.g. "INT8 on this CPU (x86-avx2
    (no VNNI)): 0.96x FP32 -- no speed-up here; built for jetson/arm/VNNI CPUs"."""
    if not hs:
        return ""
    k = hs["kernels"]
    name = k["name"] + (", u8s8 saturates" if k.get("saturates_u8s8") else "") + (
        ", class forced by " + k["source"] if str(k.get("source", "")).startswith("EDGEPOSE_INT8_KERNELS") else "")
    sp, wall, n = hs["speedup"], hs.get("wall_speedup_all_threads"), hs.get("all_threads", 1)
    s = "INT8 on this CPU (%s): %.2fx FP32 (CPU time, 1 thread; wall %.2fx at %d threads)" % (
        name, sp, wall if wall is not None else float("nan"), n)
    if sp < hs.get("min_useful_speedup", MIN_USEFUL_SPEEDUP):
        s += " -- no speed-up here: use the FP32 model on this CPU; the INT8 model is built for " \
             "jetson/arm/VNNI CPUs"
    return s


def _why(rep: Dict[str, Any]) -> str:
    if "ap_drop" in rep:
        return "AP %.3f -> %.3f, drop %.2f points > budget %.2f" % (
            rep["ap_float"], rep["ap_quant"], rep["ap_drop"], rep["max_ap_drop"])
    return "label-free AP drop %.2f > %.2f points on %d held-out frames" % (
        rep.get("label_free_drop", 100.0), rep["max_label_free_drop"], rep["holdout_frames"])


def _remove(path: str) -> None:
    try:
        if os.path.exists(path):
            os.remove(path)
    except OSError:
        pass
