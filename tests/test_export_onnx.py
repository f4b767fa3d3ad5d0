"""Checkpoint → ONNX export: ONNX Runtime matches PyTorch, metadata round-trips, bad input fails
cleanly with nothing half-written."""
import os
import sys
import tempfile
import types

import cv2
import numpy as np
import pytest
import torch

from edgepose.errors import EdgeposeError, ExportError, ModelError
from edgepose.metadata import read_onnx_meta
from edgepose.exporters import TARGETS, default_output, export
from edgepose.exporters.checkpoint import file_sha256, load_checkpoint
from edgepose.exporters.models import build_model
from edgepose.exporters.models.hrnet import PoseHRNet
from edgepose.exporters.models.synthetic import (random_hrnet, random_lightweight_openpose,
                                                 save_upstream_checkpoint)
from edgepose.exporters.onnx_export import _size_from_filename, export_checkpoint_onnx, parse_input_size
from edgepose.preprocess import normalize
from edgepose.schema import CMU18_LIMBS, COCO17_FLIP_PAIRS

ort = pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _torch_from_checkpoint(path, arch):
    _m, wrapper, _c = build_model(arch, load_checkpoint(path), os.path.basename(path))
    return wrapper


def _images(n, h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lwop_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("lwop")
    p = str(d / "checkpoint_iter_370000.pth")
    save_upstream_checkpoint(random_lightweight_openpose(1, seed=7), p, "lwop-train")
    return p


@pytest.fixture(scope="module")
def lwop_onnx(lwop_ckpt, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lwop_out") / "lwop.onnx")
    report = export(lwop_ckpt, target="onnx", out=out, arch="lightweight-openpose", input_size="128x160",
                    progress=False)
    return out, report


def test_lightweight_openpose_onnx_matches_pytorch(lwop_ckpt, lwop_onnx):
    out, report = lwop_onnx
    assert report["output"] == out and os.path.isfile(out)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert report["opset"] == 13 and report["simplified"] is True
    assert report["max_abs_error"] < 1e-3
    import onnx
    keys = [p.key for p in onnx.load(out).metadata_props]
    assert "edgepose" in keys and not [k for k in keys if k.startswith("onnxsim.")]   # onnxsim's ~20 stripped
    sess = _session(out)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sess.get_inputs()[0].shape == [1, 3, 128, 160]
    assert [o.name for o in sess.get_outputs()] == ["heatmaps", "pafs"]
    # independent check: our own images through THE preprocessing, model rebuilt from the file
    meta = read_onnx_meta(out)
    x = normalize(_images(1, 128, 160, 11), meta)
    hm, paf = sess.run(["heatmaps", "pafs"], {"image": x})
    assert hm.shape == (1, 18, 16, 20) and paf.shape == (1, 38, 16, 20)
    with torch.no_grad():
        stages = _torch_from_checkpoint(lwop_ckpt, "lightweight-openpose").net(torch.from_numpy(x))
    ref_hm, ref_paf = stages[-2][:, :18].numpy(), stages[-1].numpy()   # final stage, no background
    assert np.abs(ref_hm).max() > 0.05 and np.abs(ref_paf).max() > 0.05  # not a trivial comparison
    assert np.abs(hm - ref_hm).max() < 1e-3
    assert np.abs(paf - ref_paf).max() < 1e-3


def test_lightweight_openpose_metadata_round_trips(lwop_ckpt, lwop_onnx):
    out, report = lwop_onnx
    meta = read_onnx_meta(out)
    assert meta.data == report["metadata"]
    d = meta.data
    assert d["family"] == "bottomup" and d["arch"] == "lightweight-openpose"
    assert d["input"] == {"name": "image", "layout": "NCHW", "height": 128, "width": 160, "channel_order": "BGR",
                          "mean": [128.0] * 3, "std": [256.0] * 3, "dynamic_hw": False, "dynamic_batch": False}
    assert d["outputs"] == {"heatmaps": {"name": "heatmaps", "layout": "NCHW"},
                            "pafs": {"name": "pafs", "layout": "NCHW"}}
    assert d["stride"] == 8 and d["heatmap_offset"] == 0.5 and d["schema"] == "cmu18"
    assert d["limbs"] == [list(x) for x in CMU18_LIMBS] and len(d["keypoints"]) == 18
    assert len(d["to_coco17"]) == 17
    assert d["source_sha256"] == file_sha256(lwop_ckpt)
    assert d["precision"] == "fp32" and d["edgepose_version"]
    assert d["model_config"]["num_refinement_stages"] == 1
    assert d["decode"]["peak_threshold"] > 0  # decode defaults are embedded


def test_lightweight_openpose_dynamic_export(lwop_ckpt, tmp_path):
    out = str(tmp_path / "dyn.onnx")
    report = export_checkpoint_onnx(lwop_ckpt, out, input_size=(64, 96), dynamic=True, opset=17, progress=False)
    assert [c["input_shape"] for c in report["verify"]["cases"]] == [[1, 3, 64, 96], [2, 3, 48, 120]]
    meta = read_onnx_meta(out)
    assert meta.input["dynamic_hw"] and meta.input["dynamic_batch"]
    assert meta.data["export"]["opset"] == 17
    sess = _session(out)
    shape = sess.get_inputs()[0].shape
    assert all(isinstance(d, str) for d in (shape[0], shape[2], shape[3]))
    wrapper = _torch_from_checkpoint(lwop_ckpt, None)
    x = normalize(_images(1, 72, 56, 5), meta)
    hm, paf = sess.run(None, {"image": x})
    with torch.no_grad():
        rh, rp = wrapper(torch.from_numpy(x))
    assert hm.shape == (1, 18, 9, 7)
    assert np.abs(hm - rh.numpy()).max() < 1e-3 and np.abs(paf - rp.numpy()).max() < 1e-3


# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hrnet_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("hrnet")
    p = str(d / "pose_hrnet_w32_256x192.pth")   # the official file name and bare state-dict format
    save_upstream_checkpoint(random_hrnet(32, seed=3, input_shape=(2, 3, 64, 64)), p, "bare")
    return p


def test_hrnet_w32_onnx_matches_pytorch_batch_1_and_8(hrnet_ckpt, tmp_path):
    out = str(tmp_path / "hrnet.onnx")
    # a small input keeps the test fast; the default would be 256x192 (from the file name)
    report = export(hrnet_ckpt, out=out, input_size="64x64", progress=False)
    assert report["arch"] == "hrnet" and report["config"]["width"] == 32
    assert [c["input_shape"][0] for c in report["verify"]["cases"]] == [1, 8]
    assert report["max_abs_error"] < 1e-3
    sess = _session(out)
    assert sess.get_inputs()[0].shape[0] == "batch" and sess.get_inputs()[0].shape[1:] == [3, 64, 64]
    assert [o.name for o in sess.get_outputs()] == ["heatmaps"]
    meta = read_onnx_meta(out)
    wrapper = _torch_from_checkpoint(hrnet_ckpt, "hrnet")
    for n in (1, 8):
        x = normalize(_images(n, 64, 64, 20 + n), meta)
        (hm,) = sess.run(["heatmaps"], {"image": x})
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(x)).numpy()
        assert hm.shape == (n, 17, 16, 16)
        assert np.abs(ref).max() > 0.05
        assert np.abs(hm - ref).max() < 1e-3
    d = meta.data
    assert d["family"] == "topdown" and d["schema"] == "coco17" and d["stride"] == 4
    assert d["heatmap_offset"] == 0.0 and d["crop"] == {"padding": 1.25}
    assert d["input"]["channel_order"] == "RGB" and d["input"]["dynamic_batch"] is True
    assert d["input"]["mean"] == [123.675, 116.28, 103.53] and d["input"]["std"] == [58.395, 57.12, 57.375]
    assert d["flip_pairs"] == [list(p) for p in COCO17_FLIP_PAIRS]
    assert d["to_coco17"] == list(range(17))


def test_default_output_names():
    assert default_output("/ckpt/pose_hrnet_w32_256x192.pth", "onnx") == "pose_hrnet_w32_256x192.onnx"
    assert default_output("checkpoint_iter_370000.pth.tar", "jetson-int8") == "checkpoint_iter_370000.jetson-int8"
    assert default_output("m.onnx", "onnx") == "m.edgepose.onnx"   # never the source itself
    assert default_output("m.onnx", "rpi-int8") == "m.int8.tflite"


def test_input_size_parsing_and_hrnet_size_from_file_name():
    assert parse_input_size("256x192") == (256, 192)
    assert parse_input_size((384, 288)) == (384, 288)
    assert parse_input_size(368) == (368, 368)
    with pytest.raises(ExportError, match="HxW"):
        parse_input_size("big")
    assert _size_from_filename("/x/pose_hrnet_w48_384x288.pth") == (384, 288)
    assert _size_from_filename("pose_hrnet_w32_256x192.pth") == (256, 192)
    assert _size_from_filename("model_final.pth") is None


# ----------------------------------------------------------------------------------------------
def _listing(d):
    return sorted(os.listdir(d))


def test_failed_verification_leaves_nothing(lwop_ckpt, tmp_path):
    out = str(tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="verification failed"):
        export_checkpoint_onnx(lwop_ckpt, out, input_size="64x64", tolerance=1e-12, progress=False)
    assert _listing(tmp_path) == []


def test_bad_sources_fail_cleanly(tmp_path, lwop_ckpt):
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = str(outdir / "m.onnx")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    marker = str(tmp_path / "ran")
    evil = str(tmp_path / "evil.pth")

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (marker,))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, evil)
    wrong = str(tmp_path / "resnet.pth")
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, wrong)
    hr_small = str(tmp_path / "hr8.pth")
    save_upstream_checkpoint(PoseHRNet(8), hr_small, "bare")

    cases = [
        (dict(source=str(tmp_path / "missing.pth")), ModelError, "checkpoint not found"),
        (dict(source=str(text)), ModelError, "notes.pth is not a PyTorch checkpoint"),
        (dict(source=evil), ModelError, "refused to load"),
        (dict(source=wrong), ModelError, "cannot tell the architecture"),
        (dict(source=wrong, arch="hrnet"), ModelError, "do not fit hrnet"),
        (dict(source=hr_small, arch="lightweight-openpose"), ModelError, "holds hrnet weights"),
        (dict(source=lwop_ckpt, input_size="100x100"), ExportError, "multiple of 8"),
        (dict(source=lwop_ckpt, opset=9), ExportError, "opset 9 not supported"),
        (dict(source=lwop_ckpt, target="coreml"), ExportError, "unknown target"),
        (dict(source=lwop_ckpt, target="cpu-int8"), ExportError, "needs calibration data"),
        (dict(source=lwop_ckpt, spec={"family": "bottomup"}), ExportError, "--spec describes foreign ONNX"),
        (dict(source=str(tmp_path / "model.h5")), ModelError, "unknown source type"),
        (dict(source=lwop_ckpt, out=str(outdir / "m.bin")), ExportError, "must end in .onnx"),
    ]
    for kw, exc, match in cases:
        kw.setdefault("out", out)
        with pytest.raises(exc, match=match) as e:
            export(progress=False, **kw)
        assert "\n" not in str(e.value), kw
        assert _listing(outdir) == [], kw
    assert not os.path.exists(marker)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create output directory"):
        export(lwop_ckpt, out=str(blocker / "sub" / "m.onnx"), progress=False)


