"""Writing the Q/DQ model, the piece shared by the ONNX Runtime INT8 and TensorRT targets.

:func:`quantize_qdq` writes an explicit-quantization ONNX model (QuantizeLinear/DequantizeLinear
pairs, per-channel int8 weights) with ranges measured on the user's calibration inputs: the
exact float rewrites (:mod:`.rewrites`, through :func:`prepare_model`), range statistics
(:mod:`.stats`), Q/DQ by onnxruntime's quantizer (:func:`quantize_with_ranges`) and optionally
sequential bias correction (:mod:`.bias`). :func:`uniform_weight_zero_points` and
:func:`float_biases` put the written model in the form other int8 runtimes take.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edgepose.errors import ExportError
from edgepose.files import scratch_dir as _scratch_dir

from .bias import apply_bias_deltas, bias_correction_deltas, float_conv_means
from .graph import consumers, load_model, node_attr, producers, save_atomic, use_counts
from .rewrites import equalize_model, fold_diagonal_convs
from .stats import DEFAULT_MAX_MEMORY_MB, QuantStats, check_method, collect_stats, ort_calibrate, ranges_from_stats

__all__ = ["DEFAULT_OP_TYPES", "concat_consumers", "tail_nodes", "output_convs", "quantize_with_ranges",
           "uniform_weight_zero_points", "float_biases", "Prepared", "prepare_model", "quantize_qdq"]

# Concat is left out: a Concat of a stage's heatmaps/PAFs (range ~1) with backbone features
# (range ~30) under one per-tensor scale wipes the maps out (measured on tf-pose).
DEFAULT_OP_TYPES = ("Conv", "Relu", "Clip", "MaxPool", "AveragePool", "Add", "Mul", "Transpose",
                    "Resize", "GlobalAveragePool", "Sigmoid", "Reshape", "Slice", "Split", "MatMul",
                    "Gemm")


_QTYPES = {"uint8": "QUInt8", "int8": "QInt8", "quint8": "QUInt8", "qint8": "QInt8",
           "uint16": "QUInt16", "int16": "QInt16"}  # 16-bit: simulation/analysis only (no CPU kernels)


def _qtype(name: str):
    from onnxruntime.quantization import QuantType
    key = _QTYPES.get(str(name).lower())
    if key is None:
        raise ExportError("unknown quantized type %r (uint8 or int8)" % (name,))
    return getattr(QuantType, key)


def concat_consumers(model) -> List[str]:
    """Convs whose input is a Concat output: kept float by default (their input mixes tensors
    of very different ranges; they are depthwise and cheap in the OpenPose stages)."""
    model = load_model(model)
    prod = producers(model)
    out = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            p = prod.get(n.input[0])
            if p is not None and p.op_type == "Concat":
                out.append(n.name)
    return out


def tail_nodes(model) -> List[str]:
    """Nodes between the last Conv layers and the graph outputs (Concat/Slice/Transpose...):
    left in float, so heatmaps and PAFs leave the model unquantized."""
    model = load_model(model)
    prod = producers(model)
    tail: List[str] = []
    stack = [o.name for o in model.graph.output]
    seen = set()
    while stack:
        t = stack.pop()
        n = prod.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        tail.append(n.name)
        stack.extend(n.input)
    return tail


def output_convs(model) -> List[str]:
    """Conv nodes whose outputs reach a graph output through tail nodes only."""
    model = load_model(model)
    prod = producers(model)
    tail = set(tail_nodes(model))
    res = []
    for n in model.graph.node:
        if n.name in tail:
            for t in n.input:
                p = prod.get(t)
                if p is not None and p.op_type == "Conv" and p.name not in res:
                    res.append(p.name)
    for o in model.graph.output:
        p = prod.get(o.name)
        if p is not None and p.op_type == "Conv" and p.name not in res:
            res.append(p.name)
    return res


def quantize_with_ranges(model, out_onnx: str, ranges: Dict[str, Tuple[float, float]], *,
                         per_channel: bool = True, activation_type: str = "uint8",
                         weight_type: str = "int8", symmetric_activations: bool = False,
                         reduce_range: bool = False, keep_float: Iterable[str] = (),
                         op_types: Optional[Sequence[str]] = None, float_outputs: bool = True,
                         extra_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the Q/DQ model for given activation ranges with onnxruntime's public
    ``quantize_static`` (QDQ format): the ranges go in as its calibration cache
    (``calibration_cache_path``, a saved ``TensorsData``), so it runs no calibration of its own.
    Measured: the same graph, node for node and initializer for initializer, as the private
    ``QDQQuantizer`` constructor used before, on tf-pose and Lightweight OpenPose with uint8 and
    with symmetric int8 activations. (Per-tensor ``TensorQuantOverrides`` are *not* the same:
    with symmetric activations they also override the scale a Conv output shares with its
    ReLU, 2-3x coarser on those models.)"""
    import inspect

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime
        raise ExportError("INT8 export needs onnxruntime's quantize_static(calibration_cache_path=...) "
                          "(onnxruntime 1.26 or newer; this is %s): pip install -U onnxruntime"
                          % onnxruntime.__version__)
    from onnxruntime.quantization.calibrate import save_tensors_data

    model = load_model(model)
    keep = set(keep_float)
    names = {n.name for n in model.graph.node}
    unknown = sorted(keep - names)
    if unknown:
        raise ExportError("keep_float names unknown nodes: %s" % ", ".join(unknown[:5]))
    if float_outputs:
        keep |= set(tail_nodes(model))
    op_types = list(op_types) if op_types is not None else list(DEFAULT_OP_TYPES)
    extra = {"ActivationSymmetric": bool(symmetric_activations), "WeightSymmetric": True,
             "QDQKeepRemovableActivations": False}
    oc = set(output_convs(model)) if float_outputs else set()
    extra.update(extra_options or {})
    inits = {i.name for i in model.graph.initializer}
    missing = sorted({t for n in model.graph.node if n.op_type in op_types and n.name not in keep
                      for t in list(n.input[:1]) + list(n.output[:1]) if t and t not in ranges and t not in inits})
    if missing:       # a tensor the calibration never saw
        raise ExportError("no calibration range for tensor %s" % missing[0])
    td = TensorsData(CalibrationMethod.MinMax,
                     {k: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
                      for k, (lo, hi) in ranges.items()})
    with _scratch_dir("edgepose-q") as tmp:
        p, q, cache = (os.path.join(tmp, n) for n in ("in.onnx", "out.onnx", "ranges.json"))
        onnx.save(model, p)
        save_tensors_data(td, cache)
        from edgepose.log import quiet_root_warnings
        with quiet_root_warnings():
            quantize_static(p, q, None, quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types,
                            per_channel=per_channel, reduce_range=reduce_range,
                            activation_type=_qtype(activation_type), weight_type=_qtype(weight_type),
                            nodes_to_exclude=sorted(keep), calibrate_method=CalibrationMethod.MinMax,
                            extra_options=extra, calibration_cache_path=cache)
        qm = onnx.load(q)
        # the output convs write float: drop the Q/DQ pair on their outputs
        _strip_output_qdq(qm, {t for n in qm.graph.node if n.name in oc for t in n.output})
        n_zp = uniform_weight_zero_points(qm)
        save_atomic(qm, out_onnx)
    n_q = sum(1 for n in qm.graph.node if n.op_type == "QuantizeLinear")
    return {"keep_float": sorted(set(keep_float)), "tail_float": sorted(keep - set(keep_float)),
            "quantize_linear_nodes": n_q, "dead_channel_zero_points_fixed": n_zp}


