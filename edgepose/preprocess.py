"""The one preprocessing path: runtime, calibration and evaluation all call these functions.

Coordinates: image and model-input coordinates are continuous with pixel centres at integer
indices (OpenCV's convention: pixel ``(row r, col c)`` has its centre at ``x=c, y=r``).
Heatmap coordinates follow the same rule on the heatmap grid; ``heatmap_to_input`` maps them to
model-input pixels with the model's ``stride`` and ``heatmap_offset``.

Images enter as OpenCV BGR ``uint8`` ``H×W×3`` arrays.
"""
import functools
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
# crops; shrinking is INTER_AREA's box average computed in integers.
# scripts/rpi_emulated.sh compares the preprocessed inputs of x86 and aarch64.
_INTER_BITS = 5                 # OpenCV's INTER_BITS: coordinates in 1/32 pixel
_INTER_TAB = 1 << _INTER_BITS


def resize_exact(img: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """``cv2.resize`` to ``(w, h)`` (pixel centres: ``u + 0.5 = (x + 0.5) * w / W``), the same
    bytes on every platform.

    Shrinking: INTER_AREA's box average (each output pixel the mean of its footprint, edge pixels
    weighted by their overlap) computed in integers (weights in 1/2048, one rounding at the end:
    it equals cv2.INTER_AREA but for one level in under 1 % of pixels). Enlarging:
    INTER_LINEAR_EXACT. Mixed (one axis up, one down) or equal sizes: INTER_LINEAR_EXACT.
    """
    w, h = int(size_wh[0]), int(size_wh[1])
    H0, W0 = img.shape[:2]
    if (w, h) == (W0, H0):
        return img.copy()
    if w <= W0 and h <= H0:
        return _area_exact(img, w, h)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR_EXACT)


_AREA_BITS = 11                 # weights in 1/2048: 255 * 2**22 fits int32

try:        # the C++ kernel (cpp_ext/resize.cpp); the numpy path below computes the same bytes
    from ._ext import area_resize as _area_resize_ext  # type: ignore
except ImportError:  # pragma: no cover - a source tree without the built extension
    _area_resize_ext = None


@functools.lru_cache(maxsize=32)
def _area_taps(n_in: int, n_out: int) -> "Tuple[np.ndarray, np.ndarray]":
    """Per output pixel, the input pixels its footprint ``[j*s, (j+1)*s)`` overlaps (``s`` =
    n_in / n_out) and their integer weights (overlap / s in 1/2048, as differences of the rounded
    running sums, so each is within 1 of exact, none is negative and they sum to 2048):
    ``[n_out, K]`` int64 indices and int32 weights. float64 numpy arithmetic (one rounding per
    operation, sequential sums): the same taps on every platform."""
    s = n_in / float(n_out)
    K = int(math.ceil(s)) + 1
    start = np.arange(n_out, dtype=np.float64) * s
    pix = np.floor(start)[:, None] + np.arange(K, dtype=np.float64)[None, :]
    overlap = np.minimum(pix + 1.0, (start + s)[:, None]) - np.maximum(pix, start[:, None])
    frac = np.clip(overlap, 0.0, None) / s
    one = 1 << _AREA_BITS
    run = np.floor(np.cumsum(frac * one, axis=1) + 0.5)
    run[:, -1] = one                                    # the whole footprint: exactly 1
    wq = np.diff(run, axis=1, prepend=0.0).astype(np.int32)
    idx = np.minimum(pix.astype(np.int64), n_in - 1)
    idx.flags.writeable = wq.flags.writeable = False    # cached: shared by every call
    return idx, wq


def _area_exact(img: np.ndarray, w: int, h: int, use_ext: bool = True) -> np.ndarray:
    """INTER_AREA shrink in integers: rows first (int32 sums of uint8 x weight), then columns,
    one rounding shift at the end; in C++ where the extension is built, else in numpy (the same
    bytes)."""
    H0, W0 = img.shape[:2]
    iy, wy = _area_taps(H0, h)
    ix, wx = _area_taps(W0, w)
    if use_ext and _area_resize_ext is not None:
        return _area_resize_ext(np.ascontiguousarray(img), iy, wy, ix, wx, _AREA_BITS)
    tail = (1,) * (img.ndim - 1)
    rows = np.zeros((h,) + img.shape[1:], np.int32)
    tmp = np.empty_like(rows)
    for t in range(iy.shape[1]):
        np.multiply(img[iy[:, t]], wy[:, t].reshape((h,) + tail), out=tmp)
        rows += tmp
    out = np.full((h, w) + img.shape[2:], 1 << (2 * _AREA_BITS - 1), np.int32)
    tmp = np.empty_like(out)
    tail = (1,) * (img.ndim - 2)
    for t in range(ix.shape[1]):
        np.multiply(np.take(rows, ix[:, t], axis=1), wx[:, t].reshape((1, w) + tail), out=tmp)
        out += tmp
    out >>= 2 * _AREA_BITS
    return out.astype(np.uint8)


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
    # bilinear at every scale as Ultralytics trains, in OpenCV's bit-exact variant (see resize_exact)
    resized = img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR_EXACT)
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


def crop_matrix(center: np.ndarray, size: np.ndarray, out_wh: Tuple[int, int], angle: float = 0.0) -> np.ndarray:
    """2×3 affine image → crop: the box ``centre ± size/2`` onto the crop's full extent.

    Continuous coordinates: the box interval maps onto ``[-0.5, W-0.5]`` so that crop pixel
    centres are integers. ``u = (x - cx) * W / bw + (W - 1) / 2``. ``angle`` (radians): the
    box is rotated by it (clockwise on the screen, image y pointing down), i.e. the crop's x
    axis is the image direction ``(cos a, sin a)`` (MediaPipe's ROI rotation).
    """
    W, H = out_wh
    sx = W / float(size[0])
    sy = H / float(size[1])
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c * sx, s * sx], [-s * sy, c * sy]], np.float64)
    t = np.array([(W - 1) / 2.0, (H - 1) / 2.0]) - r @ np.asarray(center, np.float64)
    return np.concatenate([r, t[:, None]], 1)


def preprocess_crops(img: np.ndarray, mats: Sequence[np.ndarray], meta: ModelMeta) -> np.ndarray:
    """One BGR image + crop matrices (:func:`crop_matrix`) → batch ``[B,...]`` float32, each
    crop warped as :func:`preprocess_topdown` warps its boxes (black outside the image)."""
    img = check_image(img)
    H, W = int(meta.input["height"]), int(meta.input["width"])
    crops = np.zeros((len(mats), H, W, 3), np.uint8)
    for i, m in enumerate(mats):
        crops[i] = warp_exact(img, m, (W, H))
    return normalize(crops, meta)


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
