"""Foreign TFLite models imported with a spec (``export MODEL.tflite --spec ... --target tflite``):
metadata written into the flatbuffer by the one TFLite writer and read back by the runtime, the
spec checked against the model's real tensors (lying specs refused in one line, nothing
written), integer I/O quantized/dequantized by the backend, MoveNet and EfficientPose on real
images. Needs the assets (models/foreign)."""
import copy
import json
import os

import numpy as np
import pytest

from edgepose.backends.tflite import TfliteBackend, read_meta
from edgepose.errors import EdgeposeError, ModelError
from edgepose.exporters import export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(REPO, "examples")


def _spec(name):
    with open(os.path.join(EX, name + ".spec.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def foreign(assets):
    from conftest import asset_or_skip

    return asset_or_skip(assets, "models", "foreign")


def _imp(foreign, tmp_path, model, spec, name=None):
    out = str(tmp_path / ((name or model) + ".tflite"))
    export(os.path.join(foreign, model + ".tflite"), target="tflite", out=out, spec=spec, progress=False)
    return out


def test_import_writes_metadata_and_keeps_the_model(foreign, tmp_path):
    src = os.path.join(foreign, "yolov8n_pose_224_int8.tflite")
    out = _imp(foreign, tmp_path, "yolov8n_pose_224_int8", _spec("yolov8n_pose_224"))
    meta = read_meta(out)
    assert meta.family == "onestage" and meta.get("onestage")["keypoint_units"] == "pixels"
    assert meta.outputs == {"predictions": {"name": "output0", "layout": "CN"}}
    assert meta.get("precision") == "int8" and meta.get("source_sha256")
    a, b = TfliteBackend(src, threads=1), TfliteBackend(out, threads=1)
    x = np.random.default_rng(0).random((1, 224, 224, 3)).astype(np.float32)
    assert np.array_equal(a.run({"images": x})["output0"], b.run({"images": x})["output0"])
    assert read_meta(src) is None


def _cli(argv, capsys):
    from edgepose.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


LIES = [
    # (model, spec name, change, words in the one-line error)
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"input.name": "image"}, "input.name 'image' is not an input"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"input.height": 256}, "input.height = 256 but"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"input.layout": "NCHW"}, "input.layout = 'NCHW'"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"input.dtype": "uint8"}, "input.dtype 'uint8' but"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"outputs.predictions.output": "out"},
     "outputs.predictions.output 'out' is not an output"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"outputs.predictions.layout": "NC"},
     "outputs.predictions.layout = 'NC' but output output0"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"onestage.keypoint_units": "normalized"},
     "onestage.keypoint_units = 'normalized' but"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"onestage.box_units": "pixels"}, "onestage.box_units = 'pixels' but"),
    ("yolov8n_pose_224_int8", "yolov8n_pose_224", {"schema": "cmu18"}, "not 5+3K = 59"),
    ("yolo11n_pose_640_full_integer", "yolo11n_pose_640", {"input.std": [1, 1, 1]},
     "input.std [1.0, 1.0, 1.0] (mean [0.0, 0.0, 0.0]) gives model inputs in [0, 255]"),
    ("yolo11n_pose_640_full_integer", "yolo11n_pose_640", {"input.quantization": {"scale": 0.00392, "zero_point": 0}},
     "input.quantization scale 0.00392, zero point 0 but"),
    ("yolo11n_pose_640_full_integer", "yolo11n_pose_640", {"outputs.predictions.dtype": "float32"},
     "outputs.predictions.dtype 'float32' but"),
    ("movenet_lightning_192_int8", "movenet_lightning_192", {"input.std": [255, 255, 255]},
     "without quantization: it takes raw integer pixels"),
    ("movenet_lightning_192_int8", "movenet_lightning_192", {"outputs.keypoints.order": "zyx"},
     "outputs.keypoints.order must be xy or yx"),
    ("movenet_lightning_192_int8", "movenet_lightning_192", {"schema": "mpii16", "keypoints": None},
     "not K x 3 = 48 values"),
    ("efficientpose_rt_224", "efficientpose_rt_224", {"stride": 8}, "stride = 8 but"),
    ("efficientpose_rt_224", "efficientpose_rt_224", {"outputs.heatmaps.output": "pass1_skeleton_pafs/BiasAdd"},
     "but output pass1_skeleton_pafs/BiasAdd has 28 channels"),
    ("efficientpose_rt_224", "efficientpose_rt_224", {"outputs.heatmaps.channels": [0, 8]}, "channels [0, 8] holds 8"),
]


