"""One-stage (YOLO-pose) decode cost: YOLO11n-pose 640 (N = 8400 anchors), real outputs.

Per frame of a real image, median over --runs, interleaved run by run (the method that runs
first after the inference, on a cold output, rotates):

- ``inference``: the TFLite model (ai-edge-litert, int8 with float I/O);
- ``decode (edgepose)``: OneStageEstimator.decode = the C++ threshold + NMS reading the output
  in place + the mapping of the kept rows to image pixels (what the pipeline runs);
- ``numpy + cv2.dnn.NMSBoxes``: threshold, box conversion and mapping in numpy, NMS by OpenCV
  (the other candidate for the NMS step);
- ``numpy (straightforward)``: the decode as written in numpy without an extension (transpose,
  threshold, xywh -> xyxy, greedy NMS loop vectorised per kept box, mapping), as in
  Ultralytics' numpy/ONNX examples.

All three give the same people (checked). Run at the model's threshold (0.25), at 0.01 (COCO
evaluation) and at 0.0005 (hundreds of candidates: the NMS dominates).

    python benchmarks/onestage.py [--runs 30] [--threads 1] [--json OUT.json]
"""
import argparse
import os
import tempfile
import time

import cv2
import numpy as np
from common import assets_or_exit, import_foreign   # beside this file; puts the checkout on sys.path

from edgepose.files import write_json
from edgepose.io import read_image
from edgepose.pipelines.onestage import OneStageEstimator, decode_rows


def numpy_decode(pred, meta, tr, thr, iou_thr, max_det):
    """Straightforward numpy decode (no extension): the reference a user would write."""
    p = pred[0].T                                            # [N, 56]
    s = p[:, 4]
    m = s > thr
    cand, sc = p[m], s[m]
    order = np.argsort(-sc, kind="stable")
    cand, sc = cand[order], sc[order]
    W, H = meta.input["width"], meta.input["height"]
    xyxy = np.stack([(cand[:, 0] - cand[:, 2] / 2) * W, (cand[:, 1] - cand[:, 3] / 2) * H,
                     (cand[:, 0] + cand[:, 2] / 2) * W, (cand[:, 1] + cand[:, 3] / 2) * H], 1)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    keep, idx = [], np.arange(len(cand))
    while len(idx) and len(keep) < max_det:
        i = idx[0]
        keep.append(i)
        rest = idx[1:]
        iw = np.clip(np.minimum(xyxy[i, 2], xyxy[rest, 2]) - np.maximum(xyxy[i, 0], xyxy[rest, 0]), 0, None)
        ih = np.clip(np.minimum(xyxy[i, 3], xyxy[rest, 3]) - np.maximum(xyxy[i, 1], xyxy[rest, 1]), 0, None)
        inter = iw * ih
        iou = inter / (area[i] + area[rest] - inter)
        idx = rest[iou <= iou_thr]
    return decode_rows(cand[keep], meta, tr)


def cv2_decode(pred, meta, tr, thr, iou_thr, max_det):
    """Numpy threshold + cv2.dnn.NMSBoxes."""
    p = pred[0]
    s = p[4]
    m = np.nonzero(s > thr)[0]
    cand = p[:, m].T
    sc = s[m]
    W, H = meta.input["width"], meta.input["height"]
    boxes = np.stack([(cand[:, 0] - cand[:, 2] / 2) * W, (cand[:, 1] - cand[:, 3] / 2) * H,
                      cand[:, 2] * W, cand[:, 3] * H], 1)
    keep = cv2.dnn.NMSBoxes(boxes.tolist(), sc.tolist(), float(thr), float(iou_thr))   # top_k would cut candidates
    keep = np.asarray(keep, np.int64).reshape(-1)[:max_det]
    return decode_rows(cand[keep], meta, tr)


def med(v):
    return float(np.median(v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    assets = assets_or_exit()
    model = import_foreign(tempfile.mkdtemp(prefix="edgepose-onestage-"), assets, "yolo11n_pose_640_int8",
                           "yolo11n_pose_640")
    img = read_image(os.path.join(assets, "coco", "000000197388.jpg"))
    report = {"model": "yolo11n_pose_640_int8.tflite", "image": "coco/000000197388.jpg",
              "threads": args.threads, "runs": args.runs, "thresholds": {}}
    for thr in (0.25, 0.01, 0.0005):
        est = OneStageEstimator(model, threads=args.threads, score_threshold=thr)
        o = est.options
        t_inf, t_ext, t_cv, t_np = [], [], [], []
        for r in range(args.runs + 2):
            pred, tr, _, inf_ms = est.infer(img)
            fns = [(est.decode, (pred, tr), t_ext),
                   (cv2_decode, (pred, est.meta, tr, thr, o["nms_threshold"], o["max_people"]), t_cv),
                   (numpy_decode, (pred, est.meta, tr, thr, o["nms_threshold"], o["max_people"]), t_np)]
            k = r % 3                      # each method runs first (right after inference) in turn
            got = {}
            for fn, fargs, acc in fns[k:] + fns[:k]:
                t0 = time.perf_counter()
                got[id(acc)] = fn(*fargs)
                acc.append((time.perf_counter() - t0) * 1e3)
            if r < 2:
                a, b, c = got[id(t_ext)], got[id(t_cv)], got[id(t_np)]
                for other in (b, c):
                    assert len(other[2]) == len(a[2]) and np.allclose(other[0], a[0], atol=1e-3), "decodes differ"
                for acc in (t_ext, t_cv, t_np):
                    acc.pop()
                continue
            t_inf.append(inf_ms)
        n_cand = int(np.sum(pred[0, 4] > thr))
        row = {"candidates": n_cand, "people": int(len(a[2])), "inference_ms": med(t_inf),
               "decode_edgepose_ms": med(t_ext), "decode_numpy_cv2_nmsboxes_ms": med(t_cv),
               "decode_numpy_ms": med(t_np)}
        row["decode_share_of_inference"] = row["decode_edgepose_ms"] / row["inference_ms"]
        row["numpy_over_edgepose"] = row["decode_numpy_ms"] / row["decode_edgepose_ms"]
        row["cv2_over_edgepose"] = row["decode_numpy_cv2_nmsboxes_ms"] / row["decode_edgepose_ms"]
        report["thresholds"][str(thr)] = row
        print("score > %g: %d candidates of 8400 anchors, %d people" % (thr, n_cand, row["people"]))
        print("  inference                    %8.3f ms" % row["inference_ms"])
        print("  decode (edgepose, C++ NMS)   %8.3f ms  (%.2f%% of inference)" % (row["decode_edgepose_ms"],
                                                                              100 * row["decode_share_of_inference"]))
        print("  numpy + cv2.dnn.NMSBoxes     %8.3f ms  (%.1fx edgepose)" % (row["decode_numpy_cv2_nmsboxes_ms"],
                                                                           row["cv2_over_edgepose"]))
        print("  numpy (straightforward)      %8.3f ms  (%.1fx edgepose)" % (row["decode_numpy_ms"],
                                                                           row["numpy_over_edgepose"]))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
