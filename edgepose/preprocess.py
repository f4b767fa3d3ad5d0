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
# resampling: bit-exact, so that a model is fed the same bytes on x86 and ARM
# ----------------------------------------------------------------------------------------------
# OpenCV's INTER_LINEAR resize and (since 4.11) warpAffine compute in floating point with
# platform-specific SIMD code: the x86 and aarch64 wheels of one version differ by one level in up
# to a fifth of the pixels, and an INT8 model's outputs then differ too, so the x86 TFLite
# interpreter would not predict a Raspberry Pi exactly. Both resampling steps use integer
# arithmetic instead: INTER_LINEAR_EXACT (fixed-point weights) for resizes, and remap on
# fixed-point maps (5 fractional bits, integer weights: what warpAffine computed before 4.11) for
# crops. scripts/rpi_emulated.sh compares the preprocessed inputs of x86 and aarch64.
_INTER_BITS = 5                 # OpenCV's INTER_BITS: coordinates in 1/32 pixel
_INTER_TAB = 1 << _INTER_BITS


def resize_exact(img: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """``cv2.resize`` to ``(w, h)`` (pixel centres: ``u + 0.5 = (x + 0.5) * w / W``), the same
    bytes on every platform.

    Enlarging and shrinking by less than 2x: bilinear, INTER_LINEAR_EXACT. Shrinking by a factor
    of 2 or more (where bilinear aliases): the mean of ``k x k`` blocks in integers (an exact box
    filter, ``k`` the whole part of the factor), then bilinear from the block centres with
    ``warp_exact`` (edges replicated, as cv2.resize does).
    """
    w, h = int(size_wh[0]), int(size_wh[1])
    H0, W0 = img.shape[:2]
    k = int(min(W0 / float(w), H0 / float(h)))      # whole shrink factor of both axes
    if k < 2:
        if (w, h) == (W0, H0):
            return img.copy()
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR_EXACT)
    small = _block_mean(img, k)
    # block j's centre is x = j*k + (k-1)/2; output u + 0.5 = (x + 0.5) * w / W0
    sx, sy = k * w / float(W0), k * h / float(H0)
    m = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], np.float64)
    return warp_exact(small, m, (w, h), border=cv2.BORDER_REPLICATE)


def _block_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``k x k`` blocks, rounded half up, in integers; a partial last block is averaged
    over the pixels it has."""
    H0, W0 = img.shape[:2]
    h, w = -(-H0 // k), -(-W0 // k)
    acc = np.zeros((h, w) + img.shape[2:], np.uint32)
    cnt_y = np.full(h, k, np.uint32)
    cnt_x = np.full(w, k, np.uint32)
    cnt_y[-1] = H0 - (h - 1) * k
    cnt_x[-1] = W0 - (w - 1) * k
    for dy in range(k):
        rows = img[dy::k]
        for dx in range(k):
            part = rows[:, dx::k]
            acc[:part.shape[0], :part.shape[1]] += part
    n = (cnt_y[:, None] * cnt_x[None, :]).reshape((h, w) + (1,) * (img.ndim - 2))
    return ((acc + n // 2) // n).astype(np.uint8)


def warp_exact(img: np.ndarray, m: np.ndarray, out_wh: Tuple[int, int],
               border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``cv2.warpAffine(img, m, out_wh, INTER_LINEAR, border)`` (constant: 0), the same bytes on every
    platform: source coordinates rounded to 1/32 pixel in float64 (numpy: one rounding per
    operation everywhere), then OpenCV's integer bilinear remap."""
    W, H = int(out_wh[0]), int(out_wh[1])
    inv = invert_affine(m)
    u = np.arange(W, dtype=np.float64)
    v = np.arange(H, dtype=np.float64)
    lim = float(1 << 19)
    if inv[0, 1] == 0.0 and inv[1, 0] == 0.0:
        # axis-aligned (every crop_matrix): x from the column only, y from the row only
        ix = _fixed(inv[0, 0] * u + inv[0, 2], lim)[None, :]
        iy = _fixed(inv[1, 1] * v + inv[1, 2], lim)[:, None]
    else:
        ix = _fixed(inv[0, 0] * u[None, :] + (inv[0, 1] * v[:, None] + inv[0, 2]), lim)
        iy = _fixed(inv[1, 0] * u[None, :] + (inv[1, 1] * v[:, None] + inv[1, 2]), lim)
    xy = np.empty((H, W, 2), np.int16)
    xy[..., 0] = ix >> _INTER_BITS
    xy[..., 1] = iy >> _INTER_BITS
    frac = ((iy & (_INTER_TAB - 1)) * _INTER_TAB + (ix & (_INTER_TAB - 1))).astype(np.uint16)
    frac = np.ascontiguousarray(np.broadcast_to(frac, (H, W)))
    return cv2.remap(img, xy, frac, cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0))


