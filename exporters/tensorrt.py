"""Jetson targets: a TensorRT deploy bundle made here, the engine built on the device.

``export_jetson_bundle(onnx, out, mode)`` for ``jetson-int8``, ``jetson-fp16`` and
``jetson-int8-dla`` writes the bundle described in :mod:`edgepose.trt_cache`:

- the FP32 ONNX (with edgepose metadata);
- int8 modes: the explicit-quantization ONNX (symmetric int8 Q/DQ: zero points 0, per-channel
  weights: what TensorRT >= 8 consumes natively and TensorRT 10 recommends over calibrators),
  made by :func:`edgepose.exporters.int8.qdq.quantize_qdq` on the user's calibration data
  (:func:`edgepose.calibration.load_samples`, the runtime's preprocessing), and the same ranges as
  a TensorRT calibration cache for implicit INT8 (TensorRT 8.0-8.4, the Nano's 8.2, and DLA),
  keyed by the FP32 ONNX tensor names that TensorRT's parser sees;
- the accuracy gate's report: the Q/DQ ONNX runs in onnxruntime here (symmetric activations,
  like TensorRT), so the INT8 loss is known before the model reaches the device;
- build settings and a README with the equivalent ``trtexec`` lines per TensorRT version.

Where ``tensorrt`` imports, the engine is built at once.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgepose import trt_cache as tc
from edgepose.errors import EdgeposeError, ExportError, first_line
from edgepose.metadata import ModelMeta

from .int8.options import DEFAULT_ASPECT_RANGE, ExportOptions

MODES = ("int8", "fp16", "int8-dla")
NANO_NOTE = ("note: a Jetson Nano (Maxwell, compute 5.3) has no fast INT8: TensorRT builds this bundle "
             "as fp16 there (build-engine says so) and the calibration serves Xavier / Orin only; "
             "for a Nano, --target jetson-fp16 needs no calibration")
TARGETS = {"jetson-int8": "int8", "jetson-fp16": "fp16", "jetson-int8-dla": "int8-dla"}




# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------
def _onnx_inputs(model) -> List[Tuple[str, List[Any]]]:
    inits = {i.name for i in model.graph.initializer}
    out = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in v.type.tensor_type.shape.dim]
        out.append((v.name, dims))
    return out


def _round_up(x: float, m: int) -> int:
    return int(max(m, -(-int(round(x)) // m) * m))


def input_profile(meta: ModelMeta, dims: Sequence[Any], static: bool = False,
                  max_batch: Optional[int] = None, aspect_range: Tuple[float, float] = DEFAULT_ASPECT_RANGE,
                  height_range: Optional[Tuple[int, int]] = None,
                  opt_hw: Optional[Tuple[int, int]] = None) -> Dict[str, List[int]]:
    """min/opt/max shapes of the model input for TensorRT's optimisation profile.

    Fixed ONNX dims stay fixed. Dynamic batch: 1 (bottom-up) or 1..``max_batch`` (top-down: one
    crop per person, opt 4). Dynamic height: the metadata height (``height_range`` widens it).
    Dynamic width (bottom-up keeps the aspect, rounds to the stride): ``aspect_range`` of the
    height. ``static``: min = opt = max (the DLA wants static shapes).
    """
    inp = meta.input
    layout = inp["layout"]
    if len(dims) != 4:
        raise ExportError("model input has %d dimensions; edgepose's Jetson bundles need NCHW/NHWC (4)" % len(dims))
    hi, wi = (2, 3) if layout == "NCHW" else (1, 2)
    stride = meta.stride
    H0, W0 = opt_hw or (int(inp["height"]), int(inp["width"]))
    lo, opt, hi_ = [], [], []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            lo.append(d), opt.append(d), hi_.append(d)
            continue
        if i == 0:
            mb = int(max_batch or (8 if meta.family == "topdown" else 1))
            lo.append(1), opt.append(min(4, mb) if meta.family == "topdown" else 1), hi_.append(mb)
        elif i == hi:
            a, b = height_range or (H0, H0)
            lo.append(_round_up(a, stride)), opt.append(H0), hi_.append(_round_up(b, stride))
        elif i == wi:
            hmin, hmax = (height_range or (H0, H0))
            lo.append(_round_up(hmin * aspect_range[0], stride))
            opt.append(W0)
            hi_.append(_round_up(hmax * aspect_range[1], stride))
        else:
            raise ExportError("model input dimension %d (%r) is dynamic; only batch/height/width may be" % (i, d))
    lo = [min(a, b) for a, b in zip(lo, opt)]
    hi_ = [max(a, b) for a, b in zip(hi_, opt)]
    if static:
        lo, hi_ = list(opt), list(opt)
    return {"min": lo, "opt": opt, "max": hi_}


# ----------------------------------------------------------------------------------------------
# README with trtexec lines
# ----------------------------------------------------------------------------------------------
def _shape_arg(name: str, shape: Sequence[int]) -> str:
    # trtexec accepts names wrapped in escaped single quotes (names like 'image:0')
    n = "\\'%s\\'" % name if (":" in name or " " in name) else name
    return "%s:%s" % (n, "x".join(str(int(d)) for d in shape))


def trtexec_lines(build: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(title, command) pairs: one per TensorRT generation the bundle supports."""
    prec = build["precision"]
    shapes = build["input_shapes"]
    ws = int(build["workspace_mb"])
    dla = build.get("dla")
    files = build.get("files") or {}

    def shp(flag: str) -> str:
        return ",".join(_shape_arg(n, s[flag]) for n, s in sorted(shapes.items()))

    shape_args = "--minShapes=%s --optShapes=%s --maxShapes=%s" % (shp("min"), shp("opt"), shp("max"))
    trtexec = "/usr/src/tensorrt/bin/trtexec"
    out = []
    for title, gen in (("TensorRT 8.2 (JetPack 4.6, Jetson Nano / TX2 / Xavier)", "8.2"),
                       ("TensorRT 8.5 / 8.6 (JetPack 5, Xavier / Orin)", "8.5"),
                       ("TensorRT 10.x (JetPack 6, Orin)", "10")):
        ws_arg = "--workspace=%d" % ws if gen == "8.2" else (
            "--memPoolSize=workspace:%d" % ws if gen == "8.5" else "--memPoolSize=workspace:%dM" % ws)
        args = [trtexec]
        if prec == "fp16":
            args += ["--onnx=%s" % tc.MODEL_ONNX, "--fp16"]
        elif prec == "int8" and gen != "8.2" and tc.QDQ_ONNX in files:
            args += ["--onnx=%s" % tc.QDQ_ONNX, "--int8", "--fp16"]
        else:   # implicit INT8: FP32 ONNX + calibration cache (8.2, and the DLA everywhere)
            args += ["--onnx=%s" % tc.MODEL_ONNX, "--int8", "--fp16", "--calib=%s" % tc.CALIB_CACHE]
        if dla is not None:
            args += ["--useDLACore=%d" % int(dla["core"])]
            if dla.get("gpu_fallback", True):
                args += ["--allowGPUFallback"]
        args += [ws_arg, shape_args, "--saveEngine=model.engine"]
        out.append((title, " ".join(args)))
    return out


