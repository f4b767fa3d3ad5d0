"""Wrap a foreign pose ONNX model (one edgepose did not export) with edgepose metadata.

``import_onnx(model.onnx, spec, out.onnx)`` reads a *spec* describing the model, checks it
against the model, rewrites the graph so that it has the outputs edgepose expects (``heatmaps``
with the keypoint channels only, and for bottom-up models ``pafs``), simplifies it with
onnxsim when possible, embeds the metadata, verifies that the wrapped model reproduces the
original's outputs (onnxruntime, max abs error ≤ 1e-3), and writes ``out`` atomically.

The spec (a JSON file or a dict)
--------------------------------
Example (``examples/tfpose_mobilenet_thin.spec.json``)::

    {
      "arch": "tfpose-mobilenet-thin",
      "family": "bottomup",
      "input": {"name": "image:0", "layout": "NHWC", "channel_order": "BGR",
                "mean": [0, 0, 0], "std": [1, 1, 1],
                "height": 368, "width": 432, "dynamic_hw": true},
      "outputs": {"layout": "NHWC",
                  "heatmaps":   {"output": "Openpose/concat_stage7:0", "channels": [0, 18]},
                  "background": {"output": "Openpose/concat_stage7:0", "channels": [18, 19]},
                  "pafs":       {"output": "Openpose/concat_stage7:0", "channels": [19, 57]}},
      "schema": "cmu18",
      "stride": 8,
      "heatmap_offset": 0.5
    }

Fields:

``family`` (required)
    ``"bottomup"`` (heatmaps + part affinity fields) or ``"topdown"`` (heatmaps of one crop).
``arch``
    A name recorded in the metadata (default: the model file's stem).
``input`` (required)
    ``layout`` ``NHWC``/``NCHW``; ``channel_order`` ``BGR``/``RGB`` (the order the network
    expects); ``mean``/``std``: 3 numbers each in 0-255 pixel units and the model's channel
    order, the network input being ``(pixel - mean) / std`` (raw 0-255 input: mean 0, std 1;
    [0,1] input: std 255); ``height``/``width``: the fixed input size, or for a model with
    symbolic H/W the reference size (bottom-up runtimes resize images to this height);
    ``dynamic_hw``: whether H/W may vary (must be false for a model with fixed H/W);
    ``name``: the input tensor (default: the model's only input). The input is renamed
    ``image`` in the wrapped model.
``outputs`` (required)
    ``layout``: ``NHWC`` or ``NCHW`` of the model's output tensors (default ``NCHW``; an entry
    may override it). ``heatmaps``: ``{"output": NAME, "channels": [start, stop]}`` - which
    output tensor holds the keypoint heatmaps and which channels (half-open range, 0-based) are
    the K keypoints in schema order; ``pafs`` likewise for the 2·L PAF channels (bottom-up);
    ``background``: optional, the background channel(s). ``channels`` may be omitted when the
    tensor holds exactly those channels. When several entries share one tensor, their ranges
    must together cover its channels exactly (e.g. 18 + 1 + 38 = 57): a spec that leaves
    channels unexplained is refused, which catches a wrong layout or schema.
    The wrapped model has outputs ``heatmaps`` (and ``pafs``) made with Slice nodes on the
    original tensors, in the same layout (recorded as ``outputs.*.layout`` in the metadata).
``schema``
    Keypoint schema name (``cmu18`` default for bottom-up, ``coco17`` for top-down).
    ``keypoints``, ``limbs`` (``[[part_a, part_b, paf_x, paf_y], ...]``, PAF indices within the
    PAF channels), ``skeleton``, ``flip_pairs``, ``to_coco17`` may override the schema's tables.
``stride`` (required)
    Input pixels per heatmap pixel (checked against the model's output size).
``heatmap_offset``
    ``o`` in ``x_input = (x_heatmap + o) * stride - o`` (default 0.5 bottom-up, 0.0 top-down).
``decode``, ``crop``
    Optional decode defaults and top-down crop settings (``{"padding": 1.25}``).
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from edgepose.errors import EdgeposeError, ExportError, ModelError, first_line
from edgepose.metadata import ONNX_KEY, ModelMeta, embed_onnx
from edgepose.schema import SCHEMAS

from .onnx_export import (TOLERANCE, _log, _schema_fields, _version, atomic_output,
                          check_output_path, ort_session, sample_images, simplify)

_TOP_KEYS = {"family", "arch", "input", "outputs", "schema", "keypoints", "limbs", "skeleton", "flip_pairs",
             "to_coco17", "stride", "heatmap_offset", "decode", "crop", "description", "comment", "source",
             "onestage", "letterbox", "tracking", "smoothing"}
_INPUT_KEYS = {"name", "layout", "channel_order", "mean", "std", "height", "width", "dynamic_hw"}
_OUTPUT_PARTS = ("heatmaps", "background", "pafs")
# families whose models are imported unchanged (metadata added): exporters.tflite_import.import_as_is
AS_IS_FAMILIES = ("onestage", "regression")


def _fail(msg: str) -> ExportError:
    return ExportError("spec: " + msg)


# ----------------------------------------------------------------------------------------------
# the spec
# ----------------------------------------------------------------------------------------------
def load_spec(spec: Union[str, os.PathLike, Dict[str, Any]]) -> Dict[str, Any]:
    """A spec dict from a JSON file path or a dict (deep-copied), with light type checks."""
    if isinstance(spec, dict):
        data = copy.deepcopy(spec)
        where = "spec"
    elif isinstance(spec, (str, bytes, os.PathLike)):
        path = os.fsdecode(spec)
        where = os.path.basename(path)
        if not os.path.isfile(path):
            raise ExportError("spec file not found: %s" % path)
        try:
            with open(path, "r", encoding="utf-8") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise ExportError("%s is not valid JSON: %s" % (where, first_line(e)))
    else:
        raise ExportError("spec must be a JSON file path or a dict, got %s" % type(spec).__name__)
    if not isinstance(data, dict):
        raise ExportError("%s must be a JSON object" % where)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail("unknown field(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(_TOP_KEYS))))
    return data


def schema_tables(s: Dict[str, Any]) -> Dict[str, Any]:
    """The keypoint tables of a spec: its ``schema``'s (default cmu18 for bottom-up, else
    coco17), re-indexed by name when ``keypoints`` lists the schema's names in the model's
    channel order, or the spec's own tables for a custom schema; explicit ``skeleton``,
    ``limbs``, ``flip_pairs``, ``to_coco17`` override."""
    from edgepose.schema import reorder_schema

    schema = s.get("schema", "cmu18" if s.get("family") == "bottomup" else "coco17")
    if schema in SCHEMAS:
        tables = _schema_fields(schema)
        kps = s.get("keypoints")
        if kps is not None and kps != tables["keypoints"]:
            if not isinstance(kps, list) or sorted(map(str, kps)) != sorted(tables["keypoints"]):
                raise _fail("keypoints must be the %d names of schema %s in the model's order (or give a custom "
                            "schema name)" % (len(tables["keypoints"]), schema))
            tables = reorder_schema(tables, kps)
            tables = {k: [list(v) for v in tables[k]] if k in ("skeleton", "limbs", "flip_pairs") else tables[k]
                      for k in tables}
    elif "keypoints" in s:
        tables = {"schema": schema, "keypoints": [], "skeleton": [], "limbs": [], "flip_pairs": [],
                  "to_coco17": None}
    else:
        raise _fail("unknown schema %r (known: %s; or give keypoints/limbs explicitly)"
                    % (schema, ", ".join(SCHEMAS)))
    for k in ("keypoints", "skeleton", "limbs", "flip_pairs", "to_coco17"):
        if k in s and not (k == "keypoints" and schema in SCHEMAS):
            tables[k] = s[k]
    tables["schema"] = schema
    if not tables["keypoints"]:
        raise _fail("no keypoints")
    return tables


def table_fields(tables: Dict[str, Any]) -> Dict[str, Any]:
    """The metadata fields of a spec's keypoint tables (:func:`schema_tables`), as JSON lists."""
    return {"schema": tables["schema"], "keypoints": list(tables["keypoints"]),
            "skeleton": [list(p) for p in (tables.get("skeleton") or [])],
            "limbs": [list(p) for p in (tables.get("limbs") or [])],
            "flip_pairs": [list(p) for p in (tables.get("flip_pairs") or [])],
            "to_coco17": list(tables["to_coco17"]) if tables.get("to_coco17") is not None else None}


