"""Tracking and smoothing: identities across frames, birth/death hysteresis, recovery, the One
Euro filter's behaviour on constructed trajectories."""
import numpy as np
import pytest

from edgepose.errors import InputError
from edgepose.results import PoseResult
from edgepose.schema import CMU18_KEYPOINTS, CMU18_TO_COCO17
from edgepose.track import OneEuroFilter, Tracker

pytest.importorskip("scipy")
K = len(CMU18_KEYPOINTS)


def person(cx, cy, h=100.0, score=0.8, rng=None, noise=0.0):
    """A standing person of height ``h`` centred at (cx, cy): K keypoints on a vertical line-ish."""
    ys = np.linspace(-0.5, 0.5, K) * h + cy
    xs = cx + 0.15 * h * np.sin(np.arange(K))
    kp = np.stack([xs, ys, np.full(K, score)], 1).astype(np.float32)
    if noise and rng is not None:
        kp[:, :2] += rng.normal(0, noise, (K, 2)).astype(np.float32)
    return kp


def frame(people, scores=None):
    kp = np.stack(people) if people else np.zeros((0, K, 3), np.float32)
    sc = np.array(scores if scores is not None else [0.8] * len(people), np.float32)
    return PoseResult(kp, sc, CMU18_KEYPOINTS, (), CMU18_TO_COCO17)


def ids_by_x(res):
    return {int(round(float(np.mean(k[:, 0])) / 100.0)): int(t) for k, t in zip(res.raw_keypoints, res.track_ids)}


def test_two_people_keep_their_ids_whatever_the_detection_order():
    tr = Tracker(smoothing=False)
    seen = []
    for i in range(40):
        a, b = person(100 + 2 * i, 200), person(400 - 2 * i, 200)
        people = [a, b] if i % 2 else [b, a]          # the decoder's order changes
        r = tr.update(frame(people), i / 30)
        seen.append(ids_by_x(r))
    first = {1: seen[0][1], 4: seen[0][4]}
    assert sorted(first.values()) == [1, 2]
    for i, s in enumerate(seen):
        # the person starting at x=100 keeps its ID, so does the one at x=400
        assert sorted(s.values()) == [1, 2], i
    # each side's ID never changes (x/100 rounds to the side the person is on)
    side = {}
    for s in seen:
        for x, tid in s.items():
            side.setdefault(tid, set()).add(x < 2.5)
    assert all(len(v) == 1 for v in side.values())
    r = tr.update(frame([person(180, 200), person(320, 200)]), 40 / 30)
    assert list(r.track_ids) == [1, 2]
    by_x = dict(zip((float(np.mean(k[:, 0])) for k in r.raw_keypoints), r.track_ids))
    assert by_x[min(by_x)] == first[1] and by_x[max(by_x)] == first[4]


def test_birth_needs_min_hits_and_a_one_frame_ghost_never_gets_an_id():
    tr = Tracker(smoothing=False, min_hits=3)
    r = tr.update(frame([person(100, 200)]), 0.0)
    assert list(r.track_ids) == [1]                       # the first frame confirms at once
    r = tr.update(frame([person(100, 200), person(400, 200)]), 1 / 30)   # a ghost appears once
    assert list(r.track_ids) == [1]
    for i in range(2, 6):
        r = tr.update(frame([person(100, 200)]), i / 30)
        assert list(r.track_ids) == [1]
    # a real newcomer: reported from its third consecutive frame, with the next ID
    got = []
    for i in range(6, 10):
        r = tr.update(frame([person(100, 200), person(400, 200)]), i / 30)
        got.append(list(r.track_ids))
    assert got == [[1], [1], [1, 2], [1, 2]]


def test_lost_track_recovers_its_id_within_max_lost_frames_and_not_after():
    tr = Tracker(smoothing=False, max_lost=10)
    t = 0
    for _ in range(5):
        tr.update(frame([person(100, 200), person(400, 200)]), t / 30)
        t += 1
    for _ in range(8):                                     # the second person is hidden 8 frames
        r = tr.update(frame([person(100, 200)]), t / 30)
        t += 1
        assert list(r.track_ids) == [1]
    r = tr.update(frame([person(100, 200), person(402, 201)]), t / 30)
    t += 1
    assert sorted(r.track_ids) == [1, 2]                   # recovered, same ID
    for _ in range(12):                                    # hidden longer than max_lost
        tr.update(frame([person(100, 200)]), t / 30)
        t += 1
    for _ in range(3):
        r = tr.update(frame([person(100, 200), person(400, 200)]), t / 30)
        t += 1
    assert sorted(r.track_ids) == [1, 3]                   # a new ID; 2 is never reused


