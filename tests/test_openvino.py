"""The OpenVINO backend (``backend="openvino"``, ``--backend openvino``): the same .onnx models as
onnxruntime, the same results.

* parity with onnxruntime on the real Lightweight OpenPose (FP32, static 368x496) and on a
  dynamic-H/W export of it run at two heights (keypoints within 0.5 px, same people);
* an INT8 Q/DQ model (tests/make_int8_formats.py, u8s8 as cpu-int8 writes it) equals its exact
  integer output within what host int8 kernels allow (int32 accumulation, requantization
  rounding ties: the tolerance of tests/test_int8_load.py), not bit for bit;
* ``edgepose bench MODEL --backend openvino``; bad combinations refused in one line, exit 2.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'edgepose[openvino]')")

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = ("coco", "000000196141.jpg")
EXACT_TOL = 0.02        # relative L2 to the exact Q/DQ output (tests/test_int8_load.py)


def _image(assets):
    from edgepose.io import read_image

    return read_image(os.path.join(assets, *IMAGE))


def _assert_same_people(a, b, tol=0.5):
    assert len(a.people) >= 2                       # the image has several people: not 0 == 0
    assert len(a.people) == len(b.people)
    ka, kb = a.keypoints, b.keypoints
    found = (ka[..., 2] > 0) & (kb[..., 2] > 0)
    assert np.array_equal(ka[..., 2] > 0, kb[..., 2] > 0)
    err = np.abs(ka[..., :2] - kb[..., :2])[found]
    assert err.max() <= tol, err.max()
    np.testing.assert_allclose(a.scores, b.scores, atol=0.01)


def test_lwop_fp32_parity_with_onnxruntime(lwop_onnx, assets):
    import edgepose

    ort = edgepose.load(lwop_onnx, threads=1)
    ov = edgepose.load(lwop_onnx, threads=1, backend="openvino")
    assert ov.estimator.backend.name == "openvino" and ort.estimator.backend.name == "onnxruntime"
    assert "f32" in ov.estimator.backend.describe()
    assert ov.meta == ort.meta                      # metadata read from the same metadata_props
    img = _image(assets)
    _assert_same_people(ort(img), ov(img))


@pytest.fixture(scope="module")
def lwop_dynamic(assets, tmp_path_factory):
    from conftest import export_lwop

    return export_lwop(assets, tmp_path_factory, "lwop_dyn", dynamic=True)


@pytest.mark.parametrize("height", [256, 368])
def test_dynamic_height_parity(lwop_dynamic, assets, height):
    import edgepose
    from edgepose.backends import load_backend

    b = load_backend(lwop_dynamic, backend="openvino")
    assert b.inputs[0].shape[2:] == (None, None)    # H and W stay dynamic
    ort = edgepose.load(lwop_dynamic, threads=1, height=height)
    ov = edgepose.load(lwop_dynamic, threads=1, height=height, backend="openvino")
    img = _image(assets)
    _assert_same_people(ort(img), ov(img))


@pytest.fixture(scope="module")
def int8_formats(tmp_path_factory):
    pytest.importorskip("onnx")
    d = str(tmp_path_factory.mktemp("int8_formats"))
    r = subprocess.run([sys.executable, os.path.join(HERE, "make_int8_formats.py"), d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout[-2000:]
    with open(os.path.join(d, "manifest.json")) as f:
        return d, json.load(f)


def test_int8_qdq_scored_like_host_kernels(int8_formats):
    from edgepose.backends import load_backend

    d, manifest = int8_formats
    x = np.load(os.path.join(d, manifest["input"]))
    m = [e for e in manifest["models"] if e["format"] == "u8s8"][0]
    b = load_backend(os.path.join(d, m["file"]), threads=1, backend="openvino")
    got = b.run({b.input_name: x})
    fp32 = load_backend(os.path.join(d, "fp32.onnx"), backend="openvino").run({b.input_name: x})
    assert sorted(got) == sorted(m["expected"])
    for name, f in sorted(m["expected"].items()):
        exp = np.load(os.path.join(d, f)).astype(np.float64)
        rel = np.linalg.norm(got[name] - exp) / np.linalg.norm(exp)
        assert rel <= EXACT_TOL, (name, rel)
        # and the model is really quantized: the exact int8 output differs from FP32 by more
        assert np.linalg.norm(fp32[name] - exp) / np.linalg.norm(exp) > rel
    # only the named outputs come back
    assert list(b.run({b.input_name: x}, ["pafs"])) == ["pafs"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepose.cli"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


def test_bench_with_openvino(lwop_onnx, assets):
    r = _cli("bench", lwop_onnx, "--backend", "openvino", "--threads", "1", "--runs", "2",
             "--warmup", "1", "--image", os.path.join(assets, *IMAGE))
    assert r.returncode == 0, r.stderr
    assert "openvino" in r.stdout and "inference_ms" in r.stdout


@pytest.mark.parametrize("extra, msg", [
    (["--backend", "openvino"], "backend openvino cannot run x.tflite (backends for this model type: tflite)"),
    (["--backend", "onnx"], "invalid choice: 'onnx'"),
])
def test_bad_backend_refused_in_one_line(tmp_path, extra, msg):
    f = tmp_path / "x.tflite"
    f.write_bytes(b"not a model")
    r = _cli("bench", str(f), *extra)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


def test_exact_int8_with_openvino_refused(tmp_path):
    import edgepose
    from edgepose.errors import ModelError

    f = tmp_path / "x.onnx"
    f.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="exact_int8 is onnxruntime's"):
        edgepose.load(str(f), backend="openvino", exact_int8=True)
    ann = tmp_path / "a.json"
    ann.write_text("{}")
    r = _cli("eval", str(f), "--backend", "openvino", "--exact-int8", "--coco", str(ann), "--images", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "exact_int8" in r.stderr, r.stderr
    with pytest.raises(ModelError, match="is not a model OpenVINO can read"):
        edgepose.load(str(f), backend="openvino")


def test_missing_openvino_names_the_extra(monkeypatch, tmp_path):
    from edgepose.backends import load_backend
    from edgepose.errors import ModelError

    f = tmp_path / "x.onnx"
    f.write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "openvino", None)      # import openvino -> ImportError
    with pytest.raises(ModelError, match=r"openvino is not installed: pip install 'edgepose\[openvino\]'"):
        load_backend(str(f), backend="openvino")


def test_detector_follows_the_pose_backend_where_it_can(assets, tmp_path):
    """The person detector runs with --backend where that backend reads its file, else by file
    type; --detector-backend picks it alone; the detections are the same on either runtime."""
    from edgepose.backends import companion_backend
    from edgepose.backends.onnxruntime import OrtBackend
    from edgepose.backends.openvino import OpenvinoBackend
    from edgepose.errors import ModelError
    from edgepose.io import read_image
    from edgepose.pipelines.detector import make_detector

    det_onnx = os.path.join(assets, "detectors", "yolox_nano_416x416.onnx")
    det_tflite = os.path.join(assets, "detectors", "light_person_detector.tflite")
    assert companion_backend(det_onnx, "openvino") == "openvino"
    assert companion_backend(det_onnx, "tflite") is None           # a .tflite pose model: detector by type
    assert companion_backend(det_tflite, "openvino") is None
    assert companion_backend(det_onnx, "openvino", "onnxruntime") == "onnxruntime"
    assert companion_backend(det_onnx, None) is None
    img = read_image(os.path.join(assets, *IMAGE))
    ov = make_detector(det_onnx, threads=1, backend="openvino")
    ort = make_detector(det_onnx, threads=1)
    assert isinstance(ov.backend, OpenvinoBackend) and isinstance(ort.backend, OrtBackend)
    (b1, s1), (b2, s2) = ov(img), ort(img)
    assert len(s1) == len(s2) >= 1
    assert np.abs(b1 - b2).max() < 1.0 and np.abs(s1 - s2).max() < 1e-3
    with pytest.raises(ModelError, match="backend openvino cannot run light_person_detector.tflite"):
        make_detector(det_tflite, backend="openvino")
    # the pose model's onnxruntime providers go with the detector only where it runs on
    # onnxruntime; given to a PersonDetector on openvino directly, they are refused as load_backend does
    cpu = ["CPUExecutionProvider"]
    assert isinstance(make_detector(det_onnx, providers=cpu, backend="openvino").backend, OpenvinoBackend)
    assert isinstance(make_detector(det_onnx, providers=cpu).backend, OrtBackend)
    from edgepose.pipelines.detector import PersonDetector
    with pytest.raises(ModelError, match="providers are onnxruntime's"):
        PersonDetector(det_onnx, providers=cpu, backend="openvino")
    r = _cli("infer", "x.onnx", "--detector-backend", "onnx")
    assert r.returncode == 2 and "invalid choice: 'onnx'" in r.stderr


def test_cpu_int8_speed_names_the_faster_runtime(int8_formats, monkeypatch):
    """host_speed times the INT8 model on onnxruntime and OpenVINO back to back; the faster one
    (by the recorded rule) is what cpu-int8 writes into the metadata and the last line names."""
    from edgepose.exporters.int8 import gate

    d, manifest = int8_formats
    x = np.load(os.path.join(d, manifest["input"]))
    q = os.path.join(d, [e for e in manifest["models"] if e["format"] == "u8s8"][0]["file"])
    rt = gate.runtime_speed(q, x, threads=(1, 2), runs=3)
    assert [r["threads"] for r in rt["per_threads"]] == [1, 2]
    r1 = rt["per_threads"][0]
    assert r1["onnxruntime_cpu_ms"] > 0 and r1["openvino_cpu_ms"] > 0
    assert rt["faster"] == ("openvino" if r1["openvino_cpu_ms"] <= gate.OPENVINO_MARGIN * r1["onnxruntime_cpu_ms"]
                            else "onnxruntime")
    hs = {"kernels": {"name": "x86-test"}, "speedup": 3.0, "wall_speedup_all_threads": 3.1, "all_threads": 2,
          "runtimes": dict(rt, faster="openvino", openvino_cpu_speedup=1.17)}
    assert gate.speed_verdict(hs).endswith("OpenVINO runs it 1.17x faster than ONNX Runtime here (--backend openvino)")
    hs["runtimes"]["faster"] = "onnxruntime"
    assert "OpenVINO" not in gate.speed_verdict(hs)
    monkeypatch.setitem(sys.modules, "openvino", None)      # not installed: nothing to compare
    assert gate.runtime_speed(q, x) is None


def test_an_openvino_failure_never_fails_the_export(int8_formats, monkeypatch):
    from edgepose.exporters.int8 import gate

    d, manifest = int8_formats
    x = np.load(os.path.join(d, manifest["input"]))
    q = os.path.join(d, [e for e in manifest["models"] if e["format"] == "u8s8"][0]["file"])

    def broken(*a, **k):
        raise RuntimeError("cannot compile\nsecond line")

    monkeypatch.setattr(gate, "runtime_speed", broken)
    hs = gate.host_speed(os.path.join(d, "fp32.onnx"), q, x, runs=2)
    assert "runtimes" not in hs and hs["speedup"] > 0
