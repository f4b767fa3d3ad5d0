"""The ``edgepose`` command line: export, infer, eval, bench, info, build-engine.

Errors are one line on stderr and a non-zero exit (2 for bad input, 1 for anything unexpected);
set ``EDGEPOSE_DEBUG=1`` for a traceback.
"""
import argparse
import json
import os
import sys
from typing import List, Optional

import numpy as np

from . import __version__
from .errors import EdgeposeError, InputError, first_line
from .backends import BACKENDS
from .reference import REFINES


def _size(text: str):
    try:
        h, w = text.lower().split("x")
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError("expected HxW, e.g. 368x432, got %r" % text)


def _count(minimum: int):
    """argparse type: an integer >= ``minimum`` (a one-line usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected an integer, got %r" % text)
        if v < minimum:
            raise argparse.ArgumentTypeError("must be >= %d, got %d" % (minimum, v))
        return v
    return parse


def _float_arg(positive: bool):
    """argparse type: a finite number, > 0 (``positive``) or >= 0 (a one-line usage error otherwise)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a number, got %r" % text)
        if not ((v > 0 if positive else v >= 0) and np.isfinite(v)):
            raise argparse.ArgumentTypeError("must be a %s, got %r"
                                             % ("positive number" if positive else "number >= 0", text))
        return v
    return parse


_positive_float, _nonneg_float = _float_arg(True), _float_arg(False)


def _holdout_arg(text: str):
    if text == "auto":
        return "auto"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a count or 'auto', got %r" % text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %d" % v)
    return v


def _estimator(args):
    from .runner import EstimatorOptions

    return EstimatorOptions.from_args(args).load()


def _boxes_arg(args):
    """{image_id: (boxes, scores)} from --boxes (COCO detection results), or None."""
    if not getattr(args, "boxes", None):
        return None
    from .io import load_coco_boxes

    return load_coco_boxes(args.boxes, score_threshold=args.boxes_threshold)


def _tracker(args):
    """The tracking flags, checked before the model loads (None without tracking)."""
    from .runner import tracker_options_from_args

    return tracker_options_from_args(args)


# ----------------------------------------------------------------------------------------------
def cmd_export(args) -> int:
    if sys.version_info < (3, 8):
        from .errors import ExportError
        raise ExportError("edgepose export needs Python >= 3.8 (torch, onnx); this is Python %d.%d: export "
                          "on a workstation and copy the artifact here" % sys.version_info[:2])
    from .exporters import api

    opts = {}
    if args.no_gate:
        opts["gate"] = False
    if args.bias_correction:
        opts["bias_correction"] = True
    for k in ("calib_method", "n_calib", "holdout", "max_ap_drop", "coco", "images", "workspace_mb",
              "dla_core", "max_label_free_drop", "int8_format", "min_speedup"):
        v = getattr(args, k, None)
        if v is not None:
            opts[{"images": "images_dir", "calib_method": "method", "int8_format": "format"}.get(k, k)] = v
    report = api.export(args.source, target=args.target, out=args.output, arch=args.arch,
                        spec=args.spec, input_size=args.input_size, dynamic=args.dynamic,
                        opset=args.opset, calib=args.calib, **opts)
    if args.json:
        from .files import write_json

        write_json(args.json, report)
    written = report.get("written") or [report.get("output", args.output)]
    print("wrote %s%s" % (written[0], " (+ %s)" % ", ".join(os.path.basename(p) for p in written[1:])
                          if len(written) > 1 else ""))
    if report.get("verdict"):      # the last line: what INT8 buys on this CPU
        print(report["verdict"])
    return 0


def _ray_opts(sp):
    sp.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                    help="run on Ray: without ADDRESS a local Ray instance on this machine; 'auto' or "
                         "an address joins an existing cluster (pip install 'edgepose[ray]')")
    sp.add_argument("--workers", type=_count(1), help="Ray: worker actors (one estimator each; default 2)")
    sp.add_argument("--chunk-frames", type=_count(1),
                    help="Ray: video frames per work item (default 200)")