def uniform_weight_zero_points(model) -> int:
    """Give every channel of a per-channel weight the same zero point (in place); returns how
    many channels changed.

    onnxruntime's quantizer gives an all-zero ("dead") output channel scale 1 and zero point 0;
    with uint8 weights (U8U8) its siblings have zero point 128. onnxruntime < 1.20 refuses such
    a model once graph optimisation fuses the convolution ("QLinearConv : zero point of
    per-channel filter must be same"), and so may other int8 runtimes. A dead channel
    dequantizes to zero with any zero point: its integers are set to the shared zero point, which
    changes no dequantized value. A live channel with its own zero point cannot be rewritten
    exactly: refused."""
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    uses = use_counts(model)
    changed = 0
    for n in model.graph.node:
        if (n.op_type != "DequantizeLinear" or len(n.input) < 3 or n.input[0] not in inits
                or n.input[2] not in inits):
            continue
        zp = numpy_helper.to_array(inits[n.input[2]])
        if zp.ndim != 1 or zp.size < 2 or zp.dtype not in (np.uint8, np.int8):
            continue
        vals, counts = np.unique(zp, return_counts=True)
        if len(vals) == 1:
            continue
        q = numpy_helper.to_array(inits[n.input[0]])
        axis = int(node_attr(n, "axis", 1)) % max(q.ndim, 1)
        common = vals[int(np.argmax(counts))]
        qc = np.moveaxis(q, axis, 0).reshape(zp.size, -1).copy()
        odd = np.nonzero(zp != common)[0]
        live = [int(c) for c in odd if np.any(qc[c] != zp[c])]
        if live:
            raise ExportError("%s: channel %d of its per-channel weight has its own zero point %d (the others %d): "
                              "not representable on runtimes that need one zero point" % (
                                  n.name or n.input[0], live[0], int(zp[live[0]]), int(common)))
        qc[odd] = common
        zp2 = np.full_like(zp, common)
        new_q = np.moveaxis(qc.reshape(np.moveaxis(q, axis, 0).shape), 0, axis).astype(q.dtype)
        for name, arr in ((n.input[0], new_q), (n.input[2], zp2)):
            if uses.get(name, 0) > 1:    # shared with another node: a private copy
                name2 = name + "_uniform_zp"
                model.graph.initializer.append(numpy_helper.from_array(arr, name2))
                n.input[list(n.input).index(name)] = name2
                uses[name] -= 1
            else:
                inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        changed += len(odd)
    return changed


