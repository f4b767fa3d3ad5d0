"""Import a foreign TFLite pose model with a spec: ``edgepose export MODEL.tflite --spec SPEC.json
--target tflite -o OUT.tflite``.

The model is not converted: the output is the same flatbuffer with the edgepose metadata added
(entry ``"edgepose"`` of its ``metadata`` table, written by :func:`edgepose.exporters.tflite.
embed_metadata`, read by :class:`edgepose.backends.tflite.TfliteBackend` - one mechanism for
exported and imported TFLite models). Before anything is written the spec is checked against
the model's real tensors; a spec that does not describe the model is refused in one line naming
the field:

- names: ``input.name`` / ``outputs.*.output`` must be tensors of the model (the names
  ``edgepose info MODEL.tflite`` shows, or the interpreter's tensor names); with one input or
  output the name may be omitted;
- shapes: rank 4 with 3 channels on the layout's channel axis and the fixed height/width;
  heatmaps with K channels at ``stride``; one-stage ``[1, 5+3K, N]`` / ``[1, N, 5+3K]`` in the
  declared layout; regression ``K x 3`` values;
- dtypes and quantization: ``input.dtype`` / ``input.quantization`` {scale, zero_point}
  (and the same per output), when given, must equal the model's; an integer input must be able
  to hold what the spec's normalisation produces (a quantized int8 input of scale 1/255 and zero
  point -128 holds [0, 1]: ``std`` 255, not 1; an unquantized uint8 input takes raw pixels:
  mean 0, std 1);
- coordinate units of one-stage models: over all anchors of a sample image, normalised
  coordinates stay within [-1, 2] and pixel coordinates do not (YOLOv8n-pose 224's boxes are
  normalised, its keypoints in input pixels).

Integer inputs and outputs are quantized and dequantized by the runtime backend with each
tensor's scale and zero point (recorded in the metadata's ``source_io`` and checked at load).

Spec fields (besides those of :mod:`edgepose.exporters.onnx_import`): ``family`` also
``"onestage"`` (``outputs.predictions`` {output, layout CN|NC}, ``onestage`` {box_units,
keypoint_units, pixel_origin}, ``letterbox`` {pad_value, align}) and ``"regression"``
(``outputs.keypoints`` {output, order yx|xy}, ``crop`` {padding}). Examples:
``examples/yolov8n_pose_224.spec.json``, ``examples/yolo11n_pose_640.spec.json``,
``examples/movenet_lightning_192.spec.json``, ``examples/efficientpose_rt_224.spec.json``.
"""
from __future__ import annotations

import copy
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgepose.errors import EdgeposeError, ExportError, ModelError

from .onnx_import import _INPUT_KEYS, _fail, _normalize_spec, load_spec, normalize_input, schema_tables, table_fields

FAMILIES = ("bottomup", "topdown", "onestage", "regression")
_IO_KEYS = ("dtype", "quantization")
_ROLE_KEYS = {"predictions": {"output", "layout", "dtype", "quantization"},
              "keypoints": {"output", "order", "values", "units", "count", "dtype", "quantization"}}


def _io_claim(entry: Dict[str, Any], field: str) -> Dict[str, Any]:
    """A spec's optional {dtype, quantization: {scale, zero_point}} for one tensor."""
    claim: Dict[str, Any] = {}
    if "dtype" in entry:
        if entry["dtype"] not in ("float32", "float16", "int8", "uint8", "int16"):
            raise _fail("%s.dtype must be float32, float16, int8, uint8 or int16, got %r" % (field, entry["dtype"]))
        claim["dtype"] = entry["dtype"]
    if "quantization" in entry:
        q = entry["quantization"]
        if not isinstance(q, dict) or set(q) != {"scale", "zero_point"}:
            raise _fail("%s.quantization must be {\"scale\": S, \"zero_point\": Z}, got %r" % (field, q))
        try:
            claim["scale"], claim["zero_point"] = float(q["scale"]), q["zero_point"]
        except (TypeError, ValueError):
            raise _fail("%s.quantization.scale must be a number, got %r" % (field, q["scale"]))
        if isinstance(claim["zero_point"], bool) or not isinstance(claim["zero_point"], int):
            raise _fail("%s.quantization.zero_point must be an integer, got %r" % (field, q["zero_point"]))
    return claim


