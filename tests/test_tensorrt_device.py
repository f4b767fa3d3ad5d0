"""The TensorRT backend as a Jetson runs it: each JetPack's TensorRT Python API (8.2, 8.4, 8.5, 8.6,
10.3; tests/fake_tensorrt, a FAKE that models each release's API surface and runs the engine's
ONNX in onnxruntime) on the device's own Python, with the runtime alone (3.6 on the Nano).

The bundles come from ``tests/make_trt_bundles.py`` (the exporters make them, Python >= 3.8):
``EDGEPOSE_TRT_BUNDLES_DIR=DIR`` names a folder made there (how CI runs this file on Python 3.6 /
3.8 / 3.10); unset, an environment with the exporters makes them into a temporary folder first;
otherwise the tests skip with the reason. Nothing here says anything about TensorRT accuracy or
speed: it checks version dispatch, engine building and caching, buffers and execution.
"""
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgepose import trt_cache as tc  # noqa: E402
from edgepose.errors import EdgeposeError, ModelError  # noqa: E402

import fake_tensorrt  # noqa: E402  (FAKE TensorRT: compatibility logic only)
from conftest import made_by_script  # noqa: E402
from make_trt_bundles import W, copy_bundle, model_input, ort_outputs  # noqa: E402

JETPACK_TRT = fake_tensorrt.JETPACK_TRT


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    def problem(d):
        for m in ("int8", "fp16"):
            if not tc.is_bundle(os.path.join(d, m)):
                return "%s is not a bundle" % os.path.join(d, m)
        return None

    d = made_by_script(tmp_path_factory, "make_trt_bundles.py", "EDGEPOSE_TRT_BUNDLES_DIR", problem)
    out = {m: os.path.join(d, m) for m in ("int8", "fp16")}
    out["image"] = os.path.join(d, "calib", "07.png")
    return out


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_fake_trt_build_and_run(bundles, tmp_path, monkeypatch, version):
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    # before 8.5: bindings and implicit INT8 (the calibration cache); 8.5+: named tensors, Q/DQ
    old = tc.parse_version(version) < (8, 5, 0)
    api, mode = ("bindings", "implicit") if old else ("tensors", "explicit")
    onnx_file = tc.MODEL_ONNX if old else tc.QDQ_ONNX
    trt, rt = fake_tensorrt.install(monkeypatch, version)
    b = copy_bundle(bundles["int8"], str(tmp_path / "b"))
    msgs = []
    path = build_engine(b, log=msgs.append)
    assert os.path.dirname(path) == os.path.join(b, tc.ENGINES_DIR)
    side = tc.read_sidecar(path)
    assert side["key"]["trt_version"] == version + ".0" and side["key"]["int8_mode"] == mode
    assert side["key"]["gpu"] == "FAKE GPU (not a device)" and side["key"]["compute_capability"] == "8.7"
    desc = trt.built[-1]
    assert desc["flags"] == ["FP16", "INT8"] and desc["workspace"] == 256 << 20
    assert desc["profile"]["image"][2][3] == tc.Bundle(b).input_shapes["image"]["max"][3]
    if mode == "implicit":
        # the cache header was rewritten for this TensorRT (else TensorRT ignores the cache)
        assert desc["calib_cache"].startswith("TRT-%d-EntropyCalibration2\n" % tc.trt_version_code(version))
    assert desc["has_qdq"] == (mode == "explicit")
    # cached: a second call builds nothing
    n = len(trt.built)
    assert build_engine(b, log=msgs.append) == path and len(trt.built) == n
    be = TensorrtBackend(b, log=msgs.append)
    ctx_names = set(dir(be.context)) | set(dir(be.engine))
    assert ("num_bindings" in ctx_names) == (tc.parse_version(version) < (10, 0, 0))
    assert ("num_io_tensors" in ctx_names) == (not old)
    assert be.api == api and be.meta.input["name"] == "image"
    assert [i.name for i in be.inputs] == ["image"] and {o.name for o in be.outputs} == {"heatmaps", "pafs"}
    for w in (W, 64):   # two widths inside the profile: shapes resolved per call
        x = model_input(be.meta, w)
        got = be.run({"image": x})
        ref = ort_outputs(os.path.join(b, onnx_file), x)
        for k in ("heatmaps", "pafs"):
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, atol=1e-6)
    assert ("execute_async_v2" if api == "bindings" else "execute_async_v3") in trt.log
    assert rt.copies["htod"] >= 2 and rt.copies["dtoh"] >= 4
    with pytest.raises(EdgeposeError, match="outside the engine's optimisation profile"):
        be.run({"image": model_input(be.meta, 512)})
    with pytest.raises(EdgeposeError, match="missing input"):
        be.run({})
    be.close()


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_fake_trt_fp16_and_nano(bundles, tmp_path, monkeypatch, version):
    """fp16 / fp32 engines; a GPU without fast INT8 (the Nano's Maxwell, TensorRT 8.2) builds fp16."""
    from edgepose.backends.tensorrt import build_engine
    trt, _ = fake_tensorrt.install(monkeypatch, version, fast_int8=False)
    b = copy_bundle(bundles["fp16"], str(tmp_path / "f"))
    build_engine(b, log=lambda m: None)
    assert trt.built[-1]["flags"] == ["FP16"]
    build_engine(b, precision="fp32", log=lambda m: None)          # edgepose build-engine --precision fp32
    assert trt.built[-1]["flags"] == []
    with pytest.raises(ModelError, match="without INT8 calibration"):
        build_engine(b, precision="int8", log=lambda m: None)
    # a Nano (no fast INT8) gets fp16 from an int8 bundle, and is told
    b = copy_bundle(bundles["int8"], str(tmp_path / "i"))
    msgs = []
    p = build_engine(b, log=msgs.append)
    assert trt.built[-1]["flags"] == ["FP16"] and tc.read_sidecar(p)["key"]["precision"] == "fp16"
    assert any("no fast INT8" in m for m in msgs)


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_estimator_on_tensorrt_equals_onnxruntime(bundles, tmp_path, monkeypatch, version):
    """load_estimator(BUNDLE) end to end (preprocessing, TensorRT, decode) gives the poses the same
    model gives on onnxruntime; on the Nano's 8.2 an int8 bundle runs as fp16."""
    import cv2
    from edgepose.pipelines import load_estimator
    fake_tensorrt.install(monkeypatch, version, fast_int8=version != "8.2.1")
    b = copy_bundle(bundles["fp16"], str(tmp_path / "b"))
    img = cv2.imread(bundles["image"])
    got = load_estimator(b)(img)
    ref = load_estimator(os.path.join(b, tc.MODEL_ONNX), threads=1)(img)
    assert len(ref.scores) > 0 and got.keypoints.shape == ref.keypoints.shape
    np.testing.assert_allclose(got.keypoints, ref.keypoints, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5, atol=1e-6)
