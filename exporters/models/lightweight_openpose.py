"""Lightweight OpenPose (MobileNet-v1 backbone, CPM, initial + refinement stages), PyTorch.

Our own module whose ``state_dict`` keys and shapes are those of the upstream checkpoints of
Daniil-Osokin/lightweight-human-pose-estimation.pytorch (``checkpoint_iter_370000.pth``):
top-level modules ``model`` (backbone), ``cpm``, ``initial_stage``, ``refinement_stages``.

Facts of the upstream model this module reproduces:

- input: BGR, ``(img - 128) / 256``, NCHW; output stride 8;
- 19 heatmap channels (18 CMU keypoints + background last) and 38 PAF channels per stage;
- the number of refinement stages follows the checkpoint (upstream trains 1 by default, 3 is
  the paper's "best" configuration);
- every stage returns ``[heatmaps, pafs]``; a refinement stage gets
  ``cat(backbone_features, previous heatmaps, previous pafs)``.

:class:`LightweightOpenPoseExport` wraps a model for deployment: it returns the final stage's
18 keypoint heatmaps (background dropped) and 38 PAFs as two separate outputs.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

import torch
from torch import nn

from edgepose.errors import ModelError

NUM_KEYPOINTS = 18
NUM_HEATMAPS = 19  # 18 keypoints + background
NUM_PAFS = 38
STRIDE = 8


def _conv(cin: int, cout: int, kernel_size: int = 3, padding: int = 1, bn: bool = True,
          dilation: int = 1, stride: int = 1, relu: bool = True, bias: bool = True) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int = 1, dilation: int = 1, padding: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU (no biases)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, padding, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _conv_dw_no_bn(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 + ELU, pointwise 1x1 + ELU (no BN, no biases)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
        nn.ELU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.ELU(inplace=True),
    )


class Cpm(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.align = _conv(cin, cout, kernel_size=1, padding=0, bn=False)
        self.trunk = nn.Sequential(_conv_dw_no_bn(cout, cout), _conv_dw_no_bn(cout, cout),
                                   _conv_dw_no_bn(cout, cout))
        self.conv = _conv(cout, cout, bn=False)

    def forward(self, x):
        x = self.align(x)
        return self.conv(x + self.trunk(x))


class InitialStage(nn.Module):
    def __init__(self, channels: int, num_heatmaps: int, num_pafs: int):
        super().__init__()
        self.trunk = nn.Sequential(_conv(channels, channels, bn=False), _conv(channels, channels, bn=False),
                                   _conv(channels, channels, bn=False))
        self.heatmaps = nn.Sequential(_conv(channels, 512, kernel_size=1, padding=0, bn=False),
                                      _conv(512, num_heatmaps, kernel_size=1, padding=0, bn=False, relu=False))
        self.pafs = nn.Sequential(_conv(channels, 512, kernel_size=1, padding=0, bn=False),
                                  _conv(512, num_pafs, kernel_size=1, padding=0, bn=False, relu=False))

    def forward(self, x):
        t = self.trunk(x)
        return self.heatmaps(t), self.pafs(t)


class RefinementStageBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.initial = _conv(cin, cout, kernel_size=1, padding=0, bn=False)
        self.trunk = nn.Sequential(_conv(cout, cout), _conv(cout, cout, dilation=2, padding=2))

    def forward(self, x):
        y = self.initial(x)
        return y + self.trunk(y)


class RefinementStage(nn.Module):
    def __init__(self, cin: int, channels: int, num_heatmaps: int, num_pafs: int):
        super().__init__()
        self.trunk = nn.Sequential(RefinementStageBlock(cin, channels),
                                   *[RefinementStageBlock(channels, channels) for _ in range(4)])
        self.heatmaps = nn.Sequential(_conv(channels, channels, kernel_size=1, padding=0, bn=False),
                                      _conv(channels, num_heatmaps, kernel_size=1, padding=0, bn=False, relu=False))
        self.pafs = nn.Sequential(_conv(channels, channels, kernel_size=1, padding=0, bn=False),
                                  _conv(channels, num_pafs, kernel_size=1, padding=0, bn=False, relu=False))

    def forward(self, x):
        t = self.trunk(x)
        return self.heatmaps(t), self.pafs(t)


class LightweightOpenPose(nn.Module):
    """``forward(x)`` returns ``[heatmaps_0, pafs_0, heatmaps_1, pafs_1, ...]`` like upstream."""

    def __init__(self, num_refinement_stages: int = 1, num_channels: int = 128,
                 num_heatmaps: int = NUM_HEATMAPS, num_pafs: int = NUM_PAFS):
        super().__init__()
        self.num_refinement_stages = num_refinement_stages
        self.model = nn.Sequential(
            _conv(3, 32, stride=2, bias=False),
            _conv_dw(32, 64),
            _conv_dw(64, 128, stride=2),
            _conv_dw(128, 128),
            _conv_dw(128, 256, stride=2),
            _conv_dw(256, 256),
            _conv_dw(256, 512),                          # conv4_2
            _conv_dw(512, 512, dilation=2, padding=2),
            _conv_dw(512, 512),
            _conv_dw(512, 512),
            _conv_dw(512, 512),
            _conv_dw(512, 512),                          # conv5_5
        )
        self.cpm = Cpm(512, num_channels)
        self.initial_stage = InitialStage(num_channels, num_heatmaps, num_pafs)
        self.refinement_stages = nn.ModuleList([
            RefinementStage(num_channels + num_heatmaps + num_pafs, num_channels, num_heatmaps, num_pafs)
            for _ in range(num_refinement_stages)])

    def forward(self, x):
        feats = self.cpm(self.model(x))
        hm, paf = self.initial_stage(feats)
        outs = [hm, paf]
        for stage in self.refinement_stages:
            hm, paf = stage(torch.cat([feats, hm, paf], dim=1))
            outs.extend([hm, paf])
        return outs


class LightweightOpenPoseExport(nn.Module):
    """Deployment view: final stage only, ``(heatmaps[:, :18], pafs)``."""

    output_names = ("heatmaps", "pafs")

    def __init__(self, net: LightweightOpenPose):
        super().__init__()
        self.net = net

    def forward(self, x):
        outs = self.net(x)
        return outs[-2][:, :NUM_KEYPOINTS], outs[-1]


# ------------------------------------------------------------------------------------------
# configuration from a state dict
# ------------------------------------------------------------------------------------------
_PREFIXES = ("model.", "cpm.", "initial_stage.", "refinement_stages.")


def looks_like(state: Dict[str, torch.Tensor]) -> bool:
    """True when the keys are Lightweight OpenPose's (after prefix stripping)."""
    return ("cpm.align.0.weight" in state and "initial_stage.heatmaps.1.0.weight" in state
            and "model.0.0.weight" in state)


