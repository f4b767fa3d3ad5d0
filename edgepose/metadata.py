"""Model metadata: everything the runtime needs to run an exported artifact on its own.

The metadata is one JSON document. In ONNX files it lives in ``metadata_props`` under the key
``edgepose`` (plus a few flat, human-readable keys); TFLite files and TensorRT bundles carry the
same JSON. ``edgepose infer model.onnx img.jpg`` needs nothing else.

Layout of the JSON (``format_version`` 1)::

    family          "bottomup" | "topdown" | "onestage" | "regression"
    arch            e.g. "lightweight-openpose", "hrnet", "tfpose-mobilenet-thin"
    input           {name, layout: NCHW|NHWC, height, width, channel_order: BGR|RGB,
                     mean: [3], std: [3]   (0-255 pixel units, model channel order),
                     dynamic_hw: bool, dynamic_batch: bool}
    outputs         {"heatmaps": {name, layout: NCHW|NHWC},
                     "pafs": {name, layout}}            (pafs only for bottom-up)
                    heatmaps hold exactly the K keypoint channels (no background);
                    pafs hold 2 channels per limb
    stride          input pixels per heatmap pixel
    heatmap_offset  o in  x_input = (x_heatmap + o) * stride - o ; 0.5 = pixel centres aligned
                    (OpenPose/Lightweight OpenPose label convention), 0.0 = HRNet's
    schema          keypoint schema name ("cmu18", "coco17", ...)
    keypoints       K names
    skeleton        [[a, b], ...] for drawing
    limbs           [[part_a, part_b, paf_x, paf_y], ...]   (bottom-up PAF table)
    flip_pairs      [[a, b], ...]
    to_coco17       17 indices into keypoints (-1: missing)
    crop            {"padding": 1.25}                       (top-down)
    decode          decode defaults (see DECODE_DEFAULTS)
    source_sha256   sha256 of the file the artifact was made from
    edgepose_version
    precision       "fp32" | "fp16" | "int8" | ...

One-stage models (``family: "onestage"``, YOLO-pose: boxes, person score and keypoints regressed
per anchor, then NMS) have no stride, heatmap offset or crop; instead::

    outputs         {"predictions": {name, layout: "CN" | "NC"}}
                    CN: [1, 5+3K, N] (YOLO export default), NC: [1, N, 5+3K]; per anchor
                    cx, cy, w, h, person score, then K x (x, y, score)
    onestage        {box_units, keypoint_units: "normalized" | "pixels" (model-input pixels),
                     pixel_origin: "corner" (YOLO: a pixel's centre at +0.5) | "center"}
    letterbox       {pad_value: 0-255, align: "center" | "top-left"}   (image → model input)

Single-person regression models (``family: "regression"``, MoveNet: K keypoints regressed for
the one person of the crop) have::

    outputs         {"keypoints": {name, order: "yx" | "xy", values: 3 | 5,
                                   units: "normalized" | "pixels", count}}
                    ``count`` (default K) x ``values``: (coordinate, coordinate, score) or
                    BlazePose's (x, y, z, visibility logit, presence logit); normalised 0-1 over
                    the model input or in input pixels; the first K are the schema's keypoints
    crop            {"padding": 1.25}   (crops around a detector's boxes)

Imported TFLite models also carry ``tflite.names`` (public tensor name → the name the
interpreter shows) and ``source_io`` (dtype and quantization of the model's own tensors, which
the TFLite backend quantizes and dequantizes).
"""
import json
from typing import Any, Dict, Optional

from .errors import ModelError, first_line

FORMAT_VERSION = 1
ONNX_KEY = "edgepose"