def test_targets_and_dispatch_contract(lwop_ckpt, tmp_path, monkeypatch):
    """Non-ONNX targets get the verified FP32 ONNX, its metadata and the PyTorch module."""
    assert TARGETS == ("onnx", "cpu-int8", "tflite-fp32", "tflite-fp16", "rpi-int8", "jetson-int8",
                       "jetson-fp16", "jetson-int8-dla", "tflite")     # tflite: a foreign .tflite + spec
    seen = {}

    def export_tflite(onnx_path, out, mode, calib=None, meta=None, torch_model=None, options=None):
        seen.update(mode=mode, calib=calib, meta=meta, options=options)
        if torch_model is None:  # ONNX sources carry no PyTorch module
            with open(out, "wb") as f:
                f.write(b"tflite")
            return {"output": out, "mode": mode}
        sess = _session(onnx_path)
        x = normalize(_images(1, 64, 64, 2), meta)
        hm, paf = sess.run(["heatmaps", "pafs"], {"image": x})
        with torch.no_grad():
            th, tp = torch_model(torch.from_numpy(x))
        seen["err"] = max(np.abs(hm - th.numpy()).max(), np.abs(paf - tp.numpy()).max())
        with open(out, "wb") as f:
            f.write(b"tflite")
        return {"output": out, "mode": mode, "target_note": "ok", "source": onnx_path}

    fake = types.ModuleType("edgepose.exporters.tflite")
    fake.export_tflite = export_tflite
    monkeypatch.setitem(sys.modules, "edgepose.exporters.tflite", fake)
    out = str(tmp_path / "m.tflite")
    imgs = tempfile.mkdtemp(prefix="edgepose-test-calib-")   # checked before the FP32 step: must exist
    cv2.imwrite(os.path.join(imgs, "a.png"), _images(1, 32, 32, 0)[0])
    rep = export(lwop_ckpt, target="rpi-int8", out=out, input_size="64x64", calib=imgs, progress=False,
                 n_calib=8)
    assert seen["mode"] == "int8" and seen["calib"] == imgs and seen["options"].target == "rpi-int8"
    assert seen["options"].given() == {"n_calib": 8, "source_name": os.path.abspath(lwop_ckpt)}
    assert seen["meta"].family == "bottomup" and seen["err"] < 1e-3
    assert rep["target"] == "rpi-int8" and rep["output"] == out and rep["target_note"] == "ok"
    assert rep["source"] == lwop_ckpt and rep["source_kind"] == "checkpoint"
    assert rep["fp32_onnx"]["max_abs_error"] < 1e-3 and rep["metadata"]["arch"] == "lightweight-openpose"
    assert _listing(tmp_path) == ["m.tflite"]
    with pytest.raises(ExportError, match="do not apply to target onnx"):
        export(lwop_ckpt, target="onnx", out=str(tmp_path / "o.onnx"), progress=False, n_calib=8)
    assert _listing(tmp_path) == ["m.tflite"]
    # an ONNX source with metadata: --input-size becomes the TFLite model's fixed size
    onnx_src = str(tmp_path / "src.onnx")
    export(lwop_ckpt, target="onnx", out=onnx_src, input_size="64x64", dynamic=True, progress=False)
    seen.clear()
    export(onnx_src, target="tflite-fp32", out=str(tmp_path / "f.tflite"), input_size="64x96",
           progress=False)
    assert seen["mode"] == "fp32" and (seen["options"].height, seen["options"].width) == (64, 96)
