"""One entry point for every export: ``export(source, target, out, ...) -> report``.

Sources
    - a PyTorch checkpoint (``.pth``, ``.pt``, ``.pth.tar``, ``.tar``, ``.ckpt``): ``arch`` or
      auto-detection from the state-dict keys;
    - an ONNX model carrying edgepose metadata (made by edgepose);
    - a foreign ONNX model plus a ``spec`` (see :mod:`edgepose.exporters.onnx_import`);
    - a foreign TFLite model plus a ``spec``, target ``tflite`` only: the metadata is added to
      the flatbuffer, nothing is converted (see :mod:`edgepose.exporters.tflite_import`).

Targets (``TARGETS``)
    ``onnx`` writes the verified FP32 ONNX with metadata. Every other target first makes that
    FP32 ONNX (in a temporary directory; or uses the given ``.onnx`` when it already carries
    metadata) and hands it to the target's module (imported lazily):

    ===============================  ====================================================
    ``cpu-int8``                     ``ort_int8.export_cpu_int8(onnx, out, calib=, meta=, torch_model=, options=)``
    ``tflite-fp32/-fp16``, ``rpi-int8``  ``tflite.export_tflite(onnx, out, mode="fp32"|"fp16"|"int8", ...)``
    ``jetson-int8/-fp16/-int8-dla``  ``tensorrt.export_jetson_bundle(onnx, out, mode="int8"|"fp16"|"int8-dla", ...)``
    ===============================  ====================================================

    The target options (``**target_options``) become one
    :class:`edgepose.exporters.int8.options.ExportOptions`, checked for the target before any
    expensive work (``ExportOptions.for_target``: an unknown option, or one the target does not
    take, is refused in one line) and handed to the target function as ``options=``.

    ``torch_model`` is the PyTorch deployment module (same input and named outputs as the ONNX
    model: ``(heatmaps, pafs)`` or ``heatmaps``) when the source is a checkpoint, else None.
    The returned report is the target's report merged over the dispatcher's own (which keeps
    the FP32 ONNX step under ``fp32_onnx``).
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Dict, Optional, Sequence, Union

from edgepose.errors import ExportError, ModelError, first_line

TARGETS = ("onnx", "cpu-int8", "tflite-fp32", "tflite-fp16", "rpi-int8", "jetson-int8", "jetson-fp16",
           "jetson-int8-dla", "tflite")
INT8_TARGETS = ("cpu-int8", "rpi-int8", "jetson-int8", "jetson-int8-dla")
CHECKPOINT_EXTS = (".pth", ".pt", ".pth.tar", ".tar", ".ckpt", ".bin")

# target → (module, function, mode, default output suffix)
_DISPATCH = {
    "cpu-int8": ("ort_int8", "export_cpu_int8", None, ".int8.onnx"),
    "tflite-fp32": ("tflite", "export_tflite", "fp32", ".fp32.tflite"),
    "tflite-fp16": ("tflite", "export_tflite", "fp16", ".fp16.tflite"),
    "rpi-int8": ("tflite", "export_tflite", "int8", ".int8.tflite"),
    "jetson-int8": ("tensorrt", "export_jetson_bundle", "int8", ".jetson-int8"),
    "jetson-fp16": ("tensorrt", "export_jetson_bundle", "fp16", ".jetson-fp16"),
    "jetson-int8-dla": ("tensorrt", "export_jetson_bundle", "int8-dla", ".jetson-int8-dla"),
}


def source_kind(path: str) -> str:
    """``checkpoint`` or ``onnx`` from the file name (ModelError for anything else)."""
    low = os.path.basename(path).lower()
    if low.endswith(".onnx"):
        return "onnx"
    if low.endswith(".tflite"):
        return "tflite"
    if low.endswith(CHECKPOINT_EXTS):
        return "checkpoint"
    raise ModelError("%s: unknown source type (expected a PyTorch checkpoint %s, an .onnx or a .tflite model)"
                     % (path, "/".join(CHECKPOINT_EXTS)))


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".pth.tar",) + CHECKPOINT_EXTS + (".onnx",):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


def default_output(source: str, target: str) -> str:
    """``<source stem><suffix>`` in the current directory."""
    stem = _stem(source)
    if target == "tflite":
        return stem + ".edgepose.tflite"
    if target == "onnx":
        return stem + (".edgepose.onnx" if source_kind(source) == "onnx" else ".onnx")
    return stem + _DISPATCH[target][3]


def _log(progress: bool, msg: str) -> None:
    from edgepose.log import logger
    logger.log(20 if progress else 10, "export: " + msg)


def _fp32_onnx(source: str, kind: str, out: str, arch, spec, input_size, dynamic, opset, progress):
    """Make (or take) the FP32 ONNX. Returns (report, torch_model_or_None)."""
    from .onnx_export import export_checkpoint_onnx

    if kind == "checkpoint":
        if spec is not None:
            raise ExportError("--spec describes foreign ONNX models; a checkpoint needs --arch (or none: auto-detect)")
        return export_checkpoint_onnx(source, out, arch=arch, input_size=input_size, dynamic=dynamic,
                                      opset=opset, progress=progress, return_model=True)
    from .onnx_import import import_onnx

    ignored = [n for n, v in (("arch", arch), ("input_size", input_size), ("dynamic", dynamic or None))
               if v is not None]
    if ignored:
        _log(progress, "%s ignored for an ONNX source (the spec or the metadata decide)" % ", ".join(ignored))
    if spec is not None:
        return import_onnx(source, spec, out, progress=progress), None
    raise ExportError("internal: _fp32_onnx called for an ONNX model with metadata")  # pragma: no cover


def _onnx_meta(path: str):
    from edgepose.metadata import read_onnx_meta

    if not os.path.exists(path):
        raise ModelError("model file not found: %s" % path)
    return read_onnx_meta(path)


def _no_meta_error(source: str) -> ExportError:
    return ExportError("%s has no edgepose metadata: pass --spec SPEC.json describing its input and outputs "
                       "(example: examples/tfpose_mobilenet_thin.spec.json)" % os.path.basename(source))


def target_meta(onnx_path: str, meta=None):
    """The ModelMeta a target converts with: ``meta`` as given (dict or ModelMeta), else the FP32
    ONNX's own; ExportError when the file is missing or carries none."""
    from edgepose.metadata import ModelMeta

    if not os.path.isfile(onnx_path):
        raise ExportError("FP32 ONNX model not found: %s" % onnx_path)
    if meta is None:
        meta = _onnx_meta(onnx_path)
        if meta is None:
            raise _no_meta_error(onnx_path)
    return ModelMeta(meta) if isinstance(meta, dict) else meta