def cmd_infer(args) -> int:
    if getattr(args, "ray", None) is not None:
        return _ray_infer(args)
    import contextlib

    from .io import list_images
    from .files import JsonArrayWriter
    from .runner import infer_images
    from .sources import source_kind

    if len(args.input) > 1:
        raise InputError("%d sources given: infer takes one (several with --ray)" % len(args.input))
    source = args.input[0]
    kind = source_kind(source)
    if kind != "video" and (args.track or args.jsonl or args.csv or args.plot):
        raise InputError("--track, --jsonl, --csv and --plot need a video or camera source, got %s" % source)
    track = _tracker(args) if kind == "video" and args.track else None
    paths = None
    if kind != "video":
        paths = [source] if kind == "image" else list_images(source)
        if not paths:
            raise InputError("no images found in %s" % source)
    est = _estimator(args)
    boxes_by_image = _boxes_arg(args)
    out_dir = args.out or "edgepose_out"
    json_path = args.json or os.path.join(out_dir, "results.json")
    with contextlib.ExitStack() as outputs:   # streamed: memory does not grow with the frames
        results = outputs.enter_context(JsonArrayWriter(json_path))
        summary = outputs.enter_context(JsonArrayWriter(args.summary_json)) if args.summary_json else None
        if paths is not None:
            infer_images(est, paths, None if args.no_draw else out_dir, boxes_by_image, results, summary,
                         echo=print, progress=sys.stderr.isatty())
        else:
            stats = _video(args, est, source, out_dir, results, summary, track, args.jsonl, boxes_by_image)
            from .runner import video_summary_line

            print(video_summary_line(source, stats))
    print("wrote %s" % json_path)
    return 0


def _video(args, est, source, out_dir, results, summary, track, jsonl, boxes_by_image=None):
    from .runner import infer_video

    stats = infer_video(est, source, None if args.no_draw else out_dir, results, summary, tracker=track,
                        jsonl=jsonl, csv=getattr(args, "csv", None), plot=getattr(args, "plot", None),
                        pipelined=not args.no_pipeline, max_fps=args.max_fps,
                        max_frames=args.max_frames or 0, boxes_by_image=boxes_by_image,
                        progress=sys.stderr.isatty())
    if stats["interrupted"]:
        print("interrupted after %d frames: outputs finalised" % stats["frames_processed"])
    return stats


def _ray_infer(args) -> int:
    """``edgepose infer MODEL SOURCE... --ray [ADDRESS]``: what ``edgepose infer`` prints and
    writes, from Ray's workers (every frame of a file is processed: no --max-fps)."""
    from .ray import infer
    from .runner import EstimatorOptions

    infer(EstimatorOptions.from_args(args), args.input, out=args.out, json_path=args.json,
          summary_json=args.summary_json, draw=not args.no_draw, address=args.ray, workers=args.workers,
          chunk_frames=args.chunk_frames, track=_tracker(args) if getattr(args, "track", False) else None,
          jsonl=getattr(args, "jsonl", None), csv=getattr(args, "csv", None),
          plot=getattr(args, "plot", None), max_frames=getattr(args, "max_frames", None),
          pipelined=not getattr(args, "no_pipeline", False), boxes=getattr(args, "boxes", None),
          boxes_threshold=getattr(args, "boxes_threshold", 0.0))
    return 0


def cmd_track(args) -> int:
    """People with IDs and smoothed keypoints through a video, a camera or a stream."""
    import contextlib

    from .files import JsonArrayWriter
    from .sources import source_kind, source_name

    source = args.source
    if not os.path.isdir(source) and source_kind(source) != "video":
        raise InputError("track needs a video, a folder of frames, a camera or a stream, got %s" % source)
    spec = _tracker(args)
    est = _estimator(args)
    out_dir = args.out or "edgepose_out"
    with contextlib.ExitStack() as outputs:
        summary = outputs.enter_context(JsonArrayWriter(args.summary_json)) if args.summary_json else None
        stats = _video(args, est, source, out_dir, None, summary, spec, args.json)
    print("%s: %d frames in %.1f s (%.1f fps, %s), %d dropped, %d skipped%s"
          % (source_name(source), stats["frames_processed"], stats["wall_s"], stats["fps"],
             "pipelined" if stats["pipelined"] else "sequential", stats["frames_dropped"],
             stats["frames_skipped"], "".join("; wrote %s" % p for p in stats["outputs"])))
    return 0


