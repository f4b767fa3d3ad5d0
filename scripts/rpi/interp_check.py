"""Resampling on this machine, for bit-for-bit comparison across machines (x86 vs ARM).

    python scripts/rpi/interp_check.py IMAGE... -o OUT.npz          # write every result
    python scripts/rpi/interp_check.py --compare A.npz B.npz        # what differs

Each OpenCV mode the preprocessing could use (resize INTER_LINEAR / INTER_LINEAR_EXACT /
INTER_AREA, warpAffine INTER_LINEAR, remap on fixed-point maps) at model-like sizes, and
edgepose.preprocess's own bottom-up and top-down outputs (what a model is fed).
"""
import argparse
import sys

import numpy as np


def results(images):
    import cv2
    from edgepose import preprocess as pp

    out = {}
    for i, path in enumerate(images):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit("interp_check: cannot read %s" % path)
        h, w = img.shape[:2]
        for th in (96, 256, 368, 2 * h // 3 + 1, int(h * 1.37)):
            tw = max(8, int(round(w * th / float(h))))
            for name, flag in (("linear", cv2.INTER_LINEAR), ("linear_exact", cv2.INTER_LINEAR_EXACT),
                               ("area", cv2.INTER_AREA)):
                out["%d/resize_%s_%dx%d" % (i, name, th, tw)] = cv2.resize(img, (tw, th), interpolation=flag)
        for j, box in enumerate(([0.1 * w, 0.05 * h, 0.3 * w, 0.8 * h], [0.55 * w, 0.3 * h, 0.5 * w, 0.9 * h],
                                 [-20.3, 10.7, 77.1, 150.9])):
            c, s = pp.box_to_center_size(box, 192 / 256.0, 1.25)
            m = pp.crop_matrix(c, s, (192, 256))
            out["%d/warpaffine_%d" % (i, j)] = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR,
                                                              borderMode=cv2.BORDER_CONSTANT)
        for key, val in pp_outputs(img, pp).items():
            out["%d/%s" % (i, key)] = val
    return out


class _Meta:
    """The fields preprocess reads (ModelMeta's .stride / .input / .get)."""

    def __init__(self, H, W):
        self.stride = 8
        self.input = {"layout": "NHWC", "channel_order": "BGR", "mean": [128.0] * 3, "std": [256.0] * 3,
                      "height": H, "width": W, "dynamic_hw": False}

    def get(self, key, default=None):
        return default


def pp_outputs(img, pp):
    """edgepose's preprocessing: bottom-up at a few model sizes, top-down crops."""
    res = {}
    for H, W in ((96, 128), (256, 352), (368, 496), (736, 992)):
        x, _ = pp.preprocess_bottomup(img, _Meta(H, W))
        res["preprocess_bottomup_%dx%d" % (H, W)] = x
    h, w = img.shape[:2]
    boxes = [[0.1 * w, 0.05 * h, 0.3 * w, 0.8 * h], [0.55 * w, 0.3 * h, 0.5 * w, 0.9 * h], [-20.3, 10.7, 77.1, 150.9]]
    x, _ = pp.preprocess_topdown(img, np.array(boxes), _Meta(256, 192))
    res["preprocess_topdown_256x192"] = x
    return res


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    keys = sorted(set(a.files) | set(b.files))
    bad = 0
    by_kind = {}
    for k in keys:
        kind = k.split("/", 1)[-1]
        kind = "_".join(p for p in kind.split("_") if not p[:1].isdigit())
        if k not in a.files or k not in b.files:
            print("%s: only in one file" % k)
            bad += 1
            continue
        x, y = a[k], b[k]
        n = int(np.count_nonzero(x != y)) if x.shape == y.shape else x.size
        tot = by_kind.setdefault(kind, [0, 0, 0, 0.0])
        tot[0] += 1
        tot[1] += n
        tot[2] += x.size
        if n and x.shape == y.shape:
            tot[3] = max(tot[3], float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()))
        bad += n > 0
    for kind, (cnt, n, size, mx) in sorted(by_kind.items()):
        print("%-28s %3d arrays  %9d of %10d values differ (%.3f %%), max |diff| %g"
              % (kind, cnt, n, size, 100.0 * n / max(size, 1), mx))
    return bad


def main():
    p = argparse.ArgumentParser()
    p.add_argument("images", nargs="*")
    p.add_argument("-o", "--output")
    p.add_argument("--compare", nargs=2)
    a = p.parse_args()
    if a.compare:
        sys.exit(1 if compare(*a.compare) else 0)
    np.savez_compressed(a.output, **results(a.images))


if __name__ == "__main__":
    main()
