"""Top-down benchmark: per-person cost for 1, 5, 20 boxes, batched vs one inference per box.

    python benchmarks/topdown.py MODEL.onnx [--detector DET] [--image IMG] [--counts 1,5,20]
                                 [--runs 10] [--threads N] [--refine dark] [--flip] [--json FILE]

MODEL     a top-down model with edgepose metadata, e.g. an HRNet-W32 export:
          ``edgepose export pose_hrnet_w32_256x192.pth --arch hrnet --target onnx -o w32.onnx``
--detector  person detector timed separately (default: the assets' light_person_detector.onnx
          when present; ``none`` to skip)
--image   default: the assets' COCO image 000000196141.jpg

Boxes are synthetic person-shaped boxes spread over the image (seeded), OKS NMS off, so each
count runs exactly that many crops. ``batched``: all crops in one inference call; ``per_box``:
one inference call per crop (same pre/post-processing). Times are wall-clock medians after
warm-up; the machine load (``os.getloadavg``) is printed because shared machines are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--detector", default=None)
    ap.add_argument("--image", default=None)
    ap.add_argument("--counts", default="1,5,20")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--providers", default=None, help="comma-separated onnxruntime providers")
    ap.add_argument("--refine", default=None)
    ap.add_argument("--flip", action="store_true", help="flip test on")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edgepose.assets import asset
    from edgepose.errors import EdgeposeError
    from edgepose.io import read_image
    from edgepose.files import write_json
    from edgepose.bench import benchmark_people
    from edgepose.pipelines.topdown import TopDownEstimator

    try:
        det = args.detector
        if det is None:
            det = asset("detectors", "light_person_detector.onnx")
        elif det.lower() == "none":
            det = None
        img_path = args.image or asset("coco", "000000196141.jpg")
        if img_path is None:
            raise EdgeposeError("no --image given and the assets are absent (EDGEPOSE_ASSETS)")
        img = read_image(img_path)
        providers = args.providers.split(",") if args.providers else None
        est = TopDownEstimator(args.model, detector=det, threads=args.threads, providers=providers,
                               refine=args.refine, flip_test=args.flip or None)
        counts = [int(c) for c in args.counts.split(",") if c.strip()]
        res = benchmark_people(est, img, counts=counts, runs=args.runs, warmup=args.warmup)
    except EdgeposeError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    info = {"model": os.path.basename(args.model), "estimator": est.describe(),
            "image_file": os.path.basename(img_path), "threads": args.threads,
            "cpu_count": os.cpu_count(), "loadavg": load, "python": platform.python_version(),
            "machine": platform.machine()}
    print("%s" % est.describe())
    print("image %s %dx%d, %d runs, threads %s, load %s" % (
        info["image_file"], img.shape[1], img.shape[0], args.runs, args.threads or "default",
        "n/a" if load is None else "%.2f %.2f %.2f" % load))
    if res["detector_ms"]:
        print("detector: median %.2f ms (p90 %.2f)" % (res["detector_ms"]["median"], res["detector_ms"]["p90"]))
    print("%6s %-8s %10s %12s %10s %10s %10s" % ("boxes", "mode", "total_ms", "per_person", "pre_ms",
                                                 "infer_ms", "post_ms"))
    for n, row in res["counts"].items():
        for mode in ("batched", "per_box"):
            r = row[mode]
            print("%6s %-8s %10.2f %12.2f %10.2f %10.2f %10.2f" % (
                n, mode, r["total_ms"], r["per_person_ms"], r["preprocess_ms"], r["inference_ms"],
                r["postprocess_ms"]))
    out = dict(info, **res)
    print(json.dumps(out))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
