"""BlazePose: MediaPipe's SSD anchors, weighted NMS, rotated person regions and crops, the
landmark model as a regression model (39 x 5 values in crop pixels), and the real pair of models
on a real image (assets)."""
import copy
import json
import math
import os

import numpy as np
import pytest

from edgepose.errors import ModelError
from edgepose.metadata import ModelMeta
from edgepose.pipelines.blazepose import BlazePoseDetector, ssd_anchors, weighted_nms
from edgepose.preprocess import apply_affine, crop_matrix, invert_affine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EX = os.path.join(REPO, "examples")


def test_ssd_anchors_match_mediapipe_grid():
    a = ssd_anchors(224)
    assert a.shape == (2254, 2)                          # 28*28*2 + 14*14*2 + 7*7*6
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])               # two anchors per cell
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    s32 = a[1568 + 392:]
    np.testing.assert_allclose(s32[:6], np.tile([[0.5 / 7, 0.5 / 7]], (6, 1)))   # 3 layers x 2
    np.testing.assert_allclose(s32[6], [1.5 / 7, 0.5 / 7])


def test_weighted_nms_averages_the_suppressed():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.3, 0.8])
    extra = np.array([[0.0], [4.0], [7.0]])
    b, s, e = weighted_nms(boxes, scores, extra, 0.3)
    np.testing.assert_allclose(s, [0.9, 0.8])
    np.testing.assert_allclose(b[0], [0.25, 0, 10.25, 10])      # (0.9 * 0 + 0.3 * 1) / 1.2
    np.testing.assert_allclose(e[:, 0], [1.0, 7.0])


def test_rotated_crop_matrix_round_trip():
    c, size = np.array([100.0, 50.0]), np.array([80.0, 80.0])
    for angle in (0.0, 0.3, -1.2, math.pi):
        m = crop_matrix(c, size, (256, 256), angle)
        pts = np.array([[3.0, 4.0], [200.5, 17.25]])
        np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-9)
        # the crop's x axis runs along (cos a, sin a) in the image
        u0, u1 = apply_affine(m, c), apply_affine(m, c + [math.cos(angle), math.sin(angle)])
        np.testing.assert_allclose(u1 - u0, [256 / 80.0, 0.0], atol=1e-9)


def test_roi_box_of_a_rotated_square():
    box = BlazePoseDetector.roi_box((np.array([10.0, 20.0]), np.array([4.0, 4.0]), math.pi / 4))
    e = 2 * math.sqrt(2)
    np.testing.assert_allclose(box, [10.5 - e, 20.5 - e, 2 * e, 2 * e])


REG_LIES = [
    ("outputs.keypoints.values", 4, "outputs.keypoints.values = 4 must be one of 3, 5"),
    ("outputs.keypoints.units", "cm", "outputs.keypoints.units = 'cm' must be one of normalized, pixels"),
    ("outputs.keypoints.count", 10, "outputs.keypoints.count = 10 must be >= 33"),
    ("outputs.keypoints.order", "zx", "outputs.keypoints.order = 'zx' must be one of xy, yx"),
    ("decode.crop", "face", "decode.crop = 'face' must be one of follow, image"),
    ("crop.padding", 0, "crop.padding = 0 must be > 0.0"),
]


