"""Accuracy of the foreign TFLite models (issue 21), each imported with its example spec.

COCO-17 models: AP on coco/test_coco.json + devset/ pooled (pycocotools), with the runtime's
default decode settings. MoveNet is single-person: with the YOLOX-nano person detector's boxes
on the pooled set, and with its own crop (the whole image, then MoveNet's crop from that first pose)
on the pooled images that have exactly one annotated person. BlazePose (single person, its own
detector: rotated regions) likewise, pooled and single-person. EfficientPose (MPII-16): PCKh@0.5
on mpii/test_mpii.json, the whole image as the crop (no detector), and with the annotated
centre/scale box; head size = |head_top - upper_neck| (the MPII json here has no head boxes;
MPII's own rule is 0.6 x the head box diagonal).

    python benchmarks/foreign_models.py [--json OUT.json] [--only yolo|movenet|blazepose|efficientpose]

The YOLO weights are AGPL-3.0 test data read from the assets folder; nothing is copied.
"""
import argparse
import json
import os
import tempfile

import numpy as np
from common import REPO, assets_or_exit, import_foreign   # beside this file; puts the checkout on sys.path

from edgepose.evaluate import evaluate_coco, merge_coco
from edgepose.files import write_json
from edgepose.io import read_image
from edgepose.pipelines import load_estimator

YOLO = [("yolov8n_pose_224_int8", "yolov8n_pose_224"), ("yolo11n_pose_640_int8", "yolo11n_pose_640"),
        ("yolo11n_pose_640_full_integer", "yolo11n_pose_640")]


def pooled(assets):
    return merge_coco([(os.path.join(assets, "coco", "test_coco.json"), os.path.join(assets, "coco")),
                       (os.path.join(assets, "devset", "devset.json"), os.path.join(assets, "devset"))])


def single_person(doc):
    n = {}
    for a in doc["annotations"]:
        if a.get("num_keypoints", 1) > 0:
            n[a["image_id"]] = n.get(a["image_id"], 0) + 1
    keep = {i for i, c in n.items() if c == 1}
    return {"images": [im for im in doc["images"] if im["id"] in keep],
            "annotations": [a for a in doc["annotations"] if a["image_id"] in keep],
            "categories": doc["categories"]}


def pckh(est, assets, use_box):
    recs = json.load(open(os.path.join(assets, "mpii", "test_mpii.json")))
    names = est.meta.keypoints
    from edgepose.schema import MPII16_KEYPOINTS
    order = [names.index(n) for n in MPII16_KEYPOINTS]       # model channel of each MPII joint
    hits = total = 0
    for r in recs:
        img = read_image(os.path.join(assets, "mpii", r["image"]))
        if use_box:
            c, s = np.asarray(r["center"], float), float(r["scale"]) * 200.0
            res = est(img, boxes=[[c[0] - s / 2, c[1] - s / 2, s, s]])
        else:
            res = est(img)
        kp = res.keypoints[int(np.argmax(res.scores))][order, :2]
        gt = np.asarray(r["joints"], float)
        vis = np.asarray(r["joints_vis"], float) > 0
        head = np.linalg.norm(gt[9] - gt[8])
        d = np.linalg.norm(kp - gt, axis=1)
        hits += int(np.sum((d <= 0.5 * head) & vis))
        total += int(np.sum(vis))
    return hits / float(total), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--only")
    args = ap.parse_args()
    assets = assets_or_exit()
    tmp = tempfile.mkdtemp(prefix="edgepose-foreign-")
    doc = pooled(assets)
    out = {}
    if args.only in (None, "yolo"):
        for model, spec in YOLO:
            est = load_estimator(import_foreign(tmp, assets, model, spec))
            r = evaluate_coco(est, doc, "/")
            out[model] = {"AP": r["stats"]["AP"], "AP50": r["stats"]["AP50"], "images": r["images"],
                          "people": r["people"]}
            print("%-32s AP %.3f  AP50 %.3f  (%d images, %d people)" % (model, r["stats"]["AP"],
                                                                        r["stats"]["AP50"], r["images"], r["people"]))
    if args.only in (None, "movenet"):
        mn = import_foreign(tmp, assets, "movenet_lightning_192_int8", "movenet_lightning_192")
        det = os.path.join(assets, "detectors", "yolox_nano_416x416.onnx")
        est = load_estimator(mn, detector=det, detector_spec=os.path.join(REPO, "examples", "yolox_nano.spec.json"))
        r = evaluate_coco(est, doc, "/")
        out["movenet+yolox_nano"] = {"AP": r["stats"]["AP"], "AP50": r["stats"]["AP50"], "images": r["images"]}
        print("%-32s AP %.3f  AP50 %.3f  (%d images, detector boxes)" % ("movenet_lightning_192_int8", r["stats"]["AP"],
                                                                         r["stats"]["AP50"], r["images"]))
        sp = single_person(doc)
        for name, e in (("detector boxes", est), ("own crop (whole image, then its crop from that pose)", load_estimator(mn))):
            r = evaluate_coco(e, sp, "/")
            out["movenet single-person, " + name] = {"AP": r["stats"]["AP"], "AP50": r["stats"]["AP50"],
                                                      "images": r["images"]}
            print("%-32s AP %.3f  AP50 %.3f  (%d single-person images, %s)" % (
                "movenet_lightning_192_int8", r["stats"]["AP"], r["stats"]["AP50"], r["images"], name))
    if args.only in (None, "blazepose"):
        lm = import_foreign(tmp, assets, "blazepose_landmark_full_256", "blazepose_landmark_full_256")
        est = load_estimator(lm, detector=os.path.join(assets, "models", "foreign", "blazepose_detection_224.tflite"),
                             detector_spec=os.path.join(REPO, "examples", "blazepose_detection.spec.json"))
        for name, d in (("pooled", doc), ("single-person", single_person(doc))):
            r = evaluate_coco(est, d, "/")
            out["blazepose " + name] = {"AP": r["stats"]["AP"], "AP50": r["stats"]["AP50"], "images": r["images"],
                                        "people": r["people"]}
            print("%-32s AP %.3f  AP50 %.3f  (%d %s images, its own detector, %d people)" % (
                "blazepose_full_256", r["stats"]["AP"], r["stats"]["AP50"], r["images"], name, r["people"]))
    if args.only in (None, "efficientpose"):
        for model, spec in (("efficientpose_rt_224", "efficientpose_rt_224"), ("efficientpose_i_256", "efficientpose_i_256")):
            est = load_estimator(import_foreign(tmp, assets, model, spec))
            for use_box in (False, True):
                v, n = pckh(est, assets, use_box)
                key = "%s PCKh@0.5 %s" % (model, "centre/scale box" if use_box else "whole image")
                out[key] = {"PCKh@0.5": v, "joints": n}
                print("%-32s PCKh@0.5 %.3f over %d visible joints (%s)" % (model, v, n,
                                                                          "annotated centre/scale box" if use_box else "whole image"))
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