DECODE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "bottomup": {
        "refine": "dark",             # subpixel refinement of peaks on the stride-level maps
        "dark_kernel": 5,             # (measured: benchmarks/bottomup_choices.py)
        "peak_threshold": 0.1,
        "max_peaks": 32,              # per keypoint channel, best first
        "paf_samples": 10,
        "paf_score_threshold": 0.05,
        "min_sample_fraction": 0.8,
        "min_parts": 3,
        "min_person_score": 0.1,     # partly visible people (cut by the frame) score low
        "matching": "greedy",         # or "hungarian"
    },
    "topdown": {
        "refine": "dark",
        "dark_kernel": 11,
        "flip_test": False,
        "oks_nms_threshold": 0.9,
        "detector_score_threshold": 0.3,
        "min_keypoint_score": 0.2,
    },
    "onestage": {
        "score_threshold": 0.25,      # person score (Ultralytics' predict default)
        "nms": "iou",                 # "iou" (box IoU, YOLO's) or "oks" (keypoint OKS)
        "nms_threshold": 0.7,         # Ultralytics' iou default
        "max_people": 100,
    },
    "regression": {
        "crop": "follow",             # no boxes: "follow" (MoveNet: next crop from the last pose
                                      # in a video) or "image" (the whole image every frame)
        "min_keypoint_score": 0.2,    # keypoints the crop follows and the person score averages
        "detector_score_threshold": 0.3,
    },
}

HEATMAP_FAMILIES = ("bottomup", "topdown")
FAMILIES = ("bottomup", "topdown", "onestage", "regression")
# the outputs each family names in the metadata
OUTPUT_ROLES = {"bottomup": ("heatmaps", "pafs"), "topdown": ("heatmaps",),
                "onestage": ("predictions",), "regression": ("keypoints",)}
OUTPUT_LAYOUTS = {"heatmaps": ("NCHW", "NHWC"), "pafs": ("NCHW", "NHWC"), "predictions": ("CN", "NC")}
ONESTAGE_DEFAULTS = {"box_units": "normalized", "keypoint_units": "normalized", "pixel_origin": "corner"}
LETTERBOX_DEFAULTS = {"pad_value": 114, "align": "center"}


