"""MediaPipe BlazePose's person detector: SSD anchors → person regions, rotated, for the landmark
model (a ``regression`` model: ``examples/blazepose_landmark_full_256.spec.json``).

The detector (``blazepose_detection_224.tflite``; spec ``examples/blazepose_detection.spec.json``,
``"format": "blazepose"``) sees the image letterboxed (centred, black) to 224x224 RGB in [-1, 1]
and gives, per anchor of MediaPipe's SSD grid (strides 8, 16, 32, 32, 32; two anchors per cell
and layer, fixed size 1: 2254 anchors), a box and 4 keypoints as offsets in input pixels from
the anchor centre, and a score logit. As MediaPipe's pose_detection graph:

- score = sigmoid(logit clipped to +-100) above ``score_threshold`` (0.5);
- weighted NMS (``nms_threshold`` 0.3, IoU of the boxes): each kept detection is the
  score-weighted mean of the detections it suppresses (box and keypoints), with the best score;
- region (pose_detection_to_roi): centre = keypoint 0 (mid-hip), size = 2 x |keypoint 1 -
  keypoint 0| (the full-body circle), rotation = 90 deg - atan2(-(y1 - y0), x1 - x0), then
  scaled by ``roi_scale`` (1.25) as a square.

``det.rois(img) -> ([(centre, (size, size), angle)], scores)`` in image pixels;
``det(img) -> (boxes xywh, scores)``: the regions' axis-aligned bounding boxes.
"""
import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..backends import load_backend
from ..errors import InputError, ModelError
from ..preprocess import check_image, letterbox, normalize

__all__ = ["BlazePoseDetector", "is_blazepose_spec", "ssd_anchors", "weighted_nms"]

_SPEC_KEYS = {"format", "input", "strides", "anchors_per_cell", "score_threshold", "nms_threshold", "roi_scale",
              "boxes_output", "scores_output", "description"}