def _strip_output_qdq(model, tensors) -> int:
    """Remove QuantizeLinear->DequantizeLinear pairs that directly follow ``tensors``."""
    cons = consumers(model)
    removed = 0
    for t in tensors:
        for q in list(cons.get(t, [])):
            if q.op_type != "QuantizeLinear":
                continue
            dqs = cons.get(q.output[0], [])
            if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
                continue
            graph_outs = {o.name for o in model.graph.output}
            target = t
            for d in dqs:
                if d.output[0] in graph_outs:
                    target = d.output[0]   # the DQ wrote a graph output: the producer writes it now
            for n in model.graph.node:
                for i, x in enumerate(n.output):
                    if x == t:
                        n.output[i] = target
            for d in dqs:
                for n in model.graph.node:
                    for i, x in enumerate(n.input):
                        if x == d.output[0] or x == t:
                            n.input[i] = target
                model.graph.node.remove(d)
            model.graph.node.remove(q)
            removed += 1
    return removed


def float_biases(model) -> int:
    """Replace DequantizeLinear(int32 bias) by the float bias it computes (in place).

    onnxruntime's QDQ quantizer stores conv biases as int32 + DequantizeLinear; TensorRT's Q/DQ
    form keeps biases in float (its DequantizeLinear takes 8-bit inputs). The float bias is the
    dequantized one, so onnxruntime's predicted accuracy stays that of this exact model.
    """
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    uses = use_counts(model)
    done = 0
    for n in list(model.graph.node):
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[n.input[0]])
        if q.dtype != np.int32:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
        axis = ([a.i for a in n.attribute if a.name == "axis"] or [1])[0]
        if scale.ndim == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zp = zp.reshape(shape) if np.ndim(zp) else zp
        f = ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(f, n.output[0]))
        model.graph.node.remove(n)
        for t in n.input:
            uses[t] -= 1
            if t in inits and uses[t] == 0:
                model.graph.initializer.remove(inits.pop(t))
        done += 1
    return done


class Prepared:
    """A float model made ready for quantization (folded, equalized) plus its statistics.

    Reusable across quantization configurations (the mixed-precision search)."""

    def __init__(self, model, stats: Optional[QuantStats], folded: int, equalized: int,
                 equalize: Any):
        self.model = model
        self.stats = stats
        self.folded = folded
        self.equalized = equalized
        self.equalize = equalize


def prepare_model(fp32_onnx, calib_inputs: Sequence[np.ndarray], fold: bool = True,
                  equalize: Any = "activations", alpha: float = 0.5,
                  histograms: bool = False, equalize_concat: bool = True) -> Prepared:
    """Exact float rewrites that make the model quantize better, then its statistics.

    ``fold``: fold 1x1 depthwise convs into their consumer; ``equalize``: False, "weights"
    (data-free CLE) or "activations"/True (activation-aware CLE, see :func:`equalize_model`);
    ``equalize_concat``: with activation-aware CLE, also the concat-aware rewrite.
    """
    model = load_model(fp32_onnx)
    n_fold = n_eq = 0
    if fold:
        model, n_fold = fold_diagonal_convs(model)
    if equalize:
        if equalize == "weights":
            model, n_eq = equalize_model(model)
        else:
            st0 = collect_stats(model, calib_inputs)
            model, n_eq = equalize_model(model, channel_absmax=st0.channel_absmax, alpha=alpha,
                                         concats=equalize_concat)
    stats = collect_stats(model, calib_inputs, histograms=histograms)
    return Prepared(model, stats, n_fold, n_eq, equalize)


