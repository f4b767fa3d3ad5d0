#!/usr/bin/env python3
"""Tracking and smoothing on the asset videos: ID switches, fragmented tracks, keypoint jitter and
the lag smoothing adds; edgepose's tracker against plain IoU tracking and norfair.

    python benchmarks/tracking.py MODEL [--videos V1 V2] [--norfair-python PY] [--json out.json]
        [--crossings] [--baseline OLD_track.py] [--cache DIR]

The model runs once per video; every tracker then sees the same detections.

How the numbers are counted (no identity labels exist for these videos):
- *switch*: a track whose person moves, between two frames where it is reported, by more than
  half the person's height plus its predicted motion -- the ID jumped to somebody else.
- *switch (kp)*: the same, measured on the keypoints both frames show (median displacement), or
  with none in common on the gap between the two boxes, against the track's median height: a
  person the model sees in parts (its shoulders in one frame, its legs in the next) moves its box
  centre without moving, which the first count takes for a switch.
- *fragment*: a track that is born within 2 s after another track was last seen, where that
  track was (its first box overlaps the other's last box, IoU > 0.3): the same person got a
  new ID. Counts are confirmed when the annotated video is looked at.
- *jitter*: mean frame-to-frame displacement (px) of a keypoint on still stretches -- frames where
  the 9-frame running median of the raw keypoint moves under 0.5 px per frame.
- *lag*: on moving stretches (running median moving >= 1.5 px per frame), the time shift of the
  raw trajectory that best matches the smoothed one (0.1-frame steps, linear interpolation).
Crossing videos (``--crossings``): two COCO cut-outs walking across each other
(tests/test_crossing.py builds them; several speeds, pauses while overlapped, both orders), with
the true identity of every pixel: CLEAR-MOT ID switches, fragments (a person's coverage
interrupted and resumed: unavoidable while it is fully hidden) and how many people end with the
ID they started with.
norfair (pip install norfair; it pins numpy < 2, so it runs in its own venv given by
``--norfair-python``) tracks the same keypoints with its Kalman filter, OKS-like keypoint distance.
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import REPO, assets_or_exit   # beside this file; puts the checkout on sys.path

from edgepose.assets import asset
from edgepose.files import write_json
from edgepose.results import PoseResult


def detections(model, video, height=None, frames=None):
    """(detections [(keypoints, scores)], fps, schema, frames): the model over every frame of
    ``video`` (or of the given ``frames``)."""
    from edgepose.io import VideoReader
    from edgepose.pipelines import load_estimator

    fps = 25.0
    if frames is None:
        reader = VideoReader(video)
        frames, fps = list(reader), reader.fps
    key = None
    if CACHE:
        import hashlib

        h = hashlib.sha256(("%s %s %s %d" % (os.path.abspath(model), os.path.getmtime(model), height, len(frames))).encode())
        for f in frames[::7]:
            h.update(f.tobytes()[::97])
        key = os.path.join(CACHE, h.hexdigest()[:24] + ".pkl")
        if os.path.exists(key):
            out, schema = pickle.load(open(key, "rb"))
            return out, fps, schema, frames
    est = load_estimator(model, threads=2, **({"height": height} if height else {}))
    out = [(r.keypoints, r.scores) for r in (est(f) for f in frames)]
    m = est.meta
    schema = (m.keypoints, m.get("skeleton", []), m.get("to_coco17"))
    if key:
        pickle.dump((out, schema), open(key, "wb"))
    return out, fps, schema, frames


CACHE = None   # --cache DIR: detections kept between runs (the model runs once per video)


def _tracker_class(path=None):
    """edgepose's Tracker, or the Tracker class of another copy of track.py (``--baseline``:
    e.g. the previous release's, ``git show REV:edgepose/track.py > old.py``)."""
    if not path:
        from edgepose.track import Tracker
        return Tracker
    import importlib.util
    import re

    src = open(path).read()
    src = re.sub(r"from \.(\w+) import", r"from edgepose.\1 import", src)
    spec = importlib.util.spec_from_loader("baseline_track", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod.Tracker


def run_edgepose(dets, fps, schema, smoothing=True, images=None, baseline=None, **opts):
    import inspect

    tr = _tracker_class(baseline)(smoothing=smoothing, **opts)
    with_image = images is not None and "image" in inspect.signature(tr.update).parameters
    frames = []
    t0 = time.perf_counter()
    for i, (kp, sc) in enumerate(dets):
        res = PoseResult(kp, sc, *schema)
        r = tr.update(res, i / fps, images[i]) if with_image else tr.update(res, i / fps)
        frames.append({int(t): (r.keypoints[j].copy(), r.raw_keypoints[j].copy())
                       for j, t in enumerate(r.track_ids)})
    return frames, (time.perf_counter() - t0) / max(len(dets), 1) * 1e3


NORFAIR_DRIVER = r'''
import pickle, sys, time, numpy as np
from norfair import Detection, Tracker
dets, fps = pickle.load(open(sys.argv[1], "rb"))
def dist(det, trk):   # keypoint distance normalised by the track's height (OKS-like)
    a, b = det.points, trk.estimate
    m = (det.scores > 0) & (trk.last_detection.scores > 0)
    if not m.any():
        return 1.0
    h = max(np.ptp(b[m, 1]), 20.0)
    return float(np.mean(np.linalg.norm(a[m] - b[m], axis=1)) / h)
tr = Tracker(distance_function=dist, distance_threshold=0.5, detection_threshold=0.01,
             hit_counter_max=30, initialization_delay=2, pointwise_hit_counter_max=4)
frames = []
t0 = time.perf_counter()
for kp, sc in dets:
    ds = [Detection(points=np.where(k[:, 2:] > 0, k[:, :2], 0.0), scores=k[:, 2].copy(), data=s)
          for k, s in zip(kp, sc) if s >= 0.1]
    objs = tr.update(ds)
    fr = {}
    for o in objs:
        if o.last_detection is not None and o.hit_counter_is_positive and o.age >= 0 and o.last_detection in ds:
            raw = np.concatenate([o.last_detection.points, o.last_detection.scores[:, None]], 1)
            est = np.concatenate([o.estimate, o.last_detection.scores[:, None]], 1)
            fr[int(o.id)] = (est.astype(np.float32), raw.astype(np.float32))
    frames.append(fr)
ms = (time.perf_counter() - t0) / max(len(dets), 1) * 1e3
pickle.dump((frames, ms), open(sys.argv[2], "wb"))
'''


def run_norfair(python, dets, fps):
    with tempfile.TemporaryDirectory() as d:
        a, b, drv = (os.path.join(d, n) for n in ("in.pkl", "out.pkl", "drv.py"))
        pickle.dump((dets, fps), open(a, "wb"))
        open(drv, "w").write(NORFAIR_DRIVER)
        subprocess.run([python, drv, a, b], check=True)
        return pickle.load(open(b, "rb"))


def _box(kp):
    v = kp[kp[:, 2] > 0]
    if not len(v):
        return None
    return np.array([v[:, 0].min(), v[:, 1].min(), v[:, 0].max(), v[:, 1].max()])


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    ua = max(a[2] - a[0], 1) * max(a[3] - a[1], 1) + max(b[2] - b[0], 1) * max(b[3] - b[1], 1) - inter
    return inter / ua


def id_metrics(frames, fps):
    tracks, raws = {}, {}
    for i, fr in enumerate(frames):
        for tid, (_, raw) in fr.items():
            b = _box(raw)
            if b is not None:
                tracks.setdefault(tid, []).append((i, b))
                raws.setdefault(tid, []).append(raw)
    switches = switches_kp = 0
    for tid, seq in tracks.items():
        hs = [b[3] - b[1] for _, b in seq]
        h_track = max(float(np.median(hs)), 10.0)
        for n, ((i0, b0), (i1, b1)) in enumerate(zip(seq[:-1], seq[1:])):
            h = max(b0[3] - b0[1], b1[3] - b1[1], 10.0)
            c0, c1 = 0.5 * (b0[:2] + b0[2:]), 0.5 * (b1[:2] + b1[2:])
            allowed = max(1, min(i1 - i0, 5))
            if np.linalg.norm(c1 - c0) > 0.5 * h * allowed:
                switches += 1
            # the same test on the keypoints both frames show (a person seen in parts -- its head
            # in one frame, its legs in the next -- moves its box centre without moving); with
            # none in common, the gap between the two boxes
            r0, r1 = raws[tid][n], raws[tid][n + 1]
            common = (r0[:, 2] > 0) & (r1[:, 2] > 0)
            if common.sum() >= 2:
                d = float(np.median(np.linalg.norm(r1[common, :2] - r0[common, :2], axis=1)))
            else:
                d = max(0.0, max(b0[0], b1[0]) - min(b0[2], b1[2]), max(b0[1], b1[1]) - min(b0[3], b1[3]))
            if d > 0.5 * h_track * allowed:
                switches_kp += 1
    fragments = 0
    births = sorted((seq[0][0], tid) for tid, seq in tracks.items())
    for f0, tid in births:
        b_first = tracks[tid][0][1]
        for other, seq in tracks.items():
            last_i, last_b = seq[-1]
            if other != tid and last_i < f0 and f0 - last_i <= 2 * fps and _iou(b_first, last_b) > 0.3:
                fragments += 1
                break
    lengths = [len(s) for s in tracks.values()]
    return {"ids": len(tracks), "switches": switches, "switches_kp": switches_kp, "fragments": fragments,
            "median_track_frames": float(np.median(lengths)) if lengths else 0.0,
            "tracked_person_frames": int(sum(lengths))}


def _median9(x):
    n = len(x)
    return np.array([np.median(x[max(0, i - 4):i + 5], axis=0) for i in range(n)])


def smoothing_metrics(frames, fps):
    """Jitter of raw vs smoothed keypoints on still stretches, lag on moving ones."""
    per = {}
    for i, fr in enumerate(frames):
        for tid, (sm, raw) in fr.items():
            for k in np.nonzero(raw[:, 2] > 0)[0]:
                per.setdefault((tid, int(k)), []).append((i, raw[k, :2], sm[k, :2]))
    jr, js, lags, still_n = [], [], [], 0
    for key, seq in per.items():
        # runs of consecutive frames
        runs, cur = [], [seq[0]]
        for a, b in zip(seq[:-1], seq[1:]):
            if b[0] == a[0] + 1:
                cur.append(b)
            else:
                runs.append(cur)
                cur = [b]
        runs.append(cur)
        for run in runs:
            if len(run) < 12:
                continue
            raw = np.array([r[1] for r in run], np.float64)
            sm = np.array([r[2] for r in run], np.float64)
            med = _median9(raw)
            speed = np.linalg.norm(np.diff(med, axis=0), axis=1)
            dr = np.linalg.norm(np.diff(raw, axis=0), axis=1)
            ds = np.linalg.norm(np.diff(sm, axis=0), axis=1)
            still = speed < 0.5
            still[:4] = still[-4:] = False
            still_n += int(still.sum())
            jr.extend(dr[still])
            js.extend(ds[still])
            moving = speed >= 1.5
            if moving.sum() >= 8:
                t = np.arange(len(raw), dtype=np.float64)
                idx = np.nonzero(moving)[0] + 1
                best, best_err = 0.0, np.inf
                for shift in np.arange(0.0, 6.01, 0.1):
                    ref = np.stack([np.interp(t[idx] - shift, t, raw[:, c]) for c in (0, 1)], 1)
                    err = np.mean(np.linalg.norm(sm[idx] - ref, axis=1))
                    if err < best_err:
                        best, best_err = shift, err
                lags.append(best)
    out = {"still_samples": still_n,
           "jitter_raw_px": float(np.mean(jr)) if jr else None,
           "jitter_smoothed_px": float(np.mean(js)) if js else None,
           "moving_stretches": len(lags),
           "lag_frames_median": float(np.median(lags)) if lags else None}
    if lags:
        out["lag_ms_median"] = 1000.0 * out["lag_frames_median"] / fps
    return out


def assignment_speed(sizes=(2, 5, 10, 20), runs=2000):
    """Median microseconds of one assignment: scipy's linear_sum_assignment against lap.lapjv."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.RandomState(0)
    out = {}
    try:
        import lap
    except ImportError:
        lap = None
    for n in sizes:
        c = rng.rand(n, n)
        row = {}
        for name, fn in (("scipy", lambda: linear_sum_assignment(c)),
                         ("lap", (lambda: lap.lapjv(c, extend_cost=True)) if lap else None)):
            if fn is None:
                continue
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            row[name] = float(np.median(ts) * 1e6)
        out[str(n)] = row
    return out


def crossing_metrics(frames, labels):
    """Against the true identities of a crossing video: CLEAR-MOT ID switches (a person's track ID
    changes from the last one it had), fragments (a person's coverage interrupted and resumed),
    and whether each person ends with the ID it had in the first frame it was tracked."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from test_crossing import identities

    last, first, covered, switches, frags = {}, {}, {0: [], 1: []}, 0, 0
    for fr, lab in zip(frames, labels):
        ids = list(fr)
        kp = [fr[t][1] for t in ids]
        res = PoseResult(np.stack(kp) if kp else np.zeros((0, 18, 3), np.float32),
                         np.ones(len(kp), np.float32), [""] * 18)
        who = identities(res, lab)
        seen = set()
        for tid, w in zip(ids, who):
            if w is None or w in seen:
                continue
            seen.add(w)
            first.setdefault(w, tid)
            if w in last and last[w] != tid:
                switches += 1
            last[w] = tid
        for w in (0, 1):
            covered[w].append(w in seen)
    for w in (0, 1):
        started = prev = False
        for c in covered[w]:
            frags += int(c and not prev and started)
            started, prev = started or c, c
    kept = sum(1 for w in (0, 1) if w in first and last.get(w) == first[w])
    return {"id_switches": switches, "fragments": frags, "kept_ids": kept}


CROSSINGS = [  # (pair, speed px/frame at 350 px, dwell frames, who is in front)
    (("skier", "batter"), 4, 0, 0), (("skier", "batter"), 4, 0, 1),
    (("skier", "batter"), 8, 0, 0), (("skier", "batter"), 8, 0, 1),
    (("skier", "batter"), 4, 15, 0), (("skier", "batter"), 4, 15, 1),
    (("racer", "skier"), 4, 0, 0), (("racer", "skier"), 4, 0, 1),
    (("racer", "skier"), 6, 25, 0), (("racer", "skier"), 6, 25, 1),
    (("batter", "racer"), 3, 8, 0), (("batter", "racer"), 3, 8, 1),
]
TURN_BACK = [  # the same, but each goes back the way it came after the pause (motion misleads)
    (("skier", "batter"), 4, 10, 0), (("skier", "batter"), 4, 10, 1),
    (("racer", "skier"), 4, 10, 0), (("racer", "skier"), 4, 10, 1),
]


def _crossing_scene(args):
    """``(crossing_video, cut-outs, background, H, W)``: what the crossing videos are made of
    (tests/test_crossing.py: COCO cut-outs crossing on a background), ``--crossing-height`` high."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from test_crossing import background, crossing_video, cutouts

    assets = assets_or_exit()
    H = args.crossing_height
    W = int(round(1.7 * H))
    return crossing_video, cutouts(assets), background(assets, W, H), H, W


def crossings(args, configs):
    crossing_video, cu, bg, H, W = _crossing_scene(args)
    table = {}
    for n, (pair, speed, dwell, front) in enumerate(CROSSINGS + TURN_BACK):
        back = n >= len(CROSSINGS)
        name = "%s+%s v%g dwell%d front%d%s" % (pair[0], pair[1], speed, dwell, front, " turn back" if back else "")
        frames, labels, times = crossing_video([cu[pair[0]], cu[pair[1]]], bg, speed * H / 350.0, dwell, front,
                                               turn_back=back)
        dets, fps, schema, _ = detections(args.model, None, args.height, frames)
        row = {}
        for cname, opts in configs:
            tf, _ = run_edgepose(dets, 25.0, schema, images=frames, **opts)
            row[cname] = crossing_metrics(tf, labels)
        table[name] = {"frames": len(frames), "trackers": row}
        print("  %-38s %s" % (name, "  ".join("%s: %d/%d/%d" % (c, r["id_switches"], r["fragments"], r["kept_ids"])
                                              for c, r in row.items())))
    tot = {}
    for part, sel in (("crossing", lambda nm: "turn back" not in nm), ("turn back", lambda nm: "turn back" in nm)):
        vids = [v for nm, v in table.items() if sel(nm)]
        tot[part] = {c: {k: sum(v["trackers"][c][k] for v in vids) for k in ("id_switches", "fragments", "kept_ids")}
                     for c, _ in configs}
        print("  %s, total (ID switches / fragments / people keeping their ID, of %d):" % (part, 2 * len(vids)))
        for c, r in tot[part].items():
            print("    %-30s %3d %3d %3d" % (c, r["id_switches"], r["fragments"], r["kept_ids"]))
    return {"videos": table, "total": tot}


DECODE_VARIANTS = [{}, {"matching": "hungarian"}, {"min_sample_fraction": 0.6}, {"paf_score_threshold": 0.02},
                   {"paf_samples": 20}, {"peak_threshold": 0.05}, {"min_parts": 5}]


def decode_on_crossings(args):
    """The decode on the overlap frames of 4 crossings (frames 36-67 of each, 4 px/frame, both
    orders, two pairs), per decode variant: people found; *duplicates* (a second person mostly on
    the same cut-out: a fragment); *mixed* (a person with 3 or more keypoints on each cut-out);
    *missed* (a cut-out more than 40 % visible with no person mostly on it)."""
    from edgepose.pipelines import load_estimator

    crossing_video, cu, bg, H, W = _crossing_scene(args)
    est = load_estimator(args.model, threads=2, **({"height": args.height} if args.height else {}))
    base = dict(est.decode_options)
    maps = []
    for pair, front in ((("skier", "batter"), 0), (("skier", "batter"), 1), (("racer", "skier"), 0), (("racer", "skier"), 1)):
        frames, labels, _ = crossing_video([cu[pair[0]], cu[pair[1]]], bg, 4 * H / 350.0, 0, front)
        maps.extend((est.infer(frames[i]), labels[i]) for i in range(36, 68))
    out = []
    for v in DECODE_VARIANTS:
        est.decode_options = dict(base, **v)
        n = dup = mixed = missed = 0
        for mid, lab in maps:
            r = est.finish(mid)
            n += len(r)
            major = []
            for k in r.keypoints:
                q = k[k[:, 2] > 0]
                xs = np.clip(np.round(q[:, 0]).astype(int), 0, W - 1)
                ys = np.clip(np.round(q[:, 1]).astype(int), 0, H - 1)
                a, b = int(np.sum(lab[ys, xs] == 1)), int(np.sum(lab[ys, xs] == 2))
                mixed += int(a >= 3 and b >= 3)
                major.append(1 if a > b else 2 if b > a else 0)
            for w in (1, 2):
                dup += max(major.count(w) - 1, 0)
                missed += int(major.count(w) == 0 and np.sum(lab == w) > 3000)
        out.append({"variant": v, "people": n, "duplicates": dup, "mixed": mixed, "missed": missed})
        print("  %-34s people %3d  duplicates %2d  mixed %2d  missed %2d" % (json.dumps(v) if v else "defaults", n, dup, mixed, missed))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--videos", nargs="+")
    p.add_argument("--norfair-python", help="python of a venv with norfair installed")
    p.add_argument("--height", type=int, help="input height of a dynamic-size model")
    p.add_argument("--sweep", action="store_true", help="also sweep the One Euro min_cutoff and beta")
    p.add_argument("--baseline", help="another track.py (e.g. the previous release's) to compare")
    p.add_argument("--baseline-options", help="JSON dict of options for the --baseline tracker")
    p.add_argument("--crossings", action="store_true",
                   help="also the crossing videos built from COCO cut-outs (tests/test_crossing.py)")
    p.add_argument("--crossing-height", type=int, default=350, help="frame height of the crossing videos")
    p.add_argument("--decode-variants", action="store_true",
                   help="also the decode's options on the overlap frames of the crossings")
    p.add_argument("--cache", help="folder keeping the detections between runs")
    p.add_argument("--json")
    args = p.parse_args(argv)
    global CACHE
    CACHE = args.cache
    if CACHE:
        os.makedirs(CACHE, exist_ok=True)
    videos = args.videos or [asset("videos", "arm_wrestling.mp4"), asset("videos", "street_demo.mp4")]
    report = {"model": os.path.abspath(args.model), "videos": {}, "assignment_us": assignment_speed()}
    configs = [("edgepose (default)", {}),
               ("edgepose, no second pass", {"low_score": 0.3}),
               ("edgepose, max_lost 60", {"max_lost": 60}),
               ("IoU only (rtmlib-like)", {"oks_weight": 0.0}),
               ("OKS only", {"oks_weight": 1.0})]
    if args.baseline:
        configs.insert(0, ("baseline", dict(json.loads(args.baseline_options or "{}"), baseline=args.baseline)))
    if args.crossings:
        print("\ncrossing videos: ID switches / fragments / people keeping their ID (of 2)")
        report["crossings"] = crossings(args, [c for c in configs if c[0] in ("baseline", "edgepose (default)")])
    if args.decode_variants:
        print("\ndecode variants on 128 overlap frames of 4 crossings:")
        report["decode_variants"] = decode_on_crossings(args)
    for v in videos:
        dets, fps, schema, images = detections(args.model, v, args.height)
        rows = {}
        for name, opts in configs:
            frames, ms = run_edgepose(dets, fps, schema, images=images, **opts)
            rows[name] = {**id_metrics(frames, fps), **smoothing_metrics(frames, fps), "ms_per_frame": ms}
        if args.norfair_python:
            frames, ms = run_norfair(args.norfair_python, dets, fps)
            rows["norfair 2.3 (Kalman)"] = {**id_metrics(frames, fps), **smoothing_metrics(frames, fps),
                                            "ms_per_frame": ms}
        report["videos"][os.path.basename(v)] = {"frames": len(dets), "fps": fps,
                                                 "detections": int(sum(len(s) for _, s in dets)),
                                                 "trackers": rows}
        print("\n%s: %d frames, %d detections" % (os.path.basename(v), len(dets), sum(len(s) for _, s in dets)))
        print("  %-28s %4s %8s %8s %9s %7s %10s %10s %8s %8s" % (
            "tracker", "IDs", "switches", "(kp)", "fragments", "med.len", "jitter raw", "jitter sm", "lag ms", "ms/frame"))
        for name, r in rows.items():
            f = lambda x: "-" if x is None else "%.2f" % x  # noqa: E731
            print("  %-28s %4d %8d %8d %9d %7.0f %10s %10s %8s %8.3f" % (
                name, r["ids"], r["switches"], r["switches_kp"], r["fragments"], r["median_track_frames"],
                f(r["jitter_raw_px"]), f(r["jitter_smoothed_px"]), f(r.get("lag_ms_median")),
                r["ms_per_frame"]))
        if args.sweep and len(dets) > 20:
            print("  One Euro sweep (min_cutoff Hz, beta): jitter raw -> smoothed px, lag ms")
            sweep = []
            for mc in (0.3, 0.5, 1.0, 2.0):
                for beta in (0.0, 0.3, 1.0, 3.0):
                    frames, _ = run_edgepose(dets, fps, schema, smoothing={"min_cutoff": mc, "beta": beta})
                    m = smoothing_metrics(frames, fps)
                    sweep.append({"min_cutoff": mc, "beta": beta, **m})
                    print("    %.1f %.1f: %.2f -> %.2f, %.0f" % (mc, beta, m["jitter_raw_px"], m["jitter_smoothed_px"],
                                                             m.get("lag_ms_median") or 0))
            report["videos"][os.path.basename(v)]["sweep"] = sweep
    print("\nassignment, median us: %s" % json.dumps(report["assignment_us"]))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
