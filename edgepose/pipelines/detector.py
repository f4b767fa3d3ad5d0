"""Person detection for the top-down pipeline: YOLOX-style detectors behind the backend interface.

A detector file is described by a small JSON *detector spec* (it carries no edgepose metadata)::

    {
      "format": "yolox",                 # anchor-free YOLOX head: (cx, cy, w, h, obj, classes...)
      "input": {"name": "images", "layout": "NCHW", "height": 416, "width": 416,
                "channel_order": "BGR", "mean": [0, 0, 0], "std": [1, 1, 1]},
      "letterbox": {"pad_value": 114, "align": "top-left"},      # or "center"
      "strides": [8, 16, 32],
      "num_classes": 80,
      "person_class": 0,
      "output": "output",                # optional when the model has exactly one output
      "score_threshold": 0.3,            # optional defaults, overridden by the constructor
      "nms_threshold": 0.45
    }

``mean`` / ``std`` are in 0-255 pixel units and in the model's channel order, as in
:mod:`edgepose.metadata`.

Where the spec comes from, first match wins:

1. the ``spec`` argument (a dict or a path to a JSON file);
2. a file beside the model: ``MODEL.spec.json`` with the model's extension replaced
   (``yolox_nano_416x416.spec.json``) or appended (``yolox_nano_416x416.onnx.spec.json``);
3. the built-in specs of the known detectors, matched by the model's file name without
   extension: ``yolox_nano_416x416`` and ``light_person_detector`` (``.onnx`` and ``.tflite``).
   ``examples/*.spec.json`` are copies of these built-ins to start a new spec from.

The spec's input size and the output shape are checked against the loaded model.

Coordinates: detector boxes are COCO-style ``[x, y, w, h]`` with continuous corner coordinates
(the image spans ``[0, W] x [0, H]``), like COCO annotations and detection-results files.
"""
import copy
import os
import time
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import InputError, ModelError
from ..preprocess import check_image, normalize

__all__ = ["PersonDetector", "KNOWN_SPECS", "load_detector_spec", "validate_spec", "letterbox",
           "decode_yolox", "nms"]

