"""MoveNet network: MobileNetV2 (or ShuffleNetV2) backbone + FPN to stride 4 + CenterNet-style heads.

Shapes (batch B, keypoints K, input [H, W], grid [h, w] = [H/4, W/4]):
    input   (B, 3, H, W) float RGB in 0..255 (normalised inside, as Google's graph does)
    output  dict of raw head tensors, NCHW, no activation (those named in ``sparse``: functions of grid cells):
        heatmap (B, K, h, w)   keypoint logits
        center  (B, 1, h, w)   person-centre logits
        regress (B, 2K, h, w)  centre -> keypoint displacement in grid cells, (y, x) interleaved
        offset  (B, 2K, h, w)  sub-cell keypoint offset, (y, x) interleaved
        box_scale, box_offset (B, 2, h, w)  only when ``box_heads`` (Google's MultiPose graph)

The layer sizes follow Google's published graphs (movenet/singlepose/lightning/4: width 1.0,
thunder/4: width 1.75, multipose/lightning/1: width 1.5). Convolutions with stride 2 pad like
TensorFlow's ``SAME`` (zero rows/columns at the bottom/right only), so imported weights
reproduce Google's outputs. H and W must be multiples of 32.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvAct, InvertedResidual, SeparableConv, make_divisible

# MobileNetV2 inverted-residual settings: (expansion t, output channels c, repeats n, first stride s)
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# Indices (0-based, as Keras names them block_N) of the blocks whose outputs feed the FPN at strides 4, 8, 16.
FPN_TAPS = (2, 5, 9)
FPN_CHANNELS = (64, 32, 24)  # top-down: stride 32 -> 16 -> 8 -> 4 (the last is the feature width)
HEAD_CHANNELS = 96
# Initial bias of the heatmap and centre logits, sigmoid(-2.19) = 0.1 (CenterNet; Google's centre bias is -2.22)
HEATMAP_PRIOR_BIAS = -2.19
# fp16 rounding of 1/127.5 as stored in Google's graphs: x_float = x * INPUT_SCALE - 1
INPUT_SCALE = 0.007843017578125


@dataclass
class MoveNetConfig:
    """Hyper-parameters of a MoveNet network (everything needed to rebuild it).

    Attributes:
        width: MobileNetV2 width multiplier (alpha).
        num_keypoints: K.
        input_size: default square input side in pixels (multiple of 32).
        box_heads: add the box_scale / box_offset heads of Google's MultiPose graph.
        batch_norm: BatchNorm after each convolution (for training from scratch); Google's
            imported graphs have it folded into the convolution biases, so they use False.
        backbone: ``mobilenetv2`` (Google's, 4-level FPN) or ``shufflenetv2`` (seed 003's faster
            variant, 3-level FPN).
    """

    width: float = 1.0
    num_keypoints: int = 17
    input_size: int = 192
    box_heads: bool = False
    batch_norm: bool = False
    backbone: str = "mobilenetv2"

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown MoveNet backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")

    def to_dict(self) -> dict:
        return asdict(self)


class MobileNetV2(nn.Module):
    """MobileNetV2 returning the features at strides 4, 8, 16 (taps) and 32 (after the 1x1 conv)."""

    def __init__(self, width: float = 1.0, batch_norm: bool = False):
        super().__init__()
        stem = make_divisible(32 * width)
        self.stem = ConvAct(3, stem, 3, 2, batch_norm=batch_norm)
        blocks, cin = [], stem
        for t, c, n, s in MOBILENET_V2_BLOCKS:
            cout = make_divisible(int(c * width))
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t, batch_norm))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.last = ConvAct(cin, 1280, batch_norm=batch_norm)
        self.tap_channels = tuple(blocks[i].project.conv.out_channels for i in FPN_TAPS) + (1280,)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in FPN_TAPS:
                taps.append(x)
        taps.append(self.last(x))
        return taps


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or duplicate (stride 2) the channels, one branch
    1x1 -> 3x3 depthwise -> 1x1, concatenate, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool):
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.left = nn.Sequential(ConvAct(cin, cin, 3, stride, groups=cin, act=None, batch_norm=batch_norm),
                                  ConvAct(cin, half, act=nn.ReLU, batch_norm=batch_norm)) if stride == 2 else None
        rin = cin if stride == 2 else cin // 2
        self.right = nn.Sequential(ConvAct(rin, half, act=nn.ReLU, batch_norm=batch_norm),
                                   ConvAct(half, half, 3, stride, groups=half, act=None, batch_norm=batch_norm),
                                   ConvAct(half, half, act=nn.ReLU, batch_norm=batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left is None:
            keep, x = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat([keep, self.right(x)], dim=1))
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1))


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 (stages of 4, 8, 4 units) returning the features at strides 8, 16 and 32.

    Stage widths scale 116 / 232 / 464 (the 1.0x network) by ``width``, rounded to multiples of 8:
    0.75 gives 88 / 176 / 352, the seed's choice for a MoveNet backbone. The final 1x1 conv of the
    classifier is dropped: the FPN takes the stage outputs.
    """

    def __init__(self, width: float = 0.75, batch_norm: bool = True):
        super().__init__()
        self.stem = nn.Sequential(ConvAct(3, 24, 3, 2, act=nn.ReLU, batch_norm=batch_norm),
                                  nn.MaxPool2d(3, 2, 1))
        stages, cin = [], 24
        for repeats, base in zip((4, 8, 4), (116, 232, 464)):
            cout = make_divisible(base * width)
            stages.append(nn.Sequential(*[ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1, batch_norm)
                                          for i in range(repeats)]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.tap_channels = tuple(make_divisible(b * width) for b in (116, 232, 464))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        taps = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        return taps


BACKBONES = {"mobilenetv2": MobileNetV2, "shufflenetv2": ShuffleNetV2}


class FPN(nn.Module):
    """Top-down feature pyramid from stride 32 to stride 4: upsample x2 (bilinear), add lateral, separable conv.

    Four taps (strides 4, 8, 16, 32: Google's MobileNetV2 MoveNet) or three (strides 8, 16, 32: the
    seed's ShuffleNetV2 variant, whose last step to stride 4 upsamples without a lateral).
    """

    def __init__(self, tap_channels: tuple[int, ...], batch_norm: bool = False):
        super().__init__()
        *c4, c8, c16, c32 = tap_channels
        top, mid, out = FPN_CHANNELS
        self.lateral32 = ConvAct(c32, top, act=None)
        self.lateral16 = ConvAct(c16, top, act=None)
        self.lateral8 = ConvAct(c8, mid, act=None)
        self.lateral4 = ConvAct(c4[0], out, act=None) if c4 else None
        self.smooth16 = SeparableConv(top, mid, batch_norm)
        self.smooth8 = SeparableConv(mid, out, batch_norm)
        self.smooth4 = SeparableConv(out, out, batch_norm)
        self.out_channels = out

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        *c4, c8, c16, c32 = taps
        x = self.smooth16(self._up(self.lateral32(c32)) + self.lateral16(c16))
        x = self.smooth8(self._up(x) + self.lateral8(c8))
        x = self._up(x)
        return self.smooth4(x + self.lateral4(c4[0]) if self.lateral4 is not None else x)


class Head(nn.Sequential):
    """Separable conv to 96 channels (ReLU) -> 1x1 conv to the head's outputs."""

    def __init__(self, cin: int, cout: int, batch_norm: bool = False):
        super().__init__(SeparableConv(cin, HEAD_CHANNELS, batch_norm), ConvAct(HEAD_CHANNELS, cout, act=None))

    def at(self, feats: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """The head at N grid cells only: (N, cout), ``self(feats)[0, :, ys, xs].T`` without the rest of the map
        (batch 1, eval mode: for an in-graph decoder). Each cell's zero-padded 3x3 neighbourhood is gathered as a
        (N, C, 3, 3) batch; the depthwise kernel applied without padding gives the cell's value, which goes through
        the two 1x1 convs."""
        if feats.shape[0] != 1 or self.training:
            raise ValueError("Head.at evaluates one image's features in eval mode (an in-graph decoder's export)")
        c, h, w = feats.shape[1:]
        padded = F.pad(feats[0], (1, 1, 1, 1)).reshape(c, (h + 2) * (w + 2))
        window = torch.tensor([dy * (w + 2) + dx for dy in range(3) for dx in range(3)])
        cells = (ys.reshape(-1, 1) * (w + 2) + xs.reshape(-1, 1) + window).reshape(-1)  # (N * 9,) top-left based
        patches = padded.index_select(1, cells).reshape(c, -1, 3, 3).transpose(0, 1)  # (N, C, 3, 3)
        (depthwise, pointwise), out = self
        cell = F.conv2d(patches, depthwise.conv.weight, depthwise.conv.bias, groups=depthwise.conv.groups)
        return out(pointwise(cell)).flatten(1)  # (N, cout, 1, 1) -> (N, cout)


class MoveNet(nn.Module):
    """MoveNet: backbone + FPN + heads; ``forward`` returns raw head tensors (see module docstring)."""

    def __init__(self, config: MoveNetConfig | None = None, **overrides):
        super().__init__()
        self.config = config or MoveNetConfig(**overrides)
        cfg, k = self.config, self.config.num_keypoints
        self.register_buffer("input_scale", torch.tensor(INPUT_SCALE), persistent=False)
        self.backbone = BACKBONES[cfg.backbone](cfg.width, cfg.batch_norm)
        self.fpn = FPN(self.backbone.tap_channels, cfg.batch_norm)
        outputs = {"heatmap": k, "center": 1, "regress": 2 * k, "offset": 2 * k}
        if cfg.box_heads:
            outputs.update(box_scale=2, box_offset=2)
        self.heads = nn.ModuleDict({name: Head(self.fpn.out_channels, c, cfg.batch_norm) for name, c in outputs.items()})
        for name in ("heatmap", "center"):  # CenterNet's prior: start every cell at probability 0.1
            nn.init.constant_(self.heads[name][-1].conv.bias, HEATMAP_PRIOR_BIAS)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """FPN features (B, 24, H/4, W/4) of an image batch in 0..255."""
        return self.fpn(self.backbone(image * self.input_scale - 1.0))

    def forward(self, image: torch.Tensor, sparse: tuple[str, ...] = ()) -> dict[str, torch.Tensor | Callable]:
        """Raw heads by name; a head named in ``sparse`` comes as a function of grid cells instead, ``(ys, xs) ->
        (N, C)`` (:meth:`Head.at`), for an in-graph decoder that reads it at a few cells only (batch 1)."""
        feats = self.features(image)
        return {name: functools.partial(head.at, feats) if name in sparse else head(feats)
                for name, head in self.heads.items()}
