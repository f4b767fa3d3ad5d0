#!/usr/bin/env python3
"""End-to-end video throughput (file in -> annotated mp4 + JSON lines out, tracking on),
sequential against pipelined, at 1 and 2 inference threads, in one run; and the pipeline's
post-processing per frame against the bare decode call, for an NHWC and an NCHW model.

    python benchmarks/video_pipeline.py --model tfpose.onnx --model lwop.onnx [--video V] [--rounds 2] [--json out.json]

Modes are interleaved round by round (A B A B ...) so that each sees the same machine load;
the figures are medians over the rounds.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from edgepose.assets import asset  # noqa: E402
from edgepose.files import write_json  # noqa: E402


def throughput(model, video, threads, pipelined, height=None, frames=0):
    from edgepose.pipelines import load_estimator
    from edgepose.track import Tracker
    from edgepose.video import run_video

    opts = {"height": height} if height else {}
    est = load_estimator(model, threads=threads, **opts)
    with tempfile.TemporaryDirectory() as d:
        st = run_video(video, est, Tracker(), out_video=os.path.join(d, "o.mp4"),
                       jsonl=os.path.join(d, "o.jsonl"), pipelined=pipelined, max_frames=frames)
    return st["fps"], st["stages_ms"]


def postprocess_vs_decode(model, image, runs=300, height=None):
    """Median ms of the pipeline's decode stage (BottomUpEstimator.finish: decode, coordinates,
    the result) against the bare C++ decode call on the same maps."""
    from edgepose import decode
    from edgepose.io import read_image
    from edgepose.pipelines import load_estimator

    opts = {"height": height} if height else {}
    est = load_estimator(model, threads=2, **opts)
    img = read_image(image)
    inferred = est.infer(img)
    hm, paf = inferred[0], inferred[1]
    layout = est.map_layouts[0]

    def bare_call():   # the C++ decode alone: peaks + grouping on the maps, heatmap pixels out
        return decode.decode_bottomup(hm, paf, est.limbs, layout=layout, **est.decode_options)
    fin, bare = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        est.finish(inferred)
        t1 = time.perf_counter()
        bare_call()
        t2 = time.perf_counter()
        fin.append(t1 - t0)
        bare.append(t2 - t1)
    return {"layout": layout,
            "maps": [list(np.shape(hm)), list(np.shape(paf))],
            "pipeline_postprocess_ms": float(np.median(fin) * 1e3),
            "decode_only_ms": float(np.median(bare) * 1e3),
            "ratio": float(np.median(fin) / np.median(bare))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True)
    p.add_argument("--video", default=asset("videos", "arm_wrestling.mp4"))
    p.add_argument("--image", default=asset("coco", "000000196141.jpg"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--frames", type=int, default=0, help="frames per run (0: the whole video)")
    p.add_argument("--height", type=int, help="input height of dynamic-size models")
    p.add_argument("--json")
    args = p.parse_args(argv)
    report = {"video": os.path.basename(args.video), "models": {}}
    for model in args.model:
        name = os.path.basename(model)
        row = {"postprocess": postprocess_vs_decode(model, args.image, height=args.height)}
        modes = [(t, pl) for t in (1, 2) for pl in (False, True)]
        got = {m: [] for m in modes}
        stages = {}
        for _ in range(args.rounds):
            for m in modes:
                fps, st = throughput(model, args.video, m[0], m[1], args.height, args.frames)
                got[m].append(fps)
                stages[m] = st
        row["fps"] = {"%d thread%s, %s" % (t, "s" if t > 1 else "", "pipelined" if pl else "sequential"):
                      {"fps_median": float(np.median(v)), "runs": v, "stages_ms": stages[(t, pl)]}
                      for (t, pl), v in got.items()}
        report["models"][name] = row
        pp = row["postprocess"]
        print("\n%s (%s maps %s): pipeline post-processing %.3f ms, decode alone %.3f ms (x%.2f)"
              % (name, pp["layout"], pp["maps"], pp["pipeline_postprocess_ms"], pp["decode_only_ms"], pp["ratio"]))
        print("  %-30s %8s   %s" % ("mode", "fps", "runs"))
        for k, v in row["fps"].items():
            print("  %-30s %8.2f   %s" % (k, v["fps_median"], " ".join("%.2f" % x for x in v["runs"])))
        for t in (1, 2):
            s = np.median(got[(t, True)]) / np.median(got[(t, False)])
            print("  pipelined / sequential at %d thread%s: x%.2f" % (t, "s" if t > 1 else "", s))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
