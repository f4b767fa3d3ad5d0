#!/usr/bin/env python3
"""edgepose on Ray: throughput with 1 and 2 workers on this machine, and the per-item overhead.

    python benchmarks/ray_throughput.py [MODEL] [--height H] [--images DIR] [--video V]
                                        [--max-frames N] [--json out.json]

MODEL defaults to the real Lightweight OpenPose checkpoint of the assets, exported to ONNX
(368x496). One run each, on the same inputs (a folder of images and a video's first frames, in 20-frame items):

- ``plain``: no Ray, one estimator (1 thread) in this process: the images and frames one after
  the other, nothing written -- what one worker can do at best;
- ``ray w=1`` / ``ray w=2``: ``edgepose.ray.infer`` with 1 / 2 workers (1 thread
  each) on a local Ray instance it starts: everything ``edgepose infer --ray`` writes
  (annotated images and video, results, summary). *wall* is the whole call (Ray start-up,
  model loads, the driver's replay of the video, writing); *run* is the items' part;
- per-item overhead: the images again, 1 image per item, 1 worker, once with one item in flight
  (``queue_depth=1``: each item's dispatch, result transfer and record write show in full:
  ``(run - busy) / items``) and once with the default 2 in flight (what is left of it).
"""
import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from edgepose.assets import asset  # noqa: E402


def default_model(tmp):
    from edgepose.exporters.api import export

    src = asset("models", "lwop_hpe0001.pth")
    if src is None:
        sys.exit("no MODEL given and the assets are absent (set EDGEPOSE_ASSETS)")
    out = os.path.join(tmp, "lwop.onnx")
    export(src, target="onnx", out=out, progress=False)
    return out


def plain(model, images, video, max_frames, opts):
    from edgepose.io import list_images, read_image
    from edgepose.pipelines import load_estimator
    from edgepose.video import open_source

    est = load_estimator(model, threads=1, **opts)
    paths = list_images(images)
    est(read_image(paths[0]))                      # warm-up
    t0 = time.perf_counter()
    for p in paths:
        est(read_image(p))
    src, n = open_source(video), 0
    while n < max_frames:
        got = src.read()
        if got is None:
            break
        est(got[2])
        n += 1
    src.release()
    wall = time.perf_counter() - t0
    return {"images": len(paths), "frames": n, "run_s": round(wall, 3),
            "per_s": round((len(paths) + n) / wall, 3)}


def ray_run(model, sources, tmp, name, opts, **kw):
    from edgepose.ray import infer

    out = os.path.join(tmp, name)
    t0 = time.perf_counter()
    r = infer(model, sources, out=out, summary_json=os.path.join(out, "summary.json"),
              estimator_options=opts, echo=None, progress=False, **kw)
    st = r["stats"]
    st["call_s"] = round(time.perf_counter() - t0, 3)
    return st


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", help="pose model (default: the assets' Lightweight OpenPose, exported)")
    ap.add_argument("--height", type=int, help="input height (dynamic-size models)")
    ap.add_argument("--images", default=asset("people"), help="folder of images (default: assets/people)")
    ap.add_argument("--video", default=asset("videos", "arm_wrestling.mp4"))
    ap.add_argument("--max-frames", type=int, default=140, help="the video's first N frames (140)")
    ap.add_argument("--chunk-frames", type=int, default=20,
                    help="video frames per item (20: 7 items; the CLI's default 200 would make the "
                         "140 frames one item, and one worker would do them all)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    from edgepose.log import configure

    configure(-1)                     # the jobs' own summaries off: the table says it
    opts = {"height": args.height} if args.height else {}
    with tempfile.TemporaryDirectory(prefix="edgepose-ray-bench-") as tmp:
        model = args.model or default_model(tmp)
        load = os.getloadavg()
        rows = {"plain": plain(model, args.images, args.video, args.max_frames, opts)}
        for w in (1, 2):
            rows["ray w=%d" % w] = ray_run(model, [args.images, args.video], tmp, "w%d" % w, opts,
                                           workers=w, max_frames=args.max_frames,
                                           chunk_frames=args.chunk_frames)
        over = {}
        for depth in (1, 2):
            st = ray_run(model, [args.images], tmp, "over%d" % depth, opts, workers=1,
                         images_per_item=1, queue_depth=depth, draw=False)
            over[depth] = {"items": st["items_run"], "run_s": st["processing_s"], "busy_s": st["busy_s"],
                           "overhead_ms_per_item": round(1000 * (st["processing_s"] - st["busy_s"])
                                                         / max(st["items_run"], 1), 2),
                           "model_ms_per_item": round(1000 * st["busy_s"] / max(st["items_run"], 1), 1)}
    p = rows["plain"]
    n = p["images"] + p["frames"]
    print("%s: %d images + %d frames, this machine: %d CPUs, load average %.1f when it started"
          % (os.path.basename(model), p["images"], p["frames"], os.cpu_count(), load[0]))
    print("  %-10s %8s %8s %8s %8s  %s" % ("", "wall s", "run s", "per s", "x plain", "per worker (images+frames per s of run)"))
    print("  %-10s %8s %8.2f %8.2f %8.2f" % ("plain", "", p["run_s"], p["per_s"], 1.0))
    for k in ("ray w=1", "ray w=2"):
        st = rows[k]
        per = ", ".join("w%d %d in %.2f/s" % (w["worker"], w["frames"], w["frames_per_s"]) for w in st["workers"])
        print("  %-10s %8.2f %8.2f %8.2f %8.2f  %s (start-up %.1f s, merge %.1f s, busy %.0f%%)"
              % (k, st["call_s"], st["processing_s"], n / st["processing_s"],
                 n / st["processing_s"] / p["per_s"], per, st["startup_s"], st["merge_s"],
                 100 * st["utilization"]))
    for depth, o in over.items():
        print("  per-item overhead, %d in flight: %.2f ms per item (%d items of 1 image, model+read %.1f ms each)"
              % (depth, o["overhead_ms_per_item"], o["items"], o["model_ms_per_item"]))
    if args.json:
        from edgepose.files import write_json

        write_json(args.json, {"model": os.path.basename(model), "inputs": {"images": p["images"],
                   "frames": p["frames"]}, "cpus": os.cpu_count(), "load_average": load[0],
                   "runs": rows, "overhead": {str(k): v for k, v in over.items()}})


if __name__ == "__main__":
    main()
