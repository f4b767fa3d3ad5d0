"""One-stage pipeline (YOLO-pose): letterbox → one inference → threshold + NMS → people.

The network regresses, per anchor, a person box (cx, cy, w, h), a person score and K keypoints
(x, y, score) together; the output is ``[1, 5+3K, N]`` (metadata ``outputs.predictions.layout``
``"CN"``, Ultralytics' export) or ``[1, N, 5+3K]`` (``"NC"``).

1. :func:`edgepose.preprocess.preprocess_letterbox`: resize keeping the aspect, pad with
   ``letterbox.pad_value`` (Ultralytics: 114, centred).
2. Inference (integer models: the backend quantizes the input and dequantizes the output).
3. :func:`edgepose.decode.select_onestage` in the C++ extension: anchors scoring above
   ``score_threshold``, greedy NMS by box IoU (``nms="iou"``, default) or by keypoint OKS
   (``nms="oks"``), at most ``max_people``, read in place in either layout. (Measured against
   a numpy threshold + ``cv2.dnn.NMSBoxes``: ``benchmarks/onestage.py``.)
4. The kept rows to image pixels: units (``onestage.box_units`` / ``keypoint_units``:
   ``normalized`` 0-1 over the input, or input ``pixels``), the pixel origin
   (``onestage.pixel_origin``: ``corner``, YOLO's, puts a pixel's centre at +0.5; edgepose's is
   the centre), then the inverse letterbox. Boxes in the result are COCO ``[x, y, w, h]``
   (corner convention), keypoint scores are the model's, the person score is the anchor's.
"""
import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..backends import Backend, load_backend
from ..errors import InputError, ModelError
from ..metadata import DECODE_DEFAULTS, ModelMeta, check_against_model
from ..preprocess import LetterboxTransform, preprocess_letterbox
from ..results import PoseResult

__all__ = ["OneStageEstimator", "decode_rows"]


