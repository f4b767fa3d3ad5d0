"""Acceptance: default INT8 exports of the real trained Lightweight OpenPose checkpoint ship full
INT8 that keeps its accuracy, on every INT8 target, judged by exact evaluation.

Calibration on two of the asset sources (people/ photos and the arm-wrestling video), default
options otherwise (32 calibration samples, 'auto' held-out frames, the label-free gate); the true
AP is measured after the export on the pooled labelled set (COCO sample + devset, 18 images),
exactly: the Q/DQ graphs as written, TFLite in its int32-exact interpreter.
"""
import os

import pytest

from edgepose.evaluate import evaluate_coco
from edgepose.pipelines import load_estimator

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]   # real-model INT8 exports: minutes


@pytest.fixture(scope="module")
def lwop(assets, tmp_path_factory, lwop_onnx):
    """The checkpoint, its FP32 ONNX (the session's export, not a second one) and a folder."""
    ckpt = os.path.join(assets, "models", "lwop_hpe0001.pth")
    return {"ckpt": ckpt, "fp32": lwop_onnx, "dir": tmp_path_factory.mktemp("lwop_int8"),
            "calib": [os.path.join(assets, "people"), os.path.join(assets, "videos", "arm_wrestling.mp4")],
            "pairs": [(os.path.join(assets, "coco", "test_coco.json"), os.path.join(assets, "coco")),
                      (os.path.join(assets, "devset", "devset.json"), os.path.join(assets, "devset"))]}


def _ap(path, pairs, exact=True):
    return evaluate_coco(load_estimator(path, threads=2, exact_int8=exact), pairs, None)["stats"]["AP"]


def _check(rep, ap_float, ap_quant):
    acc = rep["accuracy"]
    assert acc["passed"], acc.get("gate")
    assert acc["holdout_frames"] >= 100 and acc["resolves_budget"]
    assert (acc.get("int8_mac_fraction") or rep.get("int8_mac_fraction")) >= 0.95
    assert 100 * (ap_float - ap_quant) <= 1.0, (ap_float, ap_quant)


def test_cpu_int8_from_the_checkpoint(lwop):
    from edgepose.exporters.api import export
    out = str(lwop["dir"] / "lwop.int8.onnx")
    rep = export(lwop["ckpt"], target="cpu-int8", out=out, calib=lwop["calib"], progress=False, quiet=True)
    acc = rep["accuracy"]
    assert acc["int8_mac_fraction"] == 1.0 and not acc.get("keep_float")
    assert acc["host"]["kernels"]["name"] and acc["format"]["chosen"] in ("u8s8", "u8s7", "u8u8")
    _check(rep, _ap(lwop["fp32"], lwop["pairs"], exact=False), _ap(out, lwop["pairs"]))
    assert os.path.exists(rep["report_json"]) and os.path.exists(rep["report_png"])


def test_jetson_int8_bundle(lwop):
    from edgepose.exporters.api import export
    out = str(lwop["dir"] / "lwop.jetson-int8")
    rep = export(lwop["fp32"], target="jetson-int8", out=out, calib=lwop["calib"], progress=False,
                 log=lambda m: None)
    assert {"accuracy.json", "accuracy.png", "model_int8_qdq.onnx", "calib.cache"} <= set(os.listdir(out))
    _check(rep, _ap(lwop["fp32"], lwop["pairs"], exact=False),
           _ap(os.path.join(out, "model_int8_qdq.onnx"), lwop["pairs"]))


def test_rpi_int8_tflite(lwop):
    pytest.importorskip("litert_torch")
    from edgepose.exporters.api import export
    ref = str(lwop["dir"] / "lwop.fp32.tflite")
    export(lwop["fp32"], target="tflite-fp32", out=ref, progress=False)
    out = str(lwop["dir"] / "lwop.int8.tflite")
    rep = export(lwop["fp32"], target="rpi-int8", out=out, calib=lwop["calib"], progress=False)
    assert rep["int8_mac_fraction"] == 1.0 and not rep.get("float_ops")
    _check(rep, _ap(ref, lwop["pairs"]), _ap(out, lwop["pairs"]))
