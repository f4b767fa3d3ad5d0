"""PyTorch models: state-dict keys/shapes of the upstream checkpoints, loading rules."""
import os

import pytest
import torch

from edgepose.errors import EdgeposeError, ModelError
from edgepose.exporters.checkpoint import load_checkpoint
from edgepose.exporters.models import build_model, canonical_arch, detect_arch
from edgepose.exporters.models.hrnet import PoseHRNet
from edgepose.exporters.models.lightweight_openpose import LightweightOpenPose, LightweightOpenPoseExport
from edgepose.exporters.models.synthetic import image_like_input, randomize, save_upstream_checkpoint



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


# --- facts from upstream's models/with_mobilenet.py + modules/conv.py ------------------------
LWOP_KEYS = {
    "model.0.0.weight": (32, 3, 3, 3),            # conv(3, 32, stride=2, bias=False) + BN
    "model.0.1.running_var": (32,),
    "model.1.0.weight": (32, 1, 3, 3),            # conv_dw: depthwise, no bias
    "model.1.3.weight": (64, 32, 1, 1),           # conv_dw: pointwise
    "model.7.0.weight": (512, 1, 3, 3),           # dilated depthwise (conv4_3)
    "model.11.4.running_mean": (512,),            # conv5_5 pointwise BN
    "cpm.align.0.weight": (128, 512, 1, 1),
    "cpm.align.0.bias": (128,),
    "cpm.trunk.0.0.weight": (128, 1, 3, 3),       # conv_dw_no_bn: ELU at index 1
    "cpm.trunk.2.2.weight": (128, 128, 1, 1),
    "cpm.conv.0.weight": (128, 128, 3, 3),
    "initial_stage.trunk.2.0.bias": (128,),
    "initial_stage.heatmaps.0.0.weight": (512, 128, 1, 1),
    "initial_stage.heatmaps.1.0.weight": (19, 512, 1, 1),
    "initial_stage.pafs.1.0.weight": (38, 512, 1, 1),
    "refinement_stages.0.trunk.0.initial.0.weight": (128, 185, 1, 1),   # 128 + 19 + 38
    "refinement_stages.0.trunk.0.trunk.1.0.weight": (128, 128, 3, 3),  # dilated, with BN
    "refinement_stages.0.trunk.0.trunk.1.1.running_mean": (128,),
    "refinement_stages.0.trunk.4.trunk.0.0.weight": (128, 128, 3, 3),
    "refinement_stages.0.heatmaps.0.0.weight": (128, 128, 1, 1),
    "refinement_stages.0.heatmaps.1.0.weight": (19, 128, 1, 1),
    "refinement_stages.0.pafs.1.0.bias": (38,),
}


def test_lightweight_openpose_state_dict_matches_upstream_layout():
    net = LightweightOpenPose(1)
    sd = _shapes(net.state_dict())
    for k, shape in LWOP_KEYS.items():
        assert sd.get(k) == shape, k
    assert "model.0.0.bias" not in sd and "cpm.trunk.0.0.bias" not in sd
    # 4.1 M parameters (paper: "4.1M")
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == 4.1
    assert sorted({k.split(".")[0] for k in sd}) == ["cpm", "initial_stage", "model", "refinement_stages"]


def test_lightweight_openpose_refinement_stages_follow_checkpoint(tmp_path):
    net = LightweightOpenPose(3)
    p = str(tmp_path / "three.pth")
    save_upstream_checkpoint(net, p, "bare")
    model, wrapper, cfg = build_model(None, load_checkpoint(p), "three.pth")
    assert cfg["num_refinement_stages"] == 3 and cfg["arch"] == "lightweight-openpose"
    assert _shapes(model.state_dict()) == _shapes(net.state_dict())
    x = torch.zeros(1, 3, 64, 48)
    with torch.no_grad():
        outs = model(x)
        hm, paf = wrapper(x)
    assert len(outs) == 8
    assert tuple(hm.shape) == (1, 18, 8, 6) and tuple(paf.shape) == (1, 38, 8, 6)
    assert torch.equal(hm, outs[-2][:, :18]) and torch.equal(paf, outs[-1])


