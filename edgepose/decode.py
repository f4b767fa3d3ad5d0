"""Decoding network outputs into keypoints: peaks, sub-pixel refinement, PAF grouping.

Every function validates its input and runs one call into the C++ extension ``edgepose._ext``
(GIL released during the computation; thread-safe, one scratch workspace per thread). :mod:`edgepose.reference` holds a readable numpy version
of each algorithm; it defines the behaviour and is used when the extension is not built.

Coordinates
    All coordinates are heatmap pixels, with pixel centres at integer indices: the value
    ``heatmaps[..., y, x]`` sits at ``(x, y)``. A pipeline maps a heatmap point to model-input
    pixels with ``x_in = (x_hm + heatmap_offset) * stride - heatmap_offset`` (same for y;
    ``stride`` and ``heatmap_offset`` come from the model metadata, see
    :func:`edgepose.preprocess.heatmap_to_input`), then to the image with its preprocessing
    transform.

Layouts (``layout``)
    ``"CHW"`` (default): each item is planar ``[C,H,W]`` (NCHW model outputs). ``"HWC"``: each
    item is interleaved ``[H,W,C]`` (NHWC outputs: tf-pose, every TFLite model). A leading batch
    axis N is implied by the rank (``find_peaks`` and ``decode_topdown`` take ``[N,C,H,W]`` /
    ``[N,H,W,C]``). Arrays must be C-contiguous in their layout; the extension reads an HWC array
    in place through its strides (no transposed copy) and gives bit-identical results to the CHW
    path on the transposed array. Batch item 0 of a contiguous model output, ``out[0]``, is
    contiguous: pass it as it is.

Output affine (``affine``)
    ``decode_bottomup``, ``group_people`` and ``decode_topdown`` take an optional per-axis affine
    ``(sx, bx, sy, by)`` (4 finite numbers) applied to the found keypoints in the extension:
    ``x' = sx * x + bx``, ``y' = sy * y + by`` (computed in double, rounded to float32). A
    pipeline folds heatmap -> model input -> image into it, e.g. a bottom-up model with stride s,
    heatmap offset o and resize scale k: ``sx = sy = s / k``, ``bx = by = (o * (s - 1) + 0.5) / k
    - 0.5``. Missing keypoints stay exactly ``(-1, -1, 0)``. ``decode_topdown`` also takes an
    ``[N,4]`` array: one affine per item (per box). ``None`` (default): heatmap pixels.

Peaks (tie rule)
    A pixel is a peak when its value is strictly above ``threshold``, strictly greater than its
    8-neighbours that come before it in row-major scan order (W, NW, N, NE) and greater than or
    equal to the neighbours after it (E, SW, S, SE); outside the map counts as -inf. A plateau
    of equal values thus gives one peak: its first pixel in scan order. Peaks of a channel are
    returned best first (score descending; equal scores in scan order), at most ``max_peaks``.
    The score of a peak is the heatmap value at its pixel. A peak whose refined position equals
    that of a stronger peak of its channel (two DARK steps clipped onto one pixel) is the same
    detection: it is dropped and the next peak takes its place, so grouping never sees two
    candidates that tie exactly.

Refinement (``refine``)
    ``none``      the pixel centre.
    ``quarter``   HRNet / SimpleBaseline: 0.25 px towards the higher horizontal and vertical
                  neighbour (per axis; no shift when the neighbours are equal or missing).
    ``dark``      DARK (Zhang et al., CVPR 2020): the heatmap is smoothed with a
                  ``dark_kernel`` x ``dark_kernel`` Gaussian (OpenCV's sigma for that size, zero
                  outside the map) -- only in the window around the peak -- and the peak moves
                  by the Newton step ``-H^-1 g`` of the log of the smoothed map (clipped to
                  +-1 px). Near the border (5x5 window not inside the map) or when the Hessian
                  is not negative definite it falls back to ``quarter``.
    ``centroid``  the ``max(value, 0)``-weighted centroid of the 3x3 window (clipped to the map).

Top-down
    Per map the argmax (first in scan order on ties), its value as score, then the refinement.

Grouping (OpenPose-style, bottom-up)
    ``limbs`` rows are ``(part_a, part_b, paf_x_channel, paf_y_channel)``; they are processed in
    table order. For every candidate pair of peaks (a of part_a, b of part_b) the PAF is sampled
    bilinearly at ``paf_samples`` evenly spaced points from a to b (endpoints included) and
    projected on the unit vector a -> b. The pair is a valid connection when more than
    ``min_sample_fraction * paf_samples`` projections exceed ``paf_score_threshold`` and its
    score -- the mean projection plus OpenPose's length prior
    ``min(0.5 * map_height / length - 1, 0)`` -- is positive. Per limb, connections are matched
    so that each peak is used at most once: ``greedy`` by descending score (OpenPose,
    Lightweight OpenPose) or ``hungarian`` (largest total score). Each matched connection, in
    descending score: starts a new person when neither peak belongs to one; adds the free end
    to the person owning the other end when that person has no such part yet; adds its score
    to the person owning both ends (redundant limbs such as ear-shoulder); merges two people
    when it links them and they share no keypoint type (otherwise it is ignored).
    People with fewer than ``min_parts`` keypoints or a score below ``min_person_score`` are
    dropped.

Person score
    ``quality * sqrt(found / K)``: quality is the mean of the person's keypoint scores (peak
    values) and connection scores, ``(sum kp + sum conn) / (keypoints + connections)`` (the
    measure OpenPose filters on); ``found / K`` is the fraction of the K keypoint types found.
    A complete, confident person scores about 1, a confident 3-keypoint fragment of CMU-18
    about 0.4. ``min_person_score`` applies to this score. Measured on tf-pose (4 COCO images
    at 368 px: AP 0.631; arm_wrestling.mp4 at 256 px: median 2 people per frame with the
    defaults) it ranks and filters better than the plain mean (AP 0.608, fragments kept) or
    Lightweight OpenPose's ``sum * (parts - 1)`` with its filter (AP 0.634, median 3.5 people).
    People are returned by descending score (ties in the order they were formed).
"""
from typing import Sequence, Tuple

