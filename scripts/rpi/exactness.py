"""Record a bottom-up model's run, stage by stage, and compare two machines' records bit for bit.

    python scripts/rpi/exactness.py record MODEL IMAGE... -o X86.npz
    python scripts/rpi/exactness.py record MODEL IMAGE... --reference X86.npz -o ARM.npz
    python scripts/rpi/exactness.py compare X86.npz ARM.npz [--json FILE]

Per image ``i`` a record holds:

``i/input``                the preprocessed model input (edgepose.preprocess)
``i/heatmaps``, ``i/pafs`` the model's raw outputs on that input
``i/keypoints``, ``i/scores``  the people found (float32/float64 as the runtime returns them)
``i/ref_heatmaps``, ``i/ref_pafs``  the model's outputs on the REFERENCE's input tensor (isolates
                           the model: the same bytes in, are the same bytes out?)
``i/ref_keypoints``, ``i/ref_scores``  the C++ decode (NEON on aarch64, SSE2 on x86) of the
                           REFERENCE's maps (isolates the decode)

Without ``--reference`` the ``ref_*`` entries are the run's own (a record is its own reference).
``compare`` prints, per kind of entry, how many values differ and by how much; exit 1 if any do.
"""
import argparse
import json
import os
import sys

import numpy as np


class _Scale:
    def __init__(self, scale):
        self.scale = float(scale)


def legacy_preprocessing():
    """The resampling edgepose used before it went integer-only (OpenCV's INTER_AREA to shrink,
    INTER_LINEAR to enlarge), for the before/after comparison."""
    import cv2
    import edgepose.preprocess as pp

    def resize(img, size_wh):
        w, h = int(size_wh[0]), int(size_wh[1])
        shrink = w <= img.shape[1] and h <= img.shape[0]
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    pp.resize_exact = resize


def record(model, images, out, reference=None, threads=2):
    import cv2
    from edgepose.pipelines import load_estimator

    est = load_estimator(model, threads=threads)
    if getattr(est.meta, "family", None) != "bottomup":
        sys.exit("exactness.py: %s is not a bottom-up model" % model)
    ref = np.load(reference) if reference else None
    rec = {}
    for i, path in enumerate(images):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            sys.exit("exactness.py: cannot read %s" % path)
        from edgepose.preprocess import preprocess_bottomup

        x, tr = preprocess_bottomup(img, est.meta, est.height)
        hm, paf, tr2, _, _ = est.infer(img)
        assert tr2.scale == tr.scale
        people, scores = est.decode(hm, paf, tr)
        rec["%d/input" % i] = x
        rec["%d/heatmaps" % i] = np.array(hm)
        rec["%d/pafs" % i] = np.array(paf)
        rec["%d/keypoints" % i] = np.asarray(people)
        rec["%d/scores" % i] = np.asarray(scores)
        rec["%d/scale" % i] = np.float64(tr.scale)
        if ref is not None:
            rx = ref["%d/input" % i]
            outs = est.backend.run({est.backend.input_name: rx}, est._out_names)
            rhm = np.array(outs[est._hm["name"]][0])
            rpaf = np.array(outs[est._paf["name"]][0])
            rec["%d/ref_heatmaps" % i], rec["%d/ref_pafs" % i] = rhm, rpaf
            rp, rs = est.decode(ref["%d/heatmaps" % i], ref["%d/pafs" % i], _Scale(ref["%d/scale" % i]))
        else:
            rec["%d/ref_heatmaps" % i], rec["%d/ref_pafs" % i] = rec["%d/heatmaps" % i], rec["%d/pafs" % i]
            rp, rs = people, scores
        rec["%d/ref_keypoints" % i], rec["%d/ref_scores" % i] = np.asarray(rp), np.asarray(rs)
        print("%s: %d people" % (os.path.basename(path), len(scores)))
    np.savez_compressed(out, **rec)


def compare(a_path, b_path, json_path=None):
    a, b = np.load(a_path), np.load(b_path)
    kinds = {}
    n_images = len({k.split("/")[0] for k in a.files})
    for k in sorted(set(a.files) | set(b.files), key=lambda s: (s.split("/")[1], int(s.split("/")[0]))):
        kind = k.split("/", 1)[1]
        t = kinds.setdefault(kind, {"values": 0, "differ": 0, "max_abs_diff": 0.0, "shape_mismatch": 0})
        if k not in a.files or k not in b.files:
            t["shape_mismatch"] += 1
            continue
        x, y = a[k], b[k]
        if x.shape != y.shape:
            t["shape_mismatch"] += 1
            t["values"] += max(x.size, y.size)
            t["differ"] += max(x.size, y.size)
            continue
        # bitwise: NaN == NaN, -0.0 != 0.0
        d = x.view(np.uint8).reshape(x.shape + (-1,)) != y.view(np.uint8).reshape(y.shape + (-1,)) \
            if x.dtype == y.dtype and x.ndim else (x != y)
        diff = d.any(axis=-1) if d.ndim > x.ndim else d
        t["values"] += int(x.size)
        t["differ"] += int(np.count_nonzero(diff))
        if np.count_nonzero(diff):
            t["max_abs_diff"] = max(t["max_abs_diff"], float(np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
    for kind in ("input", "ref_heatmaps", "ref_pafs", "heatmaps", "pafs", "ref_keypoints", "ref_scores",
                 "keypoints", "scores"):
        t = kinds.get(kind)
        if t:
            print("  %-14s %8d of %9d values differ, max |diff| %.6g%s"
                  % (kind, t["differ"], t["values"], t["max_abs_diff"],
                     ", %d shape mismatches" % t["shape_mismatch"] if t["shape_mismatch"] else ""))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"images": n_images, "kinds": kinds}, f, indent=1)
    return any(t["differ"] or t["shape_mismatch"] for k, t in kinds.items() if k != "scale")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    r = sub.add_parser("record")
    r.add_argument("model")
    r.add_argument("images", nargs="+")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--reference")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--legacy-preprocessing", action="store_true",
                   help="OpenCV's INTER_AREA / INTER_LINEAR resize, as before (for comparison)")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json")
    a = p.parse_args()
    if a.cmd is None:
        p.error("record or compare")
    if a.cmd == "record":
        if a.legacy_preprocessing:
            legacy_preprocessing()
        record(a.model, a.images, a.output, a.reference, a.threads)
        return 0
    return 1 if compare(a.a, a.b, a.json) else 0


if __name__ == "__main__":
    sys.exit(main())