@pytest.mark.parametrize("path,value,words", REG_LIES)
def test_validator_refuses_regression_lies(path, value, words):
    from edgepose.schema import BLAZEPOSE33_KEYPOINTS

    d = {"family": "regression", "input": {"name": "input_1", "layout": "NHWC", "height": 256, "width": 256,
                                           "channel_order": "RGB", "mean": [0, 0, 0], "std": [255, 255, 255]},
         "outputs": {"keypoints": {"name": "Identity", "values": 5, "count": 39, "units": "pixels"}},
         "keypoints": list(BLAZEPOSE33_KEYPOINTS)}
    ModelMeta(copy.deepcopy(d))
    t = d
    keys = path.split(".")
    for k in keys[:-1]:
        t = t.setdefault(k, {})
    t[keys[-1]] = value
    with pytest.raises(ModelError) as e:
        ModelMeta(d)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_blazepose_on_a_real_image(assets, coco, tmp_path):
    from edgepose.evaluate import evaluate_coco
    from edgepose.exporters import export
    from edgepose.pipelines import load_estimator

    f = os.path.join(assets, "models", "foreign")
    lm, det = os.path.join(f, "blazepose_landmark_full_256.tflite"), os.path.join(f, "blazepose_detection_224.tflite")
    if not (os.path.exists(lm) and os.path.exists(det)):
        pytest.skip("BlazePose models missing from assets")
    out = str(tmp_path / "blazepose.tflite")
    export(lm, target="tflite", out=out, spec=os.path.join(EX, "blazepose_landmark_full_256.spec.json"), progress=False)
    est = load_estimator(out, detector=det, detector_spec=os.path.join(EX, "blazepose_detection.spec.json"), threads=1)
    assert est.meta.num_keypoints == 33 and est.meta.outputs["keypoints"]["count"] == 39
    doc = json.load(open(coco[0]))
    one = {"images": [i for i in doc["images"] if i["id"] == 785],
           "annotations": [a for a in doc["annotations"] if a["image_id"] == 785], "categories": doc["categories"]}
    r = evaluate_coco(est, one, coco[1])
    assert r["people"] == 1 and r["stats"]["AP"] >= 0.6, r["stats"]


def test_regression_crops_follow_the_last_pose_only_in_a_sequence():
    """MoveNet-style: a still image runs the whole image, then the crop from that pose; in a
    sequence (run_video) the next frame starts from the last pose's crop."""
    from edgepose.backends.base import Backend, TensorSpec
    from edgepose.pipelines.regression import RegressionEstimator, follow_crop, whole_image_crop
    from edgepose.schema import COCO17_KEYPOINTS

    meta = ModelMeta({"family": "regression", "keypoints": list(COCO17_KEYPOINTS),
                      "input": {"name": "input", "layout": "NHWC", "height": 64, "width": 64, "channel_order": "RGB",
                                "mean": [0, 0, 0], "std": [1, 1, 1]},
                      "outputs": {"keypoints": {"name": "kp", "order": "yx"}}, "to_coco17": list(range(17))})
    rng = np.random.default_rng(0)
    pose = np.stack([rng.uniform(0.3, 0.7, 17), rng.uniform(0.4, 0.6, 17), np.full(17, 0.9)], 1)   # (y, x, s)

    class Fake(Backend):
        def __init__(self):
            super().__init__()
            self.path, self.meta = "fake.tflite", meta
            self.inputs = [TensorSpec("input", [1, 64, 64, 3], np.float32)]
            self.outputs = [TensorSpec("kp", [1, 1, 17, 3], np.float32)]

        def run(self, feeds, output_names=None):
            return {"kp": pose[None, None].astype(np.float32)}

    est = RegressionEstimator(Fake())
    seen = []
    crops = est._crops
    est._crops = lambda img, regions: (seen.append([np.asarray(r[1]).copy() for r in regions]), crops(img, regions))[1]
    img = np.zeros((200, 300, 3), np.uint8)
    res = est(img)                                   # a still image: whole image, then its crop
    assert len(seen) == 2 and np.allclose(seen[0][0], whole_image_crop((200, 300))[1])
    # the keypoints are the fake's, mapped through the second crop exactly
    c, s = follow_crop(est._keypoints(est._run(crops(img, [whole_image_crop((200, 300))])[0]),
                                      crops(img, [whole_image_crop((200, 300))])[1])[0],
                       meta.keypoints, (200, 300))
    np.testing.assert_allclose(seen[1][0], s)
    np.testing.assert_allclose(res.keypoints[0, :, 0], c[0] + (pose[:, 1] * 64 - 0.5 - 31.5) * s[0] / 64, atol=1e-4)
    seen.clear()
    est.start_sequence()
    est(img)
    est(img)                                         # the second frame: one run, from the last pose
    assert len(seen) == 3 and not np.allclose(seen[2][0], whole_image_crop((200, 300))[1])
    est.end_sequence()