# --- facts from upstream's lib/models/pose_hrnet.py + w32/w48 configs -------------------------
def _hrnet_keys(w):
    return {
        "conv1.weight": (64, 3, 3, 3), "bn2.running_var": (64,),
        "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.3.bn3.weight": (256,),
        "transition1.0.0.weight": (w, 256, 3, 3), "transition1.1.0.0.weight": (2 * w, 256, 3, 3),
        "transition2.2.0.0.weight": (4 * w, 2 * w, 3, 3), "transition3.3.0.0.weight": (8 * w, 4 * w, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (2 * w, 2 * w, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (w, 2 * w, 1, 1),
        "stage2.0.fuse_layers.1.0.0.0.weight": (2 * w, w, 3, 3),
        "stage3.3.fuse_layers.2.0.0.0.weight": (w, w, 3, 3),        # first of two strided convs (ReLU)
        "stage3.3.fuse_layers.2.0.1.0.weight": (4 * w, w, 3, 3),    # last one (no ReLU)
        "stage4.2.fuse_layers.0.3.0.weight": (w, 8 * w, 1, 1),
        "stage4.2.fuse_layers.0.3.1.running_mean": (w,),
        "stage4.1.fuse_layers.3.0.2.0.weight": (8 * w, w, 3, 3),
        "final_layer.weight": (17, w, 1, 1), "final_layer.bias": (17,),
    }


@pytest.mark.parametrize("width,mparams", [(32, 28.5), (48, 63.6)])
def test_hrnet_state_dict_matches_official_checkpoints(tmp_path, width, mparams):
    net = PoseHRNet(width)
    sd = _shapes(net.state_dict())
    for k, shape in _hrnet_keys(width).items():
        assert sd.get(k) == shape, k
    # the last stage-4 module outputs the highest resolution only (multi_scale_output=False)
    assert not any(k.startswith("stage4.2.fuse_layers.1.") for k in sd)
    assert any(k.startswith("stage4.1.fuse_layers.3.") for k in sd)
    # paper: HRNet-W32 28.5M, HRNet-W48 63.6M parameters
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - mparams) < 0.06
    # through a file in the official format: width read from the tensors, exact key/shape match
    p = str(tmp_path / ("pose_hrnet_w%d_256x192.pth" % width))
    save_upstream_checkpoint(net, p, "bare")
    model, _w, cfg = build_model("hrnet", load_checkpoint(p), os.path.basename(p))
    assert cfg == {"width": width, "num_joints": 17, "final_conv_kernel": 1, "arch": "hrnet"}
    assert _shapes(model.state_dict()) == sd


def test_hrnet_module_prefix_and_forward_stride(tmp_path):
    # a narrow HRNet (same key structure as W32/W48) keeps this test cheap
    net = randomize(PoseHRNet(8), seed=1, input_shape=(2, 3, 64, 32))
    p = str(tmp_path / "dp.pth")
    save_upstream_checkpoint(net, p, "bare", prefix="module.")
    state = load_checkpoint(p)
    assert all(not k.startswith("module.") for k in state)
    model, wrapper, cfg = build_model("hrnet", state, "dp.pth")
    assert cfg["width"] == 8
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        a, b = net(x), wrapper(x)
    assert tuple(b.shape) == (2, 17, 16, 8)
    assert torch.equal(a, b)


def test_missing_num_batches_tracked_is_accepted(tmp_path):
    # checkpoints written by torch < 0.4.1 have no num_batches_tracked buffers
    net = LightweightOpenPose(1)
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    model, _w, _c = build_model("lightweight-openpose", sd, "old.pth")
    assert torch.equal(model.state_dict()["model.0.1.running_var"], sd["model.0.1.running_var"])


def test_wrong_architecture_and_mismatched_weights():
    lw = LightweightOpenPose(1).state_dict()
    with pytest.raises(ModelError, match="holds lightweight-openpose weights, not hrnet"):
        build_model("hrnet", lw, "lw.pth")
    hr = PoseHRNet(32).state_dict()
    with pytest.raises(ModelError, match="holds hrnet weights, not lightweight-openpose"):
        build_model("lightweight-openpose", hr, "hr.pth")
    # a tensor with the wrong shape
    bad = dict(hr)
    bad["stage3.0.branches.0.0.conv1.weight"] = torch.zeros(32, 32, 1, 1)
    with pytest.raises(ModelError, match=r"wrong shape \(e.g. stage3.0.branches.0.0.conv1.weight"):
        build_model("hrnet", bad, "bad.pth")
    # a missing tensor
    bad = {k: v for k, v in hr.items() if k != "stage4.0.branches.3.3.bn2.weight"}
    with pytest.raises(ModelError, match="1 missing"):
        build_model(None, bad, "bad.pth")
    # an extra tensor
    bad = dict(lw, **{"refinement_stages.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match="1 unexpected"):
        build_model(None, bad, "bad.pth")
    # keys of neither architecture
    with pytest.raises(ModelError, match="cannot tell the architecture"):
        build_model(None, {"fc.weight": torch.zeros(2, 2)}, "resnet.pth")
    with pytest.raises(ModelError, match="do not fit hrnet"):
        build_model("hrnet", {"fc.weight": torch.zeros(2, 2)}, "resnet.pth")
    # an MPII (16-joint) HRNet is refused by name
    mpii = dict(hr, **{"final_layer.weight": torch.zeros(16, 32, 1, 1), "final_layer.bias": torch.zeros(16)})
    with pytest.raises(ModelError, match="16 joints"):
        build_model("hrnet", mpii, "mpii.pth")


def test_arch_detection_and_names():
    assert detect_arch(LightweightOpenPose(0).state_dict()) == "lightweight-openpose"
    assert detect_arch(PoseHRNet(32).state_dict()) == "hrnet"
    assert detect_arch({"x": torch.zeros(1)}) is None
    assert canonical_arch("HRNet-W48") == "hrnet"
    assert canonical_arch("lightweight_openpose") == "lightweight-openpose"
    with pytest.raises(EdgeposeError, match="unknown architecture"):
        canonical_arch("resnet50")


def test_export_wrapper_outputs_final_stage_without_background():
    net = randomize(LightweightOpenPose(2), seed=3, input_shape=(2, 3, 64, 64))
    w = LightweightOpenPoseExport(net).eval()
    x = image_like_input(net, (1, 3, 64, 64), seed=4)  # other images, the size settled at
    with torch.no_grad():
        outs = net(x)
        hm, paf = w(x)
    assert torch.equal(hm, outs[4][:, :18]) and torch.equal(paf, outs[5])
    # randomize gives trained-like output magnitudes (every head peaks near 1)
    assert all(0.3 < float(o.abs().max()) < 3 for o in outs), [float(o.abs().max()) for o in outs]