def _read(spec) -> Optional[Dict[str, Any]]:
    if spec is None:
        return None
    if isinstance(spec, dict):
        return spec
    path = os.fspath(spec)
    if not os.path.isfile(path):
        raise InputError("detector spec not found: %s" % path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise InputError("%s is not valid JSON: %s" % (os.path.basename(path), e))


def is_blazepose_spec(spec) -> bool:
    d = _read(spec)
    return isinstance(d, dict) and d.get("format") == "blazepose"


def ssd_anchors(size: int, strides=(8, 16, 32, 32, 32), per_cell: int = 2) -> np.ndarray:
    """MediaPipe's SSD anchor centres ``[N, 2]`` (normalised), fixed size 1: layers of one stride
    share a grid; per cell, ``per_cell`` anchors per layer of that stride."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        fm = int(math.ceil(size / float(strides[i])))
        n = per_cell * (j - i)
        ys, xs = np.mgrid[0:fm, 0:fm]
        c = np.stack([(xs + 0.5) / fm, (ys + 0.5) / fm], -1).reshape(-1, 1, 2)
        out.append(np.repeat(c, n, 1).reshape(-1, 2))
        i = j
    return np.concatenate(out)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, threshold: float
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: boxes xyxy ``[M,4]``, extra values ``[M,E]`` averaged alike."""
    order = np.argsort(-scores, kind="stable")
    kb, ks, ke = [], [], []
    while len(order):
        i = order[0]
        b = boxes[order]
        iw = np.clip(np.minimum(b[:, 2], boxes[i, 2]) - np.maximum(b[:, 0], boxes[i, 0]), 0, None)
        ih = np.clip(np.minimum(b[:, 3], boxes[i, 3]) - np.maximum(b[:, 1], boxes[i, 1]), 0, None)
        inter = iw * ih
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / np.maximum(area + area[0] - inter, 1e-12)
        grp = order[iou > threshold]
        if len(grp) == 0:
            grp = order[:1]
        w = scores[grp][:, None]
        kb.append((boxes[grp] * w).sum(0) / w.sum())
        ke.append((extra[grp] * w).sum(0) / w.sum())
        ks.append(scores[i])
        order = order[~np.isin(order, grp)]
    return np.array(kb).reshape(-1, 4), np.array(ks, np.float32), np.array(ke).reshape(-1, extra.shape[1])


class BlazePoseDetector:
    """MediaPipe BlazePose's person detector (see the module doc)."""

    def __init__(self, model_path: str, spec: Union[None, str, Dict[str, Any]] = None,
                 threads: Optional[int] = None, backend: Optional[str] = None):
        d = _read(spec)
        if not isinstance(d, dict) or d.get("format") != "blazepose":
            raise InputError("a BlazePose detector needs its spec (examples/blazepose_detection.spec.json)")
        unknown = sorted(set(d) - _SPEC_KEYS)
        if unknown:
            raise InputError("detector spec: unknown field(s) %s" % ", ".join(unknown))
        self.spec = d
        self.backend = load_backend(os.fspath(model_path), threads=threads, backend=backend)
        inp = d["input"]
        self.size = int(inp["height"])
        if int(inp["width"]) != self.size:
            raise InputError("detector spec: a BlazePose detector input is square, got %sx%s" % (inp["height"], inp["width"]))
        self.anchors = ssd_anchors(self.size, tuple(d.get("strides", (8, 16, 32, 32, 32))),
                                   int(d.get("anchors_per_cell", 2)))
        names = {t.name: t for t in self.backend.outputs}
        self._boxes = d.get("boxes_output")
        self._scores = d.get("scores_output")
        for role, n in (("boxes_output", self._boxes), ("scores_output", self._scores)):
            if n not in names:
                raise ModelError("detector spec: %s %r is not an output of %s (outputs: %s)"
                                 % (role, n, os.path.basename(model_path), ", ".join(names)))
        nb = names[self._boxes].shape
        if len(nb) != 3 or nb[1] != len(self.anchors) or nb[2] != 12:
            raise ModelError("detector spec: output %s has shape %s, the anchors need [1, %d, 12]"
                             % (self._boxes, list(nb), len(self.anchors)))
        self.score_threshold = float(d.get("score_threshold", 0.5))
        self.nms_threshold = float(d.get("nms_threshold", 0.3))
        self.roi_scale = float(d.get("roi_scale", 1.25))
        self._inp = dict(inp, layout="NHWC", channel_order="RGB")
        self.timings: Dict[str, float] = {}

    def describe(self) -> str:
        return "BlazePose detector (%s)" % self.backend.describe()

    def rois(self, img: np.ndarray) -> Tuple[List[Tuple[np.ndarray, np.ndarray, float]], np.ndarray]:
        """Rotated person regions (centre, (size, size), angle) in image pixels, and scores."""
        t0 = time.perf_counter()
        img = check_image(img)
        canvas, tr = letterbox(img, (self.size, self.size), 0, "center")
        x = normalize(canvas[None], self._inp)
        out = self.backend.run({self.backend.input_name: x}, [self._boxes, self._scores])
        raw = np.asarray(out[self._boxes], np.float64).reshape(-1, 12)
        logit = np.asarray(out[self._scores], np.float64).reshape(-1)
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -100.0, 100.0)))
        keep = np.nonzero(score > self.score_threshold)[0]
        S = float(self.size)
        a = self.anchors[keep]
        r = raw[keep]
        cx, cy = r[:, 0] / S + a[:, 0], r[:, 1] / S + a[:, 1]
        w, h = r[:, 2] / S, r[:, 3] / S
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        kps = np.stack([r[:, 4::2] / S + a[:, :1], r[:, 5::2] / S + a[:, 1:]], -1).reshape(len(keep), 8)
        boxes, scores, kps = weighted_nms(boxes, score[keep], kps, self.nms_threshold)
        out_rois = []
        for k in kps.reshape(-1, 4, 2):
            p = tr.input_to_image(k * S - 0.5)          # normalised letterbox -> image pixels
            (x0, y0), (x1, y1) = p[0], p[1]
            size = 2.0 * math.hypot(x1 - x0, y1 - y0) * self.roi_scale
            angle = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
            angle = angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))
            out_rois.append((np.array([x0, y0]), np.array([size, size]), angle))
        self.timings = {"total_ms": (time.perf_counter() - t0) * 1e3}
        return out_rois, scores

    @staticmethod
    def roi_box(roi) -> List[float]:
        """The axis-aligned bounding box (xywh, corner convention) of a rotated square region."""
        (cx, cy), (s, _), a = roi
        e = 0.5 * s * (abs(math.cos(a)) + abs(math.sin(a)))
        return [cx + 0.5 - e, cy + 0.5 - e, 2 * e, 2 * e]

    def __call__(self, img: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        rois, scores = self.rois(img)
        return np.asarray([self.roi_box(r) for r in rois], np.float32).reshape(-1, 4), scores