def cmd_eval(args) -> int:
    if getattr(args, "ray", None) is not None:
        return _ray_eval(args)
    from .evaluate import coco_pairs, evaluate_coco

    coco_pairs(args.coco, args.images, boxes=getattr(args, "boxes", None))
    est = _estimator(args)
    ann = args.coco[0] if len(args.coco) == 1 else list(zip(args.coco, args.images))
    r = evaluate_coco(est, ann, args.images[0] if len(args.coco) == 1 else None,
                      boxes_by_image=_boxes_arg(args), progress=sys.stderr.isatty())
    report_eval(args, r)
    return 0


def report_eval(args, r) -> None:
    """Print an evaluation's ten COCO stats and write --json / --results (with or without Ray)."""
    from .evaluate import STAT_NAMES
    from .files import write_json

    stats = r["stats"]
    print("COCO keypoints on %d images (%d predicted people):" % (r["images"], r["people"]))
    for k in STAT_NAMES:
        print("  %-5s %.3f" % (k, stats[k]))
    if args.json:
        write_json(args.json, {**stats, "images": r["images"], "people": r["people"],
                               "model": os.path.abspath(args.model), "coco": args.coco,
                               "exact_int8": bool(args.exact_int8)})
    if args.results:
        write_json(args.results, r["results"])


def _ray_eval(args) -> int:
    """``edgepose eval ... --ray [ADDRESS]``: what ``edgepose eval`` prints and writes; the job's
    folder goes beside --results (or --json)."""
    from .ray import evaluate, log_summary, work_root
    from .runner import EstimatorOptions

    work = None
    for p in (args.results, args.json):
        if p:
            work = work_root(os.path.dirname(os.path.abspath(p)))
            break
    r = evaluate(EstimatorOptions.from_args(args), args.coco, args.images, address=args.ray,
                 workers=args.workers, boxes=getattr(args, "boxes", None),
                 boxes_threshold=getattr(args, "boxes_threshold", 0.0), work_dir=work)
    report_eval(args, r)
    log_summary(r["ray"])
    return 0


