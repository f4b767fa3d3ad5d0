"""Top-down pipeline: person boxes → one affine crop per box → batched inference → decode.

Per box (COCO ``[x, y, w, h]``, corner convention, image spans ``[0, W] x [0, H]``):

1. Box checks: non-finite values or negative sizes are an :class:`InputError`. A box that
   lies entirely outside the image is **dropped**; a box partly outside is **clipped** to the
   image (the result's ``boxes`` are the clipped boxes). Zero boxes give an empty result.
2. Aspect-ratio fix to the model input's w/h and padding (``crop.padding`` in the metadata,
   1.25 for HRNet), one affine warp per box (:func:`edgepose.preprocess.preprocess_topdown`).
3. All crops of a frame in one inference call (chunked by ``max_batch``; a fixed-batch model is
   run in chunks of its batch size, the last chunk padded).
4. Decode with the C++ core (:func:`edgepose.decode.decode_topdown`, ``dark`` default), heatmap
   → crop pixels with :func:`edgepose.preprocess.heatmap_to_input` (``stride``,
   ``heatmap_offset``), crop → image with the inverse of the crop's affine.
5. Optional flip test, person scores, OKS-based NMS of duplicate poses.

Flip test without the half-pixel shift
    Mirroring a heatmap array (``h → Wh - 1 - h``) corresponds, in model-input pixels with
    ``x_in = (h + o) * s - o``, to the mirror ``x → (W - 1) - x - d`` with
    ``d = (1 - 2o)(s - 1)``; for HRNet (``o = 0``, ``s = 4``) ``d = 3``, for pixel-centre
    aligned models (``o = 0.5``) ``d = 0``. The flipped crop is therefore the crop mirrored
    *and shifted by d input pixels* (exact for integer d, filled with black at the edge); its
    heatmaps, mirrored back with the flip pairs swapped, are aligned exactly with the plain
    ones and averaged. (HRNet's own code mirrors the crop and shifts the heatmap by one heatmap
    pixel, which over-corrects by ``1/s`` heatmap pixels for ``o = 0``.) A non-integer d
    is split into its integer part (input shift) and the rest (linear heatmap shift).

Scores
    Keypoint score = heatmap maximum. Person score = box score x mean of the keypoint scores
    above ``min_keypoint_score`` (HRNet's rescoring; 0 when none is above).

OKS NMS
    As HRNet's ``oks_nms``: people in descending score; a person is suppressed when its OKS with
    a kept person exceeds ``oks_nms_threshold`` (COCO sigmas via ``to_coco17``; area = padded
    crop area; keypoints below ``min_keypoint_score`` in either pose ignored). Survivors keep
    the order of their boxes. ``oks_nms_threshold`` 0 (or False) switches it off.

No boxes and no detector
    ``est(img)`` without a detector treats the whole image as one box.
"""
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..backends import Backend, load_backend
from ..errors import InputError, ModelError
from ..metadata import DECODE_DEFAULTS, ModelMeta
from ..preprocess import (apply_affine, box_to_center_size, check_image, heatmap_to_input,
                          invert_affine, normalize, preprocess_topdown)
from ..results import PoseResult

__all__ = ["TopDownEstimator", "oks_nms", "oks_iou", "sanitize_boxes", "flip_shift"]

from ..reference import REFINES as _REFINES  # noqa: E402  (the one list)


def flip_shift(stride: float, offset: float) -> float:
    """Input-pixel shift ``d`` of the flipped crop that aligns mirrored heatmaps exactly."""
    return (1.0 - 2.0 * float(offset)) * (float(stride) - 1.0)


