"""Stacked hourglass network (Newell et al., ECCV 2016), the teacher and student of Fast Pose Distillation.

Shapes (batch B, keypoints K, input [H, W], heatmap [h, w] = [H/4, W/4]):
    input   (B, 3, H, W) float RGB in 0..255 (normalised inside, like the MoveNet networks)
    output  {"heatmap": (B, K, h, w)}: the last stack's heatmaps (no activation); in training mode
            also {"stacks": (B, S, K, h, w)}, every stack's heatmaps for intermediate supervision.

FPD (Zhang et al., CVPR 2019, seed 004) uses the original 8 stacks x 256 channels as the teacher
and 4 stacks x 128 channels as the student, input 256x256, heatmaps 64x64. Every residual block
is the pre-activation bottleneck BN-ReLU-1x1 (C/2) -> BN-ReLU-3x3 (C/2) -> BN-ReLU-1x1 (C).
H and W must be multiples of 64 (a stem of stride 4, then four halvings in each hourglass).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvAct, init_normal_


#: Standard deviation of the heatmap heads' initial weights: their outputs start ~0, like the targets' background.
HEAD_INIT_STD = 1e-3

#: (field, check, what it needs) of every HourglassConfig field. The upper bounds keep a bad config from
#: building millions of modules (Newell et al. use 8 stacks, depth 4).
_RULES = (
    ("stacks", lambda v: 1 <= v <= 64, "1 <= stacks <= 64"),
    ("channels", lambda v: 2 <= v <= 8192 and v % 2 == 0, "an even 2 <= channels <= 8192"),
    ("num_keypoints", lambda v: v >= 1, "num_keypoints >= 1"),
    ("depth", lambda v: 1 <= v <= 8, "1 <= depth <= 8"),
    ("input_size", lambda v: True, ""),  # a whole number; its multiple depends on depth, checked after
)


@dataclass
class HourglassConfig:
    """Hyper-parameters of a stacked hourglass (everything needed to rebuild it).

    Attributes:
        stacks: number of hourglass modules S (FPD teacher 8, student 4).
        channels: feature width C (teacher 256, student 128).
        num_keypoints: K.
        input_size: square input side in pixels (multiple of 64); heatmaps are a quarter of it.
        depth: halvings inside one hourglass (Newell: 4, i.e. 64 -> 4 px at the waist).
    """

    stacks: int = 4
    channels: int = 128
    num_keypoints: int = 16
    input_size: int = 256
    depth: int = 4

    def __post_init__(self):
        for name, ok, must in _RULES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"hourglass {name} is {value!r}; it must be a whole number")
            if not ok(value):
                raise ValueError(f"hourglass {name} is {value}; it needs {must}")
        multiple = 4 * 2 ** self.depth
        if self.input_size < multiple or self.input_size % multiple:
            raise ValueError(f"hourglass input_size is {self.input_size}; it must be a multiple of {multiple} "
                             f"(4 x 2^depth), e.g. {max(1, round(self.input_size / multiple)) * multiple}")

    def to_dict(self) -> dict:
        return asdict(self)


class Residual(nn.Module):
    """Pre-activation bottleneck residual block; a 1x1 convolution on the skip when widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One hourglass: at each of ``depth`` levels a skip branch and a pooled branch, summed after upsampling."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> ConvAct:
    """Conv2d (with bias, padding ``kernel // 2``) -> BatchNorm -> ReLU (state_dict keys ``0.*``, ``1.*``)."""
    return ConvAct(cin, cout, kernel, stride, act=nn.ReLU, batch_norm=True, bias=True, tf_same=False)


class StackedHourglass(nn.Module):
    """S hourglasses in a row; each predicts heatmaps that are fed back into the next (intermediate supervision).

    The heatmap heads start near zero (weights N(0, ``HEAD_INIT_STD``), bias 0), as the target is almost
    everywhere. With PyTorch's default 1x1 initialisation the heads' outputs start with a standard
    deviation of ~0.4 and the first losses are thousands of times what predicting zeros costs (0.26 against
    7.8e-5 for 1/(2 pi)-peaked targets at 32x32); those first gradients fill Adam's (and RMSProp's) second
    moment, which then shrinks every step ~25x for the next thousand steps: the network settled on a mean
    pose and never learned where the joints are (issue 11).
    """

    def __init__(self, config: HourglassConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.num_keypoints
        self.stem = nn.Sequential(conv_bn_relu(3, 64, 7, 2), Residual(64, 128), nn.MaxPool2d(2),
                                  Residual(128, 128), Residual(128, c))
        self.hourglasses = nn.ModuleList(Hourglass(config.depth, c) for _ in range(config.stacks))
        self.features = nn.ModuleList(nn.Sequential(Residual(c, c), conv_bn_relu(c, c)) for _ in range(config.stacks))
        self.heads = nn.ModuleList(nn.Conv2d(c, k, 1) for _ in range(config.stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(config.stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(k, c, 1) for _ in range(config.stacks - 1))
        for head in self.heads:  # start at ~0, the background (see the class docstring)
            init_normal_(head.weight, HEAD_INIT_STD)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x * (1 / 127.5) - 1.0)
        stacks = []
        for i, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads)):
            feat = features(hourglass(x))
            heatmap = head(feat)
            stacks.append(heatmap)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](feat) + self.merge_heatmaps[i](heatmap)
        out = {"heatmap": stacks[-1]}
        if self.training:
            out["stacks"] = torch.stack(stacks, dim=1)
        return out
