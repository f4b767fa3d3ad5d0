"""One options object for every export target: :class:`ExportOptions`.

Every option of every target is a typed field with its default; :data:`TARGET_OPTIONS` says
which fields each target takes. :meth:`ExportOptions.for_target` is THE check: an unknown option,
or one the target does not take, is refused in one line naming it and the target's options, and
values are checked and normalised once (None means the default; numbers are numbers; a known
calibration method and cpu-int8 format; a held-out count or "auto"; ...). ``api.export`` builds
the object before any expensive work and hands it to the target function; a target function
called directly with keyword options builds it the same way (:meth:`ExportOptions.resolve`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Optional, Tuple, Union, get_args, get_origin, get_type_hints

from edgepose.errors import ExportError

from .gate import LABEL_FREE_GATE
from .kernels import check_format
from .stats import DEFAULT_MAX_MEMORY_MB, check_method

__all__ = ["ExportOptions", "TARGET_OPTIONS", "DEFAULT_ASPECT_RANGE"]

# width/height ratios a bottom-up dynamic-width TensorRT profile covers (portrait 1:2 to wide 2:1)
DEFAULT_ASPECT_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class ExportOptions:
    """The options of one export; make it with :meth:`for_target` (``target``: the target it was
    checked for)."""

    target: str = ""
    # ---- calibration data ----------------------------------------------------------------------
    n_calib: int = 32                         # calibration samples
    holdout: Union[int, str] = "auto"         # held-out frames for the gate: a count or "auto"
    calib_holdout: Union[int, str, None] = None   # TFLite's older name of ``holdout``
    seed: int = 0
    every: Optional[int] = None               # video: every n-th frame
    height: Optional[int] = None              # cpu-int8: calibration input height; TFLite: export size
    width: Optional[int] = None               # TFLite: export size
    calib_images_dir: Optional[str] = None    # images of a COCO calibration file
    method: str = "minmax"                    # range method (int8.stats.METHODS)
    percentile: float = 99.999
    # ---- quantization --------------------------------------------------------------------------
    format: Optional[str] = None              # cpu-int8: None / "auto" (the host's choice) or a kernels.FORMATS key
    symmetric_activations: bool = False       # uint8 activations: ReLU outputs use all 256 levels
    per_channel: bool = True
    reduce_range: Optional[bool] = None       # None: the format's
    activation_type: Optional[str] = None     # None: the format's
    weight_type: Optional[str] = None         # None: the format's
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB   # onnxruntime's calibrators (method ort-*)
    float_concat_inputs: bool = False
    bias_correction: bool = False
    keep_float: Tuple[str, ...] = ()          # node names kept in float
    float_outputs: bool = True                # Jetson: the output convs write float
    fold: bool = True                         # fold 1x1 depthwise convs into their consumer (exact)
    equalize: Union[bool, str] = "activations"   # activation-aware cross-layer equalization (exact)
    equalize_concat: bool = True              # concat-aware equalization (exact)
    alpha: float = 0.5
    # ---- the accuracy gate ---------------------------------------------------------------------
    max_ap_drop: float = 1.0                  # with annotations: AP points
    max_label_free_drop: float = LABEL_FREE_GATE
    coco: Any = None                          # COCO keypoints file(s) for the true AP drop
    images_dir: Any = None                    # their images
    gate: bool = True                         # False (--no-gate): measure and report, never fail
    search: bool = True                       # mixed-precision search on a missed budget
    min_speedup: Optional[float] = None       # cpu-int8: fail unless INT8 is this much faster here
    measure_speed: bool = True                # cpu-int8: time INT8 against FP32 on this CPU
    # ---- Jetson bundle -------------------------------------------------------------------------
    max_batch: Optional[int] = None
    aspect_range: Tuple[float, float] = DEFAULT_ASPECT_RANGE
    height_range: Optional[Tuple[int, int]] = None
    static_shapes: Optional[bool] = None      # None: static on the DLA only
    gpu_fallback: bool = True                 # DLA layers the DLA lacks run on the GPU
    build_engine: Optional[bool] = None       # None: where tensorrt imports
    overwrite: bool = True
    opt_hw: Optional[Tuple[int, int]] = None
    workspace_mb: Optional[int] = None        # None: trt_cache.DEFAULT_WORKSPACE_MB
    dla_core: int = 0
    # ---- TFLite --------------------------------------------------------------------------------
    verify_samples: int = 2
    float_ops: Tuple[str, ...] = ()           # regexes of op output names kept in float
    activation_bits: int = 8                  # 8, or 16 for int16 activations
    check_accuracy: bool = True               # int8: run the accuracy gate
    report_json: bool = True                  # write <out>.report.json (and the PNG)
    source_name: Optional[str] = None         # the user's source, named in the report
    # ---- running -------------------------------------------------------------------------------
    threads: Optional[int] = None
    log: Optional[Callable[[str], None]] = None
    quiet: bool = False

    @classmethod
    def for_target(cls, target: str, **kwargs) -> "ExportOptions":
        """The options ``kwargs`` for ``target``, checked: ExportError for an unknown option, one
        ``target`` does not take (:data:`TARGET_OPTIONS`) or a bad value."""
        takes = TARGET_OPTIONS.get(target)
        if takes is None:
            raise ExportError("unknown target %r (targets: %s)" % (target, ", ".join(TARGET_OPTIONS)))
        listed = ", ".join(sorted(takes)) or "none"
        unknown = sorted(set(kwargs) - _FIELDS)
        if unknown:
            raise ExportError("target %s: unknown option(s) %s (options: %s)" % (target, ", ".join(unknown), listed))
        foreign = sorted(set(kwargs) - takes)
        if foreign:
            raise ExportError("option(s) %s do not apply to target %s (options: %s)"
                              % (", ".join(foreign), target, listed))
        values = _checked(kwargs)
        if "calib_holdout" in values and kwargs.get("holdout") is None:
            values["holdout"] = values["calib_holdout"]
        return cls(target=target, **values)

    @classmethod
    def resolve(cls, target: str, options: Optional["ExportOptions"] = None,
                kwargs: Optional[Dict[str, Any]] = None) -> "ExportOptions":
        """What a target function runs with: ``options`` when made for ``target``, else (or
        with keyword options as well, which win) the options checked again for ``target``."""
        kwargs = kwargs or {}
        if options is None:
            return cls.for_target(target, **kwargs)
        if not isinstance(options, cls):
            raise ExportError("options must be an ExportOptions, got %s" % type(options).__name__)
        if options.target == target and not kwargs:
            return options
        return cls.for_target(target, **dict(options.given(), **kwargs))

    def given(self) -> Dict[str, Any]:
        """The options that differ from their defaults."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "target" and getattr(self, f.name) != f.default}

    def pick(self, names) -> Dict[str, Any]:
        """``{name: value}`` of ``names`` whose value is not None (keyword arguments)."""
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