def _int(v: Any, what: str, minimum: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or int(v) != v or int(v) < minimum:
        raise _fail("%s must be an integer >= %d, got %r" % (what, minimum, v))
    return int(v)


def normalize_input(s: Dict[str, Any], keys=_INPUT_KEYS) -> Dict[str, Any]:
    """The spec's ``input`` checked on its own and completed (mean/std floats, dynamic_hw)."""
    inp = s.get("input")
    if not isinstance(inp, dict):
        raise _fail("input must be an object with layout, channel_order, mean, std, height, width")
    unknown = sorted(set(inp) - set(keys))
    if unknown:
        raise _fail("unknown input field(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(keys))))
    if inp.get("layout") not in ("NHWC", "NCHW"):
        raise _fail("input.layout must be NHWC or NCHW, got %r" % (inp.get("layout"),))
    if inp.get("channel_order") not in ("BGR", "RGB"):
        raise _fail("input.channel_order must be BGR or RGB, got %r" % (inp.get("channel_order"),))
    for k, default in (("mean", [0.0, 0.0, 0.0]), ("std", [1.0, 1.0, 1.0])):
        v = inp.get(k, default)
        try:
            v = [float(x) for x in v]
        except (TypeError, ValueError):
            raise _fail("input.%s must be 3 numbers, got %r" % (k, v))
        if len(v) != 3 or not all(np.isfinite(v)):
            raise _fail("input.%s must be 3 finite numbers, got %r" % (k, v))
        inp[k] = v
    if any(x == 0 for x in inp["std"]):
        raise _fail("input.std must be non-zero")
    inp["height"] = _int(inp.get("height"), "input.height", 1)
    inp["width"] = _int(inp.get("width"), "input.width", 1)
    inp["dynamic_hw"] = bool(inp.get("dynamic_hw", False))
    return inp


def _normalize_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the spec on its own (no model yet) and fill defaults."""
    s = copy.deepcopy(spec)
    family = s.get("family")
    if family not in ("bottomup", "topdown"):
        raise _fail("family must be one of bottomup, topdown, %s, got %r" % (", ".join(AS_IS_FAMILIES), family))
    normalize_input(s)
    s["stride"] = _int(s.get("stride"), "stride", 1)
    s.setdefault("heatmap_offset", 0.5 if family == "bottomup" else 0.0)
    try:
        s["heatmap_offset"] = float(s["heatmap_offset"])
    except (TypeError, ValueError):
        raise _fail("heatmap_offset must be a number")

    tables = schema_tables(s)
    K = len(tables["keypoints"])
    limbs = tables["limbs"] or []
    if family == "bottomup" and not limbs:
        raise _fail("a bottom-up model needs a limb table (schema or limbs)")
    for lb in limbs:
        if len(lb) != 4 or not all(isinstance(v, int) for v in lb):
            raise _fail("limbs entries must be [part_a, part_b, paf_x, paf_y] integers, got %r" % (lb,))
        if max(lb[0], lb[1]) >= K or min(lb) < 0 or max(lb[2], lb[3]) >= 2 * len(limbs):
            raise _fail("limb %r refers to a keypoint >= %d or a PAF channel >= %d" % (lb, K, 2 * len(limbs)))
    s["_tables"] = tables

    outs = s.get("outputs")
    if not isinstance(outs, dict):
        raise _fail("outputs must be an object with heatmaps%s" % (" and pafs" if family == "bottomup" else ""))
    unknown = sorted(set(outs) - set(_OUTPUT_PARTS) - {"layout"})
    if unknown:
        raise _fail("unknown outputs field(s) %s (known: layout, %s)" % (", ".join(unknown), ", ".join(_OUTPUT_PARTS)))
    default_layout = outs.get("layout", "NCHW")
    if default_layout not in ("NHWC", "NCHW"):
        raise _fail("outputs.layout must be NHWC or NCHW, got %r" % (default_layout,))
    needed = ("heatmaps", "pafs") if family == "bottomup" else ("heatmaps",)
    expected = {"heatmaps": K, "pafs": 2 * len(limbs)}
    parts: Dict[str, Dict[str, Any]] = {}
    for part in _OUTPUT_PARTS:
        e = outs.get(part)
        if e is None:
            if part in needed:
                raise _fail("outputs.%s is missing" % part)
            continue
        if part == "pafs" and family == "topdown":
            raise _fail("a top-down model has no pafs output")
        if isinstance(e, str):
            e = {"output": e}
        if not isinstance(e, dict) or not isinstance(e.get("output"), str):
            raise _fail("outputs.%s must be {\"output\": NAME, \"channels\": [start, stop]}" % part)
        layout = e.get("layout", default_layout)
        if layout not in ("NHWC", "NCHW"):
            raise _fail("outputs.%s.layout must be NHWC or NCHW, got %r" % (part, layout))
        ch = e.get("channels")
        if ch is not None:
            if not isinstance(ch, (list, tuple)) or len(ch) != 2:
                raise _fail("outputs.%s.channels must be [start, stop] (half-open), got %r" % (part, ch))
            a = _int(ch[0], "outputs.%s.channels[0]" % part)
            b = _int(ch[1], "outputs.%s.channels[1]" % part)
            if b <= a:
                raise _fail("outputs.%s.channels [%d, %d] is empty" % (part, a, b))
            ch = [a, b]
            if part in expected and b - a != expected[part]:
                raise _fail("outputs.%s.channels [%d, %d] holds %d channels but the schema needs %d"
                            % (part, a, b, b - a, expected[part]))
        parts[part] = {"output": e["output"], "channels": ch, "layout": layout}
    s["_parts"] = parts
    s["_expected"] = expected
    return s


# ----------------------------------------------------------------------------------------------
# graph surgery
# ----------------------------------------------------------------------------------------------
def _all_names(graph) -> set:
    names = set()
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
    names.update(i.name for i in graph.input)
    names.update(o.name for o in graph.output)
    names.update(t.name for t in graph.initializer)
    names.update(v.name for v in graph.value_info)
    names.discard("")
    return names


def _rename(graph, old: str, new: str) -> None:
    for n in graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            if v.name == old:
                v.name = new
    for t in graph.initializer:
        if t.name == old:
            t.name = new


def _unique(names: set, base: str) -> str:
    k, cand = 0, base
    while cand in names:
        k += 1
        cand = "%s_%d" % (base, k)
    names.add(cand)
    return cand


def _dims(value_info) -> List[Union[int, str, None]]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: List[Union[int, str, None]] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _ch_axis(layout: str) -> int:
    return 3 if layout == "NHWC" else 1


def _hw_axes(layout: str) -> Tuple[int, int]:
    return (1, 2) if layout == "NHWC" else (2, 3)


def _model_opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _wrap_graph(model, spec: Dict[str, Any], in_name: str, out_channels: Dict[str, int]) -> Dict[str, str]:
    """Rename the input to ``image``, add Slice/Identity nodes making ``heatmaps``/``pafs``,
    make those the only graph outputs. Returns {part: original tensor}."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    names = _all_names(g)
    wanted = ["image", "heatmaps"] + (["pafs"] if spec["family"] == "bottomup" else [])
    # free our names where the graph already uses them for other tensors
    moved: Dict[str, str] = {}
    for w in wanted:
        if w in names and not (w == "image" and in_name == "image"):
            moved[w] = _unique(names, w + "_orig")
            _rename(g, w, moved[w])
    in_name = moved.get(in_name, in_name)
    parts = {k: dict(v, output=moved.get(v["output"], v["output"])) for k, v in spec["_parts"].items()}
    out_channels = {moved.get(k, k): v for k, v in out_channels.items()}
    if in_name != "image":
        _rename(g, in_name, "image")
    names = _all_names(g)
    opset = _model_opset(model)
    orig_outputs = {o.name: o for o in g.output}
    new_outputs = []
    sources = {}
    for part in ("heatmaps", "pafs"):
        p = parts.get(part)
        if p is None:
            continue
        src = p["output"]
        sources[part] = src
        total = out_channels[src]
        a, b = p["channels"] if p["channels"] else (0, total)
        axis = _ch_axis(p["layout"])
        if a == 0 and b == total:
            g.node.append(helper.make_node("Identity", [src], [part], name=_unique(names, "edgepose_" + part)))
        elif opset >= 10:
            consts = []
            for suffix, val in (("starts", a), ("ends", b), ("axes", axis)):
                cname = _unique(names, "edgepose_%s_%s" % (part, suffix))
                g.initializer.append(numpy_helper.from_array(np.array([val], np.int64), cname))
                consts.append(cname)
            g.node.append(helper.make_node("Slice", [src] + consts, [part], name=_unique(names, "edgepose_slice_" + part)))
        else:
            g.node.append(helper.make_node("Slice", [src], [part], name=_unique(names, "edgepose_slice_" + part),
                                           starts=[a], ends=[b], axes=[axis]))
        dims = _dims(orig_outputs[src]) if src in orig_outputs else []
        if len(dims) == 4:
            dims[axis] = b - a
            shape: Optional[List[Any]] = [d if d is not None else "%s_d%d" % (part, i) for i, d in enumerate(dims)]
        else:
            shape = None
        new_outputs.append(helper.make_tensor_value_info(part, TensorProto.FLOAT, shape))
    del g.output[:]
    g.output.extend(new_outputs)
    onnx.checker.check_model(model)
    return sources


# ----------------------------------------------------------------------------------------------
# checks against the model
# ----------------------------------------------------------------------------------------------
def _load_onnx(path: str):
    import onnx

    if not os.path.exists(path):
        raise ModelError("model file not found: %s" % path)
    if not os.path.isfile(path):
        raise ModelError("model path is not a file: %s" % path)
    try:
        model = onnx.load(path)
    except Exception as e:
        raise ModelError("%s is not a readable ONNX model: %s" % (os.path.basename(path), first_line(e)))
    if len(model.graph.node) == 0:
        raise ModelError("%s is not a readable ONNX model: it has no graph nodes" % os.path.basename(path))
    return model


def _graph_inputs(model) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _check_input(model, spec: Dict[str, Any], name: str) -> Tuple[str, bool]:
    """The input's name; whether its batch dim is symbolic. Checks rank, channels, H/W."""
    inputs = _graph_inputs(model)
    inp = spec["input"]
    want = inp.get("name")
    if want is not None:
        match = [i for i in inputs if i.name == want]
        if not match:
            raise _fail("input.name %r is not an input of %s (inputs: %s)"
                        % (want, name, ", ".join(i.name for i in inputs)))
        vi = match[0]
    else:
        if len(inputs) != 1:
            raise _fail("%s has %d inputs (%s): set input.name" % (name, len(inputs), ", ".join(i.name for i in inputs)))
        vi = inputs[0]
    if vi.type.tensor_type.elem_type != 1:  # FLOAT
        raise _fail("input %s is not float32 (ONNX element type %d)" % (vi.name, vi.type.tensor_type.elem_type))
    dims = _dims(vi)
    if len(dims) != 4:
        raise _fail("input %s has rank %d; a 4-D image input is needed" % (vi.name, len(dims)))
    layout = inp["layout"]
    c = dims[_ch_axis(layout)]
    other = "NCHW" if layout == "NHWC" else "NHWC"
    if c != 3 and dims[_ch_axis(other)] == 3:
        raise _fail("input %s has shape %s: that is %s, not %s (wrong input.layout?)" % (vi.name, dims, other, layout))
    if isinstance(c, int) and c != 3:
        raise _fail("input %s has shape %s: in %s layout that is %d channels, not 3 (wrong input.layout?)"
                    % (vi.name, dims, layout, c))
    hy, wx = _hw_axes(layout)
    h, w = dims[hy], dims[wx]
    static_hw = isinstance(h, int) and isinstance(w, int)
    if inp["dynamic_hw"] and (isinstance(h, int) or isinstance(w, int)):
        raise _fail("input.dynamic_hw is true but %s has a fixed input size %s" % (name, dims))
    if static_hw and (h, w) != (inp["height"], inp["width"]):
        raise _fail("input.height/width %dx%d differ from the model's fixed input %dx%d"
                    % (inp["height"], inp["width"], h, w))
    if not static_hw and not inp["dynamic_hw"]:
        pass  # symbolic H/W used at one size: allowed (the runtime feeds height x width)
    return vi.name, not isinstance(dims[0], int)


def _check_outputs(spec: Dict[str, Any], model, outs: Dict[str, np.ndarray], in_hw: Tuple[int, int],
                   name: str) -> Dict[str, int]:
    """Check the spec's output description against real output arrays; {tensor: channels}."""
    graph_outs = [o.name for o in model.graph.output]
    parts = spec["_parts"]
    by_tensor: Dict[str, List[Tuple[str, Dict[str, Any]]]] = {}
    for part, p in parts.items():
        if p["output"] not in graph_outs:
            raise _fail("outputs.%s.output %r is not an output of %s (outputs: %s)"
                        % (part, p["output"], name, ", ".join(graph_outs)))
        by_tensor.setdefault(p["output"], []).append((part, p))
    channels = {}
    stride = spec["stride"]
    for tensor, entries in by_tensor.items():
        arr = outs[tensor]
        layouts = {p["layout"] for _, p in entries}
        if len(layouts) != 1:
            raise _fail("entries sharing output %s give different layouts" % tensor)
        layout = layouts.pop()
        if arr.ndim != 4:
            raise _fail("output %s has shape %s; a 4-D %s tensor is needed" % (tensor, list(arr.shape), layout))
        C = arr.shape[_ch_axis(layout)]
        hy, wx = _hw_axes(layout)
        oh, ow = arr.shape[hy], arr.shape[wx]
        H, W = in_hw
        ok_h = oh in (H // stride, -(-H // stride))
        ok_w = ow in (W // stride, -(-W // stride))
        if not (ok_h and ok_w):
            raise _fail("output %s has shape %s: read as %s its map is %dx%d with %d channels, but a %dx%d input "
                        "at stride %d gives %dx%d (wrong outputs.layout or stride?)"
                        % (tensor, list(arr.shape), layout, oh, ow, C, H, W, stride, -(-H // stride), -(-W // stride)))
        # channel ranges: fill omitted ones, check coverage
        ranges = []
        for part, p in entries:
            if p["channels"] is None:
                if len(entries) > 1:
                    raise _fail("outputs.%s shares output %s with %s: give channels [start, stop] for each"
                                % (part, tensor, ", ".join(q for q, _ in entries if q != part)))
                need = spec["_expected"].get(part)
                if need is not None and C != need:
                    raise _fail("output %s has %d channels but %s needs %d" % (tensor, C, part, need))
                p["channels"] = [0, C]
            a, b = p["channels"]
            if b > C:
                raise _fail("outputs.%s.channels [%d, %d] exceed the %d channels of output %s"
                            % (part, a, b, C, tensor))
            ranges.append((a, b, part))
        ranges.sort()
        pos = 0
        for a, b, _part in ranges:
            if a != pos:
                break
            pos = b
        if pos != C or ranges[-1][1] != C:
            covered = " + ".join("%d %s [%d, %d]" % (b - a, part, a, b) for a, b, part in ranges)
            raise _fail("output %s has %d channels but the spec accounts for %s = %d, not every channel exactly "
                        "once (wrong schema, background or layout?)"
                        % (tensor, C, covered, sum(b - a for a, b, _ in ranges)))
        channels[tensor] = C
    return channels


def _sample_input(spec: Dict[str, Any], n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Seeded test images through THE preprocessing (normalize reads only ``.input``)."""
    import types

    from edgepose.preprocess import normalize

    return normalize(sample_images(n, h, w, seed), types.SimpleNamespace(input=spec["input"]))


def _run(sess, feeds: Dict[str, np.ndarray], what: str) -> Dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    try:
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as e:
        raise ExportError("%s failed to run on a %s input: %s"
                          % (what, "x".join(str(d) for d in next(iter(feeds.values())).shape), first_line(e)))


# ----------------------------------------------------------------------------------------------
# the import
# ----------------------------------------------------------------------------------------------
def import_onnx(model_path: str, spec: Union[str, Dict[str, Any]], out: str, progress: bool = True,
                tolerance: float = TOLERANCE, simplify_model: bool = True) -> Dict[str, Any]:
    """Wrap a foreign ONNX pose model described by ``spec``; write ``out``; return a report."""
    import onnx

    from .checkpoint import file_sha256

    t0 = time.time()
    model_path = os.fspath(model_path)
    out = check_output_path(out)
    name = os.path.basename(model_path)
    raw_spec = load_spec(spec)
    if raw_spec.get("family") in AS_IS_FAMILIES:   # nothing to cut out of the graph: metadata only
        from .tflite_import import import_as_is

        return import_as_is(model_path, raw_spec, out, progress=progress)
    s = _normalize_spec(raw_spec)
    model = _load_onnx(model_path)
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_KEY in props:
        raise ExportError("%s already carries edgepose metadata: export it without --spec" % name)
    in_name, dyn_batch = _check_input(model, s, name)
    inp = s["input"]
    H, W = inp["height"], inp["width"]
    if inp["dynamic_hw"] and (H % s["stride"] or W % s["stride"]):
        raise _fail("input.height/width %dx%d must be multiples of the stride %d" % (H, W, s["stride"]))

    # run the original once at the reference size: shapes decide the remaining checks
    orig_bytes = model.SerializeToString()
    orig = ort_session(orig_bytes)
    x = _sample_input(s, 1, H, W, 0)
    ref = _run(orig, {in_name: x}, name)
    out_channels = _check_outputs(s, model, ref, (H, W), name)

    _wrap_graph(model, s, in_name, out_channels)
    simplified = False
    if simplify_model:
        model, simplified = simplify(model, progress)

    tables = s["_tables"]
    parts = s["_parts"]
    data: Dict[str, Any] = {
        "family": s["family"],
        "arch": raw_spec.get("arch") or os.path.splitext(name)[0],
        "input": {"name": "image", "layout": inp["layout"], "height": H, "width": W,
                  "channel_order": inp["channel_order"], "mean": inp["mean"], "std": inp["std"],
                  "dynamic_hw": inp["dynamic_hw"], "dynamic_batch": bool(dyn_batch)},
        "outputs": {part: {"name": part, "layout": parts[part]["layout"]}
                    for part in ("heatmaps", "pafs") if part in parts},
        "stride": s["stride"],
        "heatmap_offset": s["heatmap_offset"],
        **table_fields(tables),
        "source_sha256": file_sha256(model_path),
        "edgepose_version": _version(),
        "precision": "fp32",
        "source_io": {"input": in_name,
                      "outputs": {part: {"output": p["output"], "channels": p["channels"]} for part, p in parts.items()}},
        "export": {"imported_from": name, "opset": _model_opset(model)},
    }
    if s.get("decode"):
        data["decode"] = dict(s["decode"])
    if s["family"] == "topdown":
        data["crop"] = dict(s.get("crop") or {"padding": 1.25})
    try:
        meta = ModelMeta(data)
    except EdgeposeError as e:
        raise ExportError("spec gives invalid metadata: %s" % e)
    embed_onnx(model, meta)

    # verification: the wrapped model reproduces slices of the original outputs
    cases = [(1, H, W)]
    if inp["dynamic_hw"]:
        st = s["stride"]
        cases.append((2 if dyn_batch else 1, max(st, (H * 3 // 4) // st * st), max(st, (W * 5 // 4 + st - 1) // st * st)))
    elif dyn_batch:
        cases.append((2, H, W))
    results = []
    worst = 0.0
    with atomic_output(out) as tmp:
        onnx.save(model, tmp)
        wrapped = ort_session(tmp)
        for i, (n, h, w) in enumerate(cases):
            xin = x if i == 0 else _sample_input(s, n, h, w, i)
            r = ref if i == 0 else _run(orig, {in_name: xin}, name)
            got = _run(wrapped, {"image": xin}, "the wrapped model")
            errs = {}
            for part in data["outputs"]:
                p = parts[part]
                a, b = p["channels"]
                src = r[p["output"]]
                want = np.take(src, np.arange(a, b), axis=_ch_axis(p["layout"]))
                g = got[part]
                if g.shape != want.shape:
                    raise ExportError("verification: wrapped %s has shape %s, expected %s"
                                      % (part, list(g.shape), list(want.shape)))
                errs[part] = float(np.max(np.abs(g.astype(np.float64) - want))) if want.size else 0.0
            err = max(errs.values())
            worst = max(worst, err)
            results.append({"input_shape": list(xin.shape), "max_abs_error": errs,
                            "output_shapes": {k: list(v.shape) for k, v in got.items()}})
            _log(progress, "verify %s: max |wrapped - original| = %.3g" % ("x".join(map(str, xin.shape)), err))
        if worst > tolerance:
            raise ExportError("verification failed: wrapped model differs from the original by %.3g (> %.0e)"
                              % (worst, tolerance))
    from .api import is_intermediate
    _log(progress, ("FP32 ONNX made for the target (%.1f MB) in %.1fs" % (os.path.getsize(out) / 1e6, time.time() - t0))
         if is_intermediate(out) else
         ("wrote %s (%.1f MB) in %.1fs" % (out, os.path.getsize(out) / 1e6, time.time() - t0)))
    return {
        "target": "onnx",
        "output": out,
        "source": model_path,
        "source_kind": "onnx+spec",
        "arch": data["arch"],
        "simplified": simplified,
        "verify": {"max_abs_error": worst, "tolerance": tolerance, "cases": results, "reference": "original onnx"},
        "max_abs_error": worst,
        "metadata": meta.data,
        "seconds": round(time.time() - t0, 2),
    }


__all__ = ["import_onnx", "load_spec"]