def bundle_readme(build: Dict[str, Any], meta: ModelMeta, accuracy: Optional[Dict[str, Any]]) -> str:
    prec = build["precision"]
    lines = [
        "# edgepose TensorRT bundle: %s (%s)" % (meta.get("arch", "model"), prec),
        "",
        "Built by `edgepose export --target jetson-%s`. TensorRT engines are specific to the GPU and the "
        "TensorRT version, so the engine is built on the Jetson itself:" % prec,
        "",
        "```",
        "edgepose build-engine %s" % os.path.basename(os.path.normpath(build.get("bundle_name", "BUNDLE"))),
        "edgepose infer %s image.jpg" % os.path.basename(os.path.normpath(build.get("bundle_name", "BUNDLE"))),
        "```",
        "",
        "`edgepose build-engine` (or loading the bundle in Python) caches the engine in `engines/`, keyed by "
        "model sha256, TensorRT version, GPU and compute capability, DLA core, precision, input shapes and "
        "calibration hash; an engine built by another TensorRT version is rebuilt, never deserialised.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        "| `%s` | FP32 ONNX with edgepose metadata |" % tc.MODEL_ONNX,
    ]
    files = build.get("files") or {}
    if tc.QDQ_ONNX in files:
        lines.append("| `%s` | explicit INT8: symmetric int8 Q/DQ (zero points 0), per-channel weights |" % tc.QDQ_ONNX)
    if tc.CALIB_CACHE in files:
        lines.append("| `%s` | TensorRT calibration cache (implicit INT8: TensorRT 8.2, DLA) |" % tc.CALIB_CACHE)
    lines += ["| `%s` | model metadata |" % tc.META_JSON,
              "| `%s` | build settings |" % tc.BUILD_JSON]
    if accuracy is not None:
        lines.append("| `%s` | accuracy gate: the Q/DQ ONNX run exactly (the device's integer arithmetic) "
                     "vs FP32 |" % tc.ACCURACY_JSON)
        if accuracy.get("comparison_png"):
            lines.append("| `%s` | float and INT8 poses side by side where they differ most |"
                         % accuracy["comparison_png"])
    lines += ["", "## Equivalent trtexec commands (run inside this folder)", ""]
    for title, cmd in trtexec_lines(build):
        lines += ["%s:" % title, "", "```", cmd, "```", ""]
    lines += [
        "Then `edgepose infer BUNDLE image.jpg` (or `TensorrtBackend('BUNDLE')`) uses `model.engine`; "
        "one TensorRT cannot load (after a JetPack upgrade, say) is replaced by an engine built from the "
        "bundle, with a message.",
        "",
        "Notes:",
        "",
        "- Workspace %d MiB fits a 2 GB / 4 GB Jetson Nano; raise it on larger boards "
        "(`edgepose build-engine BUNDLE --workspace-mb 1024`)." % int(build["workspace_mb"]),
        "- TensorRT 8.2 takes `--workspace=` (MiB); 8.4+ `--memPoolSize=workspace:` (MiB; TensorRT 10 "
        "accepts a unit suffix, `M`).",
        "- The calibration cache header names TensorRT %s (`TRT-%d-%s`); `edgepose build-engine` rewrites "
        "it for the TensorRT it runs on. With trtexec on another version, edit the first line "
        "(e.g. `TRT-8502-EntropyCalibration2` for 8.5.2, `TRT-100300-EntropyCalibration2` for 10.3.0) "
        "or TensorRT ignores the cache and finds no calibration data."
        % (tc.OLDEST_TRT, tc.trt_version_code(tc.OLDEST_TRT), tc.CALIB_ALGORITHM),
        "- edgepose's runtime installs on every JetPack's own Python: 3.6 with TensorRT 8.2 on JetPack 4.6 "
        "(Nano), 3.8 on JetPack 5, 3.10 on JetPack 6 (README: Jetson Nano, Jetson Orin).",
        "- The Jetson Nano (Maxwell, compute 5.3) has no fast INT8: TensorRT builds an INT8 bundle as fp16 "
        "there (`edgepose build-engine` says so); `--target jetson-fp16` is the Nano's export.",
    ]
    if build.get("dla") is not None:
        lines.append("- DLA (Xavier / Orin): static shapes; layers the DLA lacks fall back to the GPU "
                     "(`--allowGPUFallback`).")
    if accuracy is not None:
        lines += ["", "## Accuracy (predicted here, before the device)", "", "```",
                  json.dumps(_accuracy_summary(accuracy), indent=1, sort_keys=True), "```",
                  "", "Predicted by running the Q/DQ ONNX exactly as written (QuantizeLinear rounding and "
                  "saturation, float convolution on the dequantized integers): what TensorRT's "
                  "int32-accumulating INT8 kernels compute. TensorRT runs layers left in float in fp16, "
                  "which this prediction does not mimic."]
    return "\n".join(lines) + "\n"