def decode_rows(rows: np.ndarray, meta: ModelMeta, tr: LetterboxTransform
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selected anchors ``[P, 5+3K]`` → (keypoints ``[P,K,3]`` and boxes ``[P,4]`` xywh in image
    pixels, person scores ``[P]``)."""
    one = meta.get("onestage")
    H, W = int(meta.input["height"]), int(meta.input["width"])
    K = meta.num_keypoints
    rows = np.asarray(rows, np.float64).reshape(len(rows), 5 + 3 * K)

    def scale(units):
        return (float(W), float(H)) if units == "normalized" else (1.0, 1.0)

    bsx, bsy = scale(one["box_units"])
    ksx, ksy = scale(one["keypoint_units"])
    # model-input pixels, corner convention (a pixel spans [i, i+1])
    c = 0.0 if one["pixel_origin"] == "corner" else 0.5
    cx, cy = rows[:, 0] * bsx + c, rows[:, 1] * bsy + c
    w, h = rows[:, 2] * bsx, rows[:, 3] * bsy
    x1 = (cx - 0.5 * w - tr.left) / tr.sx
    y1 = (cy - 0.5 * h - tr.top) / tr.sy
    boxes = np.stack([x1, y1, w / tr.sx, h / tr.sy], 1) if len(rows) else np.zeros((0, 4))
    kp = np.zeros((len(rows), K, 3), np.float32)
    if len(rows):
        xy = np.stack([rows[:, 5::3] * ksx + c - 0.5, rows[:, 6::3] * ksy + c - 0.5], -1)  # centre convention
        kp[:, :, :2] = tr.input_to_image(xy)
        kp[:, :, 2] = rows[:, 7::3]
    return kp, boxes.astype(np.float32), rows[:, 4].astype(np.float32)


class OneStageEstimator:
    """Poses of everybody in an image with a one-stage (YOLO-pose) model.

    ``model``: a path (``.tflite``, ``.onnx``, TensorRT) or a loaded Backend with one-stage
    metadata. ``score_threshold``, ``nms`` (``"iou"`` | ``"oks"`` | ``"none"``),
    ``nms_threshold``, ``max_people``: default from the metadata (``DECODE_DEFAULTS["onestage"]``).
    ``est(img_bgr) -> PoseResult`` with ``boxes`` and ``timings``.
    """

    def __init__(self, model: Union[str, Backend], threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, score_threshold: Optional[float] = None,
                 nms: Optional[str] = None, nms_threshold: Optional[float] = None,
                 max_people: Optional[int] = None, **unknown):
        if unknown:
            raise InputError("option(s) not used by one-stage models: %s" % ", ".join(sorted(unknown)))
        self.backend = model if isinstance(model, Backend) else load_backend(
            str(model), threads=threads, providers=providers)
        from .bottomup import require_meta

        self.meta = require_meta(self.backend, "onestage")
        check_against_model(self.meta, self.backend.inputs, self.backend.outputs,
                            getattr(self.backend, "path", "model"))
        dec = dict(DECODE_DEFAULTS["onestage"])
        dec.update(self.meta.decode)
        for k, v in (("score_threshold", score_threshold), ("nms", nms), ("nms_threshold", nms_threshold),
                     ("max_people", max_people)):
            if v is not None:
                dec[k] = v
        if dec["nms"] not in ("iou", "oks", "none"):
            raise InputError("nms must be 'iou', 'oks' or 'none', got %r" % (dec["nms"],))
        for k in ("score_threshold", "nms_threshold"):
            if not (0.0 <= float(dec[k]) <= 1.0):
                raise InputError("%s must be in [0, 1], got %r" % (k, dec[k]))
        if int(dec["max_people"]) < 1:
            raise InputError("max_people must be >= 1, got %r" % (dec["max_people"],))
        self.options = dec
        self._out = self.meta.outputs["predictions"]
        self.layout = self._out.get("layout", "CN")
        one = self.meta.get("onestage")
        H, W = int(self.meta.input["height"]), int(self.meta.input["width"])
        self._box_scale = (W, H) if one["box_units"] == "normalized" else (1, 1)
        self._kpt_scale = (W, H) if one["keypoint_units"] == "normalized" else (1, 1)
        from ..schema import oks_sigmas

        self.sigmas = oks_sigmas(self.meta.num_keypoints, self.meta.get("to_coco17"))

    def infer(self, img: np.ndarray) -> Tuple[np.ndarray, LetterboxTransform, float, float]:
        """Letterbox + inference: (the raw output ``[1, 5+3K, N]`` / ``[1, N, 5+3K]``, the
        transform back to the image, pre_ms, inf_ms)."""
        t0 = time.perf_counter()
        x, tr = preprocess_letterbox(img, self.meta)
        t1 = time.perf_counter()
        name = self._out["name"]
        out = self.backend.run({self.backend.input_name: x}, [name])[name]
        t2 = time.perf_counter()
        out = np.asarray(out)
        if out.ndim != 3 or out.shape[0] != 1:
            raise ModelError("one-stage output must be [1, 5+3K, N] or [1, N, 5+3K], got shape %s" % (out.shape,))
        return np.ascontiguousarray(out, dtype=np.float32), tr, (t1 - t0) * 1e3, (t2 - t1) * 1e3

    def select(self, pred: np.ndarray) -> np.ndarray:
        """Anchors kept by the threshold and NMS, best first (the C++ extension)."""
        from .. import decode

        o = self.options
        return decode.select_onestage(pred, self.layout, self.meta.num_keypoints, float(o["score_threshold"]),
                                      o["nms"], float(o["nms_threshold"]), int(o["max_people"]),
                                      self._box_scale, self._kpt_scale,
                                      self.sigmas if o["nms"] == "oks" else None)

    def decode(self, pred: np.ndarray, tr: LetterboxTransform) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw output → (keypoints ``[P,K,3]``, boxes ``[P,4]`` xywh, scores ``[P]``) in image pixels."""
        keep = self.select(pred)
        p = pred[0]
        rows = p[:, keep].T if self.layout == "CN" else p[keep]
        return decode_rows(rows, self.meta, tr)

    def finish(self, inferred) -> PoseResult:
        pred, tr, pre_ms, inf_ms = inferred
        t0 = time.perf_counter()
        kp, boxes, scores = self.decode(pred, tr)
        m = self.meta
        return PoseResult(kp, scores, m.keypoints, m.get("skeleton", []), m.get("to_coco17"), boxes=boxes,
                          timings={"preprocess_ms": pre_ms, "inference_ms": inf_ms,
                                   "postprocess_ms": (time.perf_counter() - t0) * 1e3})

    def __call__(self, img: np.ndarray) -> PoseResult:
        return self.finish(self.infer(img))

    def stages(self):
        """(infer, finish): the video pipeline overlaps inference and the threshold + NMS decode
        (see :mod:`edgepose.pipelines`)."""
        return self.infer, self.finish

    def describe(self) -> str:
        o = self.options
        return "one-stage %s, %s, score>%.2f, nms=%s@%.2f" % (self.meta.get("arch", "?"), self.backend.describe(),
                                                             float(o["score_threshold"]), o["nms"],
                                                             float(o["nms_threshold"]))
