"""One-stage family (YOLO-pose): exact decode of constructed outputs in both layouts and every
coordinate convention, the letterbox, the C++ threshold + NMS against the numpy reference, the
metadata validator's one-stage fields, and real models' AP on real images (assets)."""
import copy
import os
import sys

import numpy as np
import pytest

from edgepose import decode, reference
from edgepose.backends.base import Backend, TensorSpec
from edgepose.errors import EdgeposeError, InputError, ModelError
from edgepose.metadata import ModelMeta, check_against_model
from edgepose.pipelines.onestage import OneStageEstimator
from edgepose.preprocess import letterbox
from edgepose.schema import COCO17_KEYPOINTS, COCO17_SKELETON

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 17
C = 5 + 3 * K


def _meta(layout="CN", box_units="normalized", kpt_units="normalized", origin="corner", H=320, W=320, **extra):
    d = {"family": "onestage", "arch": "test",
         "input": {"name": "images", "layout": "NHWC", "height": H, "width": W, "channel_order": "RGB",
                   "mean": [0, 0, 0], "std": [255, 255, 255]},
         "outputs": {"predictions": {"name": "out", "layout": layout}},
         "onestage": {"box_units": box_units, "keypoint_units": kpt_units, "pixel_origin": origin},
         "keypoints": list(COCO17_KEYPOINTS), "skeleton": [list(p) for p in COCO17_SKELETON],
         "to_coco17": list(range(17))}
    d.update(extra)
    return ModelMeta(d)


class FakeBackend(Backend):
    """Returns a constructed one-stage output; records the input it was fed."""
    name = "fake"

    def __init__(self, meta, pred):
        super().__init__()
        self.path, self.meta, self.pred = "fake.tflite", meta, pred
        H, W = meta.input["height"], meta.input["width"]
        self.inputs = [TensorSpec("images", [1, H, W, 3], np.float32)]
        self.outputs = [TensorSpec("out", list(pred.shape), np.float32)]
        self.fed = None

    def run(self, feeds, output_names=None):
        self.fed = feeds["images"]
        return {"out": self.pred.copy()}


def _people(n=3, seed=0, img_hw=(200, 400)):
    """People in image pixels: boxes xywh (corner convention) and keypoints (pixel centres)."""
    rng = np.random.default_rng(seed)
    h, w = img_hw
    boxes, kps = [], []
    for i in range(n):
        x, y = 20 + 120 * i, 10 + 10 * i
        bw, bh = 60 + 5 * i, 150 - 10 * i
        boxes.append([x, y, bw, bh])
        kps.append(np.stack([rng.uniform(x, x + bw, K), rng.uniform(y, y + bh, K), rng.uniform(0.1, 1, K)], 1))
    return np.array(boxes, np.float64), np.array(kps, np.float64)


def _encode(meta, boxes, kps, scores, img_hw, n_anchors=64, order=None):
    """The model output that the decode must turn back into ``boxes``/``kps`` exactly."""
    H, W = meta.input["height"], meta.input["width"]
    _, tr = letterbox(np.zeros(img_hw + (3,), np.uint8), (H, W))
    one = meta.get("onestage")
    off = 0.0 if one["pixel_origin"] == "corner" else -0.5        # corner -> the model's origin
    bs = (W, H) if one["box_units"] == "normalized" else (1, 1)
    ks = (W, H) if one["keypoint_units"] == "normalized" else (1, 1)
    rows = np.zeros((n_anchors, C))
    rows[:, 4] = 0.01                                             # background anchors
    slots = order if order is not None else np.arange(len(boxes)) * 7 + 3
    for i, s in enumerate(slots):
        x, y, bw, bh = boxes[i]
        cx = (x + bw / 2) * tr.sx + tr.left + off
        cy = (y + bh / 2) * tr.sy + tr.top + off
        rows[s, :4] = [cx / bs[0], cy / bs[1], bw * tr.sx / bs[0], bh * tr.sy / bs[1]]
        rows[s, 4] = scores[i]
        ux = (kps[i, :, 0] + 0.5) * tr.sx + tr.left + off       # centre -> corner convention in the input
        uy = (kps[i, :, 1] + 0.5) * tr.sy + tr.top + off
        rows[s, 5::3], rows[s, 6::3], rows[s, 7::3] = ux / ks[0], uy / ks[1], kps[i, :, 2]
    out = rows.T[None] if meta.outputs["predictions"]["layout"] == "CN" else rows[None]
    return np.ascontiguousarray(out, np.float32)