def _accuracy_summary(acc: Dict[str, Any]) -> Dict[str, Any]:
    keep = ("ap_float", "ap_quant", "ap_drop", "ap_drop_ci95", "agreement_ap", "label_free_drop",
            "label_free_drop_ci95", "passed", "gate", "int8_mac_fraction", "keep_float",
            "oks_agreement", "mean_displacement_px", "max_ap_drop", "holdout_frames", "evaluation",
            "resolution_note")
    out = {k: acc[k] for k in keep if k in acc}
    return out or {k: v for k, v in acc.items() if isinstance(v, (int, float, str, bool))}


# ----------------------------------------------------------------------------------------------
# calibration cache from quantization ranges
# ----------------------------------------------------------------------------------------------
def graph_tensor_names(model) -> List[str]:
    """Tensor names TensorRT's ONNX parser keeps: graph inputs and node outputs."""
    inits = {i.name for i in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in inits]
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue
        names.extend(t for t in n.output if t)
    return names


def float_node_tensors(model, keep_float: Sequence[str]) -> set:
    """Inputs and outputs of the nodes kept in float (their tensors get no INT8 scale)."""
    keep = set(keep_float)
    out = set()
    for n in model.graph.node:
        if n.name in keep:
            out.update(t for t in list(n.input) + list(n.output) if t)
    return out