def _check_claim(claim: Dict[str, Any], t, field: str, name: str) -> None:
    """The spec's dtype/quantization claim against the model's tensor (backend ``_Tensor``)."""
    if "dtype" in claim and claim["dtype"] != t.dtype.name:
        raise _fail("%s.dtype %r but %s's tensor %s is %s" % (field, claim["dtype"], name, t.name, t.dtype.name))
    if "scale" in claim:
        if not t.quantized:
            raise _fail("%s.quantization gives scale %g but %s's tensor %s (%s) is not quantized"
                        % (field, claim["scale"], name, t.name, t.dtype.name))
        if abs(claim["scale"] - t.scale) > 1e-6 * t.scale or claim["zero_point"] != t.zero_point:
            raise _fail("%s.quantization scale %g, zero point %d but %s's tensor %s has scale %.9g, zero point %d"
                        % (field, claim["scale"], claim["zero_point"], name, t.name, t.scale, t.zero_point))


def _check_integer_input(inp: Dict[str, Any], t, name: str) -> None:
    """What the spec's normalisation produces must fit the model's integer input."""
    if t.dtype.kind == "f":
        return
    mean, std = np.asarray(inp["mean"], np.float64), np.asarray(inp["std"], np.float64)
    lo, hi = (0.0 - mean) / std, (255.0 - mean) / std
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    info = np.iinfo(t.dtype)
    if not t.quantized:
        if np.any(std != 1.0) or np.any(mean != np.round(mean)) or lo.min() < info.min or hi.max() > info.max:
            raise _fail("input.mean/std %s/%s but %s's input %s is %s without quantization: it takes raw "
                        "integer pixels (mean 0, std 1)" % (inp["mean"], inp["std"], name, t.name, t.dtype.name))
        return
    qlo, qhi = (info.min - t.zero_point) * t.scale, (info.max - t.zero_point) * t.scale
    tol = t.scale
    if lo.min() < qlo - tol or hi.max() > qhi + tol or (hi.min() - lo.max()) < 0.5 * (qhi - qlo):
        raise _fail("input.std %s (mean %s) gives model inputs in [%.4g, %.4g] but %s's %s input %s "
                    "(scale %.6g, zero point %d) holds [%.4g, %.4g]"
                    % (inp["std"], inp["mean"], lo.min(), hi.max(), name, t.dtype.name, t.name,
                       t.scale, t.zero_point, qlo, qhi))


def _resolve(want: Optional[str], tensors, raw_names: Dict[str, str], field: str, name: str, what: str):
    """The backend tensor a spec names (public or interpreter name; the only one if omitted)."""
    if want is None:
        if len(tensors) != 1:
            raise _fail("%s: %s has %d %ss (%s), name one" % (field, name, len(tensors), what,
                                                               ", ".join(t.name for t in tensors)))
        return tensors[0]
    for t in tensors:
        if t.name == want or raw_names.get(t.name) == want:
            return t
    raise _fail("%s %r is not an %s of %s (%ss: %s)" % (field, want, what, name, what,
                                                       ", ".join(t.name for t in tensors)))


