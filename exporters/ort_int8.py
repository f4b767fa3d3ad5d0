"""``--target cpu-int8``: ONNX Runtime static INT8 (QDQ, per-channel int8 weights).

Calibration on the user's data (:func:`edgepose.calibration.load_samples`, the runtime's
preprocessing), quantization by :func:`edgepose.exporters.quantize.quantize_qdq`, then the
accuracy gate (:mod:`edgepose.exporters.accuracy`): a report printed at the end and written
beside the artifact as ``OUT.report.json``. A missed budget triggers the mixed-precision search;
when nothing meets it the export fails and leaves no file behind.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from edgepose.io import atomic_path
from edgepose.errors import EdgeposeError, ExportError

__all__ = ["export_cpu_int8", "DEFAULTS", "report_path"]

# The default configuration (see benchmarks/int8_frontier.py for the measurements behind it).
DEFAULTS: Dict[str, Any] = {
    "method": "minmax",
    "symmetric_activations": False,   # uint8 activations: ReLU outputs use all 256 levels
    "per_channel": True,
    "reduce_range": False,            # VNNI / ARM dot-product CPUs do not saturate
    "fold": True,                     # fold 1x1 depthwise convs into their consumer (exact)
    "equalize": "activations",        # activation-aware cross-layer equalization (exact in float)
}


def report_path(out: str) -> str:
    base = out[:-5] if out.endswith(".onnx") else out
    return base + ".report.json"


def export_cpu_int8(onnx_path: str, out: str, calib=None, meta=None, torch_model=None,
                    max_ap_drop: float = 1.0, method: str = "minmax", n_calib: int = 32,
                    coco: Optional[str] = None, images_dir: Optional[str] = None,
                    **opts) -> Dict[str, Any]:
    """FP32 ONNX (with edgepose metadata) -> INT8 Q/DQ ONNX at ``out``; returns the report.

    ``calib``: a calibration source path (image folder, video, COCO JSON) or a ready
    :class:`edgepose.calibration.CalibrationSet`. Options: ``holdout`` (8), ``seed`` (0),
    ``every``, ``height``, ``calib_images_dir`` (images of a COCO calibration file),
    ``symmetric_activations``, ``per_channel``, ``reduce_range``, ``equalize``, ``percentile``,
    ``keep_float`` (node names), ``search`` (mixed-precision search on a missed budget, True),
    ``min_oks_agreement``, ``threads``, ``log`` (callable), ``quiet``.
    """
    import onnx
    from edgepose.calibration import CalibrationSet, load_samples
    from edgepose.metadata import ModelMeta, embed_onnx
    from . import accuracy as acc

    log = opts.pop("log", None)
    quiet = bool(opts.pop("quiet", False))
    if log is None:
        log = (lambda m: None) if quiet else (lambda m: print("edgepose: " + m, flush=True))
    from edgepose.exporters.api import target_meta

    meta = target_meta(onnx_path, meta)
    if calib is None:
        raise ExportError("cpu-int8 needs calibration data: --calib IMAGES_DIR | VIDEO | COCO.json")
    holdout = int(opts.pop("holdout", 8))
    if isinstance(calib, CalibrationSet):
        cs = calib
    else:
        cs = load_samples(calib, meta, n=int(n_calib), holdout=holdout, seed=int(opts.pop("seed", 0)),
                          every=opts.pop("every", None), height=opts.pop("height", None),
                          images_dir=opts.pop("calib_images_dir", None))
    log(cs.describe())
    qkw = dict(DEFAULTS)
    qkw["method"] = method
    for k in ("symmetric_activations", "per_channel", "reduce_range", "equalize", "fold", "alpha",
              "percentile", "keep_float", "activation_type", "max_memory_mb", "float_concat_inputs",
              "bias_correction"):
        if k in opts:
            qkw[k] = opts.pop(k)
    search = bool(opts.pop("search", True))
    enforce = bool(opts.pop("gate", True))
    min_oks = float(opts.pop("min_oks_agreement", acc.OKS_GATE))
    threads = opts.pop("threads", None)
    measure_speed = bool(opts.pop("measure_speed", True))
    if opts:
        raise ExportError("cpu-int8: unknown option(s): %s" % ", ".join(sorted(opts)))

    with atomic_path(out) as tmp:
        info, rep = acc.gated_quantize(onnx_path, tmp, cs, meta, quantize_kwargs=qkw,
                                       max_ap_drop=max_ap_drop, coco=coco, images_dir=images_dir,
                                       log=log, search=search, min_oks_agreement=min_oks,
                                       threads=threads, measure_speed=measure_speed, enforce=enforce)
        # metadata: the float model's, precision int8
        m = onnx.load(tmp)
        data = dict(meta.data)
        data["precision"] = "int8"
        data["quantization"] = {"format": "QDQ", "method": info.get("method"),
                                "activation_type": info.get("activation_type"),
                                "per_channel": info.get("per_channel"),
                                "keep_float": rep.get("keep_float", []),
                                "calibration_sha256": cs.source_hash}
        embed_onnx(m, ModelMeta(data))
        onnx.save(m, tmp)
    report = {"target": "cpu-int8", "output": out, "calibration": cs.to_dict(),
              "quantization": {k: v for k, v in info.items() if k != "ranges"},
              "accuracy": rep}
    rp = report_path(out)
    acc.write_report(report, rp)
    report["report_json"] = rp
    log(acc.format_report(rep))
    log("wrote %s (+ %s)" % (out, os.path.basename(rp)))
    return report
