"""People with identities across frames, and steady keypoints.

:class:`Tracker` gives each person a ``track_id`` that it keeps from frame to frame;
:class:`OneEuroFilter` smooths every keypoint coordinate of a track (on by default).

Association (per frame)
    A track's pose is predicted to the frame's time (its last pose moved by its box velocity,
    for at most ``max_predict_s``). Similarity of a person to a track is
    ``oks_weight * OKS + (1 - oks_weight) * IoU``: OKS of the person against the track's
    predicted pose (:func:`edgepose.evaluate.oks_matrix`, the track's area) and IoU of their
    keypoint boxes (the detector's boxes for top-down results). Pairs under
    ``match_threshold`` never match; the rest are assigned one-to-one maximising the total
    similarity (Hungarian, ``scipy.optimize.linear_sum_assignment``).
    Two passes, ByteTrack's idea: people scoring at least ``high_score`` are matched first, to
    every live track (confirmed, tentative or lost); then people scoring in
    ``[low_score, high_score)`` only to the confirmed tracks left that were seen in the previous
    frame. A low-score person never starts a track; under ``low_score`` a person is ignored.
Birth and death (hysteresis)
    An unmatched high-score person starts a tentative track; it is confirmed, and only then
    gets an ID, after ``min_hits`` consecutive matched frames (at once in the first frame).
    A tentative track that misses a frame is dropped. A confirmed track that misses frames is
    lost: it is not reported, but keeps its ID and can be matched again (recovery) until it has
    been lost for more than ``max_lost`` frames.
Output
    :meth:`Tracker.update` returns the confirmed tracks matched in this frame as a
    :class:`~edgepose.results.PoseResult` with ``track_ids``, keypoints smoothed (if on) and the
    person's raw keypoints in ``raw_keypoints``. IDs count up from 1 and are never reused.

Smoothing
    One Euro filter (Casiez, Roussel, Vogel, CHI 2012) per keypoint coordinate, time-based (a
    frame's ``time_s``, so dropped frames are handled). The cutoff frequency is
    ``min_cutoff + beta * |velocity|`` with the velocity in person heights per second (the
    track's box height), so one ``beta`` fits any resolution. A keypoint missing in a frame is
    reported missing and leaves its filter untouched; after a gap of more than
    ``reset_after_s`` it restarts from its next raw value, so a stale position never drags it.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .results import PoseResult

__all__ = ["Tracker", "OneEuroFilter", "TRACK_DEFAULTS", "SMOOTH_DEFAULTS", "check_options"]

# The one table of tracker and smoothing defaults (a model's metadata may carry its own
# "tracking"/"smoothing" dicts; the CLI's options override both).
TRACK_DEFAULTS: Dict[str, float] = {
    "oks_weight": 0.5,
    "match_threshold": 0.2,
    "high_score": 0.3,
    "low_score": 0.1,
    "min_hits": 3,
    "max_lost": 30,
    "max_predict_s": 0.5,
}
SMOOTH_DEFAULTS: Dict[str, float] = {
    "min_cutoff": 1.0,     # Hz: the cutoff of a still keypoint
    "beta": 0.3,           # Hz per (person height per second)
    "d_cutoff": 1.0,       # Hz: the cutoff of the velocity estimate
    "reset_after_s": 0.5,
}
_RANGES = {
    "oks_weight": (0.0, 1.0), "match_threshold": (0.0, 1.0), "high_score": (0.0, math.inf),
    "low_score": (0.0, math.inf), "min_hits": (1, 1000), "max_lost": (0, 100000),
    "max_predict_s": (0.0, 3600.0), "min_cutoff": (1e-6, 1e6), "beta": (0.0, 1e6),
    "d_cutoff": (1e-6, 1e6), "reset_after_s": (0.0, 3600.0),
}


def check_options(opts: Dict[str, float], table: Dict[str, float], what: str) -> Dict[str, float]:
    """``table`` updated with ``opts`` (None values ignored), every value checked: one-line
    InputError naming the option for an unknown name, a non-number or a value out of range."""
    out = dict(table)
    for k, v in opts.items():
        if v is None:
            continue
        if k not in table:
            raise InputError("unknown %s option %r (known: %s)" % (what, k, ", ".join(sorted(table))))
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise InputError("%s option %s must be a number, got %r" % (what, k, v))
        lo, hi = _RANGES[k]
        if not (math.isfinite(f) and lo <= f <= hi):
            raise InputError("%s option %s must be in [%g, %g], got %r" % (what, k, lo, hi, v))
        out[k] = int(f) if isinstance(table[k], int) else f
    if what == "tracker" and out["low_score"] > out["high_score"]:
        raise InputError("tracker option low_score (%g) must not exceed high_score (%g)"
                         % (out["low_score"], out["high_score"]))
    return out


def _alpha(cutoff: np.ndarray, dt: np.ndarray) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over ``K`` 2-D points (one track's keypoints), vectorised.

    ``__call__(xy [K,2], found [K] bool, t, scale)`` returns the filtered ``[K,2]`` (rows of
    points not found are returned unchanged and their state is kept)."""

    def __init__(self, num_points: int, min_cutoff: float = SMOOTH_DEFAULTS["min_cutoff"],
                 beta: float = SMOOTH_DEFAULTS["beta"], d_cutoff: float = SMOOTH_DEFAULTS["d_cutoff"],
                 reset_after_s: float = SMOOTH_DEFAULTS["reset_after_s"]):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset_after_s = float(reset_after_s)
        self.x = np.zeros((num_points, 2), np.float64)
        self.dx = np.zeros((num_points, 2), np.float64)
        self.t = np.full(num_points, -np.inf)

    def __call__(self, xy: np.ndarray, found: np.ndarray, t: float, scale: float) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        dt = t - self.t
        fresh = found & ~(dt <= self.reset_after_s)          # first sight or after a long gap
        go = found & ~fresh & (dt > 0)
        if np.any(go):
            d = dt[go][:, None]
            x0 = self.x[go]
            dx = (xy[go] - x0) / d
            a_d = _alpha(self.d_cutoff, d)
            dxh = a_d * dx + (1.0 - a_d) * self.dx[go]
            speed = np.linalg.norm(dxh, axis=1, keepdims=True) / max(float(scale), 1e-6)
            a = _alpha(self.min_cutoff + self.beta * speed, d)
            self.x[go] = a * xy[go] + (1.0 - a) * x0
            self.dx[go] = dxh
            self.t[go] = t
        if np.any(fresh):
            self.x[fresh] = xy[fresh]
            self.dx[fresh] = 0.0
            self.t[fresh] = t
        out = xy.copy()
        out[found] = self.x[found]
        return out


