"""Jetson bundles, TensorRT calibration caches, engine-cache keys and the TensorRT backend.

TensorRT cannot be installed here. What runs here: the bundle (Q/DQ ONNX checked in
onnxruntime, calibration cache, settings, README), the cache keys, bad-input errors, and the
TensorRT-calling layer against tests/fake_tensorrt, a FAKE module that models the Python API of
each JetPack's TensorRT (8.2, 8.4, 8.5, 8.6, 10.3; it checks version dispatch and plumbing, never
accuracy or speed). Building and running engines from bundles is tests/test_tensorrt_device.py
(also run on the device's Python, 3.6 on the Nano).
Tests needing the real tensorrt are skipped with a reason.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import sys

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgepose import trt_cache as tc  # noqa: E402
from edgepose.errors import ExportError, ModelError  # noqa: E402

import fake_tensorrt  # noqa: E402  (FAKE TensorRT: compatibility logic only)
import make_trt_bundles as mtb  # noqa: E402
from make_trt_bundles import copy_bundle as _copy_bundle  # noqa: E402
from make_trt_bundles import model_input as _input  # noqa: E402
from make_trt_bundles import ort_outputs as _ort_outputs  # noqa: E402
from tiny_models import tiny_bottomup  # noqa: E402

H, W = mtb.H, mtb.W
JETPACK_TRT = fake_tensorrt.JETPACK_TRT


# ----------------------------------------------------------------------------------------------
# a small bottom-up model (random weights) with edgepose metadata, and calibration images
# (tests/make_trt_bundles.py, also the device test's bundles)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    model = str(d / "tiny.onnx")
    tiny_bottomup(model)
    other = str(d / "other.onnx")
    tiny_bottomup(other, seed=1)
    imgs = mtb.calib_images(str(d / "calib"))
    return {"dir": d, "model": model, "other": other, "calib": str(imgs)}


def _export(work, name, mode="int8", model=None, **kw):
    out = str(work["dir"] / name)
    return out, mtb.export_bundle(model or work["model"], work["calib"], out, mode=mode, **kw)


@pytest.fixture(scope="module")
def int8_bundle(work):
    return _export(work, "tiny_int8")


@pytest.fixture(scope="module")
def fp16_bundle(work):
    return _export(work, "tiny_fp16", mode="fp16")


@pytest.fixture(scope="module")
def dla_bundle(work):
    return _export(work, "tiny_dla", mode="int8-dla", dla_core=1)


# ----------------------------------------------------------------------------------------------
# calibration cache format
# ----------------------------------------------------------------------------------------------
def test_trt_version_codes():
    assert tc.trt_version_code("8.2.1.8") == 8201
    assert tc.trt_version_code("8.6.1") == 8601
    assert tc.trt_version_code("10.3.0") == 100300


def test_calib_cache_format_roundtrip():
    amax = {"image:0": 255.0, "MobilenetV1/Conv2d_0/Relu:0": 6.5, "dead": 0.0}
    text = tc.calib_cache_text(amax, "8.2.1")
    lines = text.splitlines()
    assert lines[0] == "TRT-8201-EntropyCalibration2"
    assert len(lines) == 1 + len(amax)
    for ln, (name, a) in zip(lines[1:], amax.items()):
        n, hx = ln.rsplit(": ", 1)
        assert n == name and len(hx) == 8
        got = struct.unpack(">f", bytes.fromhex(hx))[0]
        if a > 0:
            assert got == np.float32(a / 127.0)
        else:
            assert 0 < got < 1e-30   # never a zero scale
    assert lines[1] == "image:0: " + struct.pack(">f", 255.0 / 127).hex()
    ver, algo, scales = tc.parse_calib_cache(text)
    assert (ver, algo) == (8201, "EntropyCalibration2")
    assert scales["image:0"] == pytest.approx(255.0 / 127, rel=1e-7)
    t10 = tc.recode_calib_header(text, "10.3.0")
    assert t10.splitlines()[0] == "TRT-100300-EntropyCalibration2"
    assert t10.splitlines()[1:] == lines[1:]


@pytest.mark.parametrize("bad", ["", "no header\nx: 3c010a14\n", "TRT-8201-EntropyCalibration2\nx 3c010a14\n",
                                 "TRT-8201-EntropyCalibration2\nx: zz\n"])
def test_calib_cache_malformed(bad):
    with pytest.raises(ModelError):
        tc.parse_calib_cache(bad)


def test_calib_cache_rejects_nan():
    with pytest.raises(ModelError, match="finite"):
        tc.calib_cache_text({"x": float("nan")})


# ----------------------------------------------------------------------------------------------
# engine cache keys
# ----------------------------------------------------------------------------------------------
def _key(**over):
    kw = dict(model_sha256="a" * 64, trt_version="8.6.1", gpu="Orin", compute_capability="8.7",
              precision="int8", dla_core=None,
              input_shapes={"image": {"min": [1, 3, 64, 32], "opt": [1, 3, 64, 96], "max": [1, 3, 64, 128]}},
              calib_hash="c" * 64, int8_mode="explicit")
    kw.update(over)
    return tc.engine_key(**kw)


@pytest.mark.parametrize("field,value", [
    ("model_sha256", "b" * 64), ("trt_version", "10.3.0"), ("gpu", "Xavier"), ("compute_capability", "7.2"),
    ("precision", "fp16"), ("dla_core", 0), ("calib_hash", "d" * 64), ("int8_mode", "implicit"),
    ("input_shapes", {"image": {"min": [1, 3, 64, 32], "opt": [1, 3, 64, 96], "max": [1, 3, 64, 192]}}),
])
def test_engine_key_changes(field, value):
    base = _key()
    changed = _key(**{field: value})
    assert tc.key_digest(base) != tc.key_digest(changed)
    assert tc.engine_file_name(base) != tc.engine_file_name(changed)
    assert [f for f, _, _ in tc.key_diff(base, changed)] == [field] + (["onnx_sha256"] if field == "model_sha256" else [])


def test_engine_key_stable():
    assert tc.key_digest(_key()) == tc.key_digest(_key())
    # workspace does not enter the key: it changes tactics, not the model
    assert "workspace_mb" not in _key()


# ----------------------------------------------------------------------------------------------
# the bundle
# ----------------------------------------------------------------------------------------------
def test_int8_bundle_layout(int8_bundle):
    out, rep = int8_bundle
    names = set(os.listdir(out))
    assert {tc.MODEL_ONNX, tc.QDQ_ONNX, tc.CALIB_CACHE, tc.META_JSON, tc.BUILD_JSON, tc.README_MD} <= names
    assert not any(n.endswith(".tmp") or n.startswith(".") for n in os.listdir(os.path.dirname(out))
                   if n.startswith(".tiny_int8"))
    b = tc.Bundle(out)
    b.verify_files()
    assert b.precision == "int8" and b.dla is None
    assert b.workspace_mb == tc.DEFAULT_WORKSPACE_MB
    shapes = b.input_shapes["image"]
    assert shapes["opt"] == [1, 3, H, W]
    assert shapes["min"][:3] == [1, 3, H] and shapes["max"][:3] == [1, 3, H]
    assert shapes["min"][3] <= W <= shapes["max"][3] and shapes["max"][3] % 8 == 0
    assert b.calib_hash and b.build["calibration"]["symmetric_activations"] is True
    meta = b.meta()
    assert meta.get("precision") == "int8" and meta.input["name"] == "image"
    readme = open(os.path.join(out, tc.README_MD)).read()
    assert "--workspace=256" in readme and "--memPoolSize=workspace:256 " in readme
    assert "--memPoolSize=workspace:256M" in readme
    assert "--onnx=model.onnx --int8 --fp16 --calib=calib.cache" in readme      # 8.2: implicit
    assert "--onnx=model_int8_qdq.onnx --int8 --fp16" in readme                 # 8.5+/10: Q/DQ
    assert "--minShapes=image:1x3x64x" in readme and "--saveEngine=model.engine" in readme
    m = os.umask(0)
    os.umask(m)
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o777 & ~m)         # not mkdtemp's 0700
    for n in names:
        if os.path.isfile(os.path.join(out, n)):
            assert oct(os.stat(os.path.join(out, n)).st_mode & 0o777) == oct(0o666 & ~m), n


def test_jetson_int8_export_says_nano_builds_fp16_before_calibrating(work, tmp_path):
    from edgepose.exporters.tensorrt import export_jetson_bundle
    msgs = []
    export_jetson_bundle(work["model"], str(tmp_path / "b"), mode="int8", calib=work["calib"], n_calib=3,
                         holdout=1, max_label_free_drop=100.0, build_engine=False, log=msgs.append)
    nano = [i for i, m in enumerate(msgs) if "Jetson Nano" in m and "fp16" in m and "jetson-fp16" in m]
    calib = [i for i, m in enumerate(msgs) if "calib" in m.lower() and i not in nano]
    assert nano and calib and nano[0] < calib[0], msgs
    readme = open(os.path.join(str(tmp_path / "b"), tc.README_MD)).read()
    assert "no fast INT8" in readme and "--target jetson-fp16" in readme
    msgs.clear()
    export_jetson_bundle(work["model"], str(tmp_path / "f"), mode="fp16", build_engine=False, log=msgs.append)
    assert not any("Jetson Nano" in m for m in msgs)


def test_fp16_and_dla_bundles(fp16_bundle, dla_bundle):
    out, rep = fp16_bundle
    assert tc.QDQ_ONNX not in os.listdir(out) and tc.CALIB_CACHE not in os.listdir(out)
    assert tc.Bundle(out).precision == "fp16"
    assert "--onnx=model.onnx --fp16 --memPoolSize" in open(os.path.join(out, tc.README_MD)).read()
    out, rep = dla_bundle
    b = tc.Bundle(out)
    assert b.dla == {"core": 1, "gpu_fallback": True}
    s = b.input_shapes["image"]
    assert s["min"] == s["opt"] == s["max"] == [1, 3, H, W]      # the DLA wants static shapes
    readme = open(os.path.join(out, tc.README_MD)).read()
    assert "--calib=calib.cache --useDLACore=1 --allowGPUFallback" in readme
    assert "--onnx=model_int8_qdq.onnx" not in readme


def test_qdq_graph_is_tensorrt_form(int8_bundle):
    """Symmetric int8 (zero points 0), per-channel weights on every conv (axis 0)."""
    from onnx import numpy_helper
    out, _ = int8_bundle
    m = onnx.load(os.path.join(out, tc.QDQ_ONNX))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    n_q = 0
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            n_q += 1
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), n.name
    assert n_q > 0
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 6
    for c in convs:
        dq = prod[c.input[1]]
        assert dq.op_type == "DequantizeLinear", c.name
        scale = inits[dq.input[1]]
        cout = inits[dq.input[0]].shape[0]
        assert inits[dq.input[0]].dtype == np.int8
        assert scale.shape == (cout,), c.name
        axis = [a.i for a in dq.attribute if a.name == "axis"]
        assert axis in ([], [0])
        # the conv's activation input is quantized too (except nothing is left float here)
        assert prod[c.input[0]].op_type == "DequantizeLinear", c.name


def test_qdq_accuracy_in_onnxruntime(int8_bundle, work):
    """The Q/DQ model, run exactly, tracks the FP32 model on held-out-like inputs (small
    random-weight model)."""
    from edgepose.metadata import ModelMeta
    from edgepose.preprocess import preprocess_bottomup
    out, _ = int8_bundle
    meta = tc.Bundle(out).meta()
    f = ort.InferenceSession(os.path.join(out, tc.MODEL_ONNX), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()   # exactly as written: TensorRT's arithmetic, not this CPU's int8 kernels
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    q = ort.InferenceSession(os.path.join(out, tc.QDQ_ONNX), so, providers=["CPUExecutionProvider"])
    img = cv2.imread(os.path.join(work["calib"], "07.png"))
    x, _ = preprocess_bottomup(img, meta)
    for name in ("heatmaps", "pafs"):
        a = f.run([name], {"image": x})[0]
        b = q.run([name], {"image": x})[0]
        assert a.shape == b.shape
        rel = np.sqrt(np.mean((a - b) ** 2)) / (np.std(a) + 1e-12)
        assert rel < 0.15, (name, rel)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_calib_cache_matches_fp32_graph(int8_bundle, work):
    """Cache names are FP32 ONNX tensor names; the input's scale is max|calib input| / 127."""
    from edgepose.calibration import load_samples
    from edgepose.exporters.tensorrt import graph_tensor_names
    out, _ = int8_bundle
    b = tc.Bundle(out)
    ver, algo, scales = tc.parse_calib_cache(b.calib_text())
    assert (ver, algo) == (8201, "EntropyCalibration2")
    names = set(graph_tensor_names(onnx.load(os.path.join(out, tc.MODEL_ONNX))))
    assert set(scales) <= names
    for t in ("image", "c1.out", "c1.relu", "c4.relu"):
        assert t in scales, t
    cs = load_samples(work["calib"], b.meta(), n=5, holdout=2)
    amax = max(float(np.abs(x).max()) for x in cs.calib)
    assert scales["image"] == pytest.approx(amax / 127.0, rel=1e-6)
    assert b.build["calibration"]["source_hash"] == cs.source_hash