_YOLOX_NANO = {
    "format": "yolox",
    "input": {"name": "images", "layout": "NCHW", "height": 416, "width": 416,
              "channel_order": "BGR", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "letterbox": {"pad_value": 114, "align": "top-left"},
    "strides": [8, 16, 32],
    "num_classes": 80,
    "person_class": 0,
    "output": "output",
    "score_threshold": 0.3,
    "nms_threshold": 0.45,
}

_LIGHT_PERSON = {
    "format": "yolox",
    "input": {"name": "images", "layout": "NCHW", "height": 192, "width": 192,
              "channel_order": "BGR", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
    "letterbox": {"pad_value": 114, "align": "top-left"},
    "strides": [8, 16, 32],
    "num_classes": 1,
    "person_class": 0,
    "output": "output",
    "score_threshold": 0.3,
    "nms_threshold": 0.45,
}

#: Built-in specs of the known detector files, by file name without extension.
KNOWN_SPECS: Dict[str, Dict[str, Any]] = {
    "yolox_nano_416x416": _YOLOX_NANO,
    "light_person_detector": _LIGHT_PERSON,
}


def _num(v: Any, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ModelError("detector spec: %s must be a number, got %r" % (what, v))
    if not np.isfinite(f):
        raise ModelError("detector spec: %s must be finite, got %r" % (what, v))
    return f


def validate_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Check a detector spec and fill defaults; returns a new dict."""
    if not isinstance(spec, dict):
        raise ModelError("detector spec must be a JSON object, got %s" % type(spec).__name__)
    s = copy.deepcopy(spec)
    fmt = s.setdefault("format", "yolox")
    if fmt != "yolox":
        raise ModelError("detector spec: unsupported format %r (supported: 'yolox')" % (fmt,))
    inp = s.get("input")
    if not isinstance(inp, dict):
        raise ModelError("detector spec lacks 'input'")
    for k in ("height", "width"):
        if k not in inp:
            raise ModelError("detector spec lacks input.%s" % k)
        v = _num(inp[k], "input." + k)
        if v < 1 or v != int(v):
            raise ModelError("detector spec: input.%s must be a positive integer, got %r" % (k, inp[k]))
        inp[k] = int(v)
    inp.setdefault("layout", "NCHW")
    inp.setdefault("channel_order", "BGR")
    inp.setdefault("mean", [0.0, 0.0, 0.0])
    inp.setdefault("std", [1.0, 1.0, 1.0])
    if inp["layout"] not in ("NCHW", "NHWC"):
        raise ModelError("detector spec: input.layout must be NCHW or NHWC, got %r" % (inp["layout"],))
    if inp["channel_order"] not in ("BGR", "RGB"):
        raise ModelError("detector spec: input.channel_order must be BGR or RGB, got %r"
                         % (inp["channel_order"],))
    for k in ("mean", "std"):
        if not isinstance(inp[k], (list, tuple)) or len(inp[k]) != 3:
            raise ModelError("detector spec: input.%s must be 3 numbers" % k)
        inp[k] = [_num(v, "input." + k) for v in inp[k]]
    if any(v == 0 for v in inp["std"]):
        raise ModelError("detector spec: input.std must be non-zero")
    lb = s.setdefault("letterbox", {})
    if not isinstance(lb, dict):
        raise ModelError("detector spec: letterbox must be an object")
    lb["pad_value"] = _num(lb.get("pad_value", 114), "letterbox.pad_value")
    lb.setdefault("align", "top-left")
    if lb["align"] not in ("top-left", "center"):
        raise ModelError("detector spec: letterbox.align must be 'top-left' or 'center', got %r"
                         % (lb["align"],))
    strides = s.get("strides", [8, 16, 32])
    if not isinstance(strides, (list, tuple)) or not strides:
        raise ModelError("detector spec: strides must be a non-empty list")
    s["strides"] = [int(_num(v, "strides")) for v in strides]
    for st in s["strides"]:
        if st < 1 or inp["height"] % st or inp["width"] % st:
            raise ModelError("detector spec: stride %d does not divide the input size %dx%d"
                             % (st, inp["width"], inp["height"]))
    if "num_classes" not in s:
        raise ModelError("detector spec lacks num_classes")
    s["num_classes"] = int(_num(s["num_classes"], "num_classes"))
    s["person_class"] = int(_num(s.get("person_class", 0), "person_class"))
    if s["num_classes"] < 1 or not 0 <= s["person_class"] < s["num_classes"]:
        raise ModelError("detector spec: person_class %d is not within num_classes %d"
                         % (s["person_class"], s["num_classes"]))
    for k, d in (("score_threshold", 0.3), ("nms_threshold", 0.45)):
        s[k] = _num(s.get(k, d), k)
    return s


def _read_spec_file(path: str) -> Dict[str, Any]:
    from ..files import read_json

    return read_json(path, "detector spec", ModelError)


def load_detector_spec(model_path: str, spec: Union[None, str, Dict[str, Any]] = None
                       ) -> Tuple[Dict[str, Any], str]:
    """The spec for a detector file and where it came from ("argument", a path or "built-in")."""
    if isinstance(spec, dict):
        return validate_spec(spec), "argument"
    if spec is not None:
        return validate_spec(_read_spec_file(str(spec))), str(spec)
    stem, _ = os.path.splitext(model_path)
    for cand in (stem + ".spec.json", model_path + ".spec.json"):
        if os.path.isfile(cand):
            return validate_spec(_read_spec_file(cand)), cand
    name = os.path.basename(stem)
    if name in KNOWN_SPECS:
        return validate_spec(KNOWN_SPECS[name]), "built-in"
    raise ModelError("no detector spec for %s: pass one (spec=...) or put %s beside the model "
                     "(known detectors: %s)" % (os.path.basename(model_path),
                                                os.path.basename(stem) + ".spec.json",
                                                ", ".join(sorted(KNOWN_SPECS))))


# ----------------------------------------------------------------------------------------------
# preprocessing, decoding, NMS
# ----------------------------------------------------------------------------------------------
def letterbox(img: np.ndarray, spec: Dict[str, Any]) -> Tuple[np.ndarray, Tuple[float, float, float, float]]:
    """BGR image → (letterboxed ``[H,W,3]`` uint8 canvas, (sx, sy, ox, oy)).

    Input coordinates ``u = x * sx + ox`` (corner convention; ``sx``/``sy`` are the actual
    per-axis scales after rounding the resized size).
    """
    from ..preprocess import letterbox as _letterbox   # THE letterbox (one-stage models use it too)

    canvas, tr = _letterbox(img, (spec["input"]["height"], spec["input"]["width"]),
                            int(round(spec["letterbox"]["pad_value"])), spec["letterbox"]["align"])
    return canvas, (tr.sx, tr.sy, float(tr.left), float(tr.top))


_GRID_CACHE: Dict[Tuple, Tuple[np.ndarray, np.ndarray]] = {}


def _grids(h: int, w: int, strides: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    key = (h, w, tuple(strides))
    if key not in _GRID_CACHE:
        gs, ss = [], []
        for st in strides:
            hs, ws = h // st, w // st
            yv, xv = np.meshgrid(np.arange(hs), np.arange(ws), indexing="ij")
            gs.append(np.stack([xv, yv], -1).reshape(-1, 2))
            ss.append(np.full((hs * ws, 1), st))
        _GRID_CACHE[key] = (np.concatenate(gs).astype(np.float32),
                            np.concatenate(ss).astype(np.float32))
    return _GRID_CACHE[key]


def decode_yolox(out: np.ndarray, spec: Dict[str, Any], score_threshold: float
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX head ``[N_cells, 5 + C]`` → person boxes ``[B,4]`` xyxy (input pixels), scores.

    xy = (out + grid) * stride, wh = exp(out) * stride, score = objectness * person class score.
    """
    grid, stride = _grids(spec["input"]["height"], spec["input"]["width"], spec["strides"])
    pc = 5 + spec["person_class"]
    scores = out[:, 4] * out[:, pc]
    keep = np.nonzero(scores >= score_threshold)[0]
    if len(keep) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    o = out[keep].astype(np.float32)
    xy = (o[:, :2] + grid[keep]) * stride[keep]
    with np.errstate(over="ignore"):
        wh = np.exp(np.minimum(o[:, 2:4], 20.0)) * stride[keep]
    boxes = np.concatenate([xy - 0.5 * wh, xy + 0.5 * wh], 1)
    return boxes.astype(np.float32), scores[keep].astype(np.float32)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy IoU NMS (OpenCV's ``cv2.dnn.NMSBoxes``); returns kept indices, best score first.

    Measured against the numpy loop it replaced: the same indices on 300 random box sets, 40x
    faster at 200 boxes (0.06 vs 2.4 ms)."""
    import cv2
    n = len(scores)
    if n == 0:
        return np.zeros(0, np.int64)
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    xywh = np.column_stack([b[:, :2], np.maximum(b[:, 2:] - b[:, :2], 0.0)])
    sc = np.asarray(scores, np.float64).reshape(-1)
    # OpenCV keeps scores above a threshold >= 0: shift them (order unchanged) so none is dropped
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), (sc - sc.min() + 1.0).tolist(), 0.0, float(iou_threshold))
    return np.asarray(keep, np.int64).reshape(-1)


# ----------------------------------------------------------------------------------------------
class PersonDetector:
    """A YOLOX-style person detector: ``det(img_bgr) -> (boxes [B,4] xywh float32, scores [B])``.

    Boxes are in image pixels (COCO corner convention), clipped to the image, best first;
    boxes that are empty after clipping are dropped. ``det.timings`` holds the last call's
    ``preprocess_ms``, ``inference_ms``, ``postprocess_ms`` and ``total_ms``.
    """

    def __init__(self, model_path, spec: Union[None, str, Dict[str, Any]] = None,
                 threads: Optional[int] = None, score_threshold: Optional[float] = 0.3,
                 nms_threshold: Optional[float] = 0.45, providers: Optional[Sequence[str]] = None,
                 backend: Optional[str] = None):
        from ..backends import Backend, load_backend

        if isinstance(model_path, Backend):
            self.backend = model_path
            path = model_path.path
        else:
            path = str(model_path)
            self.backend = None
        self.spec, self.spec_source = load_detector_spec(path, spec)
        if self.backend is None:
            self.backend = load_backend(path, threads=threads, providers=providers, backend=backend)
        self.path = path
        self.score_threshold = float(self.spec["score_threshold"] if score_threshold is None
                                     else score_threshold)
        self.nms_threshold = float(self.spec["nms_threshold"] if nms_threshold is None
                                   else nms_threshold)
        self._check_model()
        self.timings: Dict[str, float] = {}

    # -- model/spec agreement --------------------------------------------------------------------
    def _check_model(self) -> None:
        be, s = self.backend, self.spec
        inp = s["input"]
        names = [i.name for i in be.inputs]
        if inp.get("name") in names:
            self.input_name = inp["name"]
        elif len(names) == 1:
            self.input_name = names[0]
        else:
            raise ModelError("detector %s: input %r not found (inputs: %s)"
                             % (os.path.basename(self.path), inp.get("name"), ", ".join(names)))
        spec_in = next(i for i in be.inputs if i.name == self.input_name)
        if inp["layout"] == "NCHW":
            want = (1, 3, inp["height"], inp["width"])
        else:
            want = (1, inp["height"], inp["width"], 3)
        shape = tuple(spec_in.shape)
        if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want[1:])):
            raise ModelError("detector %s: input shape %s does not match its spec (%s %dx%d)"
                             % (os.path.basename(self.path), list(shape), inp["layout"],
                                inp["width"], inp["height"]))
        self.input_dtype = spec_in.dtype
        onames = [o.name for o in be.outputs]
        if s.get("output") in onames:
            self.output_name = s["output"]
        elif len(onames) == 1:
            self.output_name = onames[0]
        else:
            raise ModelError("detector %s: output %r not found (outputs: %s)"
                             % (os.path.basename(self.path), s.get("output"), ", ".join(onames)))
        out = next(o for o in be.outputs if o.name == self.output_name)
        cells = sum((inp["height"] // st) * (inp["width"] // st) for st in s["strides"])
        want_o = (cells, 5 + s["num_classes"])
        oshape = tuple(out.shape)[-2:]
        if len(out.shape) < 2 or any(isinstance(d, int) and d != w for d, w in zip(oshape, want_o)):
            raise ModelError("detector %s: output shape %s does not match its spec ([1,%d,%d] for "
                             "strides %s and %d classes)" % (os.path.basename(self.path),
                                                              list(out.shape), cells, want_o[1],
                                                              s["strides"], s["num_classes"]))
        self._cells = cells

    def describe(self) -> str:
        return "%s (%s, spec: %s)" % (os.path.basename(self.path), self.backend.describe(),
                                      self.spec_source)

    # -- run: infer (preprocess + inference), decode, as the pose pipelines ----------------------
    def infer(self, img: np.ndarray):
        """Letterbox + inference: (raw output [1, cells, 5 + classes], letterbox transform,
        preprocess ms, inference ms)."""
        t0 = time.perf_counter()
        canvas, tf = letterbox(img, self.spec)
        x = normalize(canvas[None], self.spec["input"])
        if self.input_dtype != np.float32:
            x = x.astype(self.input_dtype)
        t1 = time.perf_counter()
        out = self.backend.run({self.input_name: x}, [self.output_name])[self.output_name]
        t2 = time.perf_counter()
        return np.asarray(out, np.float32), tf, (t1 - t0) * 1e3, (t2 - t1) * 1e3

    def __call__(self, img: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        img = check_image(img)
        out, tf, pre_ms, inf_ms = self.infer(img)
        t2 = time.perf_counter()
        boxes, scores = self.decode(out, tf, img.shape[:2])
        t3 = time.perf_counter()
        self.timings = {"preprocess_ms": pre_ms, "inference_ms": inf_ms,
                        "postprocess_ms": (t3 - t2) * 1e3, "total_ms": pre_ms + inf_ms + (t3 - t2) * 1e3}
        return boxes, scores

    def decode(self, out: np.ndarray, tf, image_hw) -> Tuple[np.ndarray, np.ndarray]:
        """Raw output → person boxes [B,4] xywh in image pixels and scores [B], best first."""
        sx, sy, ox, oy = tf
        want = (self._cells, 5 + self.spec["num_classes"])
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[1:] != want:
            raise ModelError("detector output has shape %s, expected [1,%d,%d]"
                             % (list(out.shape), want[0], want[1]))
        boxes, scores = decode_yolox(out[0], self.spec, self.score_threshold)
        if len(boxes):
            finite = np.all(np.isfinite(boxes), 1) & np.isfinite(scores)
            boxes, scores = boxes[finite], scores[finite]
        if len(boxes):
            keep = nms(boxes, scores, self.nms_threshold)
            boxes, scores = boxes[keep], scores[keep]
            h, w = image_hw
            x1 = np.clip((boxes[:, 0] - ox) / sx, 0, w)
            x2 = np.clip((boxes[:, 2] - ox) / sx, 0, w)
            y1 = np.clip((boxes[:, 1] - oy) / sy, 0, h)
            y2 = np.clip((boxes[:, 3] - oy) / sy, 0, h)
            xywh = np.stack([x1, y1, x2 - x1, y2 - y1], 1).astype(np.float32)
            ok = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
            boxes, scores = xywh[ok], scores[ok].astype(np.float32)
        else:
            boxes = np.zeros((0, 4), np.float32)
            scores = np.zeros((0,), np.float32)
        return boxes, scores


def make_detector(detector, spec=None, threads: Optional[int] = None, providers: Optional[Sequence[str]] = None,
                  backend: Optional[str] = None, score_threshold: Optional[float] = None):
    """THE person detector of a two-stage estimator: ``detector`` a model path (a YOLOX-style
    :class:`PersonDetector`, or BlazePose's own detector when ``spec`` says so), a callable
    returning ``(boxes, scores)``, or None. ``backend``: the detector's runtime (see
    :func:`edgepose.backends.companion_backend`). ``providers`` are the pose model's onnxruntime
    providers: the detector shares them when it runs on onnxruntime too."""
    if detector is None or (callable(detector) and not isinstance(detector, (str, os.PathLike))):
        return detector
    if not isinstance(detector, (str, os.PathLike)):
        raise InputError("detector must be a model path or a PersonDetector, got %s" % type(detector).__name__)
    from .blazepose import is_blazepose_spec

    if is_blazepose_spec(spec):
        from .blazepose import BlazePoseDetector

        return BlazePoseDetector(os.fspath(detector), spec=spec, threads=threads, backend=backend)
    return PersonDetector(os.fspath(detector), spec=spec, threads=threads,
                          providers=None if backend == "openvino" else providers,
                          score_threshold=score_threshold, backend=backend)