def _boxes_xyxy(kp: np.ndarray, boxes: Optional[np.ndarray]) -> np.ndarray:
    """``[P,4]`` x1, y1, x2, y2: the given xywh boxes, else the found keypoints' extent."""
    if boxes is not None:
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
    out = np.zeros((len(kp), 4), np.float64)
    for i, k in enumerate(kp):
        v = k[k[:, 2] > 0]
        if len(v):
            out[i] = (v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max())
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N,M]`` of xyxy boxes (degenerate boxes get 1 px of extent)."""
    a = a.copy()
    b = b.copy()
    for x in (a, b):
        x[:, 2] = np.maximum(x[:, 2], x[:, 0] + 1.0)
        x[:, 3] = np.maximum(x[:, 3], x[:, 1] + 1.0)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _assign(sim: np.ndarray, threshold: float):
    """One-to-one pairs ``(i, j)`` maximising the total similarity, each with sim >= threshold."""
    if sim.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    ok = sim >= threshold
    cost = np.where(ok, 1.0 - sim, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


class _Track:
    __slots__ = ("id", "kp", "box", "t", "v", "hits", "lost", "confirmed", "filter", "score",
                 "seen_prev")

    def __init__(self, kp, box, t, score):
        self.id = -1
        self.kp = kp.astype(np.float64)
        self.box = box
        self.t = t
        self.v = np.zeros(2)
        self.hits = 1
        self.lost = 0
        self.confirmed = False
        self.filter: "Optional[OneEuroFilter]" = None
        self.score = score
        self.seen_prev = True

    def predicted(self, t: float, max_predict_s: float):
        shift = self.v * min(max(t - self.t, 0.0), max_predict_s)
        kp = self.kp.copy()
        kp[:, :2] += shift
        box = self.box + np.concatenate([shift, shift])
        return kp, box


class Tracker:
    """Frame-by-frame tracker of a pose model's people (see the module docstring).

    ``smoothing``: True (the defaults), False, or a dict of One Euro options
    (``min_cutoff``, ``beta``, ``d_cutoff``, ``reset_after_s``). ``sigmas``: per-keypoint OKS
    sigmas (default: from the first result's schema via :func:`edgepose.schema.oks_sigmas`).
    Tracker options: see :data:`TRACK_DEFAULTS`."""

    def __init__(self, smoothing=True, sigmas: Optional[Sequence[float]] = None, **options):
        self.options = check_options(options, TRACK_DEFAULTS, "tracker")
        if smoothing is True:
            smoothing = {}
        self.smoothing = None if smoothing is False or smoothing is None else check_options(
            dict(smoothing), SMOOTH_DEFAULTS, "smoothing")
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        try:
            import scipy.optimize  # noqa: F401
        except ImportError:
            raise InputError("tracking needs scipy: pip install 'edgepose[track]'")
        self.reset()

    def reset(self) -> None:
        self.tracks: "List[_Track]" = []
        self.next_id = 1
        self.frames = 0
        self.t_prev: Optional[float] = None

    def _sim(self, tracks: "List[_Track]", kp: np.ndarray, boxes: np.ndarray, t: float) -> np.ndarray:
        from .evaluate import oks_matrix

        if not tracks or not len(kp):
            return np.zeros((len(tracks), len(kp)))
        o = self.options
        pk, pb = zip(*(tr.predicted(t, o["max_predict_s"]) for tr in tracks))
        pk, pb = np.stack(pk), np.stack(pb)
        areas = np.maximum((pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1]), 1.0)
        oks = oks_matrix(pk, kp, self.sigmas, areas)
        return o["oks_weight"] * oks + (1.0 - o["oks_weight"]) * _iou(pb, boxes)

    def update(self, result: PoseResult, time_s: Optional[float] = None) -> PoseResult:
        """Associate ``result``'s people with the tracks; returns the tracked people of this
        frame (``track_ids`` set). ``time_s``: the frame's time (default: frame number / 30)."""
        o = self.options
        t = float(self.frames / 30.0 if time_s is None else time_s)
        if not math.isfinite(t) or (self.t_prev is not None and t < self.t_prev):
            raise InputError("frame time must be finite and not decrease: %r after %r" % (time_s, self.t_prev))
        if self.sigmas is None:
            from .schema import oks_sigmas
            self.sigmas = oks_sigmas(len(result.keypoint_names), result.to_coco17)
        kp = np.asarray(result.keypoints, np.float64)
        scores = np.asarray(result.scores, np.float64)
        boxes = _boxes_xyxy(kp, result.boxes)
        live = self.tracks
        high = np.nonzero(scores >= o["high_score"])[0]
        low = np.nonzero((scores >= o["low_score"]) & (scores < o["high_score"]))[0]
        matched: Dict[int, int] = {}      # track index -> person index
        sim = self._sim(live, kp[high], boxes[high], t)
        for i, j in _assign(sim, o["match_threshold"]):
            matched[i] = int(high[j])
        rest = [i for i, tr in enumerate(live) if i not in matched and tr.confirmed and tr.seen_prev]
        if rest and len(low):
            sim2 = self._sim([live[i] for i in rest], kp[low], boxes[low], t)
            for i, j in _assign(sim2, o["match_threshold"]):
                matched[rest[i]] = int(low[j])
        used = set(matched.values())
        keep: "List[_Track]" = []
        for i, tr in enumerate(live):
            if i in matched:
                p = matched[i]
                dt = t - tr.t
                if dt > 0:
                    c_new = 0.5 * (boxes[p, :2] + boxes[p, 2:])
                    c_old = 0.5 * (tr.box[:2] + tr.box[2:])
                    v = (c_new - c_old) / dt
                    tr.v = v if tr.hits == 1 else 0.5 * tr.v + 0.5 * v
                tr.kp, tr.box, tr.t, tr.score = kp[p].copy(), boxes[p].copy(), t, float(scores[p])
                tr.hits += 1
                tr.lost = 0
                tr.seen_prev = True
                if not tr.confirmed and tr.hits >= o["min_hits"]:
                    self._confirm(tr)
                keep.append(tr)
            else:
                tr.seen_prev = False
                if not tr.confirmed:
                    continue               # a tentative track that misses a frame is dropped
                tr.lost += 1
                if tr.lost <= o["max_lost"]:
                    keep.append(tr)
        for p in high:
            if int(p) not in used:
                tr = _Track(kp[p], boxes[p], t, float(scores[p]))
                if self.frames == 0 or o["min_hits"] <= 1:
                    self._confirm(tr)
                keep.append(tr)
        self.tracks = keep
        self.frames += 1
        self.t_prev = t
        return self._output(result, t)

    def _confirm(self, tr: "_Track") -> None:
        tr.confirmed = True
        tr.id = self.next_id
        self.next_id += 1

    def _output(self, result: PoseResult, t: float) -> PoseResult:
        shown = sorted((tr for tr in self.tracks if tr.confirmed and tr.lost == 0 and tr.t == t),
                       key=lambda tr: tr.id)
        K = len(result.keypoint_names)
        raw = np.zeros((len(shown), K, 3), np.float32)
        out = np.zeros((len(shown), K, 3), np.float32)
        boxes = np.zeros((len(shown), 4), np.float32)
        for n, tr in enumerate(shown):
            raw[n] = tr.kp
            out[n] = tr.kp
            found = tr.kp[:, 2] > 0
            if self.smoothing is not None:
                if tr.filter is None:
                    s = self.smoothing
                    tr.filter = OneEuroFilter(K, s["min_cutoff"], s["beta"], s["d_cutoff"], s["reset_after_s"])
                scale = max(tr.box[3] - tr.box[1], 1.0)
                out[n, :, :2] = tr.filter(tr.kp[:, :2], found, t, scale)
            out[n, ~found, :2] = -1.0
            boxes[n] = (tr.box[0], tr.box[1], tr.box[2] - tr.box[0], tr.box[3] - tr.box[1])
        res = PoseResult(out, [tr.score for tr in shown], result.keypoint_names, result.skeleton,
                         result.to_coco17, boxes=boxes if result.boxes is not None else None,
                         timings=result.timings, track_ids=[tr.id for tr in shown])
        res.raw_keypoints = raw
        res.track_boxes = boxes
        return res
