"""Bit-exact resampling (edgepose.preprocess.resize_exact / warp_exact) against OpenCV's float
modes it replaced, on model-sized inputs.

    python benchmarks/preprocess_exact.py [--runs 300] [--json FILE]

Cases (all interleaved round-robin, one call each per round, medians over ``--runs`` rounds;
one thread, cv2.setNumThreads(1)):

resize up      a 320x214 image to 368x551 (bottom-up, enlarging): INTER_LINEAR vs INTER_LINEAR_EXACT
resize down    the 640x429 COCO image to 368x549: INTER_AREA vs its integer version (resize_exact)
resize 1080p   a 1920x1080 frame to 368x654: INTER_AREA vs its integer version
crop 256x192   one top-down crop: warpAffine INTER_LINEAR vs fixed-point maps + integer remap
bottom-up pp   the whole preprocess_bottomup (resize, pad, normalise) of the COCO image at 368x496, old
               vs new (the old one re-implemented here from the previous code)
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgepose import preprocess as pp  # noqa: E402
from edgepose.assets import assets_dir  # noqa: E402
from edgepose.files import write_json  # noqa: E402


class _Meta:
    stride = 8

    def __init__(self, H, W):
        self.input = {"layout": "NCHW", "channel_order": "RGB", "mean": [128.0] * 3, "std": [256.0] * 3,
                      "height": H, "width": W, "dynamic_hw": False}

    def get(self, key, default=None):
        return default


def old_bottomup(img, meta):
    H, W, scale = pp.bottomup_input_size(img.shape[:2], meta)
    rh = min(H, max(1, int(round(img.shape[0] * scale))))
    rw = min(W, max(1, int(round(img.shape[1] * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (rw, rh), interpolation=interp)
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas[:rh, :rw] = resized
    return pp.normalize(canvas[None], meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    assets = assets_dir()
    if assets is None:
        sys.exit("assets not found (EDGEPOSE_ASSETS)")
    coco = cv2.imread(os.path.join(assets, "coco", "000000196141.jpg"))
    small = cv2.resize(coco, (320, 214), interpolation=cv2.INTER_AREA)
    big = cv2.resize(coco, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    c, s = pp.box_to_center_size([200, 60, 140, 330], 192 / 256.0, 1.25)
    m = pp.crop_matrix(c, s, (192, 256))
    meta = _Meta(368, 496)
    cases = {
        "resize up (320x214 -> 551x368)": (
            lambda: cv2.resize(small, (551, 368), interpolation=cv2.INTER_LINEAR),
            lambda: pp.resize_exact(small, (551, 368))),
        "resize down (640x429 -> 549x368)": (
            lambda: cv2.resize(coco, (549, 368), interpolation=cv2.INTER_AREA),
            lambda: pp.resize_exact(coco, (549, 368))),
        "resize 1080p (1920x1080 -> 654x368)": (
            lambda: cv2.resize(big, (654, 368), interpolation=cv2.INTER_AREA),
            lambda: pp.resize_exact(big, (654, 368))),
        "crop 256x192 (warpAffine)": (
            lambda: cv2.warpAffine(coco, m, (192, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT),
            lambda: pp.warp_exact(coco, m, (192, 256))),
        "bottom-up preprocess 368x496": (
            lambda: old_bottomup(coco, meta),
            lambda: pp.preprocess_bottomup(coco, meta)[0]),
    }
    times = {k: ([], []) for k in cases}
    for _ in range(20):
        for old, new in cases.values():
            old(), new()
    for _ in range(a.runs):
        for k, (old, new) in cases.items():
            t0 = time.perf_counter()
            old()
            t1 = time.perf_counter()
            new()
            t2 = time.perf_counter()
            times[k][0].append(t1 - t0)
            times[k][1].append(t2 - t1)
    rows = {}
    print("%-38s %12s %12s %7s" % ("case", "old ms", "exact ms", "ratio"))
    for k, (to, tn) in times.items():
        mo, mn = 1e3 * float(np.median(to)), 1e3 * float(np.median(tn))
        rows[k] = {"old_ms": mo, "exact_ms": mn, "ratio": mn / mo}
        print("%-38s %12.3f %12.3f %6.2fx" % (k, mo, mn, mn / mo))
    if a.json:
        write_json(a.json, rows)


if __name__ == "__main__":
    main()
