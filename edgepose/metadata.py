"""Model metadata: everything the runtime needs to run an exported artifact on its own.

The metadata is one JSON document. In ONNX files it lives in ``metadata_props`` under the key
``edgepose`` (plus a few flat, human-readable keys); TFLite files and TensorRT bundles carry the
same JSON. ``edgepose infer model.onnx img.jpg`` needs nothing else.

Layout of the JSON (``format_version`` 1)::

    family          "bottomup" | "topdown"
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
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

from .errors import ModelError

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
}


def _require(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise ModelError("model metadata lacks %s%s" % (where, key))
    return d[key]


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
        if family not in ("bottomup", "topdown"):
            raise ModelError("model metadata: family must be 'bottomup' or 'topdown', got %r" % (family,))
        inp = _require(data, "input", "")
        for k in ("layout", "height", "width", "channel_order", "mean", "std"):
            _require(inp, k, "input.")
        if inp["layout"] not in ("NCHW", "NHWC"):
            raise ModelError("model metadata: input.layout must be NCHW or NHWC, got %r" % (inp["layout"],))
        if inp["channel_order"] not in ("BGR", "RGB"):
            raise ModelError("model metadata: input.channel_order must be BGR or RGB")
        if len(inp["mean"]) != 3 or len(inp["std"]) != 3 or any(float(s) == 0 for s in inp["std"]):
            raise ModelError("model metadata: input.mean/std must be 3 numbers, std non-zero")
        outs = _require(data, "outputs", "")
        _require(outs, "heatmaps", "outputs.")
        if family == "bottomup":
            _require(outs, "pafs", "outputs.")
            _require(data, "limbs", "")
        _require(data, "stride", "")
        _require(data, "keypoints", "")
        data.setdefault("heatmap_offset", 0.5 if family == "bottomup" else 0.0)
        data.setdefault("format_version", FORMAT_VERSION)
        dec = dict(DECODE_DEFAULTS[family])
        dec.update(data.get("decode") or {})
        data["decode"] = dec
        data.setdefault("skeleton", [])
        data.setdefault("limbs", [])
        data.setdefault("flip_pairs", [])
        data.setdefault("to_coco17", None)
        data.setdefault("precision", "fp32")
        if family == "topdown":
            data.setdefault("crop", {"padding": 1.25})
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
        return int(self.data["stride"])

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


def flat_props(meta: ModelMeta) -> Dict[str, str]:
    """The metadata_props to write into an ONNX model: the JSON plus readable flat keys."""
    d = meta.data
    props = {
        ONNX_KEY: meta.to_json(),
        "edgepose.family": d["family"],
        "edgepose.arch": str(d.get("arch", "")),
        "edgepose.input": "%s %dx%d %s" % (d["input"]["layout"], d["input"]["height"],
                                            d["input"]["width"], d["input"]["channel_order"]),
        "edgepose.stride": str(d["stride"]),
        "edgepose.keypoints": ",".join(d["keypoints"]),
    }
    if d.get("source_sha256"):
        props["edgepose.source_sha256"] = d["source_sha256"]
    if d.get("edgepose_version"):
        props["edgepose.version"] = d["edgepose_version"]
    return props


def embed_onnx(model, meta: ModelMeta) -> None:
    """Write ``meta`` into an ``onnx.ModelProto``'s metadata_props (replacing edgepose keys)."""
    props = flat_props(meta)
    keep = [p for p in model.metadata_props if not p.key.startswith(ONNX_KEY)]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)


def from_props(props: Dict[str, str]) -> Optional[ModelMeta]:
    """ModelMeta from a metadata_props mapping (e.g. onnxruntime's custom_metadata_map)."""
    if ONNX_KEY not in props:
        return None
    return ModelMeta.from_json(props[ONNX_KEY])


def read_onnx_meta(path: str) -> Optional[ModelMeta]:
    """Metadata of an ONNX file without loading its weights into a session (None if absent)."""
    import onnx  # exporters extra; the runtime reads metadata through its backend instead

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others
        raise ModelError("%s is not a readable ONNX model: %s" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return from_props({p.key: p.value for p in model.metadata_props})