def test_calib_cache_leaves_float_layers_out(work):
    """Layers kept in float (mixed precision) get no scale: implicit INT8 keeps them float too."""
    from edgepose.exporters.tensorrt import calib_amax
    m = onnx.load(work["model"])
    ranges = {t: (-1.0, 2.0) for t in ("image", "c1.out", "c1.relu", "c2.out", "c2.relu", "c3.out")}
    amax, cov = calib_amax(m, dict(ranges, foreign=(0.0, 1.0)), keep_float=["c2"])
    # c2's input (c1.relu) and output (c2.out) are left out; its ReLU's output keeps a scale
    assert amax == {"image": 2.0, "c1.out": 2.0, "c2.relu": 2.0, "c3.out": 2.0}
    assert cov["ranges_not_in_graph"] == 1 and cov["kept_float"] == 2


def test_export_bad_input(work, tmp_path):
    from edgepose.exporters.tensorrt import export_jetson_bundle
    with pytest.raises(ExportError, match="calibration data"):
        export_jetson_bundle(work["model"], str(tmp_path / "b"), mode="int8", build_engine=False)
    with pytest.raises(ExportError, match="unknown Jetson mode"):
        export_jetson_bundle(work["model"], str(tmp_path / "b"), mode="int4", build_engine=False)
    with pytest.raises(ExportError, match="not found"):
        export_jetson_bundle(str(tmp_path / "nope.onnx"), str(tmp_path / "b"), mode="fp16", build_engine=False)
    raw = tmp_path / "raw.onnx"
    m = onnx.load(work["model"])
    del m.metadata_props[:]
    onnx.save(m, str(raw))
    with pytest.raises(ExportError, match="no edgepose metadata"):
        export_jetson_bundle(str(raw), str(tmp_path / "b"), mode="fp16", build_engine=False)
    keep = tmp_path / "userdir"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an edgepose bundle"):
        export_jetson_bundle(work["model"], str(keep), mode="fp16", build_engine=False)
    assert (keep / "notes.txt").read_text() == "mine"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bundle_missing_or_changed_file(fp16_bundle, int8_bundle, tmp_path):
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    os.remove(os.path.join(b, tc.CALIB_CACHE))
    with pytest.raises(ModelError, match="incomplete: calib.cache is missing"):
        tc.Bundle(b)
    b = _copy_bundle(fp16_bundle[0], str(tmp_path / "c"))
    os.remove(os.path.join(b, tc.BUILD_JSON))
    with pytest.raises(ModelError, match="not an edgepose TensorRT bundle"):
        tc.Bundle(b)
    b = _copy_bundle(fp16_bundle[0], str(tmp_path / "d"))
    with open(os.path.join(b, tc.MODEL_ONNX), "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="changed after export"):
        tc.Bundle(b).verify_files()


# ----------------------------------------------------------------------------------------------
# no TensorRT here: clear errors
# ----------------------------------------------------------------------------------------------
def test_without_tensorrt_clear_error(fp16_bundle, monkeypatch):
    from edgepose.backends import load_backend
    from edgepose.backends.tensorrt import build_engine
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import tensorrt -> ImportError
    with pytest.raises(ModelError, match="import tensorrt failed.*JetPack.*build-engine"):
        build_engine(fp16_bundle[0])
    with pytest.raises(ModelError, match="import tensorrt failed"):
        load_backend(fp16_bundle[0])


# ----------------------------------------------------------------------------------------------
# the TensorRT-calling layer against the FAKE module (compatibility logic only)
# ----------------------------------------------------------------------------------------------
DLA_TRT = [v for v in JETPACK_TRT if v != "8.2.1"]    # Xavier / Orin: JetPack 5 and 6


# name -> the releases that have it (pyCore.cpp of release/8.2, 8.4, 8.5, v8.6.1, v10.x)
_SURFACE = {
    ("ICudaEngine", "num_bindings"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("ICudaEngine", "get_binding_shape"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("ICudaEngine", "num_io_tensors"): ("8.5.2", "8.6.2", "10.3.0"),
    ("ICudaEngine", "get_tensor_mode"): ("8.5.2", "8.6.2", "10.3.0"),
    ("IExecutionContext", "set_binding_shape"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("IExecutionContext", "execute_async_v2"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("IExecutionContext", "execute_v2"): tuple(JETPACK_TRT),
    ("IExecutionContext", "set_input_shape"): ("8.5.2", "8.6.2", "10.3.0"),
    ("IExecutionContext", "set_tensor_address"): ("8.5.2", "8.6.2", "10.3.0"),
    ("IExecutionContext", "execute_async_v3"): ("8.5.2", "8.6.2", "10.3.0"),
    ("Builder", "build_engine"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("Builder", "build_serialized_network"): tuple(JETPACK_TRT),
    ("IBuilderConfig", "max_workspace_size"): ("8.2.1", "8.4.1", "8.5.2", "8.6.2"),
    ("IBuilderConfig", "set_memory_pool_limit"): ("8.4.1", "8.5.2", "8.6.2", "10.3.0"),
    ("IBuilderConfig", "set_calibration_profile"): tuple(JETPACK_TRT),
    (None, "MemoryPoolType"): ("8.4.1", "8.5.2", "8.6.2", "10.3.0"),
    (None, "TensorIOMode"): ("8.5.2", "8.6.2", "10.3.0"),
}


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_fake_surface_is_the_release(version):
    """The fake offers each release exactly the names it has: a fake 8.2 with a 10.x method would
    let the version dispatch pass here and fail on a Nano."""
    trt = fake_tensorrt.make_fake_tensorrt(version)
    cfg = trt.Builder(None).create_builder_config()
    for (cls, name), releases in _SURFACE.items():
        if cls == "IBuilderConfig":
            has = hasattr(cfg, name)
        else:
            has = hasattr(getattr(trt, cls) if cls else trt, name)
        assert has == (version in releases), (version, cls, name)


def test_fake_models_only_jetpack_releases():
    with pytest.raises(ValueError):
        fake_tensorrt.make_fake_tensorrt("9.3.0")


@pytest.mark.parametrize("version", DLA_TRT)
def test_fake_trt_dla(dla_bundle, tmp_path, monkeypatch, version):
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    trt, _ = fake_tensorrt.install(monkeypatch, version, dla_cores=2)
    b = _copy_bundle(dla_bundle[0], str(tmp_path / "d"))
    p = build_engine(b, log=lambda m: None)
    desc = trt.built[-1]
    assert desc["dla_core"] == 1 and "GPU_FALLBACK" in desc["flags"] and not desc["has_qdq"]
    assert tc.read_sidecar(p)["key"]["int8_mode"] == "implicit"
    be = TensorrtBackend(b, log=lambda m: None)      # Runtime.DLA_core is set before deserialising
    assert be.run({"image": _input(be.meta)})["heatmaps"].shape == (1, 18, H // 8, W // 8)
    be.close()
    fake_tensorrt.install(monkeypatch, version, dla_cores=0)
    with pytest.raises(ModelError, match="DLA core 1 requested but this device has 0"):
        build_engine(b, force=True, log=lambda m: None)


# JetPack upgrades on one board: 5.0.2 -> 5.1, 5.1 -> 6.0, 6.0 -> 6.1
UPGRADES = [("8.4.1", "8.5.2"), ("8.5.2", "8.6.2"), ("8.6.2", "10.3.0")]


@pytest.mark.parametrize("before,after", UPGRADES)
def test_stale_engine_is_rebuilt(int8_bundle, tmp_path, monkeypatch, before, after):
    """An engine from another TensorRT version is rebuilt from the bundle, with a message."""
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    fake_tensorrt.install(monkeypatch, before)
    old = build_engine(b, log=lambda m: None)
    trt10, _ = fake_tensorrt.install(monkeypatch, after)
    msgs = []
    be = TensorrtBackend(b, log=msgs.append)
    assert be.engine_path != old and trt10.built
    assert any("trt_version %s.0 -> %s.0" % (before, after) in m and "rebuilding" in m for m in msgs), msgs
    assert not any("deserializ" in l.lower() or "not compatible" in l for l in trt10.log)
    be.close()
    # the old engine passed explicitly: rebuilt (found in the cache) with a message, not an error
    msgs.clear()
    be = TensorrtBackend(old, log=msgs.append)
    assert be.engine_path != old and any("rebuilding" in m for m in msgs)
    assert be.run({"image": _input(be.meta)})["pafs"].shape == (1, 38, H // 8, W // 8)
    be.close()
    # outside its bundle (no bundle to rebuild from): one clear line naming both versions
    lone = str(tmp_path / "lone.engine")
    shutil.copy(old, lone)
    side = tc.read_sidecar(old)
    side["bundle"] = None
    open(tc.sidecar_path(lone), "w").write(json.dumps(side))
    with pytest.raises(ModelError, match=r"lone.engine was built for trt_version %s.0 -> %s.0.*build-engine"
                       % (re.escape(before), re.escape(after))):
        TensorrtBackend(lone, log=msgs.append)


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_corrupt_engine(int8_bundle, tmp_path, monkeypatch, version):
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    trt, _ = fake_tensorrt.install(monkeypatch, version)
    full = re.escape(version + ".0")
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="bad.engine could not be deserialised by TensorRT %s: .*corrupt" % full):
        TensorrtBackend(str(bad))
    empty = tmp_path / "empty.engine"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        TensorrtBackend(str(empty))
    with pytest.raises(ModelError, match="not found"):
        TensorrtBackend(str(tmp_path / "none.engine"))
    # a corrupted engine in a bundle's cache is rebuilt, with a message
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    p = build_engine(b, log=lambda m: None)
    with open(p, "r+b") as f:
        f.write(b"XXXX")
    msgs = []
    be = TensorrtBackend(b, log=msgs.append)
    assert any("could not be deserialised by TensorRT %s.0 (corrupt" % version in m and "rebuilding" in m for m in msgs)
    be.close()


@pytest.mark.parametrize("before,after", UPGRADES)
def test_trtexec_engine_in_bundle(int8_bundle, tmp_path, monkeypatch, before, after):
    """BUNDLE/model.engine (the README's trtexec --saveEngine) is used; one this TensorRT cannot
    load (built by another version) is replaced by a build from the bundle, with a message."""
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    fake_tensorrt.install(monkeypatch, before)
    p = build_engine(b, cache_dir=str(tmp_path / "elsewhere"), log=lambda m: None)
    shutil.copy(p, os.path.join(b, "model.engine"))                    # as trtexec writes it: no sidecar
    trt, _ = fake_tensorrt.install(monkeypatch, before)
    be = TensorrtBackend(b, log=lambda m: None)
    assert be.engine_path == os.path.join(b, "model.engine") and not trt.built
    be.close()
    trt10, _ = fake_tensorrt.install(monkeypatch, after)
    msgs = []
    be = TensorrtBackend(b, log=msgs.append)
    assert any("model.engine could not be deserialised by TensorRT %s.0" % after in m and "rebuilding" in m
               for m in msgs), msgs
    assert be.engine_path.startswith(os.path.join(b, tc.ENGINES_DIR)) and len(trt10.built) == 1
    assert be.run({"image": _input(be.meta)})["heatmaps"].shape == (1, 18, H // 8, W // 8)
    be.close()
    assert os.path.exists(os.path.join(b, "model.engine"))             # the user's file is left alone


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_engine_of_another_model(int8_bundle, work, tmp_path, monkeypatch, version):
    from edgepose.backends.tensorrt import TensorrtBackend, build_engine
    fake_tensorrt.install(monkeypatch, version)
    other = str(work["dir"] / "other_fp16")
    if not os.path.exists(other):
        other, _ = _export(work, "other_fp16", mode="fp16", model=work["other"])
    ob = _copy_bundle(other, str(tmp_path / "o"))
    other_engine = build_engine(ob, log=lambda m: None)
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    with pytest.raises(ModelError, match="built from another model.*build-engine"):
        TensorrtBackend(b, engine=other_engine)
    # the sidecar travels with the engine: copied into the bundle, still refused
    shutil.copy(other_engine, os.path.join(b, "model.engine"))
    shutil.copy(tc.sidecar_path(other_engine), tc.sidecar_path(os.path.join(b, "model.engine")))
    with pytest.raises(ModelError, match="built from another model"):
        TensorrtBackend(os.path.join(b, "model.engine"))


@pytest.mark.parametrize("version", JETPACK_TRT)
def test_engine_with_foreign_io(int8_bundle, tmp_path, monkeypatch, version):
    """An engine without sidecar whose tensors do not match the bundle's metadata: clear error."""
    from onnx import TensorProto, helper
    from edgepose.backends.tensorrt import TensorrtBackend
    trt, _ = fake_tensorrt.install(monkeypatch, version)
    g = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    builder = trt.Builder(None)
    net = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(net, None)
    assert parser.parse(m.SerializeToString())
    cfg = builder.create_builder_config()
    plan = builder.build_serialized_network(net, cfg)
    b = _copy_bundle(int8_bundle[0], str(tmp_path / "b"))
    e = os.path.join(b, "foreign.engine")
    open(e, "wb").write(bytes(plan))
    with pytest.raises(ModelError, match="engine for another model: it has no tensor 'image'"):
        TensorrtBackend(b, engine=e)


# ----------------------------------------------------------------------------------------------
# the real thing (Jetson only)
# ----------------------------------------------------------------------------------------------
def test_real_tensorrt_matches_onnxruntime(fp16_bundle, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="real TensorRT is only on a Jetson / NVIDIA machine")
    assert not getattr(trt, "__fake__", False)
    from edgepose.backends.tensorrt import TensorrtBackend
    b = _copy_bundle(fp16_bundle[0], str(tmp_path / "b"))
    be = TensorrtBackend(b)
    x = _input(be.meta)
    got = be.run({"image": x})
    ref = _ort_outputs(os.path.join(b, tc.MODEL_ONNX), x)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-2, atol=2e-2)


def test_info_describes_a_bundle_without_tensorrt(int8_bundle, capsys):
    """`edgepose info BUNDLE/` works off the device: files, settings and the accuracy report."""
    from edgepose.cli import main

    assert main(["info", int8_bundle[0]]) == 0
    out = capsys.readouterr().out
    assert "TensorRT deploy bundle" in out and "precision: int8" in out
    assert "ap_float" in out or "oks_agreement" in out
    assert "build-engine" in out