def _require(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise ModelError("model metadata: %s must be an object, got %r" % (where.rstrip(".") or "it", d))
    if key not in d:
        raise ModelError("model metadata lacks %s%s" % (where, key))
    return d[key]


# sanity bounds of the validator (a lie beyond them is refused, never clamped)
MAX_INPUT_SIZE = 8192
MAX_STRIDE = 64
MAX_KEYPOINTS = 512
MAX_LIMBS = 1024


def _bad(field: str, value: Any, rule: str) -> ModelError:
    v = repr(value)
    return ModelError("model metadata: %s = %s %s" % (field, v if len(v) <= 60 else v[:57] + "...", rule))


def _number(v: Any, field: str, lo: Optional[float] = None, hi: Optional[float] = None,
            integer: bool = False, lo_open: bool = False):
    """A finite number (an integer if ``integer``; bool is neither) within [lo, hi]."""
    import math
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(field, v, "is not a number")
    if not math.isfinite(v):
        raise _bad(field, v, "is not finite")
    if integer and float(v) != int(v):
        raise _bad(field, v, "is not an integer")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise _bad(field, v, "must be %s %s" % (">" if lo_open else ">=", lo))
    if hi is not None and v > hi:
        raise _bad(field, v, "must be <= %s" % hi)
    return int(v) if integer else float(v)


def _choice(v: Any, field: str, options) -> Any:
    if v not in options:
        raise _bad(field, v, "must be one of %s" % ", ".join(str(o) for o in options))
    return v


def _section(data: Dict[str, Any], key: str, defaults: Dict[str, Any], what: str) -> Dict[str, Any]:
    """``data[key]``, checked to be an object holding only the fields of ``defaults``."""
    sec = data[key]
    if not isinstance(sec, dict):
        raise _bad(key, sec, "is not an object")
    unknown = sorted(set(sec) - set(defaults))
    if unknown:
        raise _bad(key + "." + unknown[0], sec[unknown[0]], "is not a %s field (fields: %s)"
                   % (what, ", ".join(sorted(defaults))))
    return sec


def _index_list(v: Any, field: str, width: int, hi: int, allow_missing: bool = False) -> None:
    if not isinstance(v, list):
        raise _bad(field, v, "is not a list")
    for i, row in enumerate(v):
        if width and (not isinstance(row, list) or len(row) != width):
            raise _bad("%s[%d]" % (field, i), row, "must be a list of %d indices" % width)
        for j, x in enumerate(row if width else [row]):
            if allow_missing and (x is None or x == -1):
                continue
            _number(x, "%s[%d]" % (field, i) + ("[%d]" % j if width else ""), 0, hi - 1, integer=True)


def validate(data: Dict[str, Any]) -> None:
    """Every field of the metadata JSON checked for type, range and internal consistency; a
    lie raises ModelError in one line naming the field and its value. Nothing is clamped.
    (Consistency with the model's real tensors: :func:`check_against_model`.)"""
    from .reference import REFINES
    family = data["family"]
    inp = data["input"]
    if "name" in inp and not isinstance(inp["name"], str):
        raise _bad("input.name", inp["name"], "is not a string")
    for k in ("height", "width"):
        _number(inp[k], "input." + k, 1, MAX_INPUT_SIZE, integer=True)
    for k in ("dynamic_hw", "dynamic_batch"):
        if k in inp and not isinstance(inp[k], bool):
            raise _bad("input." + k, inp[k], "is not true/false")
    for k in ("mean", "std"):
        if not isinstance(inp[k], list) or len(inp[k]) != 3:
            raise _bad("input." + k, inp[k], "must be 3 numbers")
        for i, v in enumerate(inp[k]):
            _number(v, "input.%s[%d]" % (k, i), 0.0 if k == "std" else None, lo_open=(k == "std"))
    outs = data["outputs"]
    for role in OUTPUT_ROLES[family]:
        o = _require(outs, role, "outputs.")
        if not isinstance(o, dict) or not isinstance(o.get("name"), str) or not o.get("name"):
            raise _bad("outputs.%s.name" % role, o.get("name") if isinstance(o, dict) else o,
                       "must be a tensor name")
        if role in OUTPUT_LAYOUTS:
            _choice(o.get("layout", OUTPUT_LAYOUTS[role][0]), "outputs.%s.layout" % role, OUTPUT_LAYOUTS[role])
        if role == "keypoints":
            _choice(o.get("order", "xy"), "outputs.keypoints.order", ("xy", "yx"))
            _choice(o.get("values", 3), "outputs.keypoints.values", (3, 5))
            _choice(o.get("units", "normalized"), "outputs.keypoints.units", ("normalized", "pixels"))
            if "count" in o:
                _number(o["count"], "outputs.keypoints.count", len(data["keypoints"]) if isinstance(
                    data.get("keypoints"), list) else 1, MAX_KEYPOINTS, integer=True)
    if family in HEATMAP_FAMILIES:
        stride = _number(data["stride"], "stride", 1, MAX_STRIDE, integer=True)
        if family == "bottomup":   # bottom-up inputs are padded to the stride; crops need not be
            for k in ("height", "width"):
                if int(inp[k]) % stride:
                    raise _bad("input." + k, inp[k], "is not a multiple of the stride %d" % stride)
        _number(data["heatmap_offset"], "heatmap_offset", 0.0, 1.0)
    if family == "onestage":
        one = _section(data, "onestage", ONESTAGE_DEFAULTS, "one-stage")
        for k in ("box_units", "keypoint_units"):
            _choice(one[k], "onestage." + k, ("normalized", "pixels"))
        _choice(one["pixel_origin"], "onestage.pixel_origin", ("corner", "center"))
    if "letterbox" in data:
        lb = _section(data, "letterbox", LETTERBOX_DEFAULTS, "letterbox")
        _number(lb["pad_value"], "letterbox.pad_value", 0, 255, integer=True)
        _choice(lb["align"], "letterbox.align", ("center", "top-left"))
    _check_io_fields(data)
    kps = data["keypoints"]
    if not isinstance(kps, list) or not kps:
        raise _bad("keypoints", kps, "must be a non-empty list of names")
    if len(kps) > MAX_KEYPOINTS or not all(isinstance(k, str) and k for k in kps) or len(set(kps)) != len(kps):
        raise _bad("keypoints", kps, "must be at most %d distinct names" % MAX_KEYPOINTS)
    K = len(kps)
    _index_list(data["skeleton"], "skeleton", 2, K)
    _index_list(data["flip_pairs"], "flip_pairs", 2, K)
    if data["to_coco17"] is not None:
        t = data["to_coco17"]
        if not isinstance(t, list) or len(t) != 17:
            raise _bad("to_coco17", t, "must be 17 indices (or null)")
        _index_list(t, "to_coco17", 0, K, allow_missing=True)
    if family == "bottomup":
        limbs = data["limbs"]
        if not isinstance(limbs, list) or not limbs or len(limbs) > MAX_LIMBS:
            raise _bad("limbs", limbs, "must be a non-empty list of [part_a, part_b, paf_x, paf_y]")
        _index_list(limbs, "limbs", 4, max(K, 2 * MAX_LIMBS))
        for i, (a, b, px, py) in enumerate(limbs):
            if a >= K or b >= K:
                raise _bad("limbs[%d]" % i, limbs[i], "names a keypoint beyond the %d keypoints" % K)
            if a == b or px == py:
                raise _bad("limbs[%d]" % i, limbs[i], "must join two keypoints through two PAF channels")
    elif family in ("topdown", "regression"):
        crop = data.get("crop")
        if not isinstance(crop, dict):
            raise _bad("crop", crop, "is not an object")
        _number(crop.get("padding", 1.25), "crop.padding", 0.0, 10.0, lo_open=True)
    dec = data["decode"]
    known = set(DECODE_DEFAULTS[family])
    unknown = sorted(set(dec) - known)
    if unknown:
        raise _bad("decode." + unknown[0], dec[unknown[0]], "is not a %s decode option" % family)
    if family in HEATMAP_FAMILIES:
        _choice(dec["refine"], "decode.refine", REFINES)
        k = _number(dec["dark_kernel"], "decode.dark_kernel", 1, 31, integer=True)
        if k % 2 == 0:
            raise _bad("decode.dark_kernel", k, "must be odd")
    if "nms" in dec:
        _choice(dec["nms"], "decode.nms", ("iou", "oks"))
    if "max_people" in dec:
        _number(dec["max_people"], "decode.max_people", 1, 10000, integer=True)
    if "crop" in dec:
        _choice(dec["crop"], "decode.crop", ("follow", "image"))
    for name in ("peak_threshold", "paf_score_threshold", "min_sample_fraction", "oks_nms_threshold",
                 "detector_score_threshold", "min_keypoint_score", "score_threshold", "nms_threshold"):
        if name in dec:
            _number(dec[name], "decode." + name, 0.0, 1.0)
    if "min_person_score" in dec:
        _number(dec["min_person_score"], "decode.min_person_score", 0.0)
    if "max_peaks" in dec:
        _number(dec["max_peaks"], "decode.max_peaks", 1, 4096, integer=True)
    if "paf_samples" in dec:
        _number(dec["paf_samples"], "decode.paf_samples", 2, 1000, integer=True)
    if "min_parts" in dec:
        _number(dec["min_parts"], "decode.min_parts", 1, K, integer=True)
    if "matching" in dec:
        _choice(dec["matching"], "decode.matching", ("greedy", "hungarian"))
    if "flip_test" in dec and not isinstance(dec["flip_test"], bool):
        raise _bad("decode.flip_test", dec["flip_test"], "is not true/false")
    # video defaults a model may carry (edgepose.track's tables; the CLI overrides them)
    from .errors import InputError
    from .track import SMOOTH_DEFAULTS, TRACK_DEFAULTS, check_options
    for key, table, what in (("smoothing", SMOOTH_DEFAULTS, "smoothing"), ("tracking", TRACK_DEFAULTS, "tracker")):
        if key in data:
            if not isinstance(data[key], dict):
                raise _bad(key, data[key], "is not an object")
            try:
                check_options(data[key], table, what)
            except InputError as e:
                raise ModelError("metadata field %s: %s" % (key, e))


_IO_DTYPES = ("float32", "float16", "int8", "uint8", "int16")


def _check_io_entry(e: Any, field: str) -> None:
    if not isinstance(e, dict):
        raise _bad(field, e, "is not an object")
    _choice(e.get("dtype"), field + ".dtype", _IO_DTYPES)
    if "scale" in e or "zero_point" in e:
        _number(e.get("scale"), field + ".scale", 0.0, lo_open=True)
        _number(e.get("zero_point"), field + ".zero_point", -32768, 65535, integer=True)


def _check_io_fields(data: Dict[str, Any]) -> None:
    """``tflite.names`` (strings to strings) and ``source_io`` of imported models."""
    t = data.get("tflite")
    if t is not None:
        if not isinstance(t, dict):
            raise _bad("tflite", t, "is not an object")
        names = t.get("names", {})
        if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                  for k, v in names.items()):
            raise _bad("tflite.names", names, "must map tensor names to tensor names")
    io = data.get("source_io")
    if io is None or not isinstance(io, dict) or "tensors" not in io:
        return   # ONNX imports record where outputs came from ({input, outputs}); no dtypes
    tensors = io["tensors"]
    if not isinstance(tensors, dict):
        raise _bad("source_io.tensors", tensors, "is not an object")
    for name, e in tensors.items():
        _check_io_entry(e, "source_io.tensors[%s]" % name)


