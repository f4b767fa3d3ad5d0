"""The metadata validator: a model file is untrusted input. Every lie about the model is refused
in one line that names the field and its value, before anything runs; nothing is clamped."""
import copy
import os

import pytest

from edgepose.errors import ModelError
from edgepose.metadata import ModelMeta
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS, CMU18_TO_COCO17


def _good():
    return {"family": "bottomup", "arch": "test",
            "input": {"name": "x", "layout": "NCHW", "height": 64, "width": 80, "channel_order": "BGR",
                      "mean": [128, 128, 128], "std": [256, 256, 256], "dynamic_hw": True},
            "outputs": {"heatmaps": {"name": "h", "layout": "NCHW"}, "pafs": {"name": "p", "layout": "NCHW"}},
            "stride": 8, "keypoints": list(CMU18_KEYPOINTS), "limbs": [list(l) for l in CMU18_LIMBS],
            "to_coco17": list(CMU18_TO_COCO17), "skeleton": [[0, 1]], "decode": {}}


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


LIES = [
    ("stride", 0, "stride = 0 must be >= 1"),
    ("stride", -8, "stride = -8 must be >= 1"),
    ("stride", 2.5, "stride = 2.5 is not an integer"),
    ("stride", "8", "stride = '8' is not a number"),
    ("stride", 7, "input.height = 64 is not a multiple of the stride 7"),
    ("input.height", 0, "input.height = 0 must be >= 1"),
    ("input.width", 10 ** 6, "input.width = 1000000 must be <= 8192"),
    ("input.layout", "NCWH", "input.layout must be NCHW or NHWC"),
    ("input.mean", [0, float("nan"), 0], "input.mean[1] = nan is not finite"),
    ("input.std", [1, 0, 1], "input.std[1] = 0 must be > 0.0"),
    ("input.std", [1, 1], "input.std = [1, 1] must be 3 numbers"),
    ("input.dynamic_hw", "yes", "input.dynamic_hw = 'yes' is not true/false"),
    ("keypoints", [], "keypoints = [] must be a non-empty list"),
    ("keypoints", ["a", "a"], "must be at most 512 distinct names"),
    ("heatmap_offset", "half", "heatmap_offset = 'half' is not a number"),
    ("heatmap_offset", float("inf"), "heatmap_offset = inf is not finite"),
    ("limbs", [], "limbs = [] must be a non-empty list"),
    ("limbs", [[1, 99, 0, 1]], "limbs[0] = [1, 99, 0, 1] names a keypoint beyond the 18 keypoints"),
    ("limbs", [[1, 2, 3]], "limbs[0] = [1, 2, 3] must be a list of 4 indices"),
    ("limbs", [[1, 2, -1, 0]], "limbs[0][2] = -1 must be >= 0"),
    ("skeleton", [[0, 18]], "skeleton[0][1] = 18 must be <= 17"),
    ("to_coco17", [0] * 16, "to_coco17 = "),
    ("outputs.pafs.name", "", "outputs.pafs.name = '' must be a tensor name"),
    ("outputs.heatmaps.layout", "HWC", "outputs.heatmaps.layout = 'HWC' must be one of NCHW, NHWC"),
    ("decode.refine", "magic", "decode.refine = 'magic' must be one of none, quarter, dark, centroid"),
    ("decode.dark_kernel", 4, "decode.dark_kernel = 4 must be odd"),
    ("decode.min_parts", 0, "decode.min_parts = 0 must be >= 1"),
    ("decode.peak_threshold", -1, "decode.peak_threshold = -1 must be >= 0.0"),
    ("decode.max_peaks", 0, "decode.max_peaks = 0 must be >= 1"),
    ("decode.speed", 11, "decode.speed = 11 is not a bottomup decode option"),
]


@pytest.mark.parametrize("field,value,message", LIES, ids=[l[0] + "=" + repr(l[1])[:12] for l in LIES])
def test_a_lie_is_refused_in_one_line_naming_the_field(field, value, message):
    d = _good()
    _set(d, field, copy.deepcopy(value))
    with pytest.raises(ModelError) as e:
        ModelMeta(d)
    text = str(e.value)
    assert message in text and "\n" not in text, text


def test_the_truth_passes_and_topdown_rules():
    ModelMeta(_good())
    td = {"family": "topdown", "input": {"name": "x", "layout": "NCHW", "height": 256, "width": 190,
                                         "channel_order": "RGB", "mean": [1, 2, 3], "std": [1, 1, 1]},
          "outputs": {"heatmaps": {"name": "h"}}, "stride": 4, "keypoints": ["a", "b"]}
    ModelMeta(td)                              # crops need not be a multiple of the stride
    with pytest.raises(ModelError, match="crop.padding = 0 must be > 0.0"):
        ModelMeta(dict(td, crop={"padding": 0}))
    with pytest.raises(ModelError, match="decode.oks_nms_threshold = 2 must be <= 1.0"):
        ModelMeta(dict(td, decode={"oks_nms_threshold": 2}))


def _lying_copy(src, tmp_path, name, **changes):
    import onnx
    from edgepose.metadata import read_onnx_meta
    m = onnx.load(src)
    data = copy.deepcopy(read_onnx_meta(src).data)
    for k, v in changes.items():
        _set(data, k.replace("__", "."), v)
    # embed without validating: a hand-edited file
    props = {p.key: p.value for p in m.metadata_props}
    import json
    props["edgepose"] = json.dumps(data)
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    out = str(tmp_path / name)
    onnx.save(m, out)
    return out


@pytest.mark.parametrize("changes,words", [
    ({"stride": 4}, ["stride = 4", "gives output"]),
    ({"keypoints": list(CMU18_KEYPOINTS) + ["extra"]}, ["keypoints = '19 names'", "18 channels"]),
    ({"outputs__pafs__name": "nope"}, ["outputs.pafs.name = 'nope'", "is not an output"]),
    ({"input__name": "other"}, ["input.name = 'other'", "is not an input"]),
    ({"input__layout": "NHWC"}, ["input.layout = 'NHWC'", "channels on that axis"]),
    ({"limbs": [[1, 2, 60, 61]]}, ["limbs", "PAF channels up to 61", "38 channels"]),
])
def test_metadata_that_lies_about_the_real_model(lwop_onnx, assets, tmp_path, capsys, changes, words):
    """A real model (Lightweight OpenPose exported at 368x496) whose embedded metadata was edited:
    loading it refuses the lie, and `edgepose infer` exits 2 with one line, writing nothing."""
    bad = _lying_copy(lwop_onnx, tmp_path, "lie.onnx", **changes)
    from edgepose.cli import main
    from edgepose.pipelines import load_estimator
    with pytest.raises(ModelError) as e:
        load_estimator(bad)
    for w in words:
        assert w in str(e.value), str(e.value)
    rc = main(["infer", bad, os.path.join(assets, "coco", "000000196141.jpg"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("edgepose: error:"), err
    assert not (tmp_path / "o").exists()