def calib_amax(model, ranges: Dict[str, Tuple[float, float]], keep_float: Sequence[str] = ()
               ) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """{FP32 tensor name: amax} for the calibration cache, and a coverage summary.

    Only names of the FP32 graph are kept (what TensorRT sees); tensors of nodes kept in float
    are left out, so TensorRT's implicit INT8 keeps those layers in fp16/fp32 too.
    """
    names = graph_tensor_names(model)
    skip = float_node_tensors(model, keep_float)
    amax: Dict[str, float] = {}
    for t in names:
        if t in ranges and t not in skip:
            lo, hi = ranges[t]
            amax[t] = float(max(abs(float(lo)), abs(float(hi))))
    missing = [t for t in names if t not in ranges and t not in skip]
    foreign = [t for t in ranges if t not in set(names)]
    return amax, {"tensors": len(names), "with_scale": len(amax), "kept_float": len(skip & set(names)),
                  "without_range": missing[:20], "n_without_range": len(missing),
                  "ranges_not_in_graph": len(foreign)}


# ----------------------------------------------------------------------------------------------
# the export
# ----------------------------------------------------------------------------------------------
def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _sha_text(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def _quantize_and_gate(fp32_path: str, qdq_path: str, meta: ModelMeta, cs, coco,
                       options: ExportOptions, log) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Q/DQ ONNX (symmetric int8, TensorRT's form) + the accuracy gate: (quant info, report).

    ``options``: ``gate`` (default True: a missed budget fails the export, after the
    mixed-precision search), ``search``, ``max_ap_drop``, ``max_label_free_drop``, ``threads``,
    and quantizer options (``method``, ``percentile``, ``equalize``, ``equalize_concat``,
    ``max_memory_mb``, ``keep_float``, ``float_outputs``, ``bias_correction``).
    """
    from .int8.search import gated_quantize

    qkw: Dict[str, Any] = dict(symmetric_activations=True, per_channel=True, method=options.method,
                               **options.pick(("percentile", "equalize", "equalize_concat", "max_memory_mb",
                                               "keep_float", "float_outputs", "bias_correction")))
    return gated_quantize(fp32_path, qdq_path, cs, meta, quantize_kwargs=qkw,
                          max_ap_drop=options.max_ap_drop, coco=coco, images_dir=None, log=log,
                          search=options.search, enforce=options.gate, measure_speed=False,
                          max_label_free_drop=options.max_label_free_drop, threads=options.threads)


def export_jetson_bundle(onnx_path: str, out: str, mode: str = "int8", calib: Optional[str] = None,
                         meta: Optional[ModelMeta] = None, torch_model: Any = None,
                         options: Optional[ExportOptions] = None, **kwargs) -> Dict[str, Any]:
    """Write a TensorRT deploy bundle to the directory ``out``; returns the export report.

    ``mode``: int8 | fp16 | int8-dla (also accepted as the jetson-* target names).
    ``calib``: calibration source (image folder, video, COCO JSON), required for int8 modes.
    ``options``: an :class:`edgepose.exporters.int8.options.ExportOptions` made for the
    jetson-* target of ``mode``, or the same options as keywords (``kwargs``): ``n_calib`` (32),
    ``method`` (calibration: minmax, percentile, mse, entropy), ``holdout`` (held-out frames,
    "auto"), ``seed``, ``every`` (video), ``max_ap_drop``, ``coco``/``images_dir``, ``max_batch``,
    ``aspect_range``, ``height_range``, ``static_shapes``, ``gpu_fallback`` (DLA, default True),
    ``build_engine`` (default: when tensorrt imports), ``overwrite`` (default True),
    ``workspace_mb``, ``dla_core``, ``log`` (callable), and the gate's and quantizer's options.
    """
    import onnx
    from edgepose.metadata import embed_onnx

    from edgepose.log import logger
    mode = TARGETS.get(mode, mode)
    if mode not in MODES:
        raise ExportError("unknown Jetson mode %r (choose from %s)" % (mode, ", ".join(MODES)))
    options = ExportOptions.resolve("jetson-" + mode, options, kwargs)
    log = options.log or logger.info
    from edgepose.exporters.api import target_meta

    meta = target_meta(onnx_path, meta)
    if mode != "fp16" and not calib:
        raise ExportError("--target jetson-%s needs calibration data: --calib IMAGES_DIR|VIDEO|COCO_JSON" % mode)
    out = os.path.normpath(out)
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ExportError("cannot create output directory %s: %s" % (parent, e.strerror))
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError("output %s exists and is not a directory (a bundle is a directory)" % out)
    if os.path.isdir(out) and os.listdir(out) and not tc.is_bundle(out):
        raise ExportError("output %s is a non-empty directory that is not an edgepose bundle: refusing to replace it" % out)
    if os.path.isdir(out) and not options.overwrite:
        raise ExportError("bundle %s exists (overwrite=False)" % out)
    workspace_mb = options.workspace_mb or tc.DEFAULT_WORKSPACE_MB
    if mode == "int8":   # said before the calibration is spent
        log(NANO_NOTE)

    try:
        model = onnx.load(onnx_path)
    except Exception as e:
        raise ExportError("%s is not a readable ONNX model: %s" % (onnx_path, first_line(e)))
    ins = _onnx_inputs(model)
    if len(ins) != 1:
        raise ExportError("Jetson bundles support one model input; %s has %d" % (onnx_path, len(ins)))
    in_name, in_dims = ins[0]
    if meta.input.get("name") and meta.input["name"] != in_name:
        raise ExportError("metadata names input %r but the ONNX input is %r" % (meta.input["name"], in_name))
    dla = None
    if mode == "int8-dla":
        dla = {"core": options.dla_core, "gpu_fallback": options.gpu_fallback}
    static = dla is not None if options.static_shapes is None else options.static_shapes
    if static and (meta.input.get("dynamic_hw") or meta.input.get("dynamic_batch")):
        # a static engine: the runtime must fit every image into the fixed input size
        meta = ModelMeta(dict(meta.data, input=dict(meta.input, dynamic_hw=False, dynamic_batch=False)))
    profile = input_profile(meta, in_dims, static=static,
                            max_batch=options.max_batch, aspect_range=options.aspect_range,
                            height_range=options.height_range, opt_hw=options.opt_hw)

    from edgepose.files import atomic_dir

    report: Dict[str, Any] = {"target": "jetson-" + mode, "output": out, "precision": mode}
    with atomic_dir(out) as tmp:
        # 1. FP32 ONNX with metadata
        meta_out = ModelMeta(dict(meta.data, precision="int8" if mode != "fp16" else "fp16"))
        embed_onnx(model, meta)
        fp32 = os.path.join(tmp, tc.MODEL_ONNX)
        onnx.save(model, fp32)
        files = {}
        accuracy = None
        calibration = None
        # 2. INT8: Q/DQ ONNX, calibration cache, accuracy gate
        if mode != "fp16":
            from edgepose.calibration import load_samples

            from edgepose.evaluate import coco_pairs

            ckw = dict(holdout=options.holdout, seed=options.seed, every=options.every)
            if options.calib_images_dir:
                ckw["images_dir"] = options.calib_images_dir
            pairs = coco_pairs(options.coco, options.images_dir)
            try:
                cs = load_samples(calib, meta, n=options.n_calib, **ckw)
            except EdgeposeError:
                raise
            except Exception as e:
                raise ExportError("calibration data %s: %s" % (calib, first_line(e)))
            log(cs.describe() if hasattr(cs, "describe") else "calibration: %d samples" % len(cs.calib))
            outside = _calib_outside_profile(cs.calib, profile)
            if outside:
                log("note: %d calibration input(s) (e.g. shape %s) lie outside the engine's input range %s..%s; "
                    "their statistics still count" % (len(outside), outside[0], tuple(profile["min"]), tuple(profile["max"])))
            method = options.method
            qdq = os.path.join(tmp, tc.QDQ_ONNX)
            info, accuracy = _quantize_and_gate(fp32, qdq, meta, cs, pairs, options, log)
            n_float_bias = _check_qdq_for_tensorrt(qdq)
            keep_float = list(info.get("keep_float") or []) + list(info.get("tail_float") or [])
            ranges = info.get("ranges") or {}
            if info.get("equalized_pairs"):
                # equalisation rescales weights: the Q/DQ ranges are not those of the FP32 graph
                from .int8.stats import collect_stats, ranges_from_stats
                ranges = ranges_from_stats(collect_stats(model, cs.calib), "minmax", symmetric=True) \
                    if method == "minmax" else ranges_from_stats(collect_stats(model, cs.calib, histograms=True),
                                                                 method, symmetric=True)
            amax, coverage = calib_amax(model, ranges, keep_float)
            if not amax:
                raise ExportError("no quantization range matches a tensor of %s: cannot write the calibration cache"
                                  % os.path.basename(onnx_path))
            cache_text = tc.calib_cache_text(amax, tc.OLDEST_TRT, tc.CALIB_ALGORITHM)
            tc.write_atomic(os.path.join(tmp, tc.CALIB_CACHE), cache_text)
            calibration = {
                "hash": _sha_text(cache_text, tc.sha256_file(qdq)),
                "source": getattr(cs, "source", str(calib)), "source_hash": getattr(cs, "source_hash", None),
                "n_calib": len(cs.calib), "n_holdout": len(getattr(cs, "holdout_images", []) or []),
                "method": method, "symmetric_activations": True, "per_channel_weights": True,
                "keep_float": keep_float, "cache_coverage": coverage,
                "quantize_linear_nodes": info.get("quantize_linear_nodes"),
                "biases_float": n_float_bias,
            }
            if accuracy is not None:
                from .int8.report import format_report, save_report
                save_report(accuracy, os.path.join(tmp, tc.ACCURACY_JSON))
                log(format_report(accuracy))
            report["accuracy"] = accuracy
            report["calibration"] = calibration
        # 3. metadata, build settings, README
        tc.write_atomic(os.path.join(tmp, tc.META_JSON), json.dumps(meta_out.data, indent=1, sort_keys=True))
        for name in sorted(os.listdir(tmp)):
            if name != tc.BUILD_JSON and os.path.isfile(os.path.join(tmp, name)):
                files[name] = tc.sha256_file(os.path.join(tmp, name))
        build = {
            "format": tc.BUNDLE_FORMAT, "version": tc.BUNDLE_VERSION,
            "precision": mode,
            "dla": dla,
            "workspace_mb": workspace_mb,
            "input_shapes": {in_name: profile},
            "calibration": calibration,
            "int8_modes": {"explicit": "Q/DQ ONNX on TensorRT >= 8.5 GPUs",
                           "implicit": "FP32 ONNX + calib.cache on TensorRT 8.0-8.4 and on the DLA"}
            if mode != "fp16" else None,
            "files": files,
            "model_sha256": files[tc.MODEL_ONNX],
            "source_sha256": meta.get("source_sha256"),
            "edgepose_version": meta.get("edgepose_version"),
            "bundle_name": os.path.basename(out),
        }
        tc.write_atomic(os.path.join(tmp, tc.BUILD_JSON), json.dumps(build, indent=1, sort_keys=True))
        tc.write_atomic(os.path.join(tmp, tc.README_MD), bundle_readme(build, meta_out, accuracy))
        tc.Bundle(tmp).verify_files()
    report["files"] = sorted(os.listdir(out))
    report["input_shapes"] = {in_name: profile}
    report["trtexec"] = [c for _, c in trtexec_lines(build)]
    do_build = options.build_engine
    if do_build is None:
        do_build = _tensorrt_importable()
    if do_build:
        from edgepose.backends.tensorrt import build_engine
        report["engine"] = build_engine(out, log=log)
    else:
        report["engine"] = None
        report["engine_note"] = ("TensorRT is not importable here: build the engine on the Jetson with "
                                 "'edgepose build-engine %s' (or the trtexec lines in %s/README.md)" % (out, out))
    return report


def _calib_outside_profile(calib: Sequence[np.ndarray], profile: Dict[str, List[int]]) -> List[tuple]:
    out = []
    for x in calib:
        s = list(np.shape(x))
        if len(s) != len(profile["min"]) or any(v < a or v > b for v, a, b in zip(s, profile["min"], profile["max"])):
            out.append(tuple(s))
    return out


def _check_qdq_for_tensorrt(path: str) -> int:
    """Make the Q/DQ ONNX TensorRT's form and check it: int8 with zero points 0 (symmetric),
    float biases. Returns the number of biases turned back into float."""
    import onnx
    from onnx import numpy_helper

    from .int8.qdq import float_biases
    m = onnx.load(path)
    n_bias = float_biases(m)
    if n_bias:
        tc.write_atomic(path, m.SerializeToString())
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        zp = inits.get(n.input[2])
        if zp is None:
            continue
        arr = numpy_helper.to_array(zp)
        if arr.dtype != np.int8 or np.any(arr != 0):
            raise ExportError("Q/DQ node %s has a %s zero point %s: TensorRT needs symmetric int8 (zero points 0)"
                              % (n.name, arr.dtype, arr.ravel()[:3]))
    return n_bias