def check_against_model(meta: "ModelMeta", inputs, outputs, where: str = "model") -> None:
    """The metadata against the model's real tensors (``TensorSpec``s: name, shape with None or
    strings for dynamic dims): the input exists and is 4-D with 3 channels where the layout
    says, a fixed size matches, the named outputs exist with K heatmap channels and enough PAF
    channels for the limb table, and the stride is the input/output ratio. One-line ModelError
    naming the field and the value."""
    def dims(t):
        return [d if isinstance(d, int) and d > 0 else None for d in t.shape]

    inp = meta.input
    by_in = {t.name: t for t in inputs}
    t_in = by_in.get(inp.get("name")) if inp.get("name") else (inputs[0] if len(inputs) == 1 else None)
    if t_in is None:
        raise _bad("input.name", inp.get("name"), "is not an input of %s (inputs: %s)"
                   % (where, ", ".join(by_in)))
    d_in = dims(t_in)
    if len(d_in) != 4:
        raise ModelError("%s: input %s has %d dimensions, the metadata's layout %s needs 4"
                         % (where, t_in.name, len(d_in), inp["layout"]))
    ch, hi, wi = (1, 2, 3) if inp["layout"] == "NCHW" else (3, 1, 2)
    if d_in[ch] is not None and d_in[ch] != 3:
        raise _bad("input.layout", inp["layout"], "but %s's input %s has %d channels on that axis"
                   % (where, t_in.name, d_in[ch]))
    for k, ax in (("height", hi), ("width", wi)):
        if d_in[ax] is not None and d_in[ax] != int(inp[k]):
            raise _bad("input." + k, inp[k], "but %s's input is %d" % (where, d_in[ax]))
    by_out = {t.name: t for t in outputs}
    for role, spec in meta.outputs.items():
        if role not in OUTPUT_ROLES[meta.family]:
            continue
        t = by_out.get(spec.get("name"))
        if t is None:
            raise _bad("outputs.%s.name" % role, spec.get("name"), "is not an output of %s (outputs: %s)"
                       % (where, ", ".join(by_out)))
        d = dims(t)
        if role == "predictions":
            _check_predictions(meta, spec, t.name, d, where)
            continue
        if role == "keypoints":
            n = 1
            for v in d[1:]:
                n = n * v if (n is not None and v is not None) else None
            nv, count = int(spec.get("values", 3)), int(spec.get("count", meta.num_keypoints))
            if len(d) < 2 or (n is not None and n != nv * count):
                if "count" in spec:
                    raise _bad("outputs.keypoints.count", count, "but output %s has shape %s, not count x %d = %d values"
                               % (t.name, list(t.shape), nv, nv * count))
                raise _bad("keypoints", "%d names" % meta.num_keypoints, "but output %s has shape %s, not K x %d = %d values"
                           % (t.name, list(t.shape), nv, nv * count))
            continue
        d = dims(t)
        if len(d) != 4:
            raise ModelError("%s: output %s has %d dimensions, expected 4" % (where, t.name, len(d)))
        oc, oh, ow = (1, 2, 3) if spec.get("layout", "NCHW") == "NCHW" else (3, 1, 2)
        c = d[oc]
        if role == "heatmaps" and c is not None and c != meta.num_keypoints:
            raise _bad("keypoints", "%d names" % meta.num_keypoints, "but output %s has %d channels" % (t.name, c))
        if role == "pafs" and c is not None:
            used = max(max(int(l[2]), int(l[3])) for l in meta.get("limbs")) + 1
            if used > c:
                raise _bad("limbs", "PAF channels up to %d" % (used - 1), "but output %s has %d channels"
                           % (t.name, c))
        for k, ai, ao in (("height", hi, oh), ("width", wi, ow)):
            if d_in[ai] is not None and d[ao] is not None and d[ao] * meta.stride != d_in[ai] \
                    and -(-d_in[ai] // meta.stride) != d[ao]:
                raise _bad("stride", meta.stride, "but %s's input %s %d gives output %s %d"
                           % (where, k, d_in[ai], k, d[ao]))


def _check_predictions(meta: "ModelMeta", spec: Dict[str, Any], name: str, d, where: str) -> None:
    """A one-stage output: [1, 5+3K, N] (CN) or [1, N, 5+3K] (NC)."""
    C = 5 + 3 * meta.num_keypoints
    if len(d) != 3:
        raise ModelError("%s: output %s has %d dimensions, a one-stage output needs 3 ([1, 5+3K, N] or [1, N, 5+3K])"
                         % (where, name, len(d)))
    lay = spec.get("layout", "CN")
    c, other = (d[1], d[2]) if lay == "CN" else (d[2], d[1])
    if c is not None and c != C:
        if other == C:
            raise _bad("outputs.predictions.layout", lay, "but output %s %s has its 5+3K = %d values on the other axis"
                       % (name, d, C))
        raise _bad("keypoints", "%d names" % meta.num_keypoints, "but output %s %s has %d values per anchor, not 5+3K = %d"
                   % (name, d, c, C))


class ModelMeta:
    """Parsed, validated model metadata. ``meta.data`` is the JSON dict."""

    def __init__(self, data: Dict[str, Any]):
        if not isinstance(data, dict):
            raise ModelError("model metadata is not a JSON object")
        try:  # canonical JSON types (tuples -> lists), so that metadata round-trips exactly
            data = json.loads(json.dumps(data))
        except (TypeError, ValueError) as e:
            raise ModelError("model metadata is not JSON-serialisable: %s" % e)
        family = _require(data, "family", "")
        if family not in FAMILIES:
            raise ModelError("model metadata: family must be one of %s, got %r" % (", ".join(FAMILIES), family))
        inp = _require(data, "input", "")
        for k in ("layout", "height", "width", "channel_order", "mean", "std"):
            _require(inp, k, "input.")
        if inp["layout"] not in ("NCHW", "NHWC"):
            raise ModelError("model metadata: input.layout must be NCHW or NHWC, got %r" % (inp["layout"],))
        if inp["channel_order"] not in ("BGR", "RGB"):
            raise ModelError("model metadata: input.channel_order must be BGR or RGB")
        outs = _require(data, "outputs", "")
        for role in OUTPUT_ROLES[family]:
            _require(outs, role, "outputs.")
        if family == "bottomup":
            _require(data, "limbs", "")
        _require(data, "keypoints", "")
        if family in HEATMAP_FAMILIES:
            _require(data, "stride", "")
            data.setdefault("heatmap_offset", 0.5 if family == "bottomup" else 0.0)
        if family == "onestage":
            one = dict(ONESTAGE_DEFAULTS)
            one.update(data.get("onestage") or {})
            data["onestage"] = one
            lb = dict(LETTERBOX_DEFAULTS)
            lb.update(data.get("letterbox") or {})
            data["letterbox"] = lb
        data.setdefault("format_version", FORMAT_VERSION)
        dec = dict(DECODE_DEFAULTS[family])
        dec.update(data.get("decode") or {})
        data["decode"] = dec
        data.setdefault("skeleton", [])
        data.setdefault("limbs", [])
        data.setdefault("flip_pairs", [])
        data.setdefault("to_coco17", None)
        data.setdefault("precision", "fp32")
        if family in ("topdown", "regression"):
            data.setdefault("crop", {"padding": 1.25})
        validate(data)
        self.data = data

    # convenient accessors -------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.data["family"]

    @property
    def input(self) -> Dict[str, Any]:
        return self.data["input"]

    @property
    def outputs(self) -> Dict[str, Any]:
        return self.data["outputs"]

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel (1 for families without maps)."""
        return int(self.data.get("stride", 1))

    @property
    def keypoints(self):
        return list(self.data["keypoints"])

    @property
    def num_keypoints(self) -> int:
        return len(self.data["keypoints"])

    @property
    def decode(self) -> Dict[str, Any]:
        return self.data["decode"]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_json(self) -> str:
        return json.dumps(self.data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as e:
            raise ModelError("model metadata is not valid JSON: %s" % e)
        return cls(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelMeta) and self.data == other.data

    def __repr__(self) -> str:
        return "ModelMeta(%s)" % self.to_json()


def flat_props(meta: "ModelMeta") -> Dict[str, str]:
    """The metadata_props to write into an ONNX model: the JSON plus readable flat keys."""
    d = meta.data
    props = {
        ONNX_KEY: meta.to_json(),
        "edgepose.family": d["family"],
        "edgepose.arch": str(d.get("arch", "")),
        "edgepose.input": "%s %dx%d %s" % (d["input"]["layout"], d["input"]["height"],
                                            d["input"]["width"], d["input"]["channel_order"]),
        "edgepose.stride": str(d.get("stride", "")),
        "edgepose.keypoints": ",".join(d["keypoints"]),
    }
    if d.get("source_sha256"):
        props["edgepose.source_sha256"] = d["source_sha256"]
    if d.get("edgepose_version"):
        props["edgepose.version"] = d["edgepose_version"]
    return props


def embed_onnx(model, meta: "ModelMeta") -> None:
    """Write ``meta`` into an ``onnx.ModelProto``'s metadata_props (replacing edgepose keys)."""
    props = flat_props(meta)
    keep = [p for p in model.metadata_props if not p.key.startswith(ONNX_KEY)]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def from_props(props: Dict[str, str]) -> "Optional[ModelMeta]":
    """ModelMeta from a metadata_props mapping (e.g. onnxruntime's custom_metadata_map)."""
    if ONNX_KEY not in props:
        return None
    return ModelMeta.from_json(props[ONNX_KEY])


def read_onnx_meta(path: str) -> "Optional[ModelMeta]":
    """Metadata of an ONNX file without loading its weights into a session (None if absent)."""
    import onnx  # exporters extra; the runtime reads metadata through its backend instead

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others
        raise ModelError("%s is not a readable ONNX model: %s" % (path, first_line(e)))
    return from_props({p.key: p.value for p in model.metadata_props})
