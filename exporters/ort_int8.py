"""``--target cpu-int8``: ONNX Runtime static INT8 (QDQ, per-channel int8 weights).

Calibration on the user's data (:func:`edgepose.calibration.load_samples`, the runtime's
preprocessing), quantization by :func:`edgepose.exporters.int8.qdq.quantize_qdq`, then the
accuracy gate (:func:`edgepose.exporters.int8.search.gated_quantize`): a report printed at the
end and written beside the artifact as ``OUT.report.json``. A missed budget triggers the
mixed-precision search; when nothing meets it the export fails and leaves no file behind.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from edgepose.files import atomic_path
from edgepose.errors import ExportError
from edgepose.evaluate import coco_pairs

from .int8.options import ExportOptions

__all__ = ["export_cpu_int8", "DEFAULTS", "report_path"]

# The default configuration (see benchmarks/int8_frontier.py for the measurements behind it): the
# defaults of ExportOptions' fields (int8/options.py says why each); activation/weight types come
# from the host's int8 kernels (int8.kernels.cpu_int8_format)
DEFAULTS: Dict[str, Any] = ExportOptions().pick(("method", "symmetric_activations", "per_channel", "fold",
                                                  "equalize", "equalize_concat"))
# the quantizer options cpu-int8 passes on (those left None come from the format)
QUANTIZE_OPTIONS = ("symmetric_activations", "per_channel", "reduce_range", "equalize", "fold", "alpha",
                    "percentile", "keep_float", "activation_type", "weight_type", "max_memory_mb",
                    "float_concat_inputs", "bias_correction", "equalize_concat")


def report_path(out: str) -> str:
    base = out[:-5] if out.endswith(".onnx") else out
    return base + ".report.json"


def export_cpu_int8(onnx_path: str, out: str, calib=None, meta=None, torch_model=None,
                    options: Optional[ExportOptions] = None, **kwargs) -> Dict[str, Any]:
    """FP32 ONNX (with edgepose metadata) -> INT8 Q/DQ ONNX at ``out``; returns the report.

    ``calib``: calibration source path(s) (image folders, videos, COCO JSONs) or a ready
    :class:`edgepose.calibration.CalibrationSet`. ``options``: an
    :class:`edgepose.exporters.int8.options.ExportOptions` made for target cpu-int8, or the same
    options as keywords (``kwargs``, checked by ``ExportOptions.for_target``): ``n_calib`` (32),
    ``method`` ("minmax"), ``max_ap_drop`` (1.0), ``coco``/``images_dir`` (one or several
    annotated sets for the true AP drop), ``holdout`` ("auto": what calibration leaves, up to
    128), ``seed`` (0), ``every``, ``height``, ``calib_images_dir`` (images of a COCO calibration
    file), ``format`` ("auto": u8s8 where this CPU's int8 kernels are exact, else u8s7 -- 7-bit
    weights, no 16-bit saturation -- then u8u8; or one of
    :data:`edgepose.exporters.int8.kernels.FORMATS`), ``symmetric_activations``, ``per_channel``,
    ``equalize``, ``equalize_concat``, ``percentile``, ``keep_float`` (node names), ``search``
    (mixed-precision search on a missed budget, True), ``max_label_free_drop``, ``threads``,
    ``min_speedup``, ``measure_speed``, ``log`` (callable), ``quiet``.
    """
    import onnx
    from edgepose.calibration import CalibrationSet, load_samples
    from edgepose.metadata import ModelMeta, embed_onnx
    from .int8.gate import MIN_USEFUL_SPEEDUP, relative_speed
    from .int8.kernels import cpu_int8_candidates, cpu_int8_format, int8_kernel_class
    from .int8.qdq import quantize_qdq
    from .int8.report import format_report, save_report
    from .int8.search import PREPARE_KEYS, gated_quantize, prepare

    options = ExportOptions.resolve("cpu-int8", options, kwargs)
    log = options.log
    if log is None:
        from edgepose.log import logger
        log = logger.debug if options.quiet else logger.info
    from edgepose.exporters.api import target_meta

    meta = target_meta(onnx_path, meta)
    if calib is None:
        raise ExportError("cpu-int8 needs calibration data: --calib IMAGES_DIR | VIDEO | COCO.json ...")
    requested = options.format
    if requested is None and any(getattr(options, k) is not None
                                 for k in ("activation_type", "weight_type", "reduce_range")):
        requested = "custom"
    qkw = dict(options.pick(QUANTIZE_OPTIONS), method=options.method)
    search, enforce, threads = options.search, options.gate, options.threads
    min_speedup = options.min_speedup
    measure_speed = options.measure_speed or min_speedup is not None
    pairs = coco_pairs(options.coco, options.images_dir)       # checked before the calibration work
    if isinstance(calib, CalibrationSet):
        cs = calib
    else:
        cs = load_samples(calib, meta, n=options.n_calib, holdout=options.holdout, seed=options.seed,
                          every=options.every, height=options.height, images_dir=options.calib_images_dir)
    log(cs.describe())
    kernels = int8_kernel_class()
    if requested == "custom":
        formats = [dict(format="custom", why="activation/weight types given")]
    else:
        formats = cpu_int8_candidates(requested)
    if not enforce:
        formats = formats[:1]       # --no-gate: measure the host's first choice and report it
    elif kernels["saturates_u8s8"] and requested is None:
        # no candidate that fits this CPU pays: the device format (u8s8, exact on jetson/arm/VNNI)
        formats = formats + [dict(cpu_int8_format("u8s8"), why="no format that fits this CPU's saturating "
                                  "kernels pays here: the device format (exact on jetson/arm/VNNI CPUs)")]
    # the exact float rewrites and their statistics do not depend on the format: once
    import time
    t_prep = time.time()
    log("preparing the float model: exact rewrites (folding, equalization) and activation ranges on %d "
        "calibration samples" % len(cs.calib))
    prepared = prepare(onnx_path, cs.calib, qkw)
    log("  prepared in %.0f s" % (time.time() - t_prep))
    tried_formats = []
    if enforce and kernels["saturates_u8s8"] and len(formats) > 2 and measure_speed:
        # speed before accuracy: on a CPU whose u8s8 kernels saturate, a format that fits them
        # but runs no faster than FP32 here is not worth an accuracy evaluation
        from edgepose.files import scratch_dir
        keep = []
        with scratch_dir("edgepose-speed") as sd:
            for fmt in formats[:-1]:
                fkw = dict(qkw)
                fkw.update({k: fmt[k] for k in ("activation_type", "weight_type", "reduce_range") if k in fmt})
                fkw.pop("keep_float", None)
                p = os.path.join(sd, fmt["format"] + ".onnx")
                quantize_qdq(onnx_path, p, cs.calib, prepared=prepared,
                               **{k: v for k, v in fkw.items() if k not in PREPARE_KEYS})
                sp = relative_speed(onnx_path, p, cs.calib[0], threads=1, runs=6)
                log("  %s, full INT8, on this CPU: %.2fx FP32 (CPU time, 1 thread)" % (fmt["format"], sp["cpu_speedup"]))
                if sp["cpu_speedup"] >= MIN_USEFUL_SPEEDUP:
                    keep.append(fmt)
                else:
                    tried_formats.append({"format": fmt["format"], "result": "not scored: %.2fx FP32 on this CPU "
                                          "(CPU time, 1 thread), no speed-up" % sp["cpu_speedup"]})
        formats = keep + formats[-1:]
    fallback = chosen = None
    shared_cache: Dict[Any, Any] = {}      # the float model's results on the held-out frames: once
    with atomic_path(out) as tmp:
        for fi, fmt in enumerate(formats):
            fkw = dict(qkw)
            fkw.update({k: fmt[k] for k in ("activation_type", "weight_type", "reduce_range") if k in fmt})
            last = fi == len(formats) - 1
            log("cpu-int8 format %s: %s" % (fmt["format"], fmt["why"]))
            try:
                info, rep = gated_quantize(onnx_path, tmp, cs, meta, quantize_kwargs=fkw,
                                               max_ap_drop=options.max_ap_drop, coco=pairs, log=log,
                                               search=search and last, max_label_free_drop=options.max_label_free_drop,
                                               threads=threads, measure_speed=measure_speed,
                                               enforce=enforce, host_kernels=True, prepared=prepared,
                                               cache=shared_cache)
            except ExportError as e:    # a format before the last missed the budget: the next one
                if last and fallback is None:
                    raise
                tried_formats.append({"format": fmt["format"], "result": _one_line(e)})
                log("  %s: %s" % (fmt["format"], _one_line(e)))
                continue
            hs = rep.get("host_speed")
            if last or not (kernels["saturates_u8s8"] and hs) or hs["speedup"] >= MIN_USEFUL_SPEEDUP:
                chosen = (fmt, info, rep)
                break
            # a saturating CPU: a format that passes but does not pay here is kept only if nothing
            # better passes (speed weighs as well as accuracy)
            tried_formats.append({"format": fmt["format"], "result": "passed, %.2fx FP32 on this CPU: no speed-up"
                                  % hs["speedup"]})
            log("  %s passes but gives %.2fx FP32 on this CPU: trying the next format" % (fmt["format"], hs["speedup"]))
            if fallback is None:
                with open(tmp, "rb") as f:
                    fallback = (fmt, info, rep, f.read())
        if chosen is None:
            fmt, info, rep, blob = fallback
            with open(tmp, "wb") as f:
                f.write(blob)
        else:
            fmt, info, rep = chosen
        hs = rep.get("host_speed")
        if min_speedup is not None and hs and hs["speedup"] < min_speedup:
            raise ExportError("INT8 gives %.2fx FP32 on this CPU (%s, CPU time at 1 thread), below --min-speedup "
                              "%.2f: nothing written" % (hs["speedup"], hs["kernels"]["name"], min_speedup))
        # metadata: the float model's, precision int8
        m = onnx.load(tmp)
        data = dict(meta.data)
        data["precision"] = "int8"
        data["quantization"] = {"format": "QDQ", "cpu_int8_format": fmt["format"],
                                "method": info.get("method"),
                                "activation_type": info.get("activation_type"),
                                "weight_type": info.get("weight_type"),
                                "reduce_range": info.get("reduce_range"),
                                "per_channel": info.get("per_channel"),
                                "keep_float": rep.get("keep_float", []),
                                "calibration_sha256": cs.source_hash}
        rt = (hs or {}).get("runtimes")
        if rt:   # the faster runtime for this model on the export's CPU (measured, with its class)
            data["quantization"]["runtime"] = {"faster": rt["faster"], "kernels": hs["kernels"]["name"],
                                               "openvino_cpu_speedup": rt["openvino_cpu_speedup"]}
        embed_onnx(m, ModelMeta(data))
        onnx.save(m, tmp)
    rep["format"] = {"chosen": fmt["format"], "why": fmt["why"], "host_kernels": kernels,
                     "tried": tried_formats}
    report = {"target": "cpu-int8", "output": out, "calibration": cs.to_dict(),
              "quantization": {k: v for k, v in info.items() if k != "ranges"},
              "accuracy": rep}
    rp = report_path(out)
    written = save_report(report, rp, accuracy=rep)
    report["report_json"] = rp
    if "png" in written:
        report["report_png"] = written["png"]
    report["written"] = [out] + list(written.values())
    if rep.get("verdict"):
        report["verdict"] = rep["verdict"]
    log(format_report(rep))
    return report


def _one_line(e: Exception) -> str:
    t = str(e).strip()
    return t.splitlines()[0] if t else type(e).__name__

