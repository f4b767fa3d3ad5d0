"""The accuracy gate of every quantized export: the measurement, the verdict and the speed.

``accuracy_report(float_model, quant_model, holdout, meta)`` runs both models through the real
runtime (:func:`edgepose.pipelines.load_estimator`: the same preprocessing, inference and C++
post-processing as ``edgepose infer``) on the held-out frames. A quantized ONNX model runs
**exactly** (``exact_int8``: its Q/DQ graph as written, what TensorRT's and ARM's int32-accumulating
kernels compute), never through this CPU's own int8 kernels, which on x86 without VNNI saturate
16-bit sums; a TFLite model runs in the TFLite interpreter, whose int8 kernels accumulate in
int32 on x86 too (``tests/test_tflite.py`` checks one layer against an int32 reference).
``accuracy_report(..., exact=False)`` scores this CPU's own int8 kernels instead;
``gated_quantize(..., host_kernels=True)`` (:mod:`.search`) adds those figures to the report,
labelled with the kernel class.

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
measurements in ``benchmarks/int8_gate.py``: see its docstring). :func:`gate_word` is the
verdict, :func:`final_line` the export's last line.

Speed: :func:`relative_speed` (FP32 and INT8 back to back on this CPU), :func:`host_speed` (1 and
all threads, with the host's int8 kernel class) and :func:`speed_verdict` (the line that sums it up).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import first_line
from edgepose.evaluate import coco_pairs

from .kernels import int8_kernel_class

__all__ = ["LABEL_FREE_GATE", "N_BOOT", "MIN_USEFUL_SPEEDUP", "match_people", "label_free_agreement",
           "accuracy_report", "gate_word", "final_line", "why_missed", "relative_speed", "host_speed",
           "speed_verdict"]

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


def gate_word(rep: Dict[str, Any]) -> str:
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
        parts.append("accuracy budget MISSED (%s; gate off): not fit for deployment" % why_missed(rep))
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


def ort_timing_session(path: str, threads: int):
    """An onnxruntime session for timing: ``threads`` intra-op threads, thread-pool spinning off
    (with it on, an idle session's spinning threads steal the cores the other one runs on --
    measured: LW OpenPose at 2 threads reads 1.7x with spinning, 2.9x without, against 2.9-3.6x
    for each session timed alone -- and spinning burns CPU time that is not work)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed_name = s.get_inputs()[0].name
    return lambda x: s.run(None, {feed_name: x})


def back_to_back(fns: Sequence[Callable[[np.ndarray], Any]], x: np.ndarray, runs: int = 15,
                 min_seconds: float = 0.0) -> List[Tuple[float, float]]:
    """THE timing of several runners on this CPU in one run, runs interleaved (robust to load
    drift), after two warm-up calls each: per runner the median **wall** time and the median
    **CPU** time (process time of all threads: unlike wall time it does not grow when other
    processes take the cores), in ms. ``min_seconds``: keep going past ``runs`` until this long."""
    for _ in range(2):
        for f in fns:
            f(x)
    wall: List[List[float]] = [[] for _ in fns]
    cpu: List[List[float]] = [[] for _ in fns]
    t_start = time.perf_counter()
    while len(wall[0]) < runs or time.perf_counter() - t_start < min_seconds:
        for i, f in enumerate(fns):
            a, ca = time.perf_counter(), time.process_time()
            f(x)
            wall[i].append(time.perf_counter() - a)
            cpu[i].append(time.process_time() - ca)
    return [(1e3 * float(np.median(w)), 1e3 * float(np.median(c))) for w, c in zip(wall, cpu)]


def relative_speed(float_path: str, quant_path: str, x: np.ndarray, threads: int = 1,
                   runs: int = 15, min_seconds: float = 0.0) -> Dict[str, Any]:
    """Both models on this CPU (onnxruntime, its own int8 kernels), measured back to back
    (:func:`back_to_back`): the median wall and CPU times of each, and their ratios
    (``speedup``: wall, ``cpu_speedup``: CPU time)."""
    (mf, pf), (mq, pq) = back_to_back([ort_timing_session(float_path, threads),
                                       ort_timing_session(quant_path, threads)], x, runs, min_seconds)
    return {"threads": threads, "float_ms": round(mf, 2), "int8_ms": round(mq, 2),
            "speedup": round(mf / mq, 2) if mq > 0 else None,
            "float_cpu_ms": round(pf, 2), "int8_cpu_ms": round(pq, 2),
            "cpu_speedup": round(pf / pq, 2) if pq > 0 else None, "runs": runs,
            "input": "x".join(str(d) for d in x.shape)}