def cmd_bench(args) -> int:
    from .assets import asset
    from .io import read_image
    from .files import write_json

    img_path = args.image or asset("coco", "000000196141.jpg")
    if img_path is None:
        raise InputError("no --image given and the sample assets are absent (set EDGEPOSE_ASSETS)")
    img = read_image(img_path)
    est = _estimator(args)
    from .bench import bench_estimator

    res = bench_estimator(est, img, runs=args.runs, warmup=args.warmup)
    backend = est.backend
    info = {"model": os.path.abspath(args.model), "image": os.path.basename(img_path),
            "image_size": [img.shape[1], img.shape[0]], "backend": backend.describe(),
            "threads": args.threads, "runs": args.runs, "edgepose_version": __version__}
    if est.meta.family == "bottomup":
        from .preprocess import bottomup_input_size

        H, W, _ = bottomup_input_size(img.shape[:2], est.meta, args.height)
        info["input_size"] = [H, W]
    print("%s  (%s, %dx%d image, %d runs, threads=%s)" % (os.path.basename(args.model), backend.describe(),
                                                         img.shape[1], img.shape[0], args.runs,
                                                         args.threads or "default"))
    print("  %-16s %9s %9s" % ("stage", "median", "p90"))
    for k, v in res.items():
        if isinstance(v, dict):
            print("  %-16s %9.3f %9.3f" % (k, v["median"], v["p90"]))
    print("  people: %d" % res["people"])
    if est.meta.family in ("bottomup", "onestage"):
        pp = res["preprocess_ms"]["median"] + res["postprocess_ms"]["median"]
        share = pp / max(res["inference_ms"]["median"], 1e-9)
        res["pre_post_share_of_inference"] = share
        print("  pre+post = %.1f%% of inference" % (100 * share))
    elif est.meta.family == "topdown":
        from .bench import benchmark_people

        per = benchmark_people(est, img, counts=(1, 5, 20), runs=max(5, args.runs // 5))
        res["per_person"] = per
        print("  per person: %s" % json.dumps(per))
    if args.json:
        write_json(args.json, {**info, **res})
    return 0


def _bundle_info(path: str) -> int:
    """A TensorRT bundle, described from its files (no TensorRT needed)."""
    from .trt_cache import ACCURACY_JSON, Bundle

    b = Bundle(path)
    b.verify_files()
    meta = b.meta()
    print("bundle:   %s (TensorRT deploy bundle)" % path)
    print("precision: %s, workspace %d MiB%s" % (b.precision, b.workspace_mb,
                                               ", DLA %s" % json.dumps(b.dla) if b.dla else ""))
    print("shapes:   %s" % json.dumps(b.input_shapes))
    print("family:   %s (%s), %d keypoints" % (meta.family, meta.get("arch", "?"), meta.num_keypoints))
    if b.has(ACCURACY_JSON):
        with open(b.file(ACCURACY_JSON)) as f:
            acc = json.load(f)
        print("accuracy: " + ", ".join("%s %s" % (k, round(acc[k], 4) if isinstance(acc[k], float) else acc[k])
                                      for k in ("ap_float", "ap_quant", "ap_drop", "oks_agreement",
                                                "passed", "float_mac_fraction") if k in acc))
    print("engine:   built on the Jetson: edgepose build-engine %s" % path)
    return 0


def cmd_info(args) -> int:
    from .backends import load_backend

    if os.path.isdir(args.model) and not args.json:
        return _bundle_info(args.model)
    backend = load_backend(args.model)
    meta = backend.meta
    if args.json:
        print(json.dumps({"backend": backend.describe(),
                          "inputs": [[t.name, list(t.shape), str(t.dtype)] for t in backend.inputs],
                          "outputs": [[t.name, list(t.shape), str(t.dtype)] for t in backend.outputs],
                          "metadata": meta.data if meta else None}, indent=1))
        return 0
    print("model:    %s" % args.model)
    print("backend:  %s" % backend.describe())
    for t in backend.inputs:
        print("input:    %s %s %s" % (t.name, list(t.shape), t.dtype))
    for t in backend.outputs:
        print("output:   %s %s %s" % (t.name, list(t.shape), t.dtype))
    if meta is None:
        print("metadata: none (import with `edgepose export MODEL.onnx --spec SPEC.json --target onnx -o OUT.onnx`)")
        return 0
    d = meta.data
    inp = d["input"]
    print("family:   %s (%s)" % (d["family"], d.get("arch", "?")))
    print("input:    %s %dx%d %s mean=%s std=%s%s" % (inp["layout"], inp["height"], inp["width"],
                                                      inp["channel_order"], inp["mean"], inp["std"],
                                                      " dynamic H/W" if inp.get("dynamic_hw") else ""))
    if "stride" in d:
        print("stride:   %s (heatmap offset %s)" % (d["stride"], d.get("heatmap_offset")))
    for k in ("onestage", "letterbox", "crop"):
        if d.get(k):
            print("%-9s %s" % (k + ":", json.dumps(d[k], sort_keys=True)))
    print("keypoints (%d): %s" % (len(d["keypoints"]), ", ".join(d["keypoints"])))
    if d.get("limbs"):
        print("limbs:    %d PAF pairs" % len(d["limbs"]))
    print("decode:   %s" % json.dumps(d["decode"], sort_keys=True))
    print("precision: %s" % d.get("precision"))
    q = d.get("quantization") or {}
    if q.get("runtime"):      # cpu-int8: the runtime measured faster for it at export
        rt = q["runtime"]
        print("runtime:  %s measured faster on the export's CPU (%s; OpenVINO %.2fx ONNX Runtime, CPU time at 1 "
              "thread)%s" % (rt.get("faster"), rt.get("kernels"), rt.get("openvino_cpu_speedup") or float("nan"),
                            ": --backend openvino" if rt.get("faster") == "openvino" else ""))
    for k in ("model_config", "export", "source_io", "quantization"):
        if d.get(k):
            print("%s: %s" % (k, json.dumps(d[k], sort_keys=True)))
    for k in ("source_sha256", "edgepose_version"):
        if d.get(k):
            print("%s: %s" % (k, d[k]))
    return 0


def cmd_build_engine(args) -> int:
    from .backends.tensorrt import build_engine

    path = build_engine(args.bundle, precision=args.precision, workspace_mb=args.workspace_mb,
                        dla_core=args.dla_core, force=args.force)
    print("engine: %s" % path)
    return 0


# ----------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``edgepose CMD: error: ...``), exit code 2; --help has the usage."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgepose", description="Pose models from PyTorch to the edge.")
    p.add_argument("--version", action="version", version="edgepose " + __version__)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log on stderr (debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def model_opts(sp, detector=True):
        sp.add_argument("--threads", type=_count(1), help="inference threads")
        sp.add_argument("--providers", nargs="+", help="onnxruntime execution providers")
        sp.add_argument("--backend", choices=["auto"] + list(BACKENDS),
                        help="runtime of the pose model (default auto: by file type; openvino runs "
                             "an .onnx model, pip install 'edgepose[openvino]')")
        sp.add_argument("--height", type=_count(8), help="bottom-up input height (dynamic-size models)")
        sp.add_argument("--refine", choices=list(REFINES),
                        help="subpixel refinement (default: the model's)")
        sp.add_argument("--max-peaks", type=_count(1),
                        help="bottom-up: candidates per keypoint type (default: the model's, 32; raise for crowds)")
        if detector:
            sp.add_argument("--detector", help="person detector model (top-down models)")
            sp.add_argument("--detector-spec", help="JSON spec of a detector edgepose does not know")
            sp.add_argument("--detector-backend", choices=list(BACKENDS),
                            help="runtime of the person detector (default: --backend where it reads the "
                                 "detector's file type, else by file type)")
            sp.add_argument("--boxes", help="person boxes, COCO detection-results JSON (top-down)")
            sp.add_argument("--boxes-threshold", type=float, default=0.0,
                            help="ignore --boxes entries scoring below this")
            sp.add_argument("--flip-test", action="store_true",
                            help="average with the horizontally flipped crops (top-down)")

    def video_opts(sp, track_flag):
        if track_flag:
            sp.add_argument("--track", action="store_true",
                            help="videos: give people IDs across frames (and smooth their keypoints)")
            sp.add_argument("--jsonl", help="videos: JSON lines, one object per frame")
        sp.add_argument("--csv", help="videos: CSV of keypoint trajectories (one row per keypoint and frame)")
        sp.add_argument("--plot", help="videos: PNG of the tracks' keypoint trajectories over time")
        sp.add_argument("--max-fps", type=_positive_float, help="videos: process at most this many frames per second")
        sp.add_argument("--max-frames", type=_count(1), help="videos: stop after this many frames")
        sp.add_argument("--no-pipeline", action="store_true",
                        help="videos: run the stages one after the other (default: overlapped in threads)")
        sp.add_argument("--no-smooth", action="store_true", help="tracking: no One Euro smoothing")
        g = sp.add_argument_group("tracking and smoothing (defaults: the model's metadata, else edgepose.track)")
        g.add_argument("--min-cutoff", type=_positive_float, help="One Euro min cutoff, Hz (1.0)")
        g.add_argument("--beta", type=_nonneg_float, help="One Euro beta, Hz per person height per second (0.3)")
        g.add_argument("--d-cutoff", type=_positive_float, help="One Euro derivative cutoff, Hz (1.0)")
        g.add_argument("--max-lost", type=_count(0), help="frames a lost track keeps its ID (30)")
        g.add_argument("--min-hits", type=_count(1), help="frames before a new track gets an ID (3)")
        g.add_argument("--match-threshold", type=_nonneg_float, help="least OKS/IoU similarity to match (0.2)")
        g.add_argument("--high-score", type=_nonneg_float, help="person score of the first matching pass (0.3)")
        g.add_argument("--low-score", type=_nonneg_float, help="least person score tracked at all (0.1)")
        g.add_argument("--motion-noise", type=_nonneg_float,
                       help="Kalman acceleration noise, person heights/s^2 (1.0): higher follows turns, lower bridges gaps")

    e = sub.add_parser("export", help="export a checkpoint or ONNX model to a deployment target")
    e.add_argument("source", help="checkpoint (.pth), ONNX model, or a foreign .tflite model (with --spec)")
    e.add_argument("-o", "--output", required=True, help="output file or bundle directory")
    e.add_argument("--target", default="onnx",
                   help="onnx | cpu-int8 | tflite-fp32 | tflite-fp16 | rpi-int8 | jetson-int8 | jetson-fp16 | jetson-int8-dla "
                        "| tflite (a foreign .tflite model with --spec: metadata added, nothing converted)")
    e.add_argument("--arch", help="lightweight-openpose | hrnet (checkpoints)")
    e.add_argument("--spec", help="JSON spec describing a foreign ONNX or TFLite model (examples/*.spec.json)")
    e.add_argument("--input-size", type=_size, help="HxW")
    e.add_argument("--dynamic", action="store_true", help="dynamic input height/width")
    e.add_argument("--opset", type=_count(7), default=13)
    e.add_argument("--calib", nargs="+", metavar="SOURCE",
                   help="calibration data: image folders, videos, COCO jsons (several at once: the "
                        "samples are shared among them, each split into calibration and held-out parts)")
    e.add_argument("--n-calib", type=_count(1), help="number of calibration samples (32)")
    e.add_argument("--holdout", type=_holdout_arg,
                   help="samples held out for the accuracy gate: a count or 'auto' (default: what "
                        "calibration leaves, up to 128)")
    e.add_argument("--calib-method", choices=["minmax", "percentile", "mse", "entropy"])
    e.add_argument("--max-ap-drop", type=float, help="accuracy gate with --coco: AP points (default 1.0)")
    e.add_argument("--max-label-free-drop", type=float,
                   help="accuracy gate without annotations: the largest label-free AP drop (INT8 scored "
                        "against the float model's own detections), in points")
    e.add_argument("--min-speedup", type=_positive_float, metavar="X",
                   help="cpu-int8: also fail (nothing written) unless INT8 runs at least X times as fast "
                        "as FP32 on this CPU (CPU time, 1 thread)")
    e.add_argument("--coco", action="append", help="COCO keypoints file for the accuracy report "
                                                   "(repeat to pool several, each with its --images)")
    e.add_argument("--images", action="append", help="images folder of the matching --coco")
    if sys.version_info >= (3, 8):     # the exporters' Python; export refuses older ones itself
        from .exporters.int8.kernels import FORMATS
    else:
        FORMATS = ()
    e.add_argument("--int8-format", choices=["auto"] + list(FORMATS) if FORMATS else None,
                   help="cpu-int8: activation/weight types (auto: u8s8 where this CPU's int8 kernels are "
                        "exact, u8s7 then u8u8 where u8s8 saturates)")
    e.add_argument("--bias-correction", action="store_true",
                   help="cpu-int8 / jetson-int8: sequential empirical bias correction of every conv on the "
                        "calibration data (tf-pose full INT8: exact AP drop 4.1 -> 1.5 points; off by default)")
    e.add_argument("--no-gate", action="store_true",
                   help="measure and report INT8 accuracy but do not fail the export on it")
    e.add_argument("--workspace-mb", type=_count(1), help="TensorRT workspace limit")
    e.add_argument("--dla-core", type=_count(0), help="DLA core (jetson-int8-dla)")
    e.add_argument("--json", help="write the export report here")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("infer", help="run a model on an image, a folder or a video")
    i.add_argument("model")
    i.add_argument("input", nargs="+", metavar="SOURCE",
                   help="image, folder of images, video file (several with --ray)")
    i.add_argument("--out", help="output folder for annotated images/video (default edgepose_out)")
    i.add_argument("--json", help="COCO results JSON (default OUT/results.json)")
    i.add_argument("--summary-json", help="per-image/frame people in edgepose's own format")
    i.add_argument("--no-draw", action="store_true", help="do not write annotated images/video")
    model_opts(i)
    video_opts(i, True)
    _ray_opts(i)
    i.set_defaults(func=cmd_infer)

    t = sub.add_parser("track", help="people with IDs and smoothed keypoints through a video, camera or stream")
    t.add_argument("model")
    t.add_argument("source", help="video file, folder of frames, camera index, /dev/videoN, GStreamer "
                                  "pipeline ('... ! appsink') or rtsp:// URL")
    t.add_argument("--out", help="folder of the annotated video (default edgepose_out)")
    t.add_argument("--json", help="JSON lines: one object per frame with each person's track_id")
    t.add_argument("--summary-json", help="every frame's people in one JSON file")
    t.add_argument("--no-draw", action="store_true", help="do not write the annotated video")
    model_opts(t)
    video_opts(t, False)
    t.set_defaults(func=cmd_track)

    v = sub.add_parser("eval", help="COCO keypoint AP/AR with pycocotools")
    v.add_argument("model")
    v.add_argument("--coco", required=True, action="append",
                   help="COCO person-keypoints annotation file (repeat to pool several sets)")
    v.add_argument("--images", required=True, action="append",
                   help="folder with the images it names (one per --coco)")
    v.add_argument("--exact-int8", action="store_true",
                   help="run an INT8 Q/DQ ONNX model exactly as written (the device's integer "
                        "arithmetic), not with this CPU's int8 kernels")
    v.add_argument("--json", help="write the stats here")
    v.add_argument("--results", help="write the COCO results here")
    model_opts(v)
    _ray_opts(v)
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="time preprocessing, inference, post-processing")
    b.add_argument("model")
    b.add_argument("--image", help="image to run (default: a COCO sample from EDGEPOSE_ASSETS)")
    b.add_argument("--runs", type=_count(1), default=50)
    b.add_argument("--warmup", type=_count(0), default=5)
    b.add_argument("--json", help="write the timings here")
    model_opts(b)
    b.set_defaults(func=cmd_bench)

    n = sub.add_parser("info", help="show a model's inputs, outputs and metadata")
    n.add_argument("model")
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_info)

    g = sub.add_parser("build-engine", help="build the TensorRT engine of a bundle (on the Jetson)")
    g.add_argument("bundle")
    g.add_argument("--precision", choices=["int8", "int8-dla", "fp16", "fp32"])
    g.add_argument("--workspace-mb", type=_count(1))
    g.add_argument("--dla-core", type=_count(0))
    g.add_argument("--force", action="store_true", help="rebuild even if a matching engine exists")
    g.set_defaults(func=cmd_build_engine)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .log import configure

    configure(int(args.verbose or 0) - int(args.quiet or 0))
    try:
        return int(args.func(args) or 0)
    except EdgeposeError as e:
        if os.environ.get("EDGEPOSE_DEBUG"):
            raise
        msg = first_line(e)
        print("edgepose: error: %s" % msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepose: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # unexpected: still one line, but a distinct exit code
        if os.environ.get("EDGEPOSE_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print("edgepose: error: %s%s (set EDGEPOSE_DEBUG=1 for a traceback)"
              % (type(e).__name__, ": " + msg if msg else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