def sanitize_boxes(boxes, image_hw: Tuple[int, int], scores=None
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check boxes ``[B,4]`` xywh; drop those entirely outside the image, clip the others.

    Returns (boxes float64 ``[B',4]``, scores float32 ``[B']``, indices of the kept inputs).
    """
    try:
        b = np.asarray(boxes, np.float64)
    except (TypeError, ValueError):
        raise InputError("boxes must be numbers [B,4] (x, y, w, h)")
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError("boxes must have shape [B,4] (x, y, w, h), got %s" % (b.shape,))
    if not np.all(np.isfinite(b)):
        raise InputError("boxes contain NaN or infinite values")
    if np.any(b[:, 2:] < 0):
        raise InputError("boxes have negative width or height (expected x, y, w, h)")
    if scores is None:
        s = np.ones(len(b), np.float32)
    else:
        try:
            s = np.asarray(scores, np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InputError("box scores must be numbers")
        if len(s) != len(b):
            raise InputError("%d box scores for %d boxes" % (len(s), len(b)))
        if not np.all(np.isfinite(s)):
            raise InputError("box scores contain NaN or infinite values")
    h, w = image_hw
    x1, y1 = b[:, 0], b[:, 1]
    x2, y2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inside = (x1 < w) & (y1 < h) & (x2 > 0) & (y2 > 0)
    idx = np.nonzero(inside)[0]
    cx1, cy1 = np.clip(x1[idx], 0, w), np.clip(y1[idx], 0, h)
    cx2, cy2 = np.clip(x2[idx], 0, w), np.clip(y2[idx], 0, h)
    out = np.stack([cx1, cy1, cx2 - cx1, cy2 - cy1], 1) if len(idx) else np.zeros((0, 4))
    return out, s[idx], idx


def oks_iou(ref: np.ndarray, others: np.ndarray, ref_area: float, other_areas: np.ndarray,
            sigmas: np.ndarray, vis_threshold: Optional[float] = None) -> np.ndarray:
    """OKS between one pose ``[K,3]`` and poses ``[M,K,3]`` (HRNet's ``oks_iou``)."""
    var = (2.0 * sigmas) ** 2
    d2 = ((others[:, :, 0] - ref[None, :, 0]) ** 2 + (others[:, :, 1] - ref[None, :, 1]) ** 2)
    e = d2 / var[None] / ((ref_area + other_areas)[:, None] / 2.0 + np.spacing(1)) / 2.0
    ex = np.exp(-e)
    if vis_threshold is not None:
        m = (ref[None, :, 2] > vis_threshold) & (others[:, :, 2] > vis_threshold)
        n = m.sum(1)
        return np.where(n > 0, (ex * m).sum(1) / np.maximum(n, 1), 0.0)
    return ex.mean(1)


def oks_nms(kpts: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float,
            sigmas: np.ndarray, vis_threshold: Optional[float] = None) -> np.ndarray:
    """Indices of the poses kept by greedy OKS NMS (best score first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: List[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not len(rest):
            break
        o = oks_iou(kpts[i], kpts[rest], float(areas[i]), areas[rest], sigmas, vis_threshold)
        order = rest[o <= threshold]
    return np.asarray(keep, np.int64)


class TopDownEstimator:
    """Poses of the people in an image with a top-down (one crop per person) model.

    ``model``: path (``.onnx``, ``.tflite``, TensorRT) or a loaded Backend with top-down
    metadata. ``detector``: a :class:`~edgepose.pipelines.detector.PersonDetector`, a detector
    model path, or None (then boxes are passed per call, or the whole image is one box).
    ``refine``: ``dark`` (default) | ``quarter`` | ``centroid`` | ``none``. ``flip_test``,
    ``oks_nms_threshold``, ``min_keypoint_score``, ``dark_kernel``: default from the metadata.
    ``max_batch``: most crops per inference call (None: all crops of a frame at once).

    ``est(img_bgr, boxes=None, box_scores=None) -> PoseResult`` with ``boxes`` (the boxes used)
    and ``timings`` (``detect_ms``, ``preprocess_ms``, ``inference_ms``, ``postprocess_ms``).
    Boxes given to the call replace the detector (it is not run); ``box_scores`` default to 1.
    """

    def __init__(self, model: Union[str, Backend], detector=None, threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, refine: Optional[str] = None,
                 flip_test: Optional[bool] = None, max_batch: Optional[int] = None,
                 oks_nms_threshold: Optional[float] = None,
                 min_keypoint_score: Optional[float] = None, dark_kernel: Optional[int] = None,
                 detector_spec=None, detector_score_threshold: Optional[float] = None,
                 detector_backend: Optional[str] = None, **unknown):
        if unknown:
            raise InputError("option(s) not used by top-down models: %s"
                             % ", ".join(sorted(unknown)))
        self.backend = model if isinstance(model, Backend) else load_backend(
            str(model), threads=threads, providers=providers)
        meta = self.backend.meta
        if meta is None:
            raise ModelError("%s has no edgepose metadata: import it first with `edgepose export "
                             "MODEL.onnx --spec SPEC.json --target onnx -o OUT.onnx`" % self.backend.path)
        if meta.family != "topdown":
            raise ModelError("%s is a %s model, expected topdown" % (self.backend.path, meta.family))
        self.meta: ModelMeta = meta
        from ..metadata import check_against_model
        check_against_model(meta, self.backend.inputs, self.backend.outputs, getattr(self.backend, "path", "model"))
        self._said_whole_image = False
        dec = dict(DECODE_DEFAULTS["topdown"])
        dec.update(meta.decode)
        self.refine = str(refine or dec["refine"])
        if self.refine not in _REFINES:
            raise InputError("refine must be one of %s, got %r" % (", ".join(_REFINES), self.refine))
        self.dark_kernel = int(dark_kernel or dec.get("dark_kernel", 11))
        self.flip_test = bool(dec.get("flip_test", False) if flip_test is None else flip_test)
        thr = dec.get("oks_nms_threshold", 0.9) if oks_nms_threshold is None else oks_nms_threshold
        self.oks_nms_threshold = float(thr or 0.0)
        self.min_keypoint_score = float(dec.get("min_keypoint_score", 0.2)
                                        if min_keypoint_score is None else min_keypoint_score)
        if max_batch is not None and int(max_batch) < 1:
            raise InputError("max_batch must be >= 1, got %r" % (max_batch,))
        self.max_batch = int(max_batch) if max_batch else None

        # model tensors
        inp = meta.input
        self.in_h, self.in_w = int(inp["height"]), int(inp["width"])
        names = [t.name for t in self.backend.inputs]
        self.input_name = inp.get("name") if inp.get("name") in names else self.backend.input_name
        ispec = next(t for t in self.backend.inputs if t.name == self.input_name)
        self.fixed_batch = ispec.shape[0] if ispec.shape and isinstance(ispec.shape[0], int) else None
        if self.fixed_batch is not None and self.fixed_batch < 1:
            self.fixed_batch = None
        hm = meta.outputs["heatmaps"]
        onames = [t.name for t in self.backend.outputs]
        if hm.get("name") not in onames:
            raise ModelError("model output %r named in its metadata is missing (outputs: %s)"
                             % (hm.get("name"), ", ".join(onames)))
        self.heatmap_name = hm["name"]
        self.heatmap_layout = hm.get("layout", "NCHW")
        self.stride = float(meta.stride)
        self.heatmap_offset = float(meta.get("heatmap_offset", 0.0))
        self.padding = float((meta.get("crop") or {}).get("padding", 1.25))
        self.num_keypoints = meta.num_keypoints
        self.flip_pairs = [tuple(int(v) for v in p) for p in (meta.get("flip_pairs") or [])]
        self.sigmas = self._sigmas()
        if self.flip_test and not self.flip_pairs:
            raise ModelError("flip test needs the model's flip_pairs, which its metadata lacks")

        # detector
        from .detector import make_detector

        st = dec.get("detector_score_threshold", 0.3) if detector_score_threshold is None \
            else detector_score_threshold
        detector = make_detector(detector, detector_spec, threads=threads, providers=providers,
                                 backend=detector_backend, score_threshold=st)
        self.detector = detector

    # -- helpers ----------------------------------------------------------------------------------
    def _sigmas(self) -> np.ndarray:
        from ..schema import oks_sigmas
        return oks_sigmas(self.num_keypoints, self.meta.get("to_coco17"))

    def _flip_inputs(self, x: np.ndarray) -> np.ndarray:
        """Mirrored crops shifted by the integer part of :func:`flip_shift` (see module doc)."""
        d = int(round(flip_shift(self.stride, self.heatmap_offset)))
        nchw = self.meta.input["layout"] == "NCHW"
        wax = 3 if nchw else 2
        xf = np.flip(x, axis=wax)
        if d == 0:
            return np.ascontiguousarray(xf)
        fill = normalize(np.zeros((1, 1, 1, 3), np.uint8), self.meta)  # black, normalised
        out = np.empty_like(x)
        out[...] = fill
        W = x.shape[wax]
        src = [slice(None)] * 4
        dst = [slice(None)] * 4
        if d > 0:   # out[u] = xf[u + d]
            dst[wax], src[wax] = slice(0, W - d), slice(d, W)
        else:       # out[u] = xf[u - |d|]
            dst[wax], src[wax] = slice(-d, W), slice(0, W + d)
        out[tuple(dst)] = xf[tuple(src)]
        return out

    def _unflip_heatmaps(self, hm: np.ndarray) -> np.ndarray:
        out = hm[:, :, :, ::-1].copy()
        for a, b in self.flip_pairs:
            out[:, [a, b]] = out[:, [b, a]]
        # fractional rest of the shift (zero for the usual offsets 0 and 0.5), in heatmap pixels
        d = flip_shift(self.stride, self.heatmap_offset)
        r = (d - round(d)) / self.stride
        if abs(r) > 1e-6:
            # mirrored map is displaced by -r heatmap px: sample it at x - r (linear)
            sh = np.empty_like(out)
            if r > 0:
                sh[..., 1:] = (1 - r) * out[..., 1:] + r * out[..., :-1]
                sh[..., 0] = out[..., 0]
            else:
                q = -r
                sh[..., :-1] = (1 - q) * out[..., :-1] + q * out[..., 1:]
                sh[..., -1] = out[..., -1]
            out = sh
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Crops → heatmaps ``[N,K,h,w]`` float32, chunked as the model allows."""
        n = x.shape[0]
        chunk = self.fixed_batch or self.max_batch or n
        outs = []
        for i in range(0, n, chunk):
            xb = x[i:i + chunk]
            m = xb.shape[0]
            if self.fixed_batch is not None and m < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - m,) + xb.shape[1:], xb.dtype)
                xb = np.concatenate([xb, pad])
            hm = self.backend.run({self.input_name: np.ascontiguousarray(xb)},
                                  [self.heatmap_name])[self.heatmap_name]
            hm = np.asarray(hm)
            if hm.ndim != 4:
                raise ModelError("heatmaps output must be 4-D, got shape %s" % (hm.shape,))
            if self.heatmap_layout == "NHWC":
                hm = hm.transpose(0, 3, 1, 2)
            outs.append(hm[:m])
        hm = np.ascontiguousarray(np.concatenate(outs), dtype=np.float32)
        if hm.shape[1] != self.num_keypoints:
            raise ModelError("heatmaps have %d channels, the metadata lists %d keypoints"
                             % (hm.shape[1], self.num_keypoints))
        return hm

    def _empty(self, timings: Dict[str, float]) -> PoseResult:
        m = self.meta
        return PoseResult(np.zeros((0, self.num_keypoints, 3), np.float32), np.zeros((0,), np.float32),
                          m.keypoints, m.get("skeleton", []), m.get("to_coco17"),
                          boxes=np.zeros((0, 4), np.float32), timings=timings)

    # -- main -------------------------------------------------------------------------------------
    def infer(self, img: np.ndarray, boxes: np.ndarray
                       ) -> Tuple[np.ndarray, List[np.ndarray], float, float]:
        """Crops of checked boxes → (heatmaps ``[B,K,h,w]``, crop matrices, pre_ms, inf_ms)."""
        t0 = time.perf_counter()
        x, mats = preprocess_topdown(img, boxes, self.meta)
        if self.flip_test:
            x = np.concatenate([x, self._flip_inputs(x)])
        if x.dtype != self._input_dtype():
            x = x.astype(self._input_dtype())
        t1 = time.perf_counter()
        hm = self._run(x)
        if self.flip_test:
            b = len(boxes)
            hm = 0.5 * (hm[:b] + self._unflip_heatmaps(hm[b:]))
        t2 = time.perf_counter()
        return hm, mats, (t1 - t0) * 1e3, (t2 - t1) * 1e3

    def _input_dtype(self):
        for t in self.backend.inputs:
            if t.name == self.input_name:
                return t.dtype if t.dtype in (np.float32, np.float16) else np.float32
        return np.float32

    def decode(self, hm: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
        """Heatmaps ``[B,K,h,w]`` + crop matrices → keypoints ``[B,K,3]`` in image pixels."""
        from .. import decode

        coords, scores = decode.decode_topdown(hm, refine=self.refine, dark_kernel=self.dark_kernel)
        xy = heatmap_to_input(np.asarray(coords, np.float64), self.stride, self.heatmap_offset)
        kp = np.zeros((len(mats), self.num_keypoints, 3), np.float32)
        for i, m in enumerate(mats):
            kp[i, :, :2] = apply_affine(invert_affine(m), xy[i])
        kp[:, :, 2] = scores
        return kp

    def __call__(self, img: np.ndarray, boxes=None, box_scores=None) -> PoseResult:
        t0 = time.perf_counter()
        img = check_image(img)
        det_ms = 0.0
        if boxes is None:
            if self.detector is not None:
                boxes, box_scores = self.detector(img)
                det_ms = (time.perf_counter() - t0) * 1e3
            else:
                if not self._said_whole_image:
                    from ..log import logger
                    self._said_whole_image = True
                    logger.warning("top-down model without a person detector or boxes: the whole image is "
                                   "one person box (pass detector=... / --detector, or boxes)")
                boxes = np.array([[0.0, 0.0, img.shape[1], img.shape[0]]])
                box_scores = None
        t1 = time.perf_counter()
        b, s, _ = sanitize_boxes(boxes, img.shape[:2], box_scores)
        if len(b) == 0:
            return self._empty({"detect_ms": det_ms, "preprocess_ms": (time.perf_counter() - t1) * 1e3,
                                "inference_ms": 0.0, "postprocess_ms": 0.0})
        hm, mats, pre_ms, inf_ms = self.infer(img, b)
        t2 = time.perf_counter()
        kp = self.decode(hm, mats)
        ks = kp[:, :, 2]
        valid = ks > self.min_keypoint_score
        nvalid = valid.sum(1)
        mean_k = np.where(nvalid > 0, (ks * valid).sum(1) / np.maximum(nvalid, 1), 0.0)
        pscore = (s * mean_k).astype(np.float32)
        if self.oks_nms_threshold > 0 and len(b) > 1:
            areas = np.array([np.prod(box_to_center_size(bb, self.in_w / float(self.in_h),
                                                         self.padding)[1]) for bb in b])
            keep = np.sort(oks_nms(kp, pscore, areas, self.oks_nms_threshold, self.sigmas,
                                   self.min_keypoint_score))
            kp, pscore, b = kp[keep], pscore[keep], b[keep]
        t3 = time.perf_counter()
        m = self.meta
        return PoseResult(kp, pscore, m.keypoints, m.get("skeleton", []), m.get("to_coco17"),
                          boxes=b.astype(np.float32),
                          timings={"detect_ms": det_ms,
                                   "preprocess_ms": (t2 - t1) * 1e3 - inf_ms,
                                   "inference_ms": inf_ms,
                                   "postprocess_ms": (t3 - t2) * 1e3})

    def describe(self) -> str:
        s = "top-down %s, %s, refine=%s, flip_test=%s" % (
            self.meta.get("arch", "?"), self.backend.describe(), self.refine, self.flip_test)
        if self.detector is not None and hasattr(self.detector, "describe"):
            s += ", detector %s" % self.detector.describe()
        return s


# ----------------------------------------------------------------------------------------------
# boxes from files
# ----------------------------------------------------------------------------------------------
