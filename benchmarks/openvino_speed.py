"""ONNX Runtime vs OpenVINO, FP32 and INT8 (the same Q/DQ models), on this CPU.

In edgepose's environment with the openvino extra (``pip install -e ".[all]"``):

    # 1. in edgepose's environment: the FP32 ONNX of each real model and its cpu-int8 formats
    python benchmarks/openvino_speed.py make DIR [--models lwop,tfpose] [--n-calib 16]
    # 2. the speed table + JSON (OpenVINO rows when openvino is installed)
    python benchmarks/openvino_speed.py measure DIR [--threads 1,2] [--rounds 12] [--json OUT.json]
    # 3. in edgepose's environment: AP of every engine x format on the pooled labelled set
    python benchmarks/openvino_speed.py ap DIR [--json OUT.json]

``make`` quantizes each model as ``cpu-int8`` does (:data:`edgepose.exporters.ort_int8.DEFAULTS`,
calibration on the assets' people/ photos and arm-wrestling video) into u8s8, u8s7 and u8u8
(:data:`edgepose.exporters.int8.kernels.FORMATS`), and writes one fixed input per model.

``measure`` runs every engine x model back to back in interleaved rounds (each round runs each
configuration once, so load drift hits all alike) and reports the median **CPU time** (process
time of all threads: what the inference costs, whatever else the machine runs) and median
**wall time** per inference, each as a ratio to ONNX Runtime FP32 at the same thread count
(> 1: faster). Thread-pool spinning is off in ONNX Runtime (a spinning idle pool burns CPU time
that is not work); OpenVINO runs with ``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_NUM_THREADS``
and ``INFERENCE_PRECISION_HINT=f32`` (its default on a CPU with AVX512-BF16 or AMX is bf16, which
is not FP32 accuracy; ``--bf16`` adds that row). The host's int8 kernel class is printed with the table
(:func:`edgepose.exporters.int8.kernels.int8_kernel_class` when importable, else the CPU flags).

``ap`` scores each model file through edgepose's own pipeline on the COCO sample + devset pooled
(18 images, 35 people: ``edgepose eval M --coco A/coco/test_coco.json --images A/coco --coco
A/devset/devset.json --images A/devset``) three ways: **exact** (the Q/DQ graph in integer
arithmetic, what TensorRT/ARM/VNNI kernels compute: the device's figure), **onnxruntime** with
this CPU's own int8 kernels and **openvino** with its own (host-kernel figures, labelled with the
kernel class). A difference of about 2 AP points is what 18 images resolve (the paired
bootstrap interval of a drop is about +-2 points wide here).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = ("u8s8", "u8s7", "u8u8")


def make(args):
    sys.path.insert(0, os.path.dirname(HERE))
    from edgepose.assets import assets_dir
    from edgepose.calibration import load_samples
    from edgepose.exporters.api import export
    from edgepose.exporters.int8.kernels import FORMATS as FMT
    from edgepose.exporters.int8.qdq import prepare_model, quantize_qdq
    from edgepose.exporters.ort_int8 import DEFAULTS
    from edgepose.metadata import read_onnx_meta

    a = assets_dir()
    if a is None:
        sys.exit("assets not found (EDGEPOSE_ASSETS)")
    os.makedirs(args.dir, exist_ok=True)
    sources = {"lwop": (os.path.join(a, "models", "lwop_hpe0001.pth"), None),
               "tfpose": (os.path.join(a, "models", "tfpose_mobilenet_thin.onnx"),
                          os.path.join(os.path.dirname(HERE), "examples", "tfpose_mobilenet_thin.spec.json"))}
    calib = [os.path.join(a, "people"), os.path.join(a, "videos", "arm_wrestling.mp4")]
    for name in args.models.split(","):
        src, spec = sources[name]
        fp32 = os.path.join(args.dir, name + ".fp32.onnx")
        if not os.path.exists(fp32):
            export(src, target="onnx", out=fp32, spec=spec, progress=False)
        meta = read_onnx_meta(fp32)
        cs = load_samples(calib, meta, n=args.n_calib, holdout=1, seed=0)
        np.save(os.path.join(args.dir, name + ".input.npy"), cs.holdout_inputs[0])
        prep = prepare_model(fp32, cs.calib, **{k: DEFAULTS[k] for k in ("fold", "equalize", "equalize_concat")})
        qkw = {k: v for k, v in DEFAULTS.items() if k not in ("fold", "equalize", "equalize_concat")}
        for fmt in FORMATS:
            quantize_qdq(fp32, os.path.join(args.dir, "%s.%s.onnx" % (name, fmt)), cs.calib, prepared=prep,
                           **dict(qkw, **FMT[fmt]))
        print("made %s: fp32 + %s" % (name, ", ".join(FORMATS)))


def _kernel_class():
    try:
        from edgepose.exporters.int8.kernels import int8_kernel_class
        return int8_kernel_class()
    except Exception:
        flags = set()
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
        except OSError:
            pass
        return {"name": "x86 %s" % ("VNNI" if {"avx512_vnni", "avx_vnni"} & flags else "no VNNI"),
                "source": "CPU flags"}


def _ort(path, threads):
    from edgepose.exporters.int8.gate import ort_timing_session   # spinning off, as every timing here
    return ort_timing_session(path, threads)


def _ov(path, threads, precision="f32"):
    import openvino as ov
    core = ov.Core()
    cm = core.compile_model(core.read_model(path), "CPU",
                            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                             "INFERENCE_PRECISION_HINT": precision})
    req = cm.create_infer_request()
    return lambda x: req.infer({0: x})


def measure(args):
    threads = [int(t) for t in args.threads.split(",")]
    try:
        import openvino as ov
        ov_version = ov.__version__ if hasattr(ov, "__version__") else ov.get_version()
    except ImportError:
        ov_version = None
    import onnxruntime as ort
    sys.path.insert(0, os.path.dirname(HERE))
    from edgepose.exporters.int8.gate import back_to_back   # THE interleaved timer
    models = sorted({f.split(".")[0] for f in os.listdir(args.dir) if f.endswith(".fp32.onnx")})
    kc = _kernel_class()
    rows = []
    for name in models:
        x = np.load(os.path.join(args.dir, name + ".input.npy"))
        for t in threads:
            configs = [("onnxruntime", "fp32", _ort, name + ".fp32.onnx")]
            configs += [("onnxruntime", f, _ort, "%s.%s.onnx" % (name, f)) for f in FORMATS]
            if ov_version:
                configs += [("openvino", "fp32", _ov, name + ".fp32.onnx")]
                configs += [("openvino", f, _ov, "%s.%s.onnx" % (name, f)) for f in FORMATS]
                if args.bf16:   # OpenVINO's default on CPUs with AVX512-BF16/AMX: not FP32 accuracy
                    configs += [("openvino-bf16", "fp32", lambda p, t: _ov(p, t, "bf16"), name + ".fp32.onnx")]
            runs = [(eng, fmt, mk(os.path.join(args.dir, f), t)) for eng, fmt, mk, f in configs
                    if os.path.exists(os.path.join(args.dir, f))]
            times = back_to_back([fn for _, _, fn in runs], x, runs=args.rounds)
            bw, bc = times[0]
            for (eng, fmt, _), (w, c) in zip(runs, times):
                rows.append({"model": name, "threads": t, "engine": eng, "format": fmt,
                             "cpu_ms": round(c, 1), "wall_ms": round(w, 1),
                             "cpu_ratio": round(bc / c, 2), "wall_ratio": round(bw / w, 2),
                             "input": "x".join(map(str, x.shape))})
            print("  %s, %d thread(s): done" % (name, t), file=sys.stderr)
    head = ("CPU: %s (%s); onnxruntime %s; openvino %s; %d rounds, medians; ratio = ONNX Runtime FP32 time / "
            "this time (> 1 faster)" % (kc.get("name"), platform.processor() or platform.machine(), ort.__version__,
                                        ov_version or "not installed", args.rounds))
    print(head)
    print("%-7s %3s %-12s %-5s %9s %9s %9s %9s" % ("model", "thr", "engine", "fmt", "CPU ms", "CPU x", "wall ms", "wall x"))
    for r in rows:
        print("%-7s %3d %-12s %-5s %9.1f %8.2fx %9.1f %8.2fx" % (r["model"], r["threads"], r["engine"], r["format"],
                                                                 r["cpu_ms"], r["cpu_ratio"], r["wall_ms"], r["wall_ratio"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": head, "kernels": kc, "onnxruntime": ort.__version__, "openvino": ov_version,
                       "env": {k: v for k, v in os.environ.items() if k.startswith(("ONEDNN", "DNNL", "EDGEPOSE"))},
                       "rows": rows}, f, indent=1, default=str)


def score_ap(args):
    sys.path.insert(0, os.path.dirname(HERE))
    from edgepose.assets import assets_dir
    from edgepose.evaluate import coco_pairs, evaluate_coco
    from edgepose.pipelines import load_estimator

    a = assets_dir()
    pairs = coco_pairs([os.path.join(a, "coco", "test_coco.json"), os.path.join(a, "devset", "devset.json")],
                       [os.path.join(a, "coco"), os.path.join(a, "devset")])
    try:
        import openvino  # noqa: F401
        engines = [("exact", "onnxruntime", True), ("onnxruntime", "onnxruntime", False), ("openvino", "openvino", False)]
    except ImportError:
        engines = [("exact", "onnxruntime", True), ("onnxruntime", "onnxruntime", False)]
    kc = _kernel_class()
    models = sorted({f.split(".")[0] for f in os.listdir(args.dir) if f.endswith(".fp32.onnx")})
    rows = []
    for name in models:
        for fmt in ("fp32",) + FORMATS:
            p = os.path.join(args.dir, "%s.%s.onnx" % (name, fmt))
            if not os.path.exists(p):
                continue
            for label, backend, exact in engines:
                if fmt == "fp32" and exact:
                    continue            # nothing to make exact in a float model
                est = load_estimator(p, threads=args.threads, backend=backend, exact_int8=exact)
                st = evaluate_coco(est, pairs, None)["stats"]
                rows.append({"model": name, "format": fmt, "engine": label, "AP": round(float(st["AP"]), 3),
                             "AP50": round(float(st["AP50"]), 3)})
                print("  %s %s %s: AP %.3f" % (name, fmt, label, st["AP"]), file=sys.stderr)
    print("AP on COCO sample + devset pooled (18 images); exact = the device's integer arithmetic; "
          "onnxruntime/openvino = this CPU's own kernels (%s)" % kc.get("name"))
    fp = {r["model"]: r["AP"] for r in rows if r["format"] == "fp32" and r["engine"] == "onnxruntime"}
    print("%-7s %-5s %-12s %6s %6s %7s" % ("model", "fmt", "engine", "AP", "AP50", "drop"))
    for r in rows:
        print("%-7s %-5s %-12s %6.3f %6.3f %7.1f" % (r["model"], r["format"], r["engine"], r["AP"], r["AP50"],
                                                     100 * (fp.get(r["model"], r["AP"]) - r["AP"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernels": kc, "rows": rows}, f, indent=1, default=str)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--models", default="lwop,tfpose")
    m.add_argument("--n-calib", type=int, default=16)
    s = sub.add_parser("measure")
    s.add_argument("dir")
    s.add_argument("--threads", default="1,2")
    s.add_argument("--rounds", type=int, default=12)
    s.add_argument("--json")
    s.add_argument("--bf16", action="store_true",
                   help="also OpenVINO FP32 with bf16 inference precision (its default where the CPU has "
                        "AVX512-BF16 or AMX; the other OpenVINO rows are pinned to f32)")
    a = sub.add_parser("ap")
    a.add_argument("dir")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--json")
    args = ap.parse_args()
    {"make": make, "measure": measure, "ap": score_ap}[args.cmd](args)


if __name__ == "__main__":
    main()