def test_low_score_people_continue_tracks_but_never_start_one():
    tr = Tracker(smoothing=False, high_score=0.5, low_score=0.1)
    for i in range(4):
        tr.update(frame([person(100, 200)], [0.9]), i / 30)
    for i in range(4, 8):           # the same person now scores low (blur, occlusion): kept
        r = tr.update(frame([person(100, 200), person(400, 200)], [0.2, 0.2]), i / 30)
        assert list(r.track_ids) == [1]                    # the low-score newcomer starts nothing
    r = tr.update(frame([person(100, 200)], [0.05]), 8 / 30)   # under low_score: ignored
    assert len(r) == 0


def test_tracker_output_is_in_the_models_schema_with_missing_keypoints_kept_missing():
    tr = Tracker()
    kp = person(100, 200)
    kp[3] = (-1, -1, 0)
    r = tr.update(frame([kp]), 0.0)
    assert r.keypoints.shape == (1, K, 3) and r.keypoints[0, 3, 2] == 0
    assert tuple(r.keypoints[0, 3, :2]) == (-1.0, -1.0)
    assert r.coco17().shape == (1, 17, 3)
    assert r.to_dict()["people"][0]["track_id"] == 1


def test_one_euro_reduces_jitter_of_a_still_point_and_follows_a_move():
    rng = np.random.RandomState(0)
    f = OneEuroFilter(1, min_cutoff=1.0, beta=0.3)
    found = np.array([True])
    raw, out = [], []
    for i in range(120):
        x = np.array([[50.0, 50.0]]) + rng.normal(0, 1.0, (1, 2))
        raw.append(x[0])
        out.append(f(x, found, i / 30, 100.0)[0])
    raw, out = np.array(raw[10:]), np.array(out[10:])
    jr = np.mean(np.linalg.norm(np.diff(raw, axis=0), axis=1))
    js = np.mean(np.linalg.norm(np.diff(out, axis=0), axis=1))
    assert js < 0.4 * jr
    # then a fast move of 100 px (one person height) per second for 1 s: it follows
    for i in range(120, 150):
        x = np.array([[50.0 + 100.0 * (i - 119) / 30, 50.0]])
        y = f(x, found, i / 30, 100.0)
    assert abs(y[0, 0] - x[0, 0]) < 10.0


def test_one_euro_missing_points_do_not_drag_and_restart_after_a_gap():
    f = OneEuroFilter(2, min_cutoff=1.0, beta=0.0, reset_after_s=0.5)
    xy = np.array([[10.0, 10.0], [20.0, 20.0]])
    for i in range(10):
        f(xy, np.array([True, True]), i / 30, 100.0)
    # the second point vanishes for 3 frames: its state stays put, its output is the input row
    for i in range(10, 13):
        y = f(np.array([[10.0, 10.0], [-1.0, -1.0]]), np.array([True, False]), i / 30, 100.0)
        assert tuple(y[1]) == (-1.0, -1.0)
    assert np.allclose(f.x[1], (20.0, 20.0))
    # back after a long gap (> reset_after_s): restarts from the new raw position
    y = f(np.array([[10.0, 10.0], [80.0, 80.0]]), np.array([True, True]), 2.0, 100.0)
    assert tuple(y[1]) == (80.0, 80.0)


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(InputError, match="min_hits"):
        Tracker(min_hits=0)
    with pytest.raises(InputError, match="unknown tracker option"):
        Tracker(max_age=3)
    with pytest.raises(InputError, match="beta"):
        Tracker(smoothing={"beta": float("nan")})
    with pytest.raises(InputError, match="low_score"):
        Tracker(low_score=0.9, high_score=0.5)
    tr = Tracker()
    tr.update(frame([person(100, 200)]), 1.0)
    with pytest.raises(InputError, match="frame time"):
        tr.update(frame([person(100, 200)]), 0.5)


def test_a_hidden_person_keeps_moving_and_is_recovered_where_it_comes_back():
    # walks right at 150 px/s (1.5 heights/s), hidden for 0.8 s (24 frames at 30 fps): it comes
    # back 120 px further on, where only a prediction that kept moving expects it
    tr = Tracker(smoothing=False, max_lost=30)
    for i in range(15):
        r = tr.update(frame([person(100 + 5 * i, 200), person(600, 200)]), i / 30)
    assert sorted(r.track_ids) == [1, 2]
    for i in range(15, 39):
        tr.update(frame([person(600, 200)]), i / 30)
    got = []
    for i in range(39, 45):
        r = tr.update(frame([person(100 + 5 * i, 200), person(600, 200)]), i / 30)
        got.append(sorted(r.track_ids))
    assert got == [[1, 2]] * 6                      # ID 1 again, at once, never a new ID


