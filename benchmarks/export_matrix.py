"""Every architecture to every target: Lightweight OpenPose and HRNet-W32 with random weights
saved in the upstream checkpoint formats, exported with ``edgepose.exporters.api.export`` to each
target, then loaded with ``load_estimator`` and run on a real image.

    python benchmarks/export_matrix.py [--out DIR] [--targets T1,T2] [--archs lwop,hrnet] [--json F]

TensorRT bundles are checked by running the ONNX they carry (the Q/DQ model for INT8) in
onnxruntime: engines are built on the Jetson. Random weights make accuracy meaningless, so the INT8 accuracy gate is measured but not
enforced (``gate=False``); what this shows is that each artifact is produced, verified against
its source, self-describing and runnable.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from edgepose.assets import asset
from edgepose.exporters.api import TARGETS, export
from edgepose.io import read_image
from edgepose.files import write_json
from edgepose.pipelines import load_estimator


def make_checkpoints(d: str):
    from edgepose.exporters.models.synthetic import (random_hrnet, random_lightweight_openpose,
                                                     save_upstream_checkpoint)

    lw = os.path.join(d, "checkpoint_iter_370000.pth")
    hr = os.path.join(d, "pose_hrnet_w32_256x192.pth")
    if not os.path.exists(lw):
        save_upstream_checkpoint(random_lightweight_openpose(), lw, fmt="lwop-train")
    if not os.path.exists(hr):
        save_upstream_checkpoint(random_hrnet(32, input_shape=(2, 3, 256, 192)), hr, fmt="bare")
    return {"lwop": (lw, "lightweight-openpose"), "hrnet": (hr, "hrnet")}


def out_name(d, arch, target):
    if target.startswith("jetson"):
        return os.path.join(d, "%s_%s" % (arch, target))
    ext = ".tflite" if target.startswith(("tflite", "rpi")) else ".onnx"
    return os.path.join(d, "%s_%s%s" % (arch, target, ext))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/edgepose_export_matrix")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--archs", default="lwop,hrnet")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    video, coco, img_path = (asset("videos", "arm_wrestling.mp4"), asset("coco", "test_coco.json"),
                             asset("coco", "000000196141.jpg"))
    if img_path is None:
        sys.exit("assets not found: set EDGEPOSE_ASSETS")
    img = read_image(img_path)
    ckpts = make_checkpoints(args.out)
    rows = []
    for arch in args.archs.split(","):
        src, arch_name = ckpts[arch]
        for target in args.targets.split(","):
            out = out_name(args.out, arch, target)
            opts = {}
            if target != "onnx" and target not in ("tflite-fp32", "tflite-fp16", "jetson-fp16"):
                # bottom-up calibrates on video frames, top-down on the annotated person crops
                opts = dict(calib=video if arch == "lwop" else coco, gate=False, n_calib=8, holdout=4)
                if arch == "hrnet":
                    opts["images_dir"] = os.path.dirname(coco)
            row = {"arch": arch, "target": target, "output": out}
            t0 = time.time()
            try:
                rep = export(src, target=target, out=out, arch=arch_name, progress=False, **opts)
                row["export_s"] = round(time.time() - t0, 1)
                run_path = out
                if target.startswith("jetson"):
                    # no TensorRT here: run what the bundle carries in onnxruntime (the engine is
                    # built on the Jetson with `edgepose build-engine`)
                    qdq = os.path.join(out, "model_int8_qdq.onnx")
                    run_path = qdq if os.path.exists(qdq) else os.path.join(out, "model.onnx")
                    row["ran"] = os.path.relpath(run_path, args.out)
                est = load_estimator(run_path, threads=2)
                res = est(img) if arch == "lwop" else est(img, boxes=[[100, 50, 150, 300]])
                row.update(ok=True, people=len(res), keypoints=res.keypoints.shape[1],
                           backend=est.backend.describe(),
                           verify=rep.get("max_abs_error", rep.get("verify")))
            except Exception as e:  # report every cell, keep going
                row.update(ok=False, error="%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
                if os.environ.get("EDGEPOSE_DEBUG"):
                    traceback.print_exc()
            rows.append(row)
            print("%-6s %-16s %-4s %s" % (arch, target, "ok" if row.get("ok") else "FAIL",
                                         row.get("backend") or row.get("error")), flush=True)
    if args.json:
        write_json(args.json, rows)
    sys.exit(0 if all(r.get("ok") for r in rows) else 1)


if __name__ == "__main__":
    main()