@pytest.mark.parametrize("model,spec,change,words", LIES)
def test_lying_spec_refused_in_one_line(foreign, tmp_path, capsys, model, spec, change, words):
    s = _spec(spec)
    for path, value in change.items():
        t = s
        keys = path.split(".")
        for k in keys[:-1]:
            t = t[k]
        if value is None:
            t.pop(keys[-1], None)
        else:
            t[keys[-1]] = value
    sp = tmp_path / "lie.spec.json"
    sp.write_text(json.dumps(s))
    out = tmp_path / "out.tflite"
    rc, err = _cli(["export", os.path.join(foreign, model + ".tflite"), "--spec", str(sp), "--target", "tflite",
                    "-o", str(out)], capsys)
    assert rc == 2 and words in err, err
    assert err.startswith("edgepose: error:") and "\n" not in err
    assert not out.exists() and os.listdir(str(tmp_path)) == ["lie.spec.json"]   # nothing half-written


def test_tflite_source_needs_target_tflite_and_a_spec(foreign, tmp_path, capsys):
    src = os.path.join(foreign, "movenet_lightning_192_int8.tflite")
    rc, err = _cli(["export", src, "--target", "tflite", "-o", str(tmp_path / "o.tflite")], capsys)
    assert rc == 2 and "pass --spec" in err
    rc, err = _cli(["export", src, "--spec", os.path.join(EX, "movenet_lightning_192.spec.json"), "--target",
                    "tflite-fp32", "-o", str(tmp_path / "o.tflite")], capsys)
    assert rc == 2 and "imported with --target tflite" in err


def test_integer_io_handled_by_the_backend(foreign, tmp_path):
    """Full-integer YOLO11n: the caller feeds float [0,1] and gets float output; the backend
    quantizes with the input's scale/zero point and dequantizes the int8 output."""
    out = _imp(foreign, tmp_path, "yolo11n_pose_640_full_integer", _spec("yolo11n_pose_640"))
    b = TfliteBackend(out, threads=1)
    assert b.quantized_io == {"images": "int8", "output_0": "int8"}
    io = read_meta(out).get("source_io")["tensors"]
    assert io["images"]["dtype"] == "int8" and io["images"]["zero_point"] == -128
    x = np.random.default_rng(1).random((1, 640, 640, 3)).astype(np.float32)
    got = b.run({"images": x})["output_0"]
    assert got.dtype == np.float32
    # the same by hand on the interpreter
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=os.path.join(foreign, "yolo11n_pose_640_full_integer.tflite"), num_threads=1)
    it.allocate_tensors()
    di, do = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = di["quantization"], do["quantization"]
    it.set_tensor(di["index"], np.clip(np.rint(x / si) + zi, -128, 127).astype(np.int8))
    it.invoke()
    want = (it.get_tensor(do["index"]).astype(np.float32) - zo) * so
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_uint8_input_without_quantization_gets_rounded_pixels(foreign, tmp_path):
    out = _imp(foreign, tmp_path, "movenet_lightning_192_int8", _spec("movenet_lightning_192"))
    b = TfliteBackend(out, threads=1)
    px = np.random.default_rng(2).integers(0, 256, (1, 192, 192, 3)).astype(np.uint8)
    got = b.run({"input": px.astype(np.float32) + 0.2})["output_0"]    # float pixels, rounded
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=os.path.join(foreign, "movenet_lightning_192_int8.tflite"), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], px)
    it.invoke()
    assert np.array_equal(got, it.get_tensor(it.get_output_details()[0]["index"]))


def test_metadata_lying_about_quantization_refused_at_load(foreign, tmp_path):
    """A metadata that says float I/O on a full-integer model (a swapped file) is refused."""
    from edgepose.exporters.tflite import embed_metadata

    good = read_meta(_imp(foreign, tmp_path, "yolo11n_pose_640_int8", _spec("yolo11n_pose_640")))
    d = copy.deepcopy(good.data)
    d["outputs"]["predictions"]["name"] = "output_0"
    d["source_io"]["tensors"] = {"images": {"dtype": "float32"}, "output_0": {"dtype": "float32"}}
    from edgepose.metadata import ModelMeta

    with open(os.path.join(foreign, "yolo11n_pose_640_full_integer.tflite"), "rb") as f:
        flat = f.read()
    bad = tmp_path / "swapped.tflite"
    bad.write_bytes(embed_metadata(flat, ModelMeta(d)))
    with pytest.raises(ModelError, match="source_io.tensors\\[images\\].dtype = 'float32' but the tensor is int8"):
        TfliteBackend(str(bad))