def _normalize(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Spec → (normalised spec, io claims). Heatmap families go through the ONNX import's checks."""
    s = copy.deepcopy(raw)
    family = s.get("family")
    if family not in FAMILIES:
        raise _fail("family must be one of %s, got %r" % (", ".join(FAMILIES), family))
    inp = s.get("input")
    if not isinstance(inp, dict):
        raise _fail("input must be an object with layout, channel_order, mean, std, height, width")
    claims = {"input": _io_claim(inp, "input")}
    for k in _IO_KEYS:
        inp.pop(k, None)
    outs = s.get("outputs")
    if not isinstance(outs, dict):
        raise _fail("outputs must be an object")
    for role, e in list(outs.items()):
        if isinstance(e, dict):
            claims[role] = _io_claim(e, "outputs." + role)
            for k in _IO_KEYS:
                e.pop(k, None)
    if family in ("bottomup", "topdown"):
        return _normalize_spec(s), claims
    normalize_input(s, _INPUT_KEYS)
    if s["input"]["dynamic_hw"]:
        raise _fail("input.dynamic_hw: one-stage and regression models are imported at one fixed input size")
    role = "predictions" if family == "onestage" else "keypoints"
    unknown = sorted(set(outs) - {role})
    if unknown:
        raise _fail("unknown outputs field(s) %s (a %s model has outputs.%s)" % (", ".join(unknown), family, role))
    e = outs.get(role)
    if e is None:
        e = {}
    if isinstance(e, str):
        e = {"output": e}
    if not isinstance(e, dict):
        raise _fail("outputs.%s must be {\"output\": NAME, ...}" % role)
    bad = sorted(set(e) - _ROLE_KEYS[role])
    if bad:
        raise _fail("unknown outputs.%s field(s) %s (known: %s)" % (role, ", ".join(bad), ", ".join(sorted(_ROLE_KEYS[role]))))
    if family == "onestage":
        if e.get("layout", "CN") not in ("CN", "NC"):
            raise _fail("outputs.predictions.layout must be CN ([1, 5+3K, N]) or NC ([1, N, 5+3K]), got %r"
                        % (e.get("layout"),))
        for k in ("stride", "heatmap_offset", "crop"):
            if k in s:
                raise _fail("%s does not apply to a one-stage model" % k)
    else:
        if e.get("order", "xy") not in ("xy", "yx"):
            raise _fail("outputs.keypoints.order must be xy or yx, got %r" % (e.get("order"),))
        for k in ("stride", "heatmap_offset", "onestage", "letterbox"):
            if k in s:
                raise _fail("%s does not apply to a regression model" % k)
    s["outputs"] = {role: e}
    s["_tables"] = schema_tables(s)
    return s, claims


def _precision(interpreter) -> str:
    kinds = {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    if kinds & {"int8", "uint8"}:
        return "int8"
    if "float16" in kinds:
        return "fp16"
    return "fp32"


def _units_seen(arr: np.ndarray, layout: str, rows) -> float:
    """Largest |value| over all anchors of the given value rows (a one-stage output)."""
    p = arr[0] if layout == "CN" else arr[0].T
    return float(np.max(np.abs(p[rows]))) if p.size else 0.0


def _check_units(s: Dict[str, Any], out: np.ndarray, name: str) -> None:
    one = s["onestage"]
    lay = s["outputs"]["predictions"].get("layout", "CN")
    K = len(s["_tables"]["keypoints"])
    for field, rows, what in (("box_units", [0, 1], "box centres"),
                              ("keypoint_units", list(range(5, 5 + 3 * K, 3)) + list(range(6, 6 + 3 * K, 3)),
                               "keypoint coordinates")):
        m = _units_seen(out, lay, rows)
        seen = "normalized" if m <= 2.0 else "pixels"
        if seen != one[field]:
            raise _fail("onestage.%s = %r but %s's %s reach %.3g over its anchors (%s)"
                        % (field, one[field], name, what, m,
                           "input pixels" if seen == "pixels" else "normalised 0-1"))


class _OnnxTensor:
    """An ONNX model tensor as the checks see it (float, unquantized at its edges)."""

    def __init__(self, spec):
        self.name = spec.name
        self.dtype = np.dtype(spec.dtype)
        self.shape_signature = [d if isinstance(d, int) and d > 0 else -1 for d in spec.shape]
        self.shape = [d if d > 0 else 1 for d in self.shape_signature]
        self.quantized = False
        self.scale, self.zero_point = 0.0, 0


class _Source:
    """The model being imported, by format: its tensors, precision and the metadata writer."""

    def __init__(self, path: str, name: str):
        from edgepose.backends import backend_kind, load_backend

        self.kind = backend_kind(path)
        if self.kind not in ("tflite", "onnxruntime"):
            raise ExportError("%s: only .tflite and .onnx models are imported with a spec" % name)
        self.backend = load_backend(path, threads=1)
        if self.backend.meta is not None:
            raise ExportError("%s already carries edgepose metadata: use it as it is" % name)
        self.path = path
        if self.kind == "tflite":
            b, it = self.backend, self.backend.interpreter
            self.ins, self.outs = b._in, b._out
            self.raw_in = {t.name: next(d["name"] for d in it.get_input_details() if int(d["index"]) == t.index)
                           for t in b._in}
            self.raw_out = {t.name: next(d["name"] for d in it.get_output_details() if int(d["index"]) == t.index)
                            for t in b._out}
        else:
            self.ins = [_OnnxTensor(t) for t in self.backend.inputs]
            self.outs = [_OnnxTensor(t) for t in self.backend.outputs]
            self.raw_in, self.raw_out = {}, {}

    def precision(self) -> str:
        if self.kind == "tflite":
            return _precision(self.backend.interpreter)
        import onnx

        ops = {n.op_type for n in onnx.load(self.path, load_external_data=False).graph.node}
        return "int8" if ops & {"QuantizeLinear", "QLinearConv", "QLinearMatMul"} else "fp32"

    def write(self, meta, tmp: str) -> None:
        """The source model with ``meta`` embedded (TFLite metadata table / ONNX metadata_props)."""
        if self.kind == "tflite":
            from .tflite import embed_metadata

            with open(self.path, "rb") as f:
                flat = f.read()
            with open(tmp, "wb") as f:
                f.write(embed_metadata(flat, meta))
        else:
            import onnx

            from edgepose.metadata import embed_onnx

            model = onnx.load(self.path)
            embed_onnx(model, meta)
            onnx.save(model, tmp)


def import_tflite(model_path: str, spec, out: str, progress: bool = True) -> Dict[str, Any]:
    """Add edgepose metadata to a foreign ``.tflite`` model described by ``spec``; write ``out``."""
    return import_as_is(model_path, spec, out, progress)


def import_as_is(model_path: str, spec, out: str, progress: bool = True) -> Dict[str, Any]:
    """Add edgepose metadata to a foreign model described by ``spec``, without changing the
    model: any family from a ``.tflite``; one-stage and regression models from an ``.onnx``
    (heatmap models from ONNX go through :func:`edgepose.exporters.onnx_import.import_onnx`,
    which cuts their outputs to the keypoint channels). Writes ``out``; returns a report."""
    from edgepose.backends import load_backend
    from edgepose.metadata import ModelMeta, check_against_model
    from edgepose.preprocess import normalize

    from .checkpoint import file_sha256
    from .onnx_export import _log, _version, atomic_output, check_output_path, sample_images

    t0 = time.time()
    model_path = os.fspath(model_path)
    name = os.path.basename(model_path)
    out = check_output_path(out)
    raw = load_spec(spec)
    s, claims = _normalize(raw)
    family = s["family"]
    source = _Source(model_path, name)
    if source.kind == "onnxruntime" and family in ("bottomup", "topdown"):
        raise ExportError("internal: heatmap models from ONNX are imported by onnx_import")  # pragma: no cover
    src = source.backend
    raw_in, raw_out = source.raw_in, source.raw_out

    # ---- input ---------------------------------------------------------------------------------
    inp = s["input"]
    t_in = _resolve(inp.get("name"), source.ins, raw_in, "input.name", name, "input")
    _check_claim(claims["input"], t_in, "input", name)
    _check_integer_input(inp, t_in, name)
    if t_in.shape_signature[0] not in (1, -1):
        raise _fail("%s's input %s has batch %d; edgepose feeds one image (batch 1)" % (name, t_in.name, t_in.shape_signature[0]))

    # ---- outputs -------------------------------------------------------------------------------
    outputs: Dict[str, Dict[str, Any]] = {}
    used = []
    if family in ("bottomup", "topdown"):
        for part, p in s["_parts"].items():
            t = _resolve(p["output"], source.outs, raw_out, "outputs.%s.output" % part, name, "output")
            if part == "background":
                raise _fail("outputs.background: a TFLite model is not rewritten, its heatmaps output must hold "
                            "the K keypoint channels only")
            C = t.shape[3 if p["layout"] == "NHWC" else 1] if len(t.shape) == 4 else None
            if p["channels"] is not None and C is not None and list(p["channels"]) != [0, C]:
                raise _fail("outputs.%s.channels %s: a TFLite model is not rewritten, the output must be used whole "
                            "(%s has %d channels)" % (part, p["channels"], t.name, C))
            _check_claim(claims.get(part, {}), t, "outputs." + part, name)
            outputs[part] = {"name": t.name, "layout": p["layout"]}
            used.append(t)
    else:
        role = "predictions" if family == "onestage" else "keypoints"
        e = s["outputs"][role]
        t = _resolve(e.get("output"), source.outs, raw_out, "outputs.%s.output" % role, name, "output")
        _check_claim(claims.get(role, {}), t, "outputs." + role, name)
        outputs[role] = {"name": t.name}
        if role == "predictions":
            outputs[role]["layout"] = e.get("layout", "CN")
        else:
            outputs[role]["order"] = e.get("order", "xy")
            for k in ("values", "units", "count"):
                if k in e:
                    outputs[role][k] = e[k]
        used.append(t)

    tables = s["_tables"]
    data: Dict[str, Any] = {
        "family": family,
        "arch": raw.get("arch") or os.path.splitext(name)[0],
        "input": {"name": t_in.name, "layout": inp["layout"], "height": inp["height"], "width": inp["width"],
                  "channel_order": inp["channel_order"], "mean": inp["mean"], "std": inp["std"],
                  "dynamic_hw": False, "dynamic_batch": False},
        "outputs": outputs,
        **table_fields(tables),
        "source_sha256": file_sha256(model_path),
        "edgepose_version": _version(),
        "precision": source.precision(),
        "source_io": {"tensors": {t.name: dict({"dtype": t.dtype.name},
                                               **({"scale": t.scale, "zero_point": t.zero_point} if t.quantized else {}))
                                  for t in [t_in] + used}},
        "export": {"imported_from": name, "format": "tflite" if source.kind == "tflite" else "onnx"},
    }
    if family in ("bottomup", "topdown"):
        data["stride"] = s["stride"]
        data["heatmap_offset"] = s["heatmap_offset"]
    if family in ("topdown", "regression"):
        data["crop"] = dict(s.get("crop") or {"padding": 1.25})
    if family == "onestage":
        data["onestage"] = dict(s.get("onestage") or {})
        data["letterbox"] = dict(s.get("letterbox") or {})
    for k in ("decode", "tracking", "smoothing"):
        if s.get(k):
            data[k] = dict(s[k])
    try:
        meta = ModelMeta(data)
    except EdgeposeError as e:
        raise ExportError("spec gives invalid metadata: %s" % e)
    if family == "onestage":
        s["onestage"] = meta.get("onestage")
    # shapes (K channels, stride, 5+3K, K x 3) against the real tensors: the runtime's own check
    try:
        check_against_model(meta, src.inputs, src.outputs, name)
    except ModelError as e:
        raise ExportError("spec: %s" % str(e).replace("model metadata: ", ""))

    # one run on a seeded sample image through THE preprocessing: units and a finite output
    H, W = inp["height"], inp["width"]
    x = normalize(sample_images(1, H, W, 0), meta)
    ref = src.run({t_in.name: x}, [t.name for t in used])
    for k, v in ref.items():
        if not np.all(np.isfinite(v)):
            raise ExportError("%s gives NaN or inf on a sample input (output %s)" % (name, k))
    if family == "onestage":
        _check_units(s, ref[outputs["predictions"]["name"]], name)

    with atomic_output(out) as tmp:
        source.write(meta, tmp)
        # read back through the runtime: the metadata round-trips and the model is unchanged
        back = load_backend(tmp, threads=1)
        if back.meta != meta:
            raise ExportError("verification: the metadata read back from %s differs from the one written" % out)
        got = back.run({t_in.name: x}, [t.name for t in used])
        for k in ref:
            if not np.array_equal(got[k], ref[k]):
                raise ExportError("verification: output %s of the written model differs from the source's" % k)
    _log(progress, "wrote %s (%s, %s) in %.1fs" % (out, family, data["precision"], time.time() - t0))
    fmt = "tflite" if source.kind == "tflite" else "onnx"
    return {"target": fmt, "output": out, "source": model_path, "source_kind": fmt + "+spec",
            "arch": data["arch"], "verify": {"max_abs_error": 0.0, "reference": "source " + fmt},
            "max_abs_error": 0.0, "metadata": meta.data, "seconds": round(time.time() - t0, 2)}


__all__ = ["import_tflite", "import_as_is"]