@pytest.mark.parametrize("layout", ["CN", "NC"])
@pytest.mark.parametrize("box_units,kpt_units,origin", [
    ("normalized", "normalized", "corner"),       # YOLO11n-pose
    ("normalized", "pixels", "corner"),           # YOLOv8n-pose 224 (mixed)
    ("pixels", "pixels", "center"),
])
def test_decode_constructed_output_exactly(layout, box_units, kpt_units, origin):
    meta = _meta(layout, box_units, kpt_units, origin)
    img_hw = (200, 400)                            # letterboxed into 320x320: scale 0.8, 80 px bands
    boxes, kps = _people(3, img_hw=img_hw)
    scores = np.array([0.9, 0.6, 0.8])
    pred = _encode(meta, boxes, kps, scores, img_hw)
    est = OneStageEstimator(FakeBackend(meta, pred))
    res = est(np.zeros(img_hw + (3,), np.uint8))
    order = np.argsort(-scores)                    # best first
    assert len(res) == 3
    np.testing.assert_allclose(res.scores, scores[order], atol=1e-6)
    np.testing.assert_allclose(res.boxes, boxes[order], atol=2e-3)
    np.testing.assert_allclose(res.keypoints[:, :, :2], kps[order, :, :2], atol=2e-3)
    np.testing.assert_allclose(res.keypoints[:, :, 2], kps[order, :, 2], atol=1e-6)


def test_letterbox_matches_ultralytics_rounding_and_inverts():
    img = np.full((200, 401, 3), 7, np.uint8)
    canvas, tr = letterbox(img, (320, 320), 114, "center")
    # r = 320/401; 401 -> 320, 200 -> round(159.6) = 160; top = round(80 - 0.1) = 80
    assert (tr.left, tr.top) == (0, 80) and canvas.shape == (320, 320, 3)
    assert np.all(canvas[:80] == 114) and np.all(canvas[240:] == 114) and np.all(canvas[80:240] == 7)
    # pixel centres: the image's first and last pixel map to the resized image's
    u = np.array([[0.5 * tr.sx - 0.5 + tr.left, 0.5 * tr.sy - 0.5 + tr.top]])
    np.testing.assert_allclose(tr.input_to_image(u), [[0.0, 0.0]], atol=1e-12)
    _, tr2 = letterbox(img, (320, 320), 0, "top-left")
    assert (tr2.left, tr2.top) == (0, 0)


def test_nms_suppresses_duplicates_and_oks_option():
    meta = _meta("CN")
    img_hw = (320, 320)
    boxes, kps = _people(2, img_hw=img_hw)
    # a duplicate of person 0 (same box and pose, lower score) and person 1
    boxes = np.concatenate([boxes, boxes[:1] + [2, 0, 0, 0]])
    kps = np.concatenate([kps, kps[:1] + [2, 0, 0]])
    scores = np.array([0.9, 0.7, 0.8])
    pred = _encode(meta, boxes, kps, scores, img_hw)
    for nms in ("iou", "oks"):
        res = OneStageEstimator(FakeBackend(meta, pred), nms=nms)(np.zeros(img_hw + (3,), np.uint8))
        assert len(res) == 2 and np.allclose(res.scores, [0.9, 0.7])
    res = OneStageEstimator(FakeBackend(meta, pred), nms="none")(np.zeros(img_hw + (3,), np.uint8))
    assert len(res) == 3
    res = OneStageEstimator(FakeBackend(meta, pred), score_threshold=0.75)(np.zeros(img_hw + (3,), np.uint8))
    assert len(res) == 1
    res = OneStageEstimator(FakeBackend(meta, pred), max_people=1, nms="none")(np.zeros(img_hw + (3,), np.uint8))
    assert len(res) == 1 and res.scores[0] == pytest.approx(0.9)


@pytest.mark.parametrize("layout", ["CN", "NC"])
@pytest.mark.parametrize("nms,kthr", [("iou", 0.0), ("oks", 0.0), ("oks", 0.3), ("none", 0.0)])
def test_select_matches_numpy_reference(layout, nms, kthr):
    rng = np.random.default_rng([ord(layout[0]), len(nms), int(kthr * 10)])
    sig = rng.uniform(0.02, 0.1, K)
    for trial in range(20):
        N = int(rng.integers(1, 400))
        rows = rng.random((N, C)).astype(np.float32)
        rows[:, :2] *= 0.8 + 0.1
        rows[:, 2:4] *= 0.3
        rows[:, 4] = np.round(rows[:, 4] * 20) / 20        # ties in scores: lower index first
        p = rows.T[None] if layout == "CN" else rows[None]
        p = np.ascontiguousarray(p)
        args = (layout, K, 0.3, nms, 0.5, int(rng.integers(1, 50)), (640, 480), (640, 480), sig, kthr)
        got = decode.select_onestage(p, *args)
        want = reference.onestage_select(p, *args)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)


