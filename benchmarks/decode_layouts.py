"""Bottom-up decode on real maps: HWC read in place vs transpose + CHW, and post-processing.

    python benchmarks/decode_layouts.py [--runs 3000] [--image IMG] [--tfpose M] [--lwop M]
                                        [--json FILE]

Maps: the real outputs of tf-pose (NHWC: heatmaps [1,H,W,18] + PAFs [1,H,W,38]) and of
Lightweight OpenPose (NCHW: [1,18,H,W] + [1,38,H,W]) run with onnxruntime (one thread) on the
COCO image (default: the assets' 000000196141.jpg). Models: exported edgepose ONNX files
(default /tmp/w/tfpose.onnx and /tmp/w/lwop.onnx; make them with ``edgepose export
.../tfpose_mobilenet_thin.onnx --spec examples/tfpose_mobilenet_thin.spec.json -o
/tmp/w/tfpose.onnx`` and ``edgepose export .../lwop_hpe0001.pth -o /tmp/w/lwop.onnx``).

Cases (per model; all cases of a model interleaved round-robin, one call each per round, so
that machine noise hits them alike; medians over ``--runs`` rounds after warm-up):

decode HWC in place     ``decode_bottomup(hm[0], paf[0], limbs, layout="HWC")`` (tf-pose)
transpose + decode CHW  ``np.ascontiguousarray(x[0].transpose(2, 0, 1))`` for both maps, then
                        the CHW decode (what the pipeline did before)
decode CHW              ``decode_bottomup(hm[0], paf[0], limbs)`` (Lightweight OpenPose)
post-processing before  the bottom-up pipeline's old decode step: ``to_chw`` of both outputs,
                        ``decode_bottomup``, then heatmap -> input -> image in numpy on the
                        found keypoints
post-processing after   the affine of that mapping computed from the metadata and the resize
                        transform, then one ``decode_bottomup(out[0], ..., layout=...,
                        affine=...)`` call
Also checked: HWC in place == transpose + CHW bit for bit; post-processing after == before up
to float32 rounding (the affine is evaluated in double, the old mapping in float32 steps).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from edgepose import decode  # noqa: E402
from edgepose.preprocess import heatmap_to_input  # noqa: E402


def model_maps(path: str, img):
    """(heatmaps, pafs, transform, meta, layout) of one image: the raw 4-D model outputs."""
    from edgepose.backends import load_backend
    from edgepose.pipelines.bottomup import require_meta
    from edgepose.preprocess import preprocess_bottomup

    be = load_backend(path, threads=1)
    meta = require_meta(be, "bottomup")
    x, tr = preprocess_bottomup(img, meta)
    o = meta.outputs
    names = [o["heatmaps"]["name"], o["pafs"]["name"]]
    outs = be.run({be.input_name: x}, names)
    layout = o["heatmaps"].get("layout", "NCHW")
    return outs[names[0]], outs[names[1]], tr, meta, layout


def to_chw(arr: np.ndarray, layout: str) -> np.ndarray:
    """The pipeline's old conversion (edgepose.pipelines.bottomup.to_chw before layouts)."""
    a = arr[0]
    if layout == "NHWC":
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a, dtype=np.float32)


def old_post(hm4, paf4, layout, limbs, opts, meta, tr):
    hm, paf = to_chw(hm4, layout), to_chw(paf4, layout)
    people, scores = decode.decode_bottomup(hm, paf, limbs, **opts)
    people = np.array(people, np.float32, copy=True)
    found = people[:, :, 2] > 0
    xy = heatmap_to_input(people[:, :, :2], meta.stride, float(meta.get("heatmap_offset", 0.5)))
    xy = tr.input_to_image(xy)
    people[:, :, :2] = np.where(found[..., None], xy, -1.0)
    return people, scores


def affine_of(meta, tr):
    """heatmap -> input ``(x + o) * s - o`` then input -> image ``(u + 0.5) / k - 0.5``."""
    s, o, k = float(meta.stride), float(meta.get("heatmap_offset", 0.5)), float(tr.scale)
    a, b = s / k, (o * (s - 1.0) + 0.5) / k - 0.5
    return (a, b, a, b)


def new_post(hm4, paf4, layout, limbs, opts, meta, tr):
    return decode.decode_bottomup(hm4[0], paf4[0], limbs, layout=layout[1:],
                                  affine=affine_of(meta, tr), **opts)


