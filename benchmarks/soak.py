"""Soak test (issue 12): resident memory of long video runs.

    python benchmarks/soak.py MODEL [--frames 10000] [--height 128] [--json soak.json]
                              [--cmd "edgepose track {model} {video} --height 128 --out {out}"]...
                              [--no-default] [--api-loop]

Builds a video of at least ``--frames`` frames by looping the asset videos (arm_wrestling.mp4,
280 frames of 340x256, by default) into a temporary mp4, then runs each command as a child
process and samples its VmRSS (/proc/PID/status) every ``--interval`` seconds:

- ``edgepose infer MODEL VIDEO --out OUT`` (always, unless ``--no-default``): the command line
  run, pipelined video loop (the default);
- ``edgepose infer ... --no-pipeline``: the same, stages one after the other;
- each ``--cmd`` (``{model}``, ``{video}``, ``{out}``, ``{height}`` are filled in), e.g. the
  tracking loop;
- ``--api-loop``: VideoReader -> estimator -> draw -> VideoWriter in Python, keeping nothing per
  frame (what the commands do, minus their per-frame result lists).

Per command: RSS at the start (first sample), after warm-up (the sample at ``--warmup`` of the
frame loop's duration, default 10 %), at the end of the frame loop (the last sample before the
command prints its "N frames" line; the results file written after that is not the loop), the
maximum, growth = end - after warm-up, and the least-squares slope after warm-up in MB per 1000
frames. It passes when the growth is under ``--budget-mb`` (5 MB).

``infer`` keeps every frame's COCO results in a list until it writes results.json at the end:
growth proportional to the frames, not a leak. The size of those Python objects is measured
(deep ``sys.getsizeof`` of results.json loaded back, which builds the same lists, dicts and
floats) and reported per frame, with the growth net of it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
END_MARKER = re.compile(r"\b\d+ frames\b")


def assets_dir() -> Optional[str]:
    sys.path.insert(0, REPO)
    from edgepose.assets import assets_dir as a
    return a()


def looped_video(sources: List[str], frames: int, path: str) -> int:
    """Concatenate ``sources`` over and over into ``path`` (mp4v) until ``frames`` frames;
    frames of another size are resized to the first video's. Returns the frame count."""
    import cv2
    sys.path.insert(0, REPO)
    from edgepose.io import VideoReader

    readers = [VideoReader(s) for s in sources]      # one line for a video without frames
    clips = [list(r) for r in readers]
    h, w = clips[0][0].shape[:2]
    fps = readers[0].fps
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = 0
    while n < frames:
        for fs in clips:
            for f in fs:
                if f.shape[:2] != (h, w):
                    f = cv2.resize(f, (w, h))
                vw.write(f)
                n += 1
    vw.release()
    return n


def rss_kb(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def run_sampled(cmd: List[str], interval: float, log_path: str) -> Dict[str, Any]:
    """Run ``cmd``, sampling its RSS; the time its stdout first says "N frames" ends the loop."""
    t0 = time.monotonic()
    samples: List[List[float]] = []
    marks: Dict[str, float] = {}
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, universal_newlines=True, bufsize=1,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))

        def read():
            for ln in p.stdout:
                log.write(ln)
                if "loop_end" not in marks and END_MARKER.search(ln):
                    marks["loop_end"] = time.monotonic() - t0
                    marks["loop_end_line"] = ln.strip()

        rd = threading.Thread(target=read, daemon=True)
        rd.start()
        time.sleep(interval)        # the first sample: past the exec, in the interpreter's start-up
        while p.poll() is None:
            r = rss_kb(p.pid)
            if r is not None:
                samples.append([round(time.monotonic() - t0, 3), r])
            time.sleep(interval)
        rd.join(10)
    return {"cmd": cmd, "rc": p.returncode, "duration_s": round(time.monotonic() - t0, 2),
            "samples": samples, **marks}


def summarize(run: Dict[str, Any], frames: int, warmup: float, budget_mb: float) -> Dict[str, Any]:
    smp = run["samples"]
    if run["rc"] != 0 or len(smp) < 3:
        return {"ok": False, "why": "exit status %s, %d samples" % (run["rc"], len(smp))}
    end_t = run.get("loop_end") or smp[-1][0]
    loop = [s for s in smp if s[0] <= end_t] or smp
    t_w = loop[0][0] + warmup * (end_t - loop[0][0])
    after = [s for s in loop if s[0] >= t_w] or loop[-1:]
    mb = 1.0 / 1024.0
    start, warm, end = loop[0][1] * mb, after[0][1] * mb, loop[-1][1] * mb
    slope = None
    if len(after) >= 3:
        import numpy as np
        t = np.array([s[0] for s in after])
        r = np.array([s[1] for s in after]) * mb
        k = np.polyfit(t, r, 1)[0]                      # MB per second
        fps = frames / max(end_t - loop[0][0], 1e-9)
        slope = round(float(k / fps * 1000.0), 3)       # MB per 1000 frames
    growth = end - warm
    return {"ok": growth < budget_mb, "start_mb": round(start, 1), "warmup_mb": round(warm, 1),
            "warmup_at_s": round(after[0][0], 1), "end_mb": round(end, 1), "end_at_s": round(loop[-1][0], 1),
            "max_mb": round(max(s[1] for s in smp) * mb, 1), "growth_mb": round(growth, 2),
            "slope_mb_per_1k_frames": slope, "loop_s": round(end_t, 1)}