def test_select_bad_input_one_line():
    p = np.zeros((1, C, 10), np.float32)
    with pytest.raises(InputError, match="values per anchor, not 5 \\+ 3 x 18"):
        decode.select_onestage(p, "CN", 18, 0.2)
    q = p.copy()
    q[0, 4, 3] = np.nan
    with pytest.raises(InputError, match="NaN or inf score \\(anchor 3\\)"):
        decode.select_onestage(q, "CN", K, 0.2)
    q = p.copy()
    q[0, 4, 5], q[0, 9, 5] = 0.9, np.inf
    with pytest.raises(InputError, match="NaN or inf \\(anchor 5\\)"):
        decode.select_onestage(q, "CN", K, 0.2)
    with pytest.raises(InputError, match="layout must be 'CN' or 'NC'"):
        decode.select_onestage(p, "NCHW", K, 0.2)
    with pytest.raises(InputError, match="needs sigmas"):
        decode.select_onestage(p, "CN", K, 0.2, nms="oks")


ONE_LIES = [
    ("onestage.box_units", "percent", "onestage.box_units = 'percent' must be one of normalized, pixels"),
    ("onestage.pixel_origin", "middle", "onestage.pixel_origin = 'middle' must be one of corner, center"),
    ("onestage.speed", 1, "onestage.speed = 1 is not a one-stage field"),
    ("letterbox.align", "left", "letterbox.align = 'left' must be one of center, top-left"),
    ("letterbox.pad_value", 300, "letterbox.pad_value = 300 must be <= 255"),
    ("outputs.predictions.layout", "NCHW", "outputs.predictions.layout = 'NCHW' must be one of CN, NC"),
    ("outputs.predictions.name", "", "outputs.predictions.name = '' must be a tensor name"),
    ("decode.nms", "soft", "decode.nms = 'soft' must be one of iou, oks"),
    ("decode.score_threshold", 2, "decode.score_threshold = 2 must be <= 1.0"),
    ("decode.max_people", 0, "decode.max_people = 0 must be >= 1"),
    ("decode.refine", "dark", "decode.refine = 'dark' is not a onestage decode option"),
    ("source_io", {"tensors": {"images": {"dtype": "int4"}}}, "source_io.tensors[images].dtype = 'int4' must be one of"),
    ("source_io", {"tensors": {"images": {"dtype": "int8", "scale": -1, "zero_point": 0}}},
     "source_io.tensors[images].scale = -1 must be > 0.0"),
    ("tflite", {"names": {"a": 3}}, "tflite.names = "),
]


@pytest.mark.parametrize("path,value,words", ONE_LIES)
def test_validator_refuses_onestage_lies(path, value, words):
    d = copy.deepcopy(_meta().data)
    keys = path.split(".")
    t = d
    for k in keys[:-1]:
        t = t[k]
    t[keys[-1]] = value
    with pytest.raises(ModelError) as e:
        ModelMeta(d)
    msg = str(e.value)
    assert words in msg and "\n" not in msg


def test_check_against_model_names_layout_and_count():
    meta = _meta("CN")
    ins = [TensorSpec("images", [1, 320, 320, 3], np.float32)]
    check_against_model(meta, ins, [TensorSpec("out", [1, C, 2100], np.float32)])
    with pytest.raises(ModelError, match="outputs.predictions.layout = 'CN' but output out"):
        check_against_model(meta, ins, [TensorSpec("out", [1, 2100, C], np.float32)])
    with pytest.raises(ModelError, match="59 values per anchor, not 5\\+3K = 56"):
        check_against_model(meta, ins, [TensorSpec("out", [1, 59, 2100], np.float32)])
    with pytest.raises(ModelError, match="input.height = 320 but"):
        check_against_model(meta, [TensorSpec("images", [1, 640, 640, 3], np.float32)],
                            [TensorSpec("out", [1, C, 2100], np.float32)])


# ---- real models (assets) ----------------------------------------------------------------------
def _import(assets, tmp_path_factory, model, spec):
    if sys.version_info < (3, 8):
        pytest.skip("importing the model needs the exporters (Python >= 3.8)")
    pytest.importorskip("onnx", reason="the exporters need onnx (a runtime-only install has none)")
    pytest.importorskip("ai_edge_litert", reason="the TFLite runtime (ai-edge-litert) is not installed")
    from edgepose.exporters import export

    src = os.path.join(assets, "models", "foreign", model + ".tflite")
    if not os.path.exists(src):
        pytest.skip("%s missing from assets" % model)
    out = str(tmp_path_factory.mktemp("onestage") / (model + ".tflite"))
    export(src, target="tflite", out=out, spec=os.path.join(REPO, "examples", spec + ".spec.json"), progress=False)
    return out


