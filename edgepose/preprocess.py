"""The one preprocessing path: runtime, calibration and evaluation all call these functions.

Coordinates: image and model-input coordinates are continuous with pixel centres at integer
indices (OpenCV's convention: pixel ``(row r, col c)`` has its centre at ``x=c, y=r``).
Heatmap coordinates follow the same rule on the heatmap grid; ``heatmap_to_input`` maps them to
model-input pixels with the model's ``stride`` and ``heatmap_offset``.

Images enter as OpenCV BGR ``uint8`` ``H×W×3`` arrays.
"""
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import InputError
from .metadata import ModelMeta


def check_image(img: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an input image: BGR uint8 H×W×3 (grayscale and BGRA are converted)."""
    if img is None:
        raise InputError("%s is empty (could not be decoded)" % what)
    if not isinstance(img, np.ndarray):
        raise InputError("%s must be a numpy array, got %s" % (what, type(img).__name__))
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError("%s must be H×W×3 BGR, got shape %s" % (what, img.shape))
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise InputError("%s is too small: %dx%d" % (what, img.shape[1], img.shape[0]))
    if img.dtype != np.uint8:
        raise InputError("%s must be uint8, got %s" % (what, img.dtype))
    return img


def normalize(batch_bgr: np.ndarray, meta) -> np.ndarray:
    """``[N,H,W,3]`` BGR uint8 → float32 model input in the model's channel order and layout.

    ``meta`` is a ModelMeta (anything with ``.input``) or an input dict (``layout``, ``channel_order``, ``mean``, ``std``).
    """
    inp = meta if isinstance(meta, dict) else meta.input
    mean = np.asarray(inp["mean"], np.float32).reshape(3)
    scale = (1.0 / np.asarray(inp["std"], np.float32)).reshape(3)
    rgb = inp["channel_order"] == "RGB"
    n, h, w = batch_bgr.shape[:3]
    if inp["layout"] == "NCHW":
        if n == 0:
            return np.zeros((0, 3, h, w), np.float32)
        # one pass: uint8 HWC -> float32 CHW (+ channel swap) in OpenCV's optimised code
        x = cv2.dnn.blobFromImages(list(batch_bgr), 1.0, (w, h), (0, 0, 0), swapRB=rgb, crop=False)
        if np.any(mean != 0.0) or np.any(scale != 1.0):
            for c in range(3):
                xc = x[:, c]
                xc -= mean[c]
                xc *= scale[c]
        return x
    x = batch_bgr[..., ::-1] if rgb else batch_bgr
    x = x.astype(np.float32)
    if np.any(mean != 0.0):
        x -= mean
    if np.any(scale != 1.0):
        x *= scale
    return np.ascontiguousarray(x)


# ----------------------------------------------------------------------------------------------
# bottom-up: resize keeping aspect, pad to the stride
# ----------------------------------------------------------------------------------------------
class ResizeTransform:
    """Image → model input: ``u = x * scale`` (then top-left padding); inverse maps back."""

    def __init__(self, scale: float, in_hw: Tuple[int, int], image_hw: Tuple[int, int]):
        self.scale = float(scale)
        self.in_hw = in_hw
        self.image_hw = image_hw

    def input_to_image(self, xy: np.ndarray) -> np.ndarray:
        # pixel centres: u + 0.5 = (x + 0.5) * scale
        return (xy + 0.5) / self.scale - 0.5


def bottomup_input_size(image_hw: Tuple[int, int], meta: ModelMeta,
                        height: Optional[int] = None) -> Tuple[int, int, float]:
    """Model input (H, W) and scale for an image: height fixed, width rounded up to the stride.

    Static-shape models use their fixed input size and fit the image inside it.
    """
    h, w = image_hw
    stride = meta.stride
    inp = meta.input
    if inp.get("dynamic_hw", False):
        H = int(height or inp["height"])
        H = int(math.ceil(H / stride) * stride)
        scale = H / float(h)
        W = int(math.ceil(w * scale / stride) * stride)
        W = max(W, stride)
        return H, W, scale
    H, W = int(inp["height"]), int(inp["width"])
    scale = min(H / float(h), W / float(w))
    return H, W, scale


def preprocess_bottomup(img: np.ndarray, meta: ModelMeta,
                        height: Optional[int] = None) -> "Tuple[np.ndarray, ResizeTransform]":
    """One BGR image → (model input ``[1,...]`` float32, transform back to image coords)."""
    img = check_image(img)
    H, W, scale = bottomup_input_size(img.shape[:2], meta, height)
    rh = min(H, max(1, int(round(img.shape[0] * scale))))
    rw = min(W, max(1, int(round(img.shape[1] * scale))))
    # the actual scale per axis may differ by rounding; use the x/y mean (sub-pixel effect)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (rw, rh), interpolation=interp)
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas[:rh, :rw] = resized
    real_scale = 0.5 * (rw / img.shape[1] + rh / img.shape[0])
    return normalize(canvas[None], meta), ResizeTransform(real_scale, (H, W), img.shape[:2])


def heatmap_to_input(xy: np.ndarray, stride: float, offset: float) -> np.ndarray:
    """Heatmap pixel coordinates → model-input pixel coordinates."""
    return (xy + offset) * stride - offset


# ----------------------------------------------------------------------------------------------
# top-down: one affine warp per box
# ----------------------------------------------------------------------------------------------
def box_to_center_size(box_xywh: Sequence[float], aspect: float,
                       padding: float) -> Tuple[np.ndarray, np.ndarray]:
    """COCO box ``[x, y, w, h]`` → centre and (w, h) fixed to ``aspect`` = w/h, times padding."""
    x, y, w, h = [float(v) for v in box_xywh]
    w = max(w, 1.0)
    h = max(h, 1.0)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([cx, cy], np.float64), np.array([w * padding, h * padding], np.float64)


def crop_matrix(center: np.ndarray, size: np.ndarray, out_wh: Tuple[int, int]) -> np.ndarray:
    """2×3 affine image → crop: the box ``centre ± size/2`` onto the crop's full extent.

    Continuous coordinates: the box interval maps onto ``[-0.5, W-0.5]`` so that crop pixel
    centres are integers. ``u = (x - cx) * W / bw + (W - 1) / 2``.
    """
    W, H = out_wh
    sx = W / float(size[0])
    sy = H / float(size[1])
    return np.array([[sx, 0.0, (W - 1) / 2.0 - center[0] * sx],
                     [0.0, sy, (H - 1) / 2.0 - center[1] * sy]], np.float64)


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def apply_affine(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply 2×3 ``m`` to points ``[..., 2]``."""
    xy = np.asarray(xy, np.float64)
    return xy @ m[:, :2].T + m[:, 2]


def preprocess_topdown(img: np.ndarray, boxes: np.ndarray, meta: ModelMeta
                       ) -> Tuple[np.ndarray, List[np.ndarray]]:
    """One BGR image + boxes ``[B,4]`` (xywh) → (batch ``[B,...]`` float32, crop matrices)."""
    img = check_image(img)
    H, W = int(meta.input["height"]), int(meta.input["width"])
    padding = float(meta.get("crop", {}).get("padding", 1.25))
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    crops = np.zeros((len(boxes), H, W, 3), np.uint8)
    mats = []
    for i, b in enumerate(boxes):
        c, s = box_to_center_size(b, W / float(H), padding)
        m = crop_matrix(c, s, (W, H))
        crops[i] = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        mats.append(m)
    return normalize(crops, meta), mats