import numpy as np

from .errors import InputError
from .metadata import DECODE_DEFAULTS

# the one table of decode defaults (edgepose.metadata.DECODE_DEFAULTS); exported models carry it
_BU = DECODE_DEFAULTS["bottomup"]

try:  # the compiled core; the numpy reference stands in when it is not built
    from . import _ext  # type: ignore
except ImportError:  # pragma: no cover - exercised only without a build
    _ext = None

from .reference import REFINES  # noqa: E402  (the one list of refinement names)
MATCHINGS = ("greedy", "hungarian")
LAYOUTS = ("CHW", "HWC")

__all__ = ["find_peaks", "decode_topdown", "group_people", "decode_bottomup", "select_onestage", "DecodeError",
           "DecodeTypeError", "REFINES", "MATCHINGS", "LAYOUTS", "has_extension"]


class DecodeError(InputError, ValueError):
    """Bad input to a decode function (shape, values, options). Also a ValueError."""


class DecodeTypeError(InputError, TypeError):
    """Input of the wrong type or dtype. Also a TypeError."""


def has_extension() -> bool:
    """Whether the compiled core is available (else the numpy reference runs)."""
    return _ext is not None


# ----------------------------------------------------------------------------------------------
# validation (cheap checks here; finiteness is checked inside the extension in the same pass)
# ----------------------------------------------------------------------------------------------
def _array(a, name: str, ndims: Sequence[int], dtype=np.float32) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise DecodeTypeError("%s must be a numpy array, got %s" % (name, type(a).__name__))
    if a.dtype != dtype:
        raise DecodeTypeError("%s must be %s, got %s" % (name, np.dtype(dtype).name, a.dtype))
    if a.ndim not in ndims:
        raise DecodeError("%s must have %s dimensions, got shape %s"
                          % (name, " or ".join(str(d) for d in ndims), a.shape))
    if not a.flags["C_CONTIGUOUS"]:
        raise DecodeError("%s must be C-contiguous (use np.ascontiguousarray)" % name)
    if not a.flags["ALIGNED"]:
        raise DecodeError("%s must be aligned (use a.copy())" % name)
    return a


def _nonempty(a: np.ndarray, name: str) -> None:
    if a.size == 0:
        raise DecodeError("%s is empty: shape %s" % (name, a.shape))


def _finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise DecodeError("%s contains NaN or inf" % name)


