"""Random-weight models in the upstream checkpoint formats (tests, benchmarks, INT8 experiments).

No trained Lightweight OpenPose or HRNet checkpoint is available offline, so tests build the
architectures with random weights. Plain random initialisation gives useless activation
statistics (outputs ~1e-3 or ~1e3 after HRNet's residual sums), which would make both the
export verification (abs error 1e-3) and quantization experiments meaningless. :func:`randomize`
therefore

1. draws BN affine parameters around 1 / 0 and sets the BN running statistics from one batch of
   image-like input (so that every BN normalises its input, as after training), and
2. rescales the output convolutions so that every stage's outputs peak at ``out_scale``
   (real heatmaps lie in [0, 1], PAFs in [-1, 1]).

:func:`save_upstream_checkpoint` writes the formats the upstream projects write.
"""
from __future__ import annotations

import collections
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn


def _head_convs(model: nn.Module) -> List[nn.Conv2d]:
    from .hrnet import PoseHRNet
    from .lightweight_openpose import LightweightOpenPose

    if isinstance(model, LightweightOpenPose):
        heads = []
        for st in [model.initial_stage] + list(model.refinement_stages):
            heads += [st.heatmaps[1][0], st.pafs[1][0]]
        return heads
    if isinstance(model, PoseHRNet):
        return [model.final_layer]
    raise TypeError("randomize: unsupported model %s" % type(model).__name__)


def image_like_input(model: nn.Module, input_shape: Sequence[int], seed: int) -> torch.Tensor:
    """Normalised image-like input (the exporter's verification images), so that BN statistics
    and output scales hold for the inputs the model will be checked on, at any size."""
    from ..onnx_export import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, LWOP_MEAN, LWOP_STD, sample_images
    from .hrnet import PoseHRNet

    n, _c, h, w = [int(v) for v in input_shape]
    imgs = sample_images(n, h, w, seed).astype(np.float32)
    if isinstance(model, PoseHRNet):
        x = (imgs[..., ::-1] - np.float32(IMAGENET_MEAN_RGB)) / np.float32(IMAGENET_STD_RGB)
    else:
        x = (imgs - np.float32(LWOP_MEAN)) / np.float32(LWOP_STD)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0, input_shape: Sequence[int] = (2, 3, 64, 64),
              out_scale: float = 1.0) -> nn.Module:
    """Seeded random weights with trained-like activation statistics (see module docstring).

    ``input_shape`` (N, 3, H, W): settle at the size the model will run at; HRNet statistics
    taken at 64x64 (2x2 lowest branch) do not carry over to 256x192.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_((torch.rand(m.bias.shape, generator=g) - 0.5) * 0.4)
            m.reset_running_stats()
    x = image_like_input(model, input_shape, seed)
    momenta = {}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            momenta[m] = m.momentum
            m.momentum = None  # cumulative average: one batch → exactly its statistics
    model.train()
    model(x)
    for m, mom in momenta.items():
        m.momentum = mom
        m.num_batches_tracked.fill_(1000)
    model.eval()
    # rescale every output conv in graph order so that its output peaks at out_scale
    for conv in _head_convs(model):
        seen = []
        h = conv.register_forward_hook(lambda _m, _i, o: seen.append(o))
        model(x)
        h.remove()
        peak = float(seen[0].abs().max())
        if peak > 0:
            conv.weight.mul_(out_scale / peak)
            if conv.bias is not None:
                conv.bias.mul_(out_scale / peak)
    return model


def save_upstream_checkpoint(model: nn.Module, path: str, fmt: str = "bare", prefix: str = "",
                             legacy_zip: bool = False, seed: int = 0) -> None:
    """Write ``model`` as upstream does.

    ``fmt``:
      - ``"bare"``: the state dict alone (HRNet's released ``pose_hrnet_w32_256x192.pth``);
      - ``"lwop-train"``: Lightweight OpenPose's ``train.py`` snapshot
        ``{state_dict, optimizer (Adam), scheduler (MultiStepLR, milestones is a Counter), iter,
        current_epoch}`` after a real optimizer/scheduler step;
      - ``"hrnet-train"``: HRNet's ``checkpoint.pth`` ``{epoch, model: "pose_hrnet", state_dict
        (module.-prefixed), best_state_dict, perf (numpy.float64), optimizer}``.
    ``prefix``: e.g. ``"module."`` (DataParallel) on every key. ``legacy_zip``: torch's pre-1.6
    non-zip serialization (as the 2018/2019 upstream releases).
    """
    sd = collections.OrderedDict((prefix + k, v.clone()) for k, v in model.state_dict().items())
    if fmt == "bare":
        obj = sd
    elif fmt in ("lwop-train", "hrnet-train"):
        opt = torch.optim.Adam([p for p in model.parameters()], lr=4e-5 if fmt == "lwop-train" else 1e-3)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[100, 200, 260] if fmt == "lwop-train" else [170, 200],
            gamma=0.333 if fmt == "lwop-train" else 0.1)
        # one real step so that the optimizer state holds exp_avg / exp_avg_sq tensors
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
        for p in model.parameters():
            p.grad = None
        if fmt == "lwop-train":
            obj = {"state_dict": sd, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                   "iter": 370000, "current_epoch": 279}
        else:
            bare = collections.OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
            obj = {"epoch": 210, "model": "pose_hrnet",
                   "state_dict": collections.OrderedDict(("module." + k, v) for k, v in bare.items()),
                   "best_state_dict": bare, "perf": np.float64(0.744), "optimizer": opt.state_dict()}
    else:
        raise ValueError("unknown checkpoint format %r" % fmt)
    if legacy_zip:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path)


def random_lightweight_openpose(num_refinement_stages: int = 1, seed: int = 0,
                                input_shape: Optional[Sequence[int]] = None):
    from .lightweight_openpose import LightweightOpenPose

    return randomize(LightweightOpenPose(num_refinement_stages), seed, input_shape or (2, 3, 64, 64))


def random_hrnet(width: int = 32, seed: int = 0, input_shape: Optional[Sequence[int]] = None):
    from .hrnet import PoseHRNet

    return randomize(PoseHRNet(width), seed, input_shape or (2, 3, 64, 64))