@pytest.mark.parametrize("model,spec,min_ap", [
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", 0.25),
    ("yolo11n_pose_640_int8", "yolo11n_pose_640", 0.45),
    ("yolo11n_pose_640_full_integer", "yolo11n_pose_640", 0.35),
])
def test_real_yolo_ap_on_coco(assets, coco, tmp_path_factory, model, spec, min_ap):
    pytest.importorskip("pycocotools", reason="the AP needs pycocotools (edgepose[eval])")
    from edgepose.evaluate import evaluate_coco
    from edgepose.pipelines import load_estimator

    est = load_estimator(_import(assets, tmp_path_factory, model, spec), threads=1)
    assert isinstance(est, OneStageEstimator)
    r = evaluate_coco(est, *coco)
    assert r["stats"]["AP"] >= min_ap, r["stats"]
    # every annotated image has people found, with boxes inside the image
    assert r["people"] >= 10


# ---- an ONNX one-stage model (constructed): imported as it is, decoded exactly ----------------
def _onnx_onestage(path, pred):
    """A model whose output is the constant ``pred`` (plus 0 x the input's mean)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),      # a scalar
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["z", "c"], ["preds"])]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"), numpy_helper.from_array(pred, "c")]
    g = helper.make_graph(nodes, "onestage", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 96])],
                          [helper.make_tensor_value_info("preds", TensorProto.FLOAT, list(pred.shape))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def test_onnx_onestage_import_and_exact_decode(tmp_path):
    if sys.version_info < (3, 8):
        pytest.skip("importing needs the exporters (Python >= 3.8)")
    pytest.importorskip("onnx", reason="the exporters need onnx (a runtime-only install has none)")
    pytest.importorskip("onnxruntime")
    from edgepose.exporters import export
    from edgepose.pipelines import load_estimator

    meta = _meta("NC", "pixels", "normalized", "corner", H=64, W=96)
    img_hw = (120, 90)
    boxes, kps = _people(2, img_hw=(120, 200))
    boxes, kps = boxes / [2.5, 1, 2.5, 1], kps / [2.5, 1, 1]          # inside a 90 px wide image
    pred = _encode(meta, boxes, kps, np.array([0.8, 0.6]), img_hw, n_anchors=40)
    src = str(tmp_path / "yolo_like.onnx")
    _onnx_onestage(src, pred)
    spec = {"family": "onestage", "arch": "constructed",
            "input": {"name": "images", "layout": "NCHW", "channel_order": "RGB", "mean": [0, 0, 0],
                      "std": [255, 255, 255], "height": 64, "width": 96},
            "outputs": {"predictions": {"output": "preds", "layout": "NC"}},
            "onestage": {"box_units": "pixels", "keypoint_units": "normalized"}, "schema": "coco17"}
    out = str(tmp_path / "imported.onnx")
    rep = export(src, target="onnx", out=out, spec=spec, progress=False)
    assert rep["source_kind"] == "onnx+spec" and rep["metadata"]["family"] == "onestage"
    est = load_estimator(out, threads=1)
    res = est(np.zeros(img_hw + (3,), np.uint8))
    np.testing.assert_allclose(res.scores, [0.8, 0.6], atol=1e-6)
    np.testing.assert_allclose(res.boxes, boxes, atol=2e-3)
    np.testing.assert_allclose(res.keypoints[:, :, :2], kps[:, :, :2], atol=2e-3)
    # lies about the model are refused in one line, nothing written
    for change, words in ((("outputs", "predictions", "layout"), "CN"), (("onestage", "keypoint_units"), "pixels"),
                          (("input", "height"), 48)):
        bad = copy.deepcopy(spec)
        t = bad
        for k in change[:-1]:
            t = t[k]
        t[change[-1]] = words
        with pytest.raises(EdgeposeError) as e:
            export(src, target="onnx", out=str(tmp_path / "lie.onnx"), spec=bad, progress=False)
        assert "\n" not in str(e.value) and ".".join(change[-2:]) in str(e.value)
        assert not (tmp_path / "lie.onnx").exists()
    with pytest.raises(EdgeposeError, match="target cpu-int8: onestage models are deployed as they are imported"):
        export(out, target="cpu-int8", out=str(tmp_path / "x.onnx"), calib=src, progress=False)
