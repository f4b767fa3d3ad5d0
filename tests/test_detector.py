"""Person detector: specs, letterbox geometry (constructed ONNX head), real detectors on COCO."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from edgepose.errors import InputError, ModelError
from edgepose.pipelines.detector import (KNOWN_SPECS, PersonDetector, decode_yolox,
                                         load_detector_spec, nms, validate_spec)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_IMAGES = ["000000000785", "000000040083", "000000196141", "000000197388"]


# ----------------------------------------------------------------------------------------------
# a constructed YOLOX-style head: output = constant raw predictions (+ 0 * input)
# ----------------------------------------------------------------------------------------------
def _cells(h, w, strides=(8, 16, 32)):
    return [(st, y, x) for st in strides for y in range(h // st) for x in range(w // st)]


def raw_for_boxes(boxes_xyxy, scores, h=192, w=192, num_classes=1, person=0, strides=None):
    """Raw head output [1, cells, 5+C] that decodes to the given input-pixel boxes (box i
    predicted by a cell of stride ``strides[i]``, 16 by default)."""
    cells = _cells(h, w)
    out = np.zeros((1, len(cells), 5 + num_classes), np.float32)
    out[0, :, 2:4] = -10.0  # tiny boxes, score 0 everywhere else
    strides = strides or [16] * len(scores)
    for (x1, y1, x2, y2), sc, st in zip(boxes_xyxy, scores, strides):
        cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        gx, gy = int(cx // st), int(cy // st)
        i = cells.index((st, gy, gx))
        out[0, i, 0] = cx / st - gx
        out[0, i, 1] = cy / st - gy
        out[0, i, 2] = np.log(bw / st)
        out[0, i, 3] = np.log(bh / st)
        out[0, i, 4] = 1.0
        out[0, i, 5 + person] = sc
    return out


def build_const_detector(path, raw, h=192, w=192):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["raw", "z"], ["output"]),
    ]
    g = helper.make_graph(nodes, "const_det",
                          [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(raw.shape))],
                          [numpy_helper.from_array(raw, "raw"),
                           numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


@pytest.fixture(scope="module")
def const_det(tmp_path_factory):
    d = tmp_path_factory.mktemp("det")
    boxes = [(20.0, 30.0, 80.0, 150.0), (100.0, 10.0, 180.0, 100.0), (22.0, 31.0, 81.0, 150.0)]
    raw = raw_for_boxes(boxes, [0.9, 0.6, 0.8], strides=[16, 16, 8])
    return build_const_detector(str(d / "const_det.onnx"), raw), boxes


def spec192(**kw):
    s = copy.deepcopy(KNOWN_SPECS["light_person_detector"])
    s.update(kw)
    return s


def test_letterbox_top_left_mapping(const_det):
    path, boxes = const_det
    det = PersonDetector(path, spec=spec192())
    img = np.zeros((300, 400, 3), np.uint8)  # scale 192/400 = 0.48, padded at the bottom
    b, s = det(img)
    # box 3 overlaps box 1 (IoU ~0.97) with a lower score: suppressed
    assert len(b) == 2
    np.testing.assert_allclose(s, [0.9, 0.6], rtol=1e-6)
    r = 192 / 400.0
    # boxes clipped to the 400x300 image
    exp = np.array([[x1 / r, y1 / r, min(x2 / r, 400) - x1 / r, min(y2 / r, 300) - y1 / r]
                    for x1, y1, x2, y2 in boxes[:2]])
    assert exp[0, 3] < (boxes[0][3] - boxes[0][1]) / r and exp[1, 2] < (boxes[1][2] - boxes[1][0]) / r
    np.testing.assert_allclose(b, exp, atol=1e-3)
    assert set(det.timings) >= {"preprocess_ms", "inference_ms", "postprocess_ms"}


def test_letterbox_center_mapping(const_det):
    path, boxes = const_det
    spec = spec192()
    spec["letterbox"] = {"pad_value": 114, "align": "center"}
    det = PersonDetector(path, spec=spec, nms_threshold=0.99)
    img = np.zeros((400, 200, 3), np.uint8)  # scale 0.48 -> 96 wide, offset x 48
    b, s = det(img)
    assert len(b) == 3
    r, ox = 0.48, 48
    for i in (0, 1):
        x1, y1, x2, y2 = boxes[i]
        X1, X2 = np.clip([(x1 - ox) / r, (x2 - ox) / r], 0, 200)
        Y1, Y2 = np.clip([y1 / r, y2 / r], 0, 400)
        np.testing.assert_allclose(b[[0, 2][i]], [X1, Y1, X2 - X1, Y2 - Y1], atol=1e-3)


def test_no_detections_is_empty(tmp_path):
    raw = raw_for_boxes([], [])
    det = PersonDetector(build_const_detector(str(tmp_path / "empty.onnx"), raw), spec=spec192())
    b, s = det(np.zeros((50, 60, 3), np.uint8))
    assert b.shape == (0, 4) and s.shape == (0,) and b.dtype == np.float32


def test_bad_image(const_det):
    det = PersonDetector(const_det[0], spec=spec192())
    with pytest.raises(InputError):
        det(np.zeros((50, 60, 3), np.float32))
    with pytest.raises(InputError):
        det(None)
    b, _ = det(np.zeros((300, 400), np.uint8))  # grayscale is converted
    assert len(b) == 2


def test_decode_yolox_formula():
    spec = validate_spec(spec192())
    raw = np.zeros((756, 6), np.float32)
    # cell 0 of stride 8 is (x=0, y=0); the first stride-16 cell of row 1 is 576 + 12
    raw[588] = [0.5, 0.25, np.log(2.0), 0.0, 0.8, 0.5]
    b, s = decode_yolox(raw, spec, 0.3)
    cx, cy, w, h = (0.5 + 0) * 16, (0.25 + 1) * 16, 2.0 * 16, 16.0
    np.testing.assert_allclose(b, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], atol=1e-5)
    np.testing.assert_allclose(s, [0.4])


def test_nms():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(b, np.array([0.5, 0.9, 0.7]), 0.45).tolist() == [1, 2]
    assert nms(b, np.array([0.5, 0.9, 0.7]), 0.99).tolist() == [1, 2, 0]


# ----------------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------------
def test_example_specs_match_builtins():
    for fname, key in (("yolox_nano.spec.json", "yolox_nano_416x416"),
                       ("light_person_detector.spec.json", "light_person_detector")):
        with open(os.path.join(REPO, "examples", fname)) as f:
            assert json.load(f) == KNOWN_SPECS[key]


@pytest.mark.parametrize("change,match", [
    ({"format": "ssd"}, "format"),
    ({"input": {"height": 192}}, "width"),
    ({"strides": [7]}, "stride"),
    ({"person_class": 3}, "person_class"),
    ({"num_classes": "x"}, "num_classes"),
])
def test_bad_specs(change, match):
    s = spec192(**change)
    with pytest.raises(ModelError, match=match):
        validate_spec(s)


def test_spec_lookup(tmp_path, assets):
    src = os.path.join(assets, "detectors", "light_person_detector.onnx")
    assert load_detector_spec(src)[1] == "built-in"
    other = tmp_path / "my_detector.onnx"
    os.symlink(src, str(other))
    with pytest.raises(ModelError, match="no detector spec"):
        PersonDetector(str(other))
    (tmp_path / "my_detector.spec.json").write_text(json.dumps(KNOWN_SPECS["light_person_detector"]))
    d = PersonDetector(str(other))
    assert d.spec_source.endswith("my_detector.spec.json")
    (tmp_path / "bad.spec.json").write_text("{oops")
    with pytest.raises(ModelError, match="JSON"):
        PersonDetector(str(other), spec=str(tmp_path / "bad.spec.json"))
    with pytest.raises(ModelError, match="not found"):
        PersonDetector(str(other), spec=str(tmp_path / "nope.json"))


def test_spec_model_mismatch(assets):
    src = os.path.join(assets, "detectors", "light_person_detector.onnx")
    with pytest.raises(ModelError, match="does not match"):
        PersonDetector(src, spec=KNOWN_SPECS["yolox_nano_416x416"])
    with pytest.raises(ModelError, match="does not match"):
        PersonDetector(src, spec=spec192(num_classes=80))


# ----------------------------------------------------------------------------------------------
# real detectors on the four COCO images
# ----------------------------------------------------------------------------------------------
def _iou(a, b):
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


@pytest.fixture(scope="module")
def coco(assets):
    import cv2

    with open(os.path.join(assets, "coco", "test_coco.json")) as f:
        ann = json.load(f)
    imgs = {im["id"]: cv2.imread(os.path.join(assets, "coco", im["file_name"])) for im in ann["images"]}
    people = [(a["image_id"], np.array(a["bbox"])) for a in ann["annotations"]
              if a["area"] > 32 ** 2 and not a.get("iscrowd", 0)]
    return imgs, people


def _tflite_ok():
    try:
        from edgepose.backends.tflite import TfliteBackend  # noqa: F401
        import ai_edge_litert  # noqa: F401
    except ImportError as e:
        return str(e)
    return None


def recall(det, coco):
    imgs, people = coco
    dets = {iid: det(img) for iid, img in imgs.items()}
    hits = sum(1 for iid, gt in people if len(dets[iid][0]) and _iou(gt, dets[iid][0]).max() >= 0.5)
    return hits, len(people), dets


# measured (see the report): yolox_nano 11/12 (misses a small, occluded person at IoU 0.20),
# light_person_detector 12/12 (ONNX and TFLite)
@pytest.mark.parametrize("name,min_hits", [("yolox_nano_416x416.onnx", 11),
                                           ("light_person_detector.onnx", 12),
                                           ("light_person_detector.tflite", 12)])
def test_real_detector_recall(assets, coco, name, min_hits):
    if name.endswith(".tflite") and _tflite_ok():
        pytest.skip("TFLite backend unavailable: %s" % _tflite_ok())
    det = PersonDetector(os.path.join(assets, "detectors", name), threads=1)
    hits, total, dets = recall(det, coco)
    assert total == 12
    assert hits >= min_hits, (name, hits)
    # not a box for every pixel: at most 2 boxes more than annotated people per image
    n_ann = {iid: sum(1 for i, _ in coco[1] if i == iid) for iid in coco[0]}
    for iid, (b, s) in dets.items():
        assert len(b) <= n_ann[iid] + 2
        assert np.all(s >= 0.3) and np.all(np.diff(s) <= 0)
        assert np.all(b[:, 2:] > 0)


def test_tflite_matches_onnx(assets, coco):
    if _tflite_ok():
        pytest.skip("TFLite backend unavailable: %s" % _tflite_ok())
    d = os.path.join(assets, "detectors")
    a = PersonDetector(os.path.join(d, "light_person_detector.onnx"), threads=1)
    b = PersonDetector(os.path.join(d, "light_person_detector.tflite"), threads=1)
    for img in coco[0].values():
        ba, sa = a(img)
        bb, sb = b(img)
        assert len(ba) == len(bb)
        for box, sc in zip(ba, sa):
            j = int(np.argmax(_iou(box, bb)))
            # confident boxes agree closely; a weak one (a small, half-hidden person scoring < 0.5:
            # IoU 0.918 in 197388 with the bit-exact letterbox) moves more between the backends
            assert _iou(box, bb)[j] > (0.98 if sc >= 0.5 else 0.9)
            assert abs(sb[j] - sc) < 0.02