def _refine(refine: str, dark_kernel: int) -> None:
    if refine not in REFINES:
        raise DecodeError("refine must be one of %s, got %r" % (", ".join(REFINES), refine))
    if not isinstance(dark_kernel, (int, np.integer)) or dark_kernel < 1 or dark_kernel % 2 == 0 \
            or dark_kernel > 99:
        raise DecodeError("dark_kernel must be an odd integer in 1..99, got %r" % (dark_kernel,))


def _int(v, name: str, lo: int, hi: int = 1 << 30) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise DecodeError("%s must be an integer in %d..%d, got %r" % (name, lo, hi, v))
    return int(v)


def _float(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise DecodeError("%s must be a number, got %r" % (name, v)) from None
    if not np.isfinite(f):
        raise DecodeError("%s must be finite, got %r" % (name, v))
    return f


def _layout(layout) -> str:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise DecodeError("layout must be 'CHW' or 'HWC', got %r" % (layout,))
    return layout


def _to_chw(a: np.ndarray, layout: str) -> np.ndarray:
    """A view of ``[...,H,W,C]`` as ``[...,C,H,W]`` (for the numpy reference)."""
    if layout == "CHW":
        return a
    return np.moveaxis(a, -1, -3)


def _dims(a: np.ndarray, layout: str) -> Tuple[int, int, int]:
    """(C, H, W) of one item of ``a`` in ``layout``."""
    if layout == "CHW":
        return a.shape[-3], a.shape[-2], a.shape[-1]
    return a.shape[-1], a.shape[-3], a.shape[-2]


def _affine(affine, rows: int = None):
    """None, or the affine as float64 ``[4]`` (or ``[rows,4]`` when ``rows`` is given)."""
    if affine is None:
        return None
    what = "affine must be None or 4 finite numbers (sx, bx, sy, by)"
    if rows is not None:
        what += " or an [N,4] array of them"
    try:
        a = np.asarray(affine)
    except Exception:
        raise DecodeError(what) from None
    if a.dtype.kind not in "iuf":
        raise DecodeError("%s, got %s of dtype %s" % (what, type(affine).__name__, a.dtype))
    a = a.astype(np.float64)
    if a.shape != (4,) and (rows is None or a.shape != (rows, 4)):
        raise DecodeError("%s, got shape %s" % (what, a.shape))
    if not np.isfinite(a).all():
        raise DecodeError("%s, got a NaN or inf" % what)
    return a


def _apply_affine(xy: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``xy [..., 2]`` float32 through ``a`` (``[4]`` or ``[N,4]`` for ``xy [N, K, 2]``), in
    float64 rounded to float32 as the extension does."""
    a = a.reshape((-1,) + (1,) * (xy.ndim - 2) + (4,))
    out = np.empty(xy.shape, np.float32)
    out[..., 0] = a[..., 0] * xy[..., 0].astype(np.float64) + a[..., 1]
    out[..., 1] = a[..., 2] * xy[..., 1].astype(np.float64) + a[..., 3]
    return out


def _limbs(limbs) -> np.ndarray:
    """The limb table as C-contiguous int64 ``[L,4]`` (ranges are checked by the callee)."""
    if isinstance(limbs, np.ndarray) and limbs.dtype == np.int64 and limbs.ndim == 2 \
            and limbs.flags["C_CONTIGUOUS"] and limbs.flags["ALIGNED"]:
        return limbs
    try:
        arr = np.asarray(limbs)
    except Exception:
        raise DecodeError("limbs must be an [L,4] integer table") from None
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.dtype.kind not in "iu":
        raise DecodeTypeError("limbs must hold integers, got %s" % arr.dtype)
    return np.require(arr, np.int64, ["C", "A"])


def _check_limbs_py(arr: np.ndarray, num_parts: int, num_pafs: int) -> None:
    """Range checks of the limb table for the numpy fallback (the extension does its own)."""
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DecodeError("limbs must be an [L,4] table (part_a, part_b, paf_x, paf_y), got shape %s"
                          % (arr.shape,))
    if len(arr):
        if arr[:, :2].min() < 0 or arr[:, :2].max() >= num_parts:
            raise DecodeError("limbs: part index out of range 0..%d" % (num_parts - 1))
        if arr[:, 2:].min() < 0 or arr[:, 2:].max() >= num_pafs:
            raise DecodeError("limbs: PAF channel out of range 0..%d" % (num_pafs - 1))


def _grouping(paf_samples, paf_score_threshold, min_sample_fraction, min_parts, min_person_score,
              matching) -> tuple:
    if matching not in MATCHINGS:
        raise DecodeError("matching must be one of %s, got %r" % (", ".join(MATCHINGS), matching))
    return (_int(paf_samples, "paf_samples", 1, 1000),
            _float(paf_score_threshold, "paf_score_threshold"),
            _float(min_sample_fraction, "min_sample_fraction"),
            _int(min_parts, "min_parts", 0),
            _float(min_person_score, "min_person_score"),
            matching)


def _call(fn, args, validate):
    """Run the extension; its errors become DecodeError / DecodeTypeError (one line).

    The extension validates everything itself. pybind11's own argument-conversion TypeError
    (an option of the wrong type) is multi-line, so on a TypeError the Python checks run first
    to name the problem.
    """
    try:
        return fn(*args)
    except TypeError as e:
        validate()
        raise DecodeTypeError(str(e).splitlines()[0]) from None
    except ValueError as e:
        raise DecodeError(str(e)) from None


_warned_fallback = []


def _fast() -> bool:
    if _ext is None and not _warned_fallback:
        from .log import logger
        _warned_fallback.append(True)
        logger.warning("the C++ extension edgepose._ext is not importable: decoding runs in numpy "
                       "(edgepose.reference), about 100x slower; reinstall edgepose to build it")
    return _ext is not None


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1, max_peaks: int = 32,
               refine: str = "quarter", dark_kernel: int = 11, layout: str = "CHW"
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Local maxima of each heatmap channel, best first.

    heatmaps  float32 ``[C,H,W]`` or ``[N,C,H,W]`` (``layout="HWC"``: ``[H,W,C]`` or
              ``[N,H,W,C]``), C-contiguous, finite.
    Returns ``(peaks, offsets)``: peaks float32 ``[M,3]`` rows ``(x, y, score)`` in heatmap
    pixels; offsets int64 ``[C+1]`` (or ``[N*C+1]``, item-major), CSR: channel c's peaks are
    ``peaks[offsets[c]:offsets[c+1]]``, by descending score (at most ``max_peaks``).
    See the module docstring for the tie rule, the refinements and the layouts.
    """
    def validate():
        lay = _layout(layout)
        hm = _array(heatmaps, "heatmaps", (3, 4))
        _nonempty(hm, "heatmaps")
        _refine(refine, dark_kernel)
        return hm, lay, _float(threshold, "threshold"), _int(max_peaks, "max_peaks", 0)

    if _fast():
        return _call(_ext.find_peaks, (heatmaps, threshold, max_peaks, refine, dark_kernel,
                                       layout), validate)
    hm, lay, thr, mp = validate()
    _finite(hm, "heatmaps")
    from . import reference

    return reference.find_peaks(_to_chw(hm, lay), thr, mp, refine, int(dark_kernel))


def decode_topdown(heatmaps: np.ndarray, refine: str = "dark", dark_kernel: int = 11,
                   layout: str = "CHW", affine=None) -> Tuple[np.ndarray, np.ndarray]:
    """Top-down decode: float32 ``[N,K,H,W]`` (``layout="HWC"``: ``[N,H,W,K]``) → (coords
    float32 ``[N,K,2]`` (x, y) in heatmap pixels, or through ``affine`` -- 4 numbers, or an
    ``[N,4]`` array of one affine per item --, scores float32 ``[N,K]`` = the maximum value of
    each map). N may be 0."""
    def validate():
        lay = _layout(layout)
        hm = _array(heatmaps, "heatmaps", (4,))
        _refine(refine, dark_kernel)
        if hm.shape[0]:
            _nonempty(hm, "heatmaps")
        return hm, lay, _affine(affine, hm.shape[0])

    if _fast():
        return _call(_ext.decode_topdown, (heatmaps, refine, dark_kernel, layout, affine),
                     validate)
    hm, lay, aff = validate()
    K = _dims(hm, lay)[0]
    if hm.shape[0] == 0:
        return np.zeros((0, K, 2), np.float32), np.zeros((0, K), np.float32)
    _finite(hm, "heatmaps")
    from . import reference

    coords, scores = reference.decode_topdown(_to_chw(hm, lay), refine, int(dark_kernel))
    return (coords if aff is None else _apply_affine(coords, aff)), scores


def group_people(peaks: np.ndarray, offsets: np.ndarray, pafs: np.ndarray, limbs,
                 num_keypoints: int = None, paf_samples: int = _BU["paf_samples"],
                 paf_score_threshold: float = _BU["paf_score_threshold"],
                 min_sample_fraction: float = _BU["min_sample_fraction"],
                 min_parts: int = _BU["min_parts"], min_person_score: float = _BU["min_person_score"],
                 matching: str = _BU["matching"], layout: str = "CHW", affine=None
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Assemble people from per-keypoint peaks and PAFs (see the module docstring).

    peaks    float32 ``[M,3]`` (x, y, score), offsets int64 ``[K+1]`` as from :func:`find_peaks`
    pafs     float32 ``[2L,H,W]`` (``layout="HWC"``: ``[H,W,2L]``) on the same grid as the peaks
    limbs    int ``[L,4]`` rows (part_a, part_b, paf_x_channel, paf_y_channel)
    num_keypoints  K, optional: checked against ``len(offsets) - 1``
    affine   optional ``(sx, bx, sy, by)`` applied to the found keypoints' (x, y)
    Returns ``(people, person_scores)``: float32 ``[P,K,3]`` (x, y, score; a missing keypoint is
    ``(-1, -1, 0)``) and float32 ``[P]``, by descending person score.
    """
    lt = _limbs(limbs)
    if num_keypoints is not None:
        n = len(offsets) - 1 if hasattr(offsets, "__len__") else None
        if _int(num_keypoints, "num_keypoints", 0) != n:
            raise DecodeError("num_keypoints=%s but offsets describe %s keypoint types"
                              % (num_keypoints, n))
    opts = (paf_samples, paf_score_threshold, min_sample_fraction, min_parts, min_person_score,
            matching)

    def validate():
        lay = _layout(layout)
        pk = _array(peaks, "peaks", (2,))
        if pk.shape[1] != 3:
            raise DecodeError("peaks must be [M,3] (x, y, score), got shape %s" % (pk.shape,))
        off = _array(offsets, "offsets", (1,), np.int64)
        _nonempty(off, "offsets")
        pf = _array(pafs, "pafs", (3,))
        _nonempty(pf, "pafs")
        return pk, off, pf, lay, _grouping(*opts), _affine(affine)

    if _fast():
        return _call(_ext.group_people, (peaks, offsets, pafs, lt) + opts + (layout, affine),
                     validate)
    pk, off, pf, lay, gopts, aff = validate()
    if off[0] != 0 or off[-1] != len(pk) or np.any(np.diff(off) < 0):
        raise DecodeError("offsets must run from 0 to len(peaks)=%d" % len(pk))
    _check_limbs_py(lt, len(off) - 1, _dims(pf, lay)[0])
    _finite(pk, "peaks")
    _finite(pf, "pafs")
    from . import reference

    return reference.group_people(pk, off, _to_chw(pf, lay), lt, len(off) - 1, *gopts,
                                  affine=aff)


def decode_bottomup(heatmaps: np.ndarray, pafs: np.ndarray, limbs, refine: str = _BU["refine"],
                    peak_threshold: float = _BU["peak_threshold"], max_peaks: int = _BU["max_peaks"],
                    paf_samples: int = _BU["paf_samples"],
                    paf_score_threshold: float = _BU["paf_score_threshold"],
                    min_sample_fraction: float = _BU["min_sample_fraction"],
                    min_parts: int = _BU["min_parts"], min_person_score: float = _BU["min_person_score"],
                    matching: str = _BU["matching"], dark_kernel: int = _BU["dark_kernel"],
                    layout: str = "CHW", affine=None) -> Tuple[np.ndarray, np.ndarray]:
    """Peaks + grouping in one extension call.

    heatmaps float32 ``[K,H,W]`` (keypoint channels only, no background), pafs float32
    ``[2L,H,W]`` (same H, W); with ``layout="HWC"`` ``[H,W,K]`` and ``[H,W,2L]``, read in place.
    ``affine``: optional ``(sx, bx, sy, by)`` applied to the found keypoints (see the module
    docstring). Returns what :func:`group_people` returns.

    Defaults (measured on tf-pose maps, 368 px input height, 4 COCO images; see
    tests/test_realmaps.py): ``refine="dark"`` with ``dark_kernel=5`` refines peaks on the
    stride-8 maps to COCO keypoint AP 0.631 (``quarter``: 0.561, ``none``: 0.436,
    dark_kernel 11: 0.606), above Lightweight OpenPose's x4-upsampling decode (0.576).
    """
    lt = _limbs(limbs)
    gopts = (paf_samples, paf_score_threshold, min_sample_fraction, min_parts, min_person_score,
             matching)

    def validate():
        lay = _layout(layout)
        hm = _array(heatmaps, "heatmaps", (3,))
        _nonempty(hm, "heatmaps")
        pf = _array(pafs, "pafs", (3,))
        _nonempty(pf, "pafs")
        if _dims(pf, lay)[1:] != _dims(hm, lay)[1:]:
            raise DecodeError("pafs %s and heatmaps %s differ in H, W" % (pf.shape, hm.shape))
        _refine(refine, dark_kernel)
        return (hm, pf, lay, _float(peak_threshold, "peak_threshold"),
                _int(max_peaks, "max_peaks", 0), _grouping(*gopts), _affine(affine))

    if _fast():
        return _call(_ext.decode_bottomup, (heatmaps, pafs, lt, refine, peak_threshold, max_peaks,
                                            dark_kernel) + gopts + (layout, affine), validate)
    hm, pf, lay, thr, mp, g, aff = validate()
    K, C = _dims(hm, lay)[0], _dims(pf, lay)[0]
    _check_limbs_py(lt, K, C)
    _finite(hm, "heatmaps")
    _finite(pf, "pafs")
    from . import reference

    peaks, offsets = reference.find_peaks(_to_chw(hm, lay), thr, mp, refine, int(dark_kernel))
    return reference.group_people(peaks, offsets, _to_chw(pf, lay), lt, K, *g, affine=aff)


def select_onestage(predictions: np.ndarray, layout: str, num_keypoints: int, score_threshold: float,
                    nms: str = "iou", nms_threshold: float = 0.7, max_det: int = 100,
                    box_scale=(1.0, 1.0), keypoint_scale=(1.0, 1.0), sigmas=None,
                    keypoint_threshold: float = 0.0) -> np.ndarray:
    """One-stage (YOLO-pose) selection: the anchors kept by the score threshold and greedy NMS,
    best first (int64 indices). ``predictions`` float32 ``[5+3K, N]`` (``layout="CN"``) or
    ``[N, 5+3K]`` (``"NC"``), optionally with a batch of 1, read in place. ``nms``: ``"iou"``
    (boxes), ``"oks"`` (poses; needs ``sigmas``) or ``"none"``. The exact rule, including the
    unit scales and ties: :func:`edgepose.reference.onestage_select`."""
    def validate():
        a = _array(predictions, "predictions", (2, 3))
        _nonempty(a, "predictions")
        if layout not in ("CN", "NC"):
            raise DecodeError("layout must be 'CN' or 'NC', got %r" % (layout,))
        if nms not in ("iou", "oks", "none"):
            raise DecodeError("nms must be 'iou', 'oks' or 'none', got %r" % (nms,))
        return a

    args = (predictions, layout, int(num_keypoints), float(score_threshold), nms, float(nms_threshold),
            int(max_det), tuple(float(v) for v in box_scale), tuple(float(v) for v in keypoint_scale),
            None if sigmas is None else np.asarray(sigmas, np.float64), float(keypoint_threshold))
    if _fast():
        return _call(_ext.select_onestage, args, validate)
    a = validate()
    C = a.shape[-2] if layout == "CN" else a.shape[-1]
    if C != 5 + 3 * int(num_keypoints):
        raise DecodeError("predictions %s in layout %s hold %d values per anchor, not 5 + 3 x %d"
                          % (a.shape, layout, C, num_keypoints))
    _finite(a, "predictions")
    from . import reference

    return reference.onestage_select(a, *args[1:])
