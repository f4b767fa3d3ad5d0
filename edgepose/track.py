"""People with identities across frames, and steady keypoints.

:class:`Tracker` gives each person a ``track_id`` that it keeps from frame to frame;
:class:`OneEuroFilter` smooths every keypoint coordinate of a track (on by default).

Motion (per track)
    A constant-velocity Kalman filter on the pose's *anchor* (position and velocity), time-based,
    its acceleration noise ``motion_noise`` person heights / s^2, as ByteTrack and OC-SORT do for
    boxes. A detection's anchor is the median of its keypoints minus the track's offsets for them
    (each keypoint's last position relative to the anchor), so a person half hidden by somebody
    in front still shows where it is, and the hidden keypoints keep moving with it. A lost track's
    prediction keeps moving at the estimated velocity for as long as it is kept (``max_lost``;
    ``max_predict_s`` caps it, default none) while its uncertainty grows with the gap. On
    recovery the filter is re-run along the straight line between the last observation and the
    new one (OC-SORT's observation-centric re-update), so the velocity after a gap is the
    distance covered over the gap.
Association (per frame)
    Similarity of a person to a track is ``oks_weight * OKS + (1 - oks_weight) * IoU`` against the
    track's predicted pose: the OKS over the keypoints the person shows (a keypoint the track has
    never seen counts 0), each keypoint's variance ``area * (2 sigma)^2`` plus the prediction's
    variance (so the gate relaxes as the gap grows); the IoU of the person's keypoint box with the
    box of the same keypoints predicted, moved towards the person by up to one standard deviation
    of the prediction (the detector's boxes for top-down results). A person whose box lies inside
    the box of a person showing more keypoints (a fragment the decode split off somebody) and
    showing under half of the keypoints the track has seen scores in proportion, so it never
    outbids the whole person. Pairs under ``match_threshold`` never match; the rest are assigned
    one-to-one maximising the total similarity (Hungarian, ``scipy.optimize.linear_sum_assignment``).
    Four passes (ByteTrack's two, with lost and tentative tracks after live ones as in DeepSORT's
    cascade): people scoring at least ``high_score`` are matched first to the confirmed tracks
    seen in the previous frame, then the ones left to the lost tracks (at the better of where
    each is predicted and where it was last seen; only a person showing a third of the keypoints
    the track has seen, so that no fragment of somebody else takes the ID), then to the tentative
    tracks; then people scoring in ``[low_score, high_score)`` only to the confirmed tracks of the
    first pass left unmatched. A low-score person never starts a track; under ``low_score`` a
    person is ignored.
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
TRACK_DEFAULTS: "Dict[str, Optional[float]]" = {
    "oks_weight": 0.5,
    "match_threshold": 0.2,
    "high_score": 0.3,
    "low_score": 0.1,
    "min_hits": 3,
    "max_lost": 30,
    "max_predict_s": None,     # s: the prediction stops moving after this (None: never)
    "motion_noise": 1.0,       # person heights / s^2: the Kalman filter's acceleration noise
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
    "max_predict_s": (0.0, 3600.0), "motion_noise": (0.0, 1000.0),
    "min_cutoff": (1e-6, 1e6), "beta": (0.0, 1e6), "d_cutoff": (1e-6, 1e6), "reset_after_s": (0.0, 3600.0),
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
    """IoU of xyxy boxes ``[..., 4]``, element-wise with broadcasting (degenerate boxes get 1 px
    of extent)."""
    a = np.array(a, np.float64)
    b = np.array(b, np.float64)
    for x in (a, b):
        x[..., 2] = np.maximum(x[..., 2], x[..., 0] + 1.0)
        x[..., 3] = np.maximum(x[..., 3], x[..., 1] + 1.0)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


_MEAS_STD = 0.03   # person heights: std of the anchor a detection shows
_V0 = 1.0          # person heights / s: prior std of a new track's velocity


def _inside_fuller(boxes: np.ndarray, n_found: np.ndarray) -> np.ndarray:
    """``[P]`` bool: people whose box lies mostly (70 %) inside the box of a person showing more
    keypoints."""
    P = len(boxes)
    out = np.zeros(P, bool)
    if P < 2:
        return out
    b = boxes
    iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
    inside = (iw * ih) / area[:, None] >= 0.7
    np.fill_diagonal(inside, False)
    return np.any(inside & (n_found[None, :] > n_found[:, None]), axis=1)


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
    """One person's state: a constant-velocity Kalman filter on the pose's anchor (position and
    velocity, px and px/s), the pose's shape as offsets from the anchor (the last place each
    keypoint was seen, relative to the anchor: hidden keypoints keep moving with the person),
    the last observation, and identity bookkeeping."""

    __slots__ = ("id", "kp", "box", "t", "hits", "lost", "confirmed", "filter", "score",
                 "seen_prev", "x", "P", "t_obs", "z_obs", "offsets", "height")

    def __init__(self, kp, box, t, score, meas_std, v0):
        self.id = -1
        self.kp = kp.astype(np.float64)
        self.box = box
        self.t = t
        self.hits = 1
        self.lost = 0
        self.confirmed = False
        self.filter: "Optional[OneEuroFilter]" = None
        self.score = score
        self.seen_prev = True
        found = self.kp[:, 2] > 0
        self.height = max(float(box[3] - box[1]), 1.0)
        z = np.median(self.kp[found, :2], axis=0) if np.any(found) else 0.5 * (box[:2] + box[2:])
        self.offsets = np.full((len(self.kp), 2), np.nan)
        self.offsets[found] = self.kp[found, :2] - z
        r = (meas_std * self.height) ** 2
        vv = (v0 * self.height) ** 2
        self.x = np.array([z[0], z[1], 0.0, 0.0])
        self.P = np.diag([r, r, vv, vv])
        self.t_obs, self.z_obs = t, z

    # -- motion ------------------------------------------------------------------------------
    def _q(self, dt: float, noise: float) -> np.ndarray:
        """Process noise of a white-noise acceleration of std ``noise`` person heights / s^2."""
        q = (noise * self.height) ** 2
        a, b, c = dt ** 3 / 3.0, dt ** 2 / 2.0, dt
        return q * np.array([[a, 0, b, 0], [0, a, 0, b], [b, 0, c, 0], [0, b, 0, c]])

    def predict_state(self, t: float, noise: float, max_dt: Optional[float]):
        """Mean and covariance of the anchor at time ``t`` (not stored)."""
        dt = max(t - self.t_obs, 0.0)
        dtm = dt if max_dt is None else min(dt, max_dt)
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dtm
        return F @ self.x, F @ self.P @ F.T + self._q(dt, noise)

    def measure(self, kp: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The anchor a detection shows: the median of its keypoints minus their offsets (robust
        to keypoints hidden by somebody in front), else its box centre."""
        common = (kp[:, 2] > 0) & ~np.isnan(self.offsets[:, 0])
        if np.any(common):
            return np.median(kp[common, :2] - self.offsets[common], axis=0)
        return 0.5 * (box[:2] + box[2:]) - 0.5 * (self.box[:2] + self.box[2:]) + self.z_obs

    def observe(self, kp, box, t, score, noise, meas_std, max_dt) -> None:
        z = self.measure(kp, box)
        R = np.eye(2) * (meas_std * self.height) ** 2
        # after a gap, re-run the filter along the straight line from the last observation to
        # this one (OC-SORT's observation-centric re-update): the velocity comes out as the
        # distance covered over the gap instead of staying what it was before the gap
        n = max(int(self.lost) + 1, 1) if t > self.t_obs else 1
        t0, z0 = self.t_obs, self.z_obs
        for k in range(1, n + 1):
            tk = t0 + (t - t0) * k / n
            zk = z0 + (z - z0) * k / n
            x, P = self.predict_state(tk, noise, max_dt)
            S = P[:2, :2] + R
            G = P[:, :2] @ np.linalg.inv(S)
            self.x = x + G @ (zk - x[:2])
            self.P = P - G @ P[:2, :]
            self.t_obs = tk
        self.z_obs = z
        found = kp[:, 2] > 0
        self.offsets[found] = kp[found, :2] - z
        self.height = max(0.8 * self.height + 0.2 * float(box[3] - box[1]), 1.0) if \
            np.sum(found) >= 0.6 * np.sum(~np.isnan(self.offsets[:, 0])) else self.height
        self.kp, self.box, self.t, self.score = kp.copy(), box.copy(), t, score