API_LOOP = r'''
import sys
from edgepose.draw import draw_poses
from edgepose.io import VideoReader, VideoWriter
from edgepose.pipelines import load_estimator
model, video, out, height = sys.argv[1:5]
est = load_estimator(model, height=int(height) if height != "0" else None)
r = VideoReader(video)
w = VideoWriter(out, r.fps, r.size)
n = 0
for f in r:
    res = est(f)
    w.write(draw_poses(f, res))
    n += 1
w.close()
print("%d frames" % n, flush=True)
'''


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--video", action="append", help="videos to loop (default: the assets' arm_wrestling.mp4)")
    ap.add_argument("--height", type=int, default=128, help="model input height (dynamic-size models; 0: the model's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cmd", action="append", default=[], help="another command to soak ({model} {video} {out} {height})")
    ap.add_argument("--no-default", action="store_true", help="do not run the two edgepose infer commands")
    ap.add_argument("--api-loop", action="store_true", help="also the Python loop that keeps nothing per frame")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--warmup", type=float, default=0.10, help="warm-up: this fraction of the frame loop")
    ap.add_argument("--budget-mb", type=float, default=5.0)
    ap.add_argument("--keep", help="keep the looped video and outputs in this folder")
    ap.add_argument("--json", help="write the samples and the summary here")
    a = ap.parse_args(argv)

    videos = a.video
    if not videos:
        d = assets_dir()
        if not d:
            raise SystemExit("no --video and no assets (EDGEPOSE_ASSETS)")
        videos = [os.path.join(d, "videos", "arm_wrestling.mp4")]
    work = a.keep or tempfile.mkdtemp(prefix="edgepose-soak-")
    os.makedirs(work, exist_ok=True)
    video = os.path.join(work, "looped.mp4")
    t = time.time()
    n = looped_video(videos, a.frames, video)
    print("looped video: %d frames (%s) in %.0f s: %s" % (n, ", ".join(os.path.basename(v) for v in videos),
                                                          time.time() - t, video))
    edgepose = [sys.executable, "-m", "edgepose"]
    hargs = ["--height", str(a.height)] if a.height else []
    targs = ["--threads", str(a.threads)] if a.threads else []
    jobs = []
    if not a.no_default:
        for name, extra in (("infer (pipelined)", []), ("infer --no-pipeline", ["--no-pipeline"])):
            out = os.path.join(work, "out-" + ("np" if extra else "p"))
            jobs.append((name, edgepose + ["infer", a.model, video, "--out", out] + hargs + targs + extra,
                         os.path.join(out, "results.json")))
    for i, c in enumerate(a.cmd):
        out = os.path.join(work, "out-cmd%d" % i)
        c = c.format(model=shlex.quote(a.model), video=shlex.quote(video), out=shlex.quote(out), height=a.height)
        jobs.append((c, shlex.split(c), None))
    if a.api_loop:
        jobs.append(("python loop (nothing kept per frame)",
                     [sys.executable, "-c", API_LOOP, a.model, video, os.path.join(work, "api.mp4"), str(a.height)],
                     None))
    report: Dict[str, Any] = {"model": a.model, "frames": n, "videos": videos, "interval_s": a.interval,
                              "warmup_fraction": a.warmup, "budget_mb": a.budget_mb, "runs": []}
    for name, cmd, _ in jobs:
        print("running: %s" % " ".join(shlex.quote(x) for x in cmd), flush=True)
        run = run_sampled(cmd, a.interval, os.path.join(work, "log-%d.txt" % len(report["runs"])))
        s = summarize(run, n, a.warmup, a.budget_mb)
        report["runs"].append({"name": name, **s, "rc": run["rc"], "duration_s": run["duration_s"],
                               "loop_end_line": run.get("loop_end_line"), "samples": run["samples"]})
        print("  %s" % json.dumps(s), flush=True)
    print("\n%-38s %7s %8s %8s %8s %8s %9s %s" % ("command", "start", "warm-up", "end", "max", "growth",
                                                "MB/1k fr", "pass"))
    for r in report["runs"]:
        if "growth_mb" not in r:
            print("%-38s failed: %s" % (r["name"][:38], r.get("why")))
            continue
        print("%-38s %6.1fM %7.1fM %7.1fM %7.1fM %7.2fM %9s %s" % (
            r["name"][:38], r["start_mb"], r["warmup_mb"], r["end_mb"], r["max_mb"], r["growth_mb"],
            r["slope_mb_per_1k_frames"], "yes" if r["ok"] else "NO"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all(r.get("ok") for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
