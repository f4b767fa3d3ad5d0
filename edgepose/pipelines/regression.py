"""Single-person regression pipeline (MoveNet): one crop → K keypoints regressed → image pixels.

The model sees one square-ish crop and returns K x (coordinate, coordinate, score), normalised
0-1 over its input (metadata ``outputs.keypoints.order``: ``yx`` for MoveNet).

Where the crop comes from
    - boxes (given per call, or a person ``detector``): one crop per box, the box fixed to the
      model's aspect and padded by ``crop.padding`` (:func:`edgepose.preprocess.
      preprocess_topdown`, the top-down crop); one person per box, scored box score x mean of
      its keypoint scores above ``min_keypoint_score``;
    - no boxes (``crop="follow"``, MoveNet's own logic): the first frame is the whole image
      padded to a square; in a video (:func:`edgepose.video.run_video` calls
      :meth:`RegressionEstimator.start_sequence`) the next crop is set from the last pose as in
      Google's MoveNet tutorial (``determine_crop_region``): centred on the hips, half-size
      ``max(1.9 x torso extent, 1.2 x body extent)`` from that centre, capped by the image; the
      whole image again when the torso is not visible (hips and shoulders scoring <= 0.2) or
      the crop would exceed the image. A single image (no previous frame) runs twice: the whole
      image, then the crop that logic sets from that first pose (when the torso is visible).
      ``crop="image"``: the whole image every frame.

Coordinates: a normalised ``v`` is ``v x size`` in the crop's corner convention (pixel centre
at +0.5), i.e. ``v x size - 0.5`` in edgepose's, then through the inverse crop affine.
"""
import os
import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..backends import Backend, load_backend
from ..errors import InputError
from ..metadata import DECODE_DEFAULTS, ModelMeta, check_against_model
from ..preprocess import (apply_affine, box_to_center_size, check_image, crop_matrix, invert_affine,
                          preprocess_crops)
from ..results import PoseResult

__all__ = ["RegressionEstimator", "follow_crop", "whole_image_crop"]

# MoveNet tutorial constants (Google, movenet.ipynb: determine_crop_region)
_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
_TORSO_FACTOR, _BODY_FACTOR = 1.9, 1.2


def whole_image_crop(image_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """The whole image padded to a centred square: (centre, size) in image pixels."""
    h, w = image_hw
    s = float(max(h, w))
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0]), np.array([s, s])