# OpenVINO is recorded as the faster runtime of a cpu-int8 model when it takes at most this share
# of onnxruntime's CPU time at 1 thread (a margin above run-to-run noise)
OPENVINO_MARGIN = 0.95


def runtime_speed(quant_path: str, x: np.ndarray, threads: Sequence[int] = (1,), runs: int = 10
                  ) -> Optional[Dict[str, Any]]:
    """The INT8 model on onnxruntime and on OpenVINO (edgepose's OpenVINO backend: f32 precision,
    its own int8 kernels), back to back per thread count; ``faster``: the runtime to deploy it
    with on this CPU (OpenVINO when its CPU time at 1 thread is at most
    :data:`OPENVINO_MARGIN` of onnxruntime's). None when openvino is not installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    from edgepose.backends.openvino import OpenvinoBackend

    rows = []
    for t in threads:
        ov = OpenvinoBackend(quant_path, threads=int(t))
        name = ov.input_name
        (mo, po), (mv, pv) = back_to_back([ort_timing_session(quant_path, t), lambda a: ov.run({name: a})],
                                          x, runs)
        rows.append({"threads": int(t), "onnxruntime_ms": round(mo, 2), "openvino_ms": round(mv, 2),
                     "onnxruntime_cpu_ms": round(po, 2), "openvino_cpu_ms": round(pv, 2),
                     "openvino_speedup": round(mo / mv, 2) if mv > 0 else None,
                     "openvino_cpu_speedup": round(po / pv, 2) if pv > 0 else None})
    r1 = rows[0]
    faster = "openvino" if r1["openvino_cpu_ms"] <= OPENVINO_MARGIN * r1["onnxruntime_cpu_ms"] else "onnxruntime"
    return {"per_threads": rows, "faster": faster, "openvino_cpu_speedup": r1["openvino_cpu_speedup"],
            "rule": "openvino when its CPU time at 1 thread <= %.2f x onnxruntime's" % OPENVINO_MARGIN}


# INT8 that buys less than this over FP32 on this CPU is reported as no speed-up
MIN_USEFUL_SPEEDUP = 1.2


def host_speed(float_path: str, quant_path: str, x: np.ndarray, runs: int = 10) -> Dict[str, Any]:
    """INT8 against FP32 on this host, 1 thread and all threads (:func:`relative_speed`), with
    the kernel class and the figure that sums it up: ``speedup`` = the CPU-time ratio at 1
    thread (the compute INT8 saves, whatever else runs on the machine)."""
    n = max(1, os.cpu_count() or 1)
    rows = [relative_speed(float_path, quant_path, x, threads=t, runs=runs) for t in sorted({1, n})]
    out = {"kernels": int8_kernel_class(), "per_threads": rows, "speedup": rows[0]["cpu_speedup"],
           "wall_speedup_all_threads": rows[-1]["speedup"], "all_threads": n,
           "min_useful_speedup": MIN_USEFUL_SPEEDUP}
    try:
        rt = runtime_speed(quant_path, x, sorted({1, n}), runs=runs)
    except Exception as e:     # an optional comparison: never the reason an export fails
        from edgepose.log import logger
        logger.warning("OpenVINO could not be timed on %s: %s" % (os.path.basename(quant_path), first_line(e)))
        rt = None
    if rt is not None:
        out["runtimes"] = rt
    return out


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
    elif (hs.get("runtimes") or {}).get("faster") == "openvino":
        s += "; OpenVINO runs it %.2fx faster than ONNX Runtime here (--backend openvino)" % (
            hs["runtimes"]["openvino_cpu_speedup"])
    return s


def why_missed(rep: Dict[str, Any]) -> str:
    if "ap_drop" in rep:
        return "AP %.3f -> %.3f, drop %.2f points > budget %.2f" % (
            rep["ap_float"], rep["ap_quant"], rep["ap_drop"], rep["max_ap_drop"])
    return "label-free AP drop %.2f > %.2f points on %d held-out frames" % (
        rep.get("label_free_drop", 100.0), rep["max_label_free_drop"], rep["holdout_frames"])