_FIELDS = frozenset(f.name for f in dataclasses.fields(ExportOptions)) - {"target"}

# which options each target takes (the TFLite targets share one set; target onnx takes none)
_CALIB = {"n_calib", "holdout", "calib_images_dir"}
_GATE = {"max_ap_drop", "max_label_free_drop", "coco", "images_dir", "gate", "search", "threads"}
_CPU_INT8 = frozenset(_CALIB | _GATE | {
    "seed", "every", "height", "method", "percentile", "format", "symmetric_activations", "per_channel",
    "reduce_range", "activation_type", "weight_type", "max_memory_mb", "float_concat_inputs", "bias_correction",
    "keep_float", "fold", "equalize", "equalize_concat", "alpha", "min_speedup", "measure_speed", "log", "quiet"})
_JETSON = frozenset(_CALIB | _GATE | {
    "seed", "every", "method", "percentile", "equalize", "equalize_concat", "max_memory_mb", "keep_float",
    "float_outputs", "bias_correction", "max_batch", "aspect_range", "height_range", "static_shapes",
    "gpu_fallback", "build_engine", "overwrite", "opt_hw", "workspace_mb", "dla_core", "log"})
_TFLITE = frozenset(_CALIB | _GATE | {
    "calib_holdout", "height", "width", "verify_samples", "float_ops", "activation_bits", "check_accuracy",
    "report_json", "keep_float", "fold", "equalize", "equalize_concat", "source_name"})