def config_from_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Refinement stages, CPM channels, heatmap and PAF counts read from the tensors."""
    if not looks_like(state):
        raise ModelError("state dict is not a Lightweight OpenPose model (no cpm/initial_stage weights)")
    stages = set()
    for k in state:
        m = re.match(r"refinement_stages\.(\d+)\.", k)
        if m:
            stages.add(int(m.group(1)))
    if stages and stages != set(range(len(stages))):
        raise ModelError("Lightweight OpenPose checkpoint has refinement stages %s: not numbered 0..n-1"
                         % sorted(stages))
    return {
        "num_refinement_stages": len(stages),
        "num_channels": int(state["cpm.align.0.weight"].shape[0]),
        "num_heatmaps": int(state["initial_stage.heatmaps.1.0.weight"].shape[0]),
        "num_pafs": int(state["initial_stage.pafs.1.0.weight"].shape[0]),
    }


def build_from_state_dict(state: Dict[str, torch.Tensor]) -> Tuple[LightweightOpenPose, Dict[str, int]]:
    cfg = config_from_state_dict(state)
    if cfg["num_heatmaps"] != NUM_HEATMAPS or cfg["num_pafs"] != NUM_PAFS:
        raise ModelError("Lightweight OpenPose checkpoint has %d heatmaps and %d PAFs; edgepose supports "
                         "the CMU-18 layout (19 heatmaps incl. background, 38 PAFs)"
                         % (cfg["num_heatmaps"], cfg["num_pafs"]))
    return LightweightOpenPose(**cfg), cfg
