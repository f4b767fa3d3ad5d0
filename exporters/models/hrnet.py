"""HRNet (pose_hrnet) for top-down pose, PyTorch.

Our own module whose ``state_dict`` keys and shapes are those of the official checkpoints of
leoxiaobin/deep-high-resolution-net.pytorch (``pose_hrnet_w32_256x192.pth``,
``pose_hrnet_w32_384x288.pth``, ``pose_hrnet_w48_256x192.pth``, ``pose_hrnet_w48_384x288.pth``).

Architecture facts (``lib/models/pose_hrnet.py`` + ``experiments/coco/hrnet/*.yaml``):

- stem: two 3x3 stride-2 convs (64 ch) with BN/ReLU, then ``layer1``: 4 Bottleneck blocks
  (planes 64, expansion 4 → 256 ch);
- stages 2/3/4 with 2/3/4 branches, 1/4/3 modules, 4 BasicBlocks per branch, branch widths
  ``W * (1, 2, 4, 8)`` for HRNet-W``W`` (32 or 48), fuse layers summing all branches
  (1x1 conv + BN + nearest upsampling from lower resolutions, chains of strided 3x3 convs from
  higher ones); the last module of stage 4 only outputs the highest-resolution branch;
- ``final_layer``: a 1x1 (``FINAL_CONV_KERNEL`` 1) conv to 17 COCO keypoint heatmaps, stride 4;
- input RGB, ImageNet mean/std, typically 256x192 or 384x288 (H x W).

Width, number of joints and final kernel are read from the checkpoint's tensors.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from edgepose.errors import ModelError

STRIDE = 4
NUM_JOINTS = 17
_BN_MOMENTUM = 0.1


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + res)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + res)


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by the all-to-all fuse."""

    def __init__(self, channels: List[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList([
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels])
        n_out = self.num_branches if multi_scale_output else 1
        self.fuse_layers = None
        if self.num_branches > 1:
            fuse = []
            for i in range(n_out):
                row: List[Optional[nn.Module]] = []
                for j in range(self.num_branches):
                    if j > i:      # lower resolution → 1x1 conv, BN, nearest upsample
                        row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                                                 nn.BatchNorm2d(channels[i]),
                                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                    elif j == i:
                        row.append(None)
                    else:          # higher resolution → (i-j) strided 3x3 convs
                        steps = []
                        for k in range(i - j):
                            last = k == i - j - 1
                            steps.append(_conv_bn(channels[j], channels[i] if last else channels[j], 3, 2,
                                                  relu=not last))
                        row.append(nn.Sequential(*steps))
                fuse.append(nn.ModuleList(row))
            self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [b(x) for b, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


# (modules, branches) of stages 2, 3, 4 in every official pose_hrnet config
_STAGES = ((1, 2), (4, 3), (3, 4))
_BLOCKS_PER_BRANCH = 4


class PoseHRNet(nn.Module):
    """``forward(x)`` → heatmaps ``[N, num_joints, H/4, W/4]``."""

    def __init__(self, width: int = 32, num_joints: int = NUM_JOINTS, final_conv_kernel: int = 1):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, 1, bias=False), nn.BatchNorm2d(256, momentum=_BN_MOMENTUM))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, 1, down), *[Bottleneck(256, 64) for _ in range(3)])

        pre = [256]
        for s, (n_modules, n_branches) in enumerate(_STAGES):
            cur = [width * 2 ** b for b in range(n_branches)]
            setattr(self, "transition%d" % (s + 1), self._transition(pre, cur))
            last_stage = s == len(_STAGES) - 1
            mods = [HighResolutionModule(cur, _BLOCKS_PER_BRANCH,
                                         multi_scale_output=not (last_stage and m == n_modules - 1))
                    for m in range(n_modules)]
            setattr(self, "stage%d" % (s + 2), nn.Sequential(*mods))
            pre = cur
        self.final_layer = nn.Conv2d(width, num_joints, final_conv_kernel, 1,
                                     1 if final_conv_kernel == 3 else 0)

    @staticmethod
    def _transition(pre: List[int], cur: List[int]) -> nn.ModuleList:
        layers: List[Optional[nn.Module]] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(_conv_bn(pre[i], c, 3, 1, relu=True) if c != pre[i] else None)
            else:
                steps = []
                for j in range(i + 1 - len(pre)):
                    cout = c if j == i - len(pre) else pre[-1]
                    steps.append(_conv_bn(pre[-1], cout, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _run_stage(transition: nn.ModuleList, stage: nn.Sequential, ys: List[torch.Tensor]) -> List[torch.Tensor]:
        # as upstream: a transition conv takes the lowest-resolution output, else pass through
        xs = [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]
        for m in stage:
            xs = m(xs)
        return xs

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = self._run_stage(self.transition1, self.stage2, [x])
        ys = self._run_stage(self.transition2, self.stage3, ys)
        ys = self._run_stage(self.transition3, self.stage4, ys)
        return self.final_layer(ys[0])


def looks_like(state: Dict[str, torch.Tensor]) -> bool:
    return "final_layer.weight" in state and "transition1.0.0.weight" in state and "layer1.0.conv1.weight" in state


def config_from_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    if not looks_like(state):
        raise ModelError("state dict is not a pose_hrnet model (no transition1/final_layer weights)")
    w = state["final_layer.weight"]
    return {
        "width": int(state["transition1.0.0.weight"].shape[0]),
        "num_joints": int(w.shape[0]),
        "final_conv_kernel": int(w.shape[-1]),
    }


def build_from_state_dict(state: Dict[str, torch.Tensor]) -> Tuple[PoseHRNet, Dict[str, int]]:
    cfg = config_from_state_dict(state)
    if cfg["num_joints"] != NUM_JOINTS:
        raise ModelError("HRNet checkpoint has %d joints; edgepose supports COCO-17 pose_hrnet (17 joints)"
                         % cfg["num_joints"])
    if cfg["final_conv_kernel"] not in (1, 3):
        raise ModelError("HRNet checkpoint has a %dx%d final layer; expected 1x1 or 3x3"
                         % (cfg["final_conv_kernel"], cfg["final_conv_kernel"]))
    return PoseHRNet(**cfg), cfg