def follow_crop(kp: np.ndarray, names: Sequence[str], image_hw: Tuple[int, int],
                min_score: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """MoveNet's next crop from the last pose ``kp`` ``[K,3]`` (image pixels): (centre, size)."""
    idx = {n: i for i, n in enumerate(names)}
    if not all(n in idx for n in _TORSO):
        return whole_image_crop(image_hw)
    s = kp[:, 2]
    lh, rh, ls, rs = idx["left_hip"], idx["right_hip"], idx["left_shoulder"], idx["right_shoulder"]
    if not ((s[lh] > min_score or s[rh] > min_score) and (s[ls] > min_score or s[rs] > min_score)):
        return whole_image_crop(image_hw)
    h, w = image_hw
    xy = kp[:, :2]
    cx, cy = 0.5 * (xy[lh, 0] + xy[rh, 0]), 0.5 * (xy[lh, 1] + xy[rh, 1])
    t = [idx[n] for n in _TORSO]
    torso = max(np.max(np.abs(xy[t, 1] - cy)), np.max(np.abs(xy[t, 0] - cx)))
    vis = s > min_score
    body = max(np.max(np.abs(xy[vis, 1] - cy)), np.max(np.abs(xy[vis, 0] - cx))) if vis.any() else 0.0
    half = max(torso * _TORSO_FACTOR, body * _BODY_FACTOR)
    half = min(half, max(cx, w - cx, cy, h - cy))
    if half > max(w, h) / 2.0 or half <= 0:
        return whole_image_crop(image_hw)
    return np.array([cx, cy]), np.array([2 * half, 2 * half])


class RegressionEstimator:
    """One person per crop with a regression model (MoveNet).

    ``model``: a path or a loaded Backend with ``regression`` metadata. ``detector``: a person
    detector (model path or PersonDetector) whose boxes give the crops; boxes may instead be
    passed per call. ``crop``: ``"follow"`` | ``"image"`` when there are no boxes (default:
    the metadata's). ``est(img, boxes=None, box_scores=None) -> PoseResult``.
    """

    def __init__(self, model: Union[str, Backend], detector=None, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, crop: Optional[str] = None,
                 min_keypoint_score: Optional[float] = None, detector_spec=None,
                 detector_score_threshold: Optional[float] = None, detector_backend: Optional[str] = None,
                 **unknown):
        if unknown:
            raise InputError("option(s) not used by regression models: %s" % ", ".join(sorted(unknown)))
        self.backend = model if isinstance(model, Backend) else load_backend(
            str(model), threads=threads, providers=providers)
        from .bottomup import require_meta

        self.meta: ModelMeta = require_meta(self.backend, "regression")
        check_against_model(self.meta, self.backend.inputs, self.backend.outputs,
                            getattr(self.backend, "path", "model"))
        dec = dict(DECODE_DEFAULTS["regression"])
        dec.update(self.meta.decode)
        self.crop = str(crop or dec["crop"])
        if self.crop not in ("follow", "image"):
            raise InputError("crop must be 'follow' or 'image', got %r" % (self.crop,))
        self.min_keypoint_score = float(dec["min_keypoint_score"] if min_keypoint_score is None
                                        else min_keypoint_score)
        self.in_h, self.in_w = int(self.meta.input["height"]), int(self.meta.input["width"])
        self.padding = float((self.meta.get("crop") or {}).get("padding", 1.25))
        out = self.meta.outputs["keypoints"]
        self._out_name = out["name"]
        self._yx = out.get("order", "xy") == "yx"
        self._values = int(out.get("values", 3))
        self._count = int(out.get("count", self.meta.num_keypoints))
        self._pixels = out.get("units", "normalized") == "pixels"
        self._sequence = False
        self._last = None          # (image shape, keypoints [K,3]) of the previous frame
        from .detector import make_detector

        st = dec["detector_score_threshold"] if detector_score_threshold is None else detector_score_threshold
        detector = make_detector(detector, detector_spec, threads=threads, providers=providers,
                                 backend=detector_backend, score_threshold=st)
        self.detector = detector

    # video: MoveNet follows the person from frame to frame ------------------------------------
    def start_sequence(self) -> None:
        """Frames that follow come from one video, in order: crops follow the last pose."""
        self._sequence, self._last = True, None

    def end_sequence(self) -> None:
        self._sequence, self._last = False, None

    # ------------------------------------------------------------------------------------------
    def _crops(self, img: np.ndarray, regions) -> Tuple[np.ndarray, list]:
        """Regions (centre, size[, angle]) → (normalised crops, crop matrices)."""
        mats = [crop_matrix(r[0], r[1], (self.in_w, self.in_h), r[2] if len(r) > 2 else 0.0) for r in regions]
        return preprocess_crops(img, mats, self.meta), mats

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Crops → keypoints ``[B, K, 3]`` as (x, y, score) in crop pixels (edgepose's pixel centres)."""
        K, V = self.meta.num_keypoints, self._values
        outs = []
        for i in range(len(x)):
            y = self.backend.run({self.backend.input_name: x[i:i + 1]}, [self._out_name])[self._out_name]
            outs.append(np.asarray(y, np.float64).reshape(self._count, V)[:K])
        rows = np.stack(outs) if outs else np.zeros((0, K, V))
        kp = np.empty(rows.shape[:2] + (3,))
        kp[:, :, :2] = rows[:, :, [1, 0]] if self._yx else rows[:, :, :2]
        if V == 3:
            kp[:, :, 2] = rows[:, :, 2]
        else:   # BlazePose: x, y, z, visibility logit, presence logit
            kp[:, :, 2] = 1.0 / (1.0 + np.exp(-np.clip(rows[:, :, 3], -80, 80)))
        if not self._pixels:    # normalised 0-1 over the crop (corner convention)
            kp[:, :, 0] *= self.in_w
            kp[:, :, 1] *= self.in_h
        kp[:, :, :2] -= 0.5     # corner -> centre convention
        return kp

    def _keypoints(self, crop_kp: np.ndarray, mats) -> np.ndarray:
        """Crop keypoints ``[B,K,3]`` (x, y, score) → image pixels."""
        kp = np.zeros((len(mats), self.meta.num_keypoints, 3), np.float32)
        for i, m in enumerate(mats):
            kp[i, :, :2] = apply_affine(invert_affine(m), crop_kp[i, :, :2])
            kp[i, :, 2] = crop_kp[i, :, 2]
        return kp

    def __call__(self, img: np.ndarray, boxes=None, box_scores=None) -> PoseResult:
        t0 = time.perf_counter()
        img = check_image(img)
        det_ms = 0.0
        rois = None
        if boxes is None and self.detector is not None:
            if hasattr(self.detector, "rois"):     # rotated regions (BlazePose's detector)
                rois, box_scores = self.detector.rois(img)
                boxes = np.asarray([self.detector.roi_box(r) for r in rois], np.float64).reshape(-1, 4)
            else:
                boxes, box_scores = self.detector(img)
            det_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        if rois is not None:    # the regions' bounding boxes, clipped to the image, for the result
            h, w = img.shape[:2]
            x1, y1 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
            x2, y2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
            b = np.stack([x1, y1, x2 - x1, y2 - y1], 1)
            s, regions = np.asarray(box_scores, np.float32).reshape(-1), rois
        elif boxes is not None:
            from .topdown import sanitize_boxes

            b, s, _ = sanitize_boxes(boxes, img.shape[:2], box_scores)
            regions = [box_to_center_size(bb, self.in_w / float(self.in_h), self.padding) for bb in b]
        else:
            s = np.ones(1, np.float32)
            b = None
            last = self._last if (self._sequence and self.crop == "follow") else None
            if last is not None and last[0] == img.shape:
                regions = [follow_crop(last[1], self.meta.keypoints, img.shape[:2], self.min_keypoint_score)]
            else:
                regions = [whole_image_crop(img.shape[:2])]
        pre_ms, inf_ms = (time.perf_counter() - t1) * 1e3, 0.0
        for attempt in (0, 1):
            t2 = time.perf_counter()
            x, mats = self._crops(img, regions)
            t3 = time.perf_counter()
            kp = self._keypoints(self._run(x), mats)
            pre_ms += (t3 - t2) * 1e3
            inf_ms += (time.perf_counter() - t3) * 1e3
            # a still image (no previous frame): MoveNet's crop from this first pose, run once more
            if attempt or boxes is not None or self.crop != "follow" or (self._sequence and self._last is not None):
                break
            c, sz = follow_crop(kp[0], self.meta.keypoints, img.shape[:2], self.min_keypoint_score)
            if np.allclose(sz, whole_image_crop(img.shape[:2])[1]):
                break
            regions = [(c, sz)]
        t3 = time.perf_counter()
        ks = kp[:, :, 2]
        valid = ks > self.min_keypoint_score
        mean_k = np.where(valid.any(1), (ks * valid).sum(1) / np.maximum(valid.sum(1), 1), 0.0)
        scores = (np.asarray(s, np.float32) * mean_k).astype(np.float32)
        if boxes is None and self._sequence:
            self._last = (img.shape, kp[0].copy())
        m = self.meta
        return PoseResult(kp, scores, m.keypoints, m.get("skeleton", []), m.get("to_coco17"),
                          boxes=None if b is None else b.astype(np.float32),
                          timings={"detect_ms": det_ms, "preprocess_ms": pre_ms,
                                   "inference_ms": inf_ms,
                                   "postprocess_ms": (time.perf_counter() - t3) * 1e3})

    def describe(self) -> str:
        s = "regression %s, %s, crop=%s" % (self.meta.get("arch", "?"), self.backend.describe(),
                                             "detector boxes" if self.detector is not None else self.crop)
        return s