TARGET_OPTIONS: Dict[str, FrozenSet[str]] = {
    "onnx": frozenset(),
    "cpu-int8": _CPU_INT8,
    "tflite-fp32": _TFLITE, "tflite-fp16": _TFLITE, "rpi-int8": _TFLITE,
    "jetson-int8": _JETSON, "jetson-fp16": _JETSON, "jetson-int8-dla": _JETSON,
}

def _kind(tp: Any) -> Any:
    """A field's value kind from its annotation (Optional[X] is X: None means the default):
    bool, int or float; "names" for Tuple[str, ...]; ("pair", int|float) for a 2-tuple of one
    number type; None for the rest (strings, unions of kinds, objects), checked by name."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1:
            return None
        tp = args[0]
    if tp in (bool, int, float):
        return tp
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if args == (str, Ellipsis):
            return "names"
        if len(args) == 2 and args[0] is args[1] and args[0] in (int, float):
            return ("pair", args[0])
    return None


# each option's value kind, from the field annotations: a new option is declared in one place
_KINDS: Dict[str, Any] = {name: _kind(tp) for name, tp in get_type_hints(ExportOptions).items()
                          if name != "target"}


def _number(name: str, v: Any, kind) -> Any:
    try:
        return kind(v)
    except (TypeError, ValueError):
        raise ExportError("%s must be a number, got %r" % (name, v))


def _holdout(name: str, v: Any) -> Union[int, str]:
    if isinstance(v, str):
        if v != "auto":
            raise ExportError("%s must be a count or 'auto', got %r" % (name, v))
        return v
    v = _number(name, v, int)
    if v < 0:
        raise ExportError("%s must be >= 0, got %d" % (name, v))
    return v


def _checked(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The given values, normalised and checked (ExportError naming the first bad one)."""
    out: Dict[str, Any] = {}
    for k, v in kwargs.items():
        if v is None:       # the default
            continue
        kind = _KINDS[k]
        if kind is bool:
            v = bool(v)
        elif kind in (int, float):
            v = _number(k, v, kind)
        elif kind == "names":
            v = (v,) if isinstance(v, str) else tuple(v)
        elif isinstance(kind, tuple):
            v = tuple(_number(k, x, kind[1]) for x in v)
            if len(v) != 2:
                raise ExportError("%s must be a pair (low, high), got %r" % (k, kwargs[k]))
        elif k in ("holdout", "calib_holdout"):
            v = _holdout(k, v)
        elif k == "method":
            v = check_method(v)
        elif k == "format":
            v = check_format(v)     # None: the host's choice ("auto")
        elif k == "equalize" and v not in (True, False, "activations", "weights"):
            raise ExportError("equalize must be 'activations', 'weights', True or False, got %r" % (v,))
        elif k == "log" and not callable(v):
            raise ExportError("log must be a callable taking one line, got %r" % (v,))
        out[k] = v
    if out.get("min_speedup") is not None and not out["min_speedup"] > 0:
        raise ExportError("min_speedup must be > 0, got %g" % out["min_speedup"])
    if out.get("workspace_mb") is not None and out["workspace_mb"] <= 0:
        raise ExportError("workspace_mb must be positive, got %d" % out["workspace_mb"])
    if out.get("dla_core", 0) < 0:
        raise ExportError("dla_core must be >= 0, got %d" % out["dla_core"])
    if out.get("activation_bits", 8) not in (8, 16):
        raise ExportError("activation_bits must be 8 or 16, got %d" % out["activation_bits"])
    return out
