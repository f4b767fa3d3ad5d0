"""Safe checkpoint loading: upstream training formats load, anything else is refused clearly."""
import collections
import os
import pickle

import numpy as np
import pytest
import torch

from edgepose.errors import EdgeposeError, ModelError
from edgepose.exporters.checkpoint import extract_state_dict, load_checkpoint, load_raw
from edgepose.exporters.models.hrnet import PoseHRNet
from edgepose.exporters.models.lightweight_openpose import LightweightOpenPose
from edgepose.exporters.models.synthetic import save_upstream_checkpoint



pytestmark = pytest.mark.usefixtures("one_torch_thread")

@pytest.fixture(scope="module")
def lwop():
    return LightweightOpenPose(1)


def test_lightweight_openpose_training_snapshot_with_scheduler_counter(tmp_path, lwop):
    p = str(tmp_path / "checkpoint_iter_370000.pth")
    save_upstream_checkpoint(lwop, p, "lwop-train")
    raw = load_raw(p)
    # the file really holds what upstream's train.py writes, Counter included
    assert set(raw) == {"state_dict", "optimizer", "scheduler", "iter", "current_epoch"}
    assert isinstance(raw["scheduler"]["milestones"], collections.Counter)
    assert raw["optimizer"]["state"], "optimizer state (exp_avg, ...) present"
    state = load_checkpoint(p)
    ref = lwop.state_dict()
    assert list(state) == list(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_legacy_serialization_and_module_prefix(tmp_path, lwop):
    # pre-1.6 torch files (the 2018/2019 upstream releases) and DataParallel prefixes
    p = str(tmp_path / "legacy.pth")
    save_upstream_checkpoint(lwop, p, "bare", prefix="module.", legacy_zip=True)
    state = load_checkpoint(p)
    assert list(state) == list(lwop.state_dict())


def test_hrnet_training_checkpoint_with_numpy_perf(tmp_path):
    net = PoseHRNet(8)  # narrow: same container and keys as W32, a fraction of the bytes
    p = str(tmp_path / "checkpoint.pth")
    save_upstream_checkpoint(net, p, "hrnet-train")
    raw = load_raw(p)
    assert isinstance(raw["perf"], np.floating) and raw["model"] == "pose_hrnet"
    state = load_checkpoint(p)
    assert list(state) == list(net.state_dict())


def _unchanged(tmp_path, before):
    assert sorted(os.listdir(tmp_path)) == before


class _Marker:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_disallowed_globals_are_refused_and_never_run(tmp_path):
    marker = str(tmp_path / "pwned")
    p = str(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Marker(marker)}, p)
    with pytest.raises(ModelError, match=r"evil.pth: refused to load: .*posix.mkdir|evil.pth: refused to load: .*mkdir"):
        load_checkpoint(p)
    assert not os.path.exists(marker)
    # a legacy-format (protocol 2) pickle with the same payload
    p2 = str(tmp_path / "evil2.pth")
    with open(p2, "wb") as f:
        pickle.dump({"x": _Marker(marker)}, f, protocol=2)
    with pytest.raises(ModelError, match="refused to load"):
        load_checkpoint(p2)
    assert not os.path.exists(marker)
    # an allowed-looking container with an arbitrary class is refused too
    p3 = str(tmp_path / "dd.pth")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": collections.defaultdict(list)}, p3)
    with pytest.raises(ModelError, match="collections.defaultdict"):
        load_checkpoint(p3)


@pytest.mark.parametrize("content,match", [
    (b"this is a text file\n", "is not a PyTorch checkpoint"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "is not a PyTorch checkpoint"),
    (pickle.dumps({"a": 1}, protocol=4), "is not a PyTorch checkpoint"),
    (b"", "checkpoint is empty"),
])
def test_non_checkpoint_files(tmp_path, content, match):
    p = tmp_path / "x.pth"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=match) as e:
        load_checkpoint(str(p))
    assert "\n" not in str(e.value)


def test_missing_and_containers_without_weights(tmp_path):
    with pytest.raises(ModelError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    with pytest.raises(ModelError, match="not a file"):
        load_checkpoint(str(tmp_path))
    p = str(tmp_path / "l.pth")
    torch.save([1, 2, 3], p)
    with pytest.raises(ModelError, match="holds no model state dict .*list"):
        load_checkpoint(p)
    p = str(tmp_path / "d.pth")
    torch.save({"epoch": 3, "lr": 0.1}, p)
    with pytest.raises(ModelError, match="holds no model state dict .*epoch, lr"):
        load_checkpoint(p)
    with pytest.raises(EdgeposeError, match="both with and without"):
        extract_state_dict({"a": torch.zeros(1), "module.a": torch.zeros(1)})


@pytest.mark.parametrize("arch", ["lightweight-openpose", "hrnet"])
def test_lightning_model_prefix_is_unwrapped(tmp_path, lwop, arch):
    """A PyTorch Lightning checkpoint ({'state_dict': {'model.' + key: ...}, ...}) exports like
    the bare network (Lightweight OpenPose's own keys already start with 'model.')."""
    from edgepose.exporters.models import build_model, detect_arch, unwrap_state
    net = lwop if arch == "lightweight-openpose" else PoseHRNet(8)
    p = str(tmp_path / "epoch=3-step=100.ckpt")
    sd = {"model." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.4.0"}, p)
    state = load_checkpoint(p)
    assert detect_arch(state) is None and detect_arch(unwrap_state(state)) == arch
    model, _, cfg = build_model(None, state, "lightning.ckpt")
    assert cfg["arch"] == arch
    ref = net.state_dict()
    got = model.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    # a bare state dict is left as it is
    assert unwrap_state(dict(net.state_dict())).keys() == net.state_dict().keys()