def interleaved(cases: dict, runs: int, warmup: int = 200) -> dict:
    for _ in range(warmup):
        for f in cases.values():
            f()
    ts = {k: np.empty(runs) for k in cases}
    for i in range(runs):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            ts[k][i] = time.perf_counter() - t0
    return {k: round(float(np.median(v)) * 1e6, 1) for k, v in ts.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--image", default=None)
    ap.add_argument("--tfpose", default="/tmp/w/tfpose.onnx")
    ap.add_argument("--lwop", default="/tmp/w/lwop.onnx")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import cv2
    from edgepose.assets import assets_dir

    image = args.image or os.path.join(assets_dir() or "", "coco", "000000196141.jpg")
    img = cv2.imread(image)
    if img is None:
        print("cannot read %s" % image, file=sys.stderr)
        return 2
    report = {"image": image, "runs": args.runs, "loadavg": os.getloadavg()[0],
              "extension": decode.has_extension(), "models": {}}
    for name, path in (("tfpose", args.tfpose), ("lwop", args.lwop)):
        if not os.path.exists(path):
            print("%s: %s missing, skipped" % (name, path), file=sys.stderr)
            continue
        hm4, paf4, tr, meta, layout = model_maps(path, img)
        limbs = np.asarray(meta.get("limbs"), np.int64).reshape(-1, 4)
        opts = {k: meta.decode[k] for k in meta.decode}
        lay = layout[1:]                                   # "NHWC" -> per-item "HWC"
        hm, paf = hm4[0], paf4[0]
        assert hm.flags["C_CONTIGUOUS"] and np.shares_memory(hm, hm4)   # a view, no copy
        cases = {}
        if lay == "HWC":
            cases["decode HWC in place"] = lambda: decode.decode_bottomup(
                hm, paf, limbs, layout="HWC", **opts)
            cases["transpose + decode CHW"] = lambda: decode.decode_bottomup(
                np.ascontiguousarray(hm.transpose(2, 0, 1)),
                np.ascontiguousarray(paf.transpose(2, 0, 1)), limbs, **opts)
        else:
            cases["decode CHW"] = lambda: decode.decode_bottomup(hm, paf, limbs, **opts)
        cases["post-processing before"] = lambda: old_post(hm4, paf4, layout, limbs, opts, meta, tr)
        cases["post-processing after"] = lambda: new_post(hm4, paf4, layout, limbs, opts, meta, tr)
        # the results agree
        direct = decode.decode_bottomup(hm, paf, limbs, layout=lay, **opts)
        if lay == "HWC":
            via = decode.decode_bottomup(np.ascontiguousarray(hm.transpose(2, 0, 1)),
                                         np.ascontiguousarray(paf.transpose(2, 0, 1)), limbs,
                                         **opts)
            bit_identical = all(np.array_equal(a, b) for a, b in zip(direct, via))
        else:
            bit_identical = None
        before, after = old_post(hm4, paf4, layout, limbs, opts, meta, tr), \
            new_post(hm4, paf4, layout, limbs, opts, meta, tr)
        missing = before[0][..., 2] == 0
        agree = (before[0].shape == after[0].shape
                 and np.array_equal(before[0][missing], after[0][missing])
                 and np.array_equal(before[1], after[1]))
        max_px = float(np.abs(before[0][..., :2] - after[0][..., :2]).max()) if before[0].size \
            else 0.0
        med = interleaved(cases, args.runs)
        decode_alone = med.get("decode HWC in place", med.get("decode CHW"))
        r = {"maps": [list(hm4.shape), list(paf4.shape)], "layout": layout,
             "people": int(len(direct[0])), "median_us": med,
             "hwc_in_place_equals_transpose_chw": bit_identical,
             "post_after_agrees_with_before": bool(agree), "post_after_max_abs_diff_px": max_px,
             "post_after_over_decode_alone": round(med["post-processing after"] / decode_alone, 2),
             "post_before_over_decode_alone": round(med["post-processing before"] / decode_alone,
                                                    2)}
        if lay == "HWC":
            r["transpose_chw_over_hwc"] = round(med["transpose + decode CHW"]
                                                / med["decode HWC in place"], 2)
        report["models"][name] = r
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