def _copy_onnx_with_meta(source: str, out: str, meta, progress: bool) -> Dict[str, Any]:
    """target onnx for an ONNX that already carries metadata: check it loads, copy atomically."""
    from .onnx_export import atomic_output, ort_session

    sess = ort_session(source)
    names = {o.name for o in sess.get_outputs()}
    missing = [v["name"] for v in meta.outputs.values() if v.get("name") not in names]
    if missing:
        raise ModelError("%s: metadata names output(s) %s that the model lacks" % (source, ", ".join(missing)))
    if os.path.abspath(source) != os.path.abspath(out):
        with atomic_output(out) as tmp:
            shutil.copyfile(source, tmp)
        _log(progress, "%s already carries edgepose metadata: copied to %s" % (source, out))
    return {"target": "onnx", "output": out, "source": source, "source_kind": "onnx", "arch": meta.get("arch"),
            "verify": None, "max_abs_error": None, "metadata": meta.data}


def export(source: str, target: str = "onnx", out: Optional[str] = None, arch: Optional[str] = None,
           spec: Union[None, str, Dict[str, Any]] = None,
           input_size: Union[None, str, Sequence[int]] = None, dynamic: bool = False, opset: int = 13,
           calib: Optional[str] = None, progress: bool = True, **target_options) -> Dict[str, Any]:
    """Export ``source`` to ``target`` at ``out``; returns a JSON-able report dict
    (``output``, ``verify`` / ``max_abs_error``, ``metadata``, ...)."""
    t0 = time.time()
    if target not in TARGETS:
        raise ExportError("unknown target %r (targets: %s)" % (target, ", ".join(TARGETS)))
    if source is None or str(source) == "":
        raise ModelError("no source model given")
    source = os.fspath(source)
    kind = source_kind(source)
    if not os.path.exists(source):
        raise ModelError("%s not found: %s" % ("checkpoint" if kind == "checkpoint" else "model file", source))
    if not os.path.isfile(source):
        raise ModelError("source is not a file: %s" % source)
    if target in INT8_TARGETS and not calib:
        raise ExportError("target %s needs calibration data: pass calib= (--calib IMAGES_DIR | VIDEO | COCO.json)"
                          % target)
    if kind == "tflite" or target == "tflite":   # a foreign TFLite model: metadata added, nothing converted
        if kind != "tflite" or target != "tflite":
            raise ExportError("a .tflite source is imported with --target tflite (and target tflite takes a .tflite "
                              "source); to convert an ONNX model use tflite-fp32, tflite-fp16 or rpi-int8")
        if spec is None:
            raise ExportError("%s: pass --spec SPEC.json describing its input and outputs (example: "
                              "examples/yolov8n_pose_224.spec.json)" % os.path.basename(source))
        unused = sorted([k for k, v in (("arch", arch), ("input_size", input_size), ("calib", calib)) if v]
                        + list(target_options) + (["dynamic"] if dynamic else []))
        if unused:
            raise ExportError("option(s) %s do not apply to importing a .tflite model" % ", ".join(unused))
        out = os.fspath(out) if out else default_output(source, target)
        if os.path.abspath(out) == os.path.abspath(source):
            raise ExportError("output %s would overwrite the source" % out)
        from .tflite_import import import_tflite

        return import_tflite(source, spec, out, progress=progress)
    out = os.fspath(out) if out else default_output(source, target)
    if target == "onnx" and not out.lower().endswith(".onnx"):
        raise ExportError("output of target onnx must end in .onnx: %s" % out)
    if os.path.abspath(out) == os.path.abspath(source) and not (target == "onnx" and kind == "onnx" and spec is None):
        raise ExportError("output %s would overwrite the source" % out)
    from .int8.options import TARGET_OPTIONS, ExportOptions

    opts = dict(target_options)
    if "source_name" in TARGET_OPTIONS[target]:
        opts.setdefault("source_name", os.path.abspath(source))     # its report names the user's source
    if input_size is not None and kind != "checkpoint" and target.startswith(("tflite", "rpi")):
        # a TFLite model has a fixed input size: --input-size picks it for ONNX sources too
        from .onnx_export import parse_input_size

        opts.setdefault("height", parse_input_size(input_size)[0])
        opts.setdefault("width", parse_input_size(input_size)[1])
    options = ExportOptions.for_target(target, **opts)     # checked once, before any expensive work

    meta = None
    if kind == "onnx" and spec is None:
        meta = _onnx_meta(source)
        if meta is None:
            raise _no_meta_error(source)
    family = meta.family if meta is not None else None
    if spec is not None and kind == "onnx":
        from .onnx_import import load_spec

        family = load_spec(spec).get("family")
    if family in ("onestage", "regression") and target != "onnx":
        raise ExportError("target %s: %s models are deployed as they are imported (an .onnx with --target onnx, a "
                          ".tflite with --target tflite); conversion and INT8 do not cover them yet" % (target, family))

    if target == "onnx":
        if calib:
            _log(progress, "--calib ignored for target onnx (FP32)")
        if meta is not None:
            return _copy_onnx_with_meta(source, out, meta, progress)
        report, _model = _fp32_onnx(source, kind, out, arch, spec, input_size, dynamic, opset, progress)
        return report

    module_name, func_name, mode, _suffix = _DISPATCH[target]
    func = _target_function(target, module_name, func_name)
    paths = [calib] if isinstance(calib, (str, os.PathLike)) else calib
    if calib and target != "onnx" and isinstance(paths, (list, tuple)) \
            and all(isinstance(c, (str, os.PathLike)) for c in paths):
        from edgepose.calibration import check_sources

        check_sources(calib)           # a bad --calib is reported before the FP32 step
    if options.coco is not None:
        from edgepose.evaluate import coco_pairs

        coco_pairs(options.coco, options.images_dir)
    from edgepose.files import scratch_dir

    with scratch_dir(SCRATCH_LABEL) as tmpdir:
        torch_model = None
        if meta is not None:
            onnx_path = source
            own: Dict[str, Any] = {"fp32_onnx": {"output": source, "verify": None, "source_kind": "onnx"}}
        else:
            onnx_path = os.path.join(tmpdir, _stem(source) + ".fp32.onnx")
            fp32_report, torch_model = _fp32_onnx(source, kind, onnx_path, arch, spec, input_size, dynamic,
                                                  opset, progress)
            from edgepose.metadata import ModelMeta

            meta = ModelMeta(fp32_report["metadata"])
            fp32_report = dict(fp32_report, output=None)  # the temporary file is gone after this call
            own = {"fp32_onnx": fp32_report}
        kwargs = dict(calib=calib, meta=meta, torch_model=torch_model, options=options)
        if mode is not None:
            kwargs["mode"] = mode
        target_report = func(onnx_path, out, **kwargs)
    report: Dict[str, Any] = {"target": target, "output": out, "source": source,
                              "source_kind": "onnx+spec" if spec is not None else kind,
                              "arch": meta.get("arch")}
    report.update(own)
    if isinstance(target_report, dict):
        report.update(target_report)
    # the target saw a temporary FP32 ONNX (gone now): the report names the user's source
    report["source"] = source
    report["source_kind"] = "onnx+spec" if spec is not None else kind
    report.setdefault("metadata", meta.data)
    report["target"] = target
    report.setdefault("output", out)
    report["seconds"] = round(time.time() - t0, 2)
    if target in INT8_TARGETS and "verdict" not in report and isinstance(report.get("accuracy"), dict):
        from .int8.gate import final_line
        report["verdict"] = final_line(report["accuracy"], target)   # the CLI's last line
    return report


SCRATCH_LABEL = "edgepose-export"


def is_intermediate(path: str) -> bool:
    """True for the FP32 ONNX that :func:`export` makes in its scratch folder for another target
    (deleted afterwards: never announced as written)."""
    return os.path.basename(os.path.dirname(os.path.abspath(path))).startswith("." + SCRATCH_LABEL + ".")


def _target_function(target: str, module_name: str, func_name: str):
    import importlib

    try:
        mod = importlib.import_module("edgepose.exporters." + module_name)
    except ImportError as e:
        raise ExportError("target %s is unavailable: edgepose.exporters.%s cannot be imported (%s)"
                          % (target, module_name, first_line(e)))
    func = getattr(mod, func_name, None)
    if func is None:
        raise ExportError("target %s is unavailable: edgepose.exporters.%s has no %s()" % (target, module_name, func_name))
    return func


__all__ = ["export", "TARGETS", "INT8_TARGETS", "default_output", "source_kind"]