def test_movenet_own_crop_and_detector_boxes_on_real_images(foreign, assets, coco, tmp_path):
    from edgepose.evaluate import evaluate_coco
    from edgepose.pipelines import load_estimator
    from edgepose.pipelines.regression import RegressionEstimator

    out = _imp(foreign, tmp_path, "movenet_lightning_192_int8", _spec("movenet_lightning_192"))
    est = load_estimator(out, threads=1)
    assert isinstance(est, RegressionEstimator)
    # COCO 000000000785: one person (a skier); MoveNet's own crop finds her
    from edgepose.io import read_image
    from pycocotools.coco import COCO  # noqa: F401  (evaluate needs it)

    r = evaluate_coco(est, {"images": [i for i in json.load(open(coco[0]))["images"] if i["id"] == 785],
                            "annotations": [a for a in json.load(open(coco[0]))["annotations"] if a["image_id"] == 785],
                            "categories": json.load(open(coco[0]))["categories"]}, coco[1])
    assert r["stats"]["AP"] >= 0.7, r["stats"]
    # with boxes: one person per box, in the box
    img = read_image(os.path.join(coco[1], "000000000785.jpg"))
    res = est(img, boxes=[[280, 40, 220, 380]])
    assert len(res) == 1 and res.boxes.shape == (1, 4)
    vis = res.keypoints[0, :, 2] > 0.3
    assert vis.sum() >= 12
    assert np.all((res.keypoints[0, vis, 0] > 240) & (res.keypoints[0, vis, 0] < 540))


def test_movenet_follows_the_last_pose_in_a_sequence(foreign, tmp_path):
    from edgepose.pipelines.regression import follow_crop, whole_image_crop

    names = ["nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip"]
    kp = np.array([[100, 40, .9], [90, 60, .9], [110, 60, .9], [92, 100, .9], [108, 100, .1]], float)
    c, s = follow_crop(kp, names, (400, 300))
    # centre: mean of the hips (100, 100); torso extent max |dy| = 40 -> 1.9 * 40 = 76;
    # body extent 60 (nose) -> 1.2 * 60 = 72: half-size 76
    np.testing.assert_allclose(c, [100, 100])
    np.testing.assert_allclose(s, [152, 152])
    kp[1:3, 2] = 0.1                         # no shoulder visible: the whole image again
    c, s = follow_crop(kp, names, (400, 300))
    np.testing.assert_allclose(s, whole_image_crop((400, 300))[1])


def test_efficientpose_mpii_schema_and_pckh(foreign, assets, tmp_path):
    from edgepose.io import read_image
    from edgepose.pipelines import load_estimator
    from edgepose.schema import MPII16_KEYPOINTS

    out = _imp(foreign, tmp_path, "efficientpose_rt_224", _spec("efficientpose_rt_224"))
    est = load_estimator(out, threads=1)
    m = est.meta
    assert m.get("schema") == "mpii16" and m.keypoints[0] == "head_top"
    # the tables follow the names: COCO's left shoulder is EfficientPose's channel 6
    assert m.get("to_coco17")[5] == m.keypoints.index("left_shoulder") == 6
    assert [m.keypoints[a] for a in m.get("flip_pairs")[0]] == ["right_ankle", "left_ankle"]
    recs = json.load(open(os.path.join(assets, "mpii", "test_mpii.json")))[:3]
    order = [m.keypoints.index(n) for n in MPII16_KEYPOINTS]
    hits = total = 0
    for r in recs:
        c, s = np.asarray(r["center"]), r["scale"] * 200.0
        res = est(read_image(os.path.join(assets, "mpii", r["image"])), boxes=[[c[0] - s / 2, c[1] - s / 2, s, s]])
        gt, vis = np.asarray(r["joints"]), np.asarray(r["joints_vis"]) > 0
        d = np.linalg.norm(res.keypoints[0, order, :2] - gt, axis=1)
        hits += int(np.sum((d <= 0.5 * np.linalg.norm(gt[9] - gt[8])) & vis))
        total += int(vis.sum())
    assert hits / total >= 0.9