def test_crossing_people_keep_their_ids_through_a_gap_and_partial_views():
    # A walks right, B left, at 4 px/frame; while they overlap B (behind) is hidden, then only
    # its far half is seen (the half A does not cover), then all of it
    for a_first in (True, False):
        tr = Tracker(smoothing=False)
        ids = {}
        for i in range(100):
            xa, xb = 100 + 4 * i, 500 - 4 * i
            a, b = person(xa, 200), person(xb, 200)
            d = abs(xa - xb)
            if d < 30:
                people = [a]                               # B hidden
            elif d < 60:
                b = b.copy()
                near = (b[:, 0] < xa + 25) & (b[:, 0] > xa - 25)
                b[near] = (-1, -1, 0)                      # B partly hidden by A
                people = [a, b]
            else:
                people = [a, b]
            r = tr.update(frame(people if a_first else people[::-1]), i / 30)
            for k, tid in zip(r.raw_keypoints, r.track_ids):
                v = k[k[:, 2] > 0]
                who = "a" if d < 30 or abs(np.median(v[:, 0]) - xa) < abs(np.median(v[:, 0]) - xb) else "b"
                ids.setdefault(who, set()).add(int(tid))
        assert ids == {"a": {1}, "b": {2}} or ids == {"a": {2}, "b": {1}}, ids


def test_motion_options_are_checked():
    with pytest.raises(InputError, match="motion_noise"):
        Tracker(motion_noise=-1)
    with pytest.raises(InputError, match="max_predict_s"):
        Tracker(max_predict_s=float("inf"))
    Tracker(max_predict_s=0.5, motion_noise=2.0)


def test_recovery_takes_the_velocity_covered_over_the_gap():
    # walks right at 60 px/s, hidden for 20 frames during which it speeds up to 150 px/s: after
    # the re-update along the gap the track's velocity is the one of the gap, not the old one
    tr = Tracker(smoothing=False, max_lost=30)
    x, t = 100.0, 0.0
    for i in range(10):
        tr.update(frame([person(x, 200)]), t)
        x, t = x + 2.0, t + 1 / 30
    for i in range(20):
        tr.update(frame([]), t)
        x, t = x + 5.0, t + 1 / 30
    r = tr.update(frame([person(x, 200)]), t)
    assert list(r.track_ids) == [1]
    assert tr.tracks[0].x[2] == pytest.approx(150.0, rel=0.08)   # a plain Kalman update: 173


def test_a_fragment_of_the_front_person_takes_neither_its_track_nor_the_hidden_ones():
    # A in front, B hidden behind it for 15 frames; the decode also reports A's legs as a
    # separate 3-keypoint person (it does on real crossings). A's track keeps the whole of A, and
    # B's ID is not given to A's legs: it waits for B
    rng = np.random.RandomState(1)
    tr = Tracker(smoothing=False)
    for i in range(10):
        r = tr.update(frame([person(200, 200), person(260, 200)]), i / 30)
    assert sorted(r.track_ids) == [1, 2]
    legs = [9, 10, 12]
    for i in range(10, 25):
        a = person(200, 200)
        whole = a.copy()
        whole[:9, :2] += rng.normal(0, 4.0, (9, 2)).astype(np.float32)   # arms swing, legs do not
        frag = np.tile(np.array([[-1, -1, 0]], np.float32), (K, 1))
        frag[legs] = a[legs]
        r = tr.update(frame([frag, whole], [0.5, 0.8]), i / 30)
        ids = list(r.track_ids)
        assert 1 in ids and 2 not in ids, (i, ids)
        assert int((r.raw_keypoints[ids.index(1)][:, 2] > 0).sum()) == K   # the whole of A
    r = tr.update(frame([person(200, 200), person(258, 200)]), 25 / 30)
    assert 1 in r.track_ids and 2 in r.track_ids


def test_tracker_from_options_defaults_then_model_then_given():
    """One normal form of tracking options (CLI, API, Ray): edgepose's defaults < the model's
    metadata < the options given; a bad value or key is a one-line InputError."""
    from edgepose.errors import InputError
    from edgepose.track import TRACK_DEFAULTS, Tracker, tracker_options

    class Meta:
        def __init__(self, d):
            self.d = d

        def get(self, k, default=None):
            return self.d.get(k, default)

    meta = Meta({"tracking": {"max_lost": 7, "min_hits": 2}, "smoothing": {"beta": 0.9}})
    t = Tracker.from_options({"tracker": {"min_hits": 5}}, meta)
    assert t.options["max_lost"] == 7 and t.options["min_hits"] == 5
    assert t.options["match_threshold"] == TRACK_DEFAULTS["match_threshold"]
    assert t.smoothing["beta"] == 0.9
    assert Tracker.from_options({"smooth": False}, meta).smoothing is None
    assert Tracker.from_options(True).options == TRACK_DEFAULTS
    assert tracker_options(None) is None and tracker_options(False) is None
    with pytest.raises(InputError, match="max_lost"):
        tracker_options({"tracker": {"max_lost": -1}})
    with pytest.raises(InputError, match="unknown tracking key"):
        tracker_options({"trackers": {}})