def quantize_qdq(fp32_onnx, out_onnx: str, calib_inputs: Sequence[np.ndarray], *,
                 symmetric_activations: bool = False, per_channel: bool = True,
                 method: str = "minmax", keep_float: Iterable[str] = (),
                 activation_type: Optional[str] = None, weight_type: str = "int8",
                 reduce_range: bool = False, percentile: float = 99.999,
                 equalize: Any = "activations", fold: bool = True, alpha: float = 0.5,
                 float_outputs: bool = True, stats: Optional[QuantStats] = None,
                 prepared: Optional[Prepared] = None, float_concat_inputs: bool = False,
                 per_tensor_method: Optional[Dict[str, str]] = None,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, max_samples: int = 256,
                 op_types: Optional[Sequence[str]] = None,
                 bias_correction: bool = False, equalize_concat: bool = True) -> Dict[str, Any]:
    """Calibrate ``fp32_onnx`` on ``calib_inputs`` and write a Q/DQ model to ``out_onnx``.

    Steps: exact float rewrites (``fold`` 1x1 depthwise convs, ``equalize`` cross-layer
    equalization), range statistics (streaming), ranges by ``method``, Q/DQ by onnxruntime's
    quantizer with ``keep_float`` nodes left in float and the output convs writing float.
    Returns a dict with ``ranges`` ({tensor: (min, max)} of the activations as quantized),
    ``method``, ``keep_float`` and counts. ``symmetric_activations`` gives int8 activations with
    zero points 0, the form TensorRT consumes. ``stats`` (of ``fp32_onnx`` itself) or
    ``prepared`` (from :func:`prepare_model`) skip the statistics pass. ``bias_correction``:
    sequential empirical bias correction of every conv on ``calib_inputs`` (see
    :func:`bias_correction_deltas`); the biases move, the activation ranges stay. Off by
    default (``--bias-correction``): measured exactly, on top of fold + CLE + concat-aware
    equalization, tf-pose full INT8's AP drop fell from 4.1 to 1.5 points on the pooled labelled
    set (COCO sample 7.1 -> 3.6) but its label-free drop on 128 held-out frames stayed put
    (26.3 -> 25.8), and Lightweight OpenPose's went 0.1 -> 0.8 (label-free 2.0 -> 2.7): not a
    resolved gain (``benchmarks/int8_gate.py``). It costs one pass over the calibration inputs.
    """
    method = check_method(method)
    calib_inputs = list(calib_inputs or [])
    if not calib_inputs and prepared is None and stats is None:
        raise ExportError("quantization needs calibration inputs (got none)")
    if len(calib_inputs) > max_samples:
        raise ExportError("%d calibration samples exceed the limit of %d (max_samples)"
                          % (len(calib_inputs), max_samples))
    if activation_type is None:
        activation_type = "int8" if symmetric_activations else "uint8"
    hist = method not in ("minmax",) and not method.startswith("ort-") or bool(per_tensor_method)
    if prepared is None:
        if stats is not None:
            prepared = Prepared(load_model(fp32_onnx), stats, 0, 0, False)
        else:
            prepared = prepare_model(fp32_onnx, calib_inputs, fold=fold, equalize=equalize,
                                     alpha=alpha, histograms=hist and not method.startswith("ort-"),
                                     equalize_concat=equalize_concat)
    model = prepared.model
    if method.startswith("ort-"):
        ranges = ort_calibrate(model, calib_inputs, method[4:], percentile, max_memory_mb)
    else:
        st = prepared.stats
        if hist and not st.hists:
            st = collect_stats(model, calib_inputs, histograms=True)
            prepared.stats = st
        ranges = ranges_from_stats(st, method, percentile, symmetric_activations,
                                   per_tensor=per_tensor_method)
    names = {n.name for n in model.graph.node}
    keep = [k for k in keep_float if k in names]  # folded nodes are gone: nothing to keep
    if float_concat_inputs:
        keep += [k for k in concat_consumers(model) if k not in keep]
    qkw = dict(per_channel=per_channel, activation_type=activation_type, weight_type=weight_type,
               symmetric_activations=symmetric_activations, reduce_range=reduce_range,
               keep_float=keep, float_outputs=float_outputs, op_types=op_types)
    info = quantize_with_ranges(model, out_onnx, ranges, **qkw)
    n_corr = 0
    if bias_correction:
        if not calib_inputs:
            raise ExportError("bias correction needs the calibration inputs (got none)")
        fm = float_conv_means(model, calib_inputs, prepared.stats)
        deltas = bias_correction_deltas(out_onnx, fm, calib_inputs)
        n_corr = len(deltas)
        if deltas:  # same ranges: the corrected float model, quantized again
            info = quantize_with_ranges(apply_bias_deltas(model, deltas), out_onnx, ranges, **qkw)
    info["keep_float"] = sorted(set(keep))
    info["bias_corrected_convs"] = n_corr
    info.update({"ranges": ranges, "method": method, "n_calib": len(calib_inputs),
                 "folded_convs": prepared.folded, "equalized_pairs": prepared.equalized,
                 "equalize": prepared.equalize, "per_channel": per_channel,
                 "activation_type": activation_type, "weight_type": weight_type,
                 "symmetric_activations": symmetric_activations, "reduce_range": reduce_range})
    return info