def tracker_options(track=True) -> "Optional[tuple]":
    """THE normal form of tracking options, every value checked in one line before any work:
    ``track`` None/False (no tracking: None), True (the defaults), ``{"tracker": {...},
    "smoothing": {...}, "smooth": bool}``, or a ``(tracker options, smoothing options,
    no_smooth)`` tuple. Returns that tuple with every option named (None: not given, so the
    model's metadata, then edgepose's defaults decide)."""
    if not track:
        return None
    if track is True:
        track = ({}, {}, False)
    elif isinstance(track, dict):
        unknown = set(track) - {"tracker", "smoothing", "smooth"}
        if unknown:
            raise InputError("unknown tracking key(s): %s (tracker, smoothing, smooth)" % ", ".join(sorted(unknown)))
        track = (dict(track.get("tracker") or {}), dict(track.get("smoothing") or {}),
                 not track.get("smooth", True))
    topts, sopts, no_smooth = track
    topts, sopts = dict(topts or {}), dict(sopts or {})
    check_options(topts, TRACK_DEFAULTS, "tracker")
    check_options(sopts, SMOOTH_DEFAULTS, "smoothing")
    return ({k: topts.get(k) for k in TRACK_DEFAULTS}, {k: sopts.get(k) for k in SMOOTH_DEFAULTS},
            bool(no_smooth))


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

    @classmethod
    def from_options(cls, track=True, meta=None) -> "Tracker":
        """A Tracker for a model: edgepose's defaults, then the model's metadata (``tracking`` /
        ``smoothing``), then ``track`` (any form :func:`tracker_options` takes)."""
        topts, sopts, no_smooth = tracker_options(track)
        base_t = dict(meta.get("tracking") or {}) if meta is not None else {}
        base_s = dict(meta.get("smoothing") or {}) if meta is not None else {}
        base_t.update({k: v for k, v in topts.items() if v is not None})
        base_s.update({k: v for k, v in sopts.items() if v is not None})
        return cls(smoothing=False if no_smooth else base_s, **base_t)

    def reset(self) -> None:
        self.tracks: "List[_Track]" = []
        self.next_id = 1
        self.frames = 0
        self.t_prev: Optional[float] = None

    def _sim(self, tracks: "List[_Track]", kp: np.ndarray, boxes: np.ndarray, t: float,
             given_boxes: bool, recover: bool = False, still: bool = False) -> np.ndarray:
        """Similarity ``[T,P]`` of tracks and people (see the module docstring). ``recover``:
        lost tracks, which only a person showing a third of the keypoints the track has seen (3
        at least) may take back. ``still``: at the place each track was last seen instead of
        where its motion predicts it (with the same uncertainty): OC-SORT's observation-centric
        recovery of a person who stopped or turned while hidden."""
        o = self.options
        sim = np.zeros((len(tracks), len(kp)))
        if not tracks or not len(kp):
            return sim
        var_k = (2.0 * self.sigmas) ** 2
        found = kp[:, :, 2] > 0                                        # [P,K]
        n_found = np.maximum(found.sum(1), 1)
        states = [tr.predict_state(t, o["motion_noise"], o["max_predict_s"]) for tr in tracks]
        if still:
            states = [(np.concatenate([tr.z_obs, x[2:]]), P) for tr, (x, P) in zip(tracks, states)]
        pos = np.stack([x[:2] for x, _ in states])                     # [T,2]
        s2 = np.array([0.5 * (P[0, 0] + P[1, 1]) for _, P in states])  # [T] px^2, grows with the gap
        offs = np.stack([tr.offsets for tr in tracks])                 # [T,K,2]
        has = ~np.isnan(offs[:, :, 0])                                 # [T,K]
        pk = pos[:, None, :] + np.where(has[:, :, None], offs, 0.0)    # [T,K,2] predicted poses
        big = np.inf
        lo = np.where(has[:, :, None], pk, big).min(1)
        hi = np.where(has[:, :, None], pk, -big).max(1)
        area = np.where(has.any(1), (hi[:, 0] - lo[:, 0]) * (hi[:, 1] - lo[:, 1]), 0.0)
        area = np.maximum(area, 1.0)                                   # [T]
        common = found[None] & has[:, None, :]                         # [T,P,K]
        d2 = ((kp[None, :, :, :2] - pk[:, None]) ** 2).sum(-1)         # [T,P,K]
        e = d2 / (2.0 * (area[:, None, None] * var_k[None, None] + s2[:, None, None]))
        oks = np.where(common, np.exp(-e), 0.0).sum(2) / n_found[None]
        if given_boxes:           # the detector's boxes: each track's last box, moved
            pb = np.stack([tr.box + np.tile(x[:2] - tr.z_obs, 2) for tr, (x, _) in zip(tracks, states)])
            pb = np.broadcast_to(pb[:, None, :], (len(tracks), len(kp), 4))
            valid = np.ones((len(tracks), len(kp)), bool)
        else:                     # the box of the predicted keypoints the person shows
            c = common[..., None]
            q = np.broadcast_to(pk[:, None], common.shape + (2,))
            pb = np.concatenate([np.where(c, q, big).min(2), np.where(c, q, -big).max(2)], -1)  # [T,P,4]
            valid = common.any(2)
            pb = np.where(valid[..., None], pb, 0.0)
        # the predicted box moved towards the person by up to one standard deviation
        dc = 0.5 * (boxes[None, :, :2] + boxes[None, :, 2:]) - 0.5 * (pb[..., :2] + pb[..., 2:])
        n = np.linalg.norm(dc, axis=-1)
        f = np.minimum(1.0, np.sqrt(s2)[:, None] / np.maximum(n, 1e-9))
        pb = pb + np.tile(dc * f[..., None], 2)
        ious = np.where(valid, _iou(pb, boxes[None]), 0.0)
        sim = o["oks_weight"] * oks + (1.0 - o["oks_weight"]) * ious
        # a fragment (the legs of somebody the decode split in two: a person inside a fuller
        # person's box) must not outbid the whole person: under half of the keypoints the track
        # has seen, its similarity scales down
        n_common = common.sum(2)
        n_has = has.sum(1)[:, None]
        frag = _inside_fuller(boxes, n_found)
        sim = np.where(frag[None], sim * np.minimum(1.0, n_common / np.maximum(0.5 * n_has, 1.0)), sim)
        if recover:
            # and a lost track is taken back only by a person showing a third of them (3 at least)
            sim = np.where(n_common >= np.maximum(3.0, n_has / 3.0), sim, 0.0)
        return sim

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
        kp = np.asarray(result.keypoints, np.float64).reshape(-1, len(result.keypoint_names), 3)
        scores = np.asarray(result.scores, np.float64)
        given = result.boxes is not None
        boxes = _boxes_xyxy(kp, result.boxes)
        live = self.tracks
        high = np.nonzero(scores >= o["high_score"])[0]
        low = np.nonzero((scores >= o["low_score"]) & (scores < o["high_score"]))[0]
        matched: Dict[int, int] = {}      # track index -> person index

        def match(tracks, people, recover=False):
            if not tracks or not len(people):
                return
            sim = self._sim([live[i] for i in tracks], kp[people], boxes[people], t, given, recover)
            if recover:
                sim = np.maximum(sim, self._sim([live[i] for i in tracks], kp[people], boxes[people], t,
                                                given, recover, still=True))
            for i, j in _assign(sim, o["match_threshold"]):
                matched[tracks[i]] = int(people[j])

        def left(people):
            used = set(matched.values())
            return np.array([p for p in people if p not in used], int)

        # the confident people go 1. to the confirmed tracks seen in the previous frame, 2. to the
        # lost tracks (their uncertainty grown with the gap), 3. to the tentative tracks; then the
        # weaker people to the tracks of 1 still unmatched
        match([i for i, tr in enumerate(live) if tr.seen_prev and tr.confirmed], high)
        match([i for i, tr in enumerate(live) if not tr.seen_prev], left(high), recover=True)
        match([i for i, tr in enumerate(live) if not tr.confirmed], left(high))
        match([i for i, tr in enumerate(live) if i not in matched and tr.confirmed and tr.seen_prev], low)
        used = set(matched.values())
        keep: "List[_Track]" = []
        for i, tr in enumerate(live):
            if i in matched:
                p = matched[i]
                tr.observe(kp[p], boxes[p], t, float(scores[p]), o["motion_noise"], _MEAS_STD,
                           o["max_predict_s"])
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
                tr = _Track(kp[p], boxes[p], t, float(scores[p]), _MEAS_STD, _V0)
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