def _fixed(x: np.ndarray, lim: float) -> np.ndarray:
    """Coordinates → integers in 1/32 pixel (round half up), clipped to int16 pixel range."""
    return np.floor(np.clip(x, -lim, lim) * _INTER_TAB + 0.5).astype(np.int32)


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
    resized = resize_exact(img, (rw, rh))
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas[:rh, :rw] = resized
    real_scale = 0.5 * (rw / img.shape[1] + rh / img.shape[0])
    return normalize(canvas[None], meta), ResizeTransform(real_scale, (H, W), img.shape[:2])


# ----------------------------------------------------------------------------------------------
# one-stage: letterbox (resize keeping the aspect, pad to the fixed input)
# ----------------------------------------------------------------------------------------------
class LetterboxTransform:
    """Image → model input: ``u = (x + 0.5) * sx - 0.5 + left`` (per axis, pixel centres at
    integers); :meth:`input_to_image` is the inverse."""

    def __init__(self, sx: float, sy: float, left: int, top: int, in_hw: Tuple[int, int],
                 image_hw: Tuple[int, int]):
        self.sx, self.sy = float(sx), float(sy)
        self.left, self.top = int(left), int(top)
        self.in_hw = in_hw
        self.image_hw = image_hw

    def input_to_image(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.left + 0.5) / self.sx - 0.5
        out[..., 1] = (xy[..., 1] - self.top + 0.5) / self.sy - 0.5
        return out


def letterbox(img: np.ndarray, in_hw: Tuple[int, int], pad_value: int = 114, align: str = "center"
              ) -> "Tuple[np.ndarray, LetterboxTransform]":
    """BGR image → ``in_hw`` BGR canvas: resized keeping the aspect (Ultralytics' rounding: size
    ``round(w * r)``, centre padding ``round(d/2 -/+ 0.1)``), the rest filled with ``pad_value``."""
    H, W = int(in_hw[0]), int(in_hw[1])
    h, w = img.shape[:2]
    r = min(H / float(h), W / float(w))
    nw, nh = min(W, max(1, int(round(w * r)))), min(H, max(1, int(round(h * r))))
    if align == "center":
        left, top = int(round((W - nw) / 2.0 - 0.1)), int(round((H - nh) / 2.0 - 0.1))
    else:
        left, top = 0, 0
    resized = img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((H, W, 3), int(pad_value), np.uint8)
    canvas[top:top + nh, left:left + nw] = resized
    return canvas, LetterboxTransform(nw / float(w), nh / float(h), left, top, (H, W), (h, w))


def preprocess_letterbox(img: np.ndarray, meta: ModelMeta) -> "Tuple[np.ndarray, LetterboxTransform]":
    """One BGR image → (letterboxed model input ``[1,...]`` float32, transform back)."""
    img = check_image(img)
    lb = meta.get("letterbox") or {}
    canvas, tr = letterbox(img, (int(meta.input["height"]), int(meta.input["width"])),
                           int(lb.get("pad_value", 114)), str(lb.get("align", "center")))
    return normalize(canvas[None], meta), tr


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
        crops[i] = warp_exact(img, m, (W, H))
        mats.append(m)
    return normalize(crops, meta), mats
