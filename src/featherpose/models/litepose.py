"""Lite Pose (Wang et al., CVPR 2022, seed 002): a single-branch bottom-up network of inverted-residual blocks
with large depthwise kernels, a fusion deconv head, heatmaps + associative-embedding tags at two resolutions.

Shapes (batch B, input [H, W] multiples of :data:`STRIDE` (16), K keypoints):
    input   (B, 3, H, W) float, raw 0..255 **RGB** pixel values (what every featherpose pipeline feeds);
            normalisation is inside the network: ``(x / 255 - mean) / std`` in float32 with ImageNet's mean and
            std, the same operations in the same order as upstream's ``ToTensor`` + ``Normalize``.
    output  dict of raw head tensors, NCHW, no activation:
        heatmaps_tags (B, 2K, H/4, W/4)  channels 0..K-1 keypoint heatmaps, K..2K-1 one tag map per keypoint
                                         (upstream's ``output_0``)
        heatmaps      (B, K, H/2, W/2)   keypoint heatmaps (upstream's ``output_1``)

The network (upstream's ``LitePose`` of ``lib/models/pose_mobilenet.py``, rebuilt from its description):
    stem     3x3 conv stride 2 (3 -> 32), BN, ReLU6; 3x3 depthwise (32), BN, ReLU6; 1x1 conv (32 -> C0), BN.
    stages   four stages of inverted-residual blocks (:class:`LiteBlock`); the first block of a stage has the
             stage's stride, each block its own expansion and depthwise kernel size. Output strides of the stem
             and stages: 2, 4, 8, 16, 16 (search-M: stage 4 has stride 1).
    fusion   three levels (:class:`FusionLevel`), each ``ReLU(BN(deconv(deep) + deconv(skip)))`` with 4x4 stride-2
             transposed convs: level 0 upsamples stage 4 (deep) and stage 3 (skip), level 1 level 0's output and
             stage 2, level 2 level 1's output and stage 1. Output strides 8, 4, 2; widths ``deconv_widths``.
    heads    after level 1 (stride 4): ``SepConv(level 1) + SepConv(stage 1)`` -> 2K channels; after level 2
             (stride 2): ``SepConv(level 2) + SepConv(stem)`` -> K channels (:class:`SepConv`: 5x5 depthwise, BN,
             ReLU, 1x1 conv without bias).

Configurations: :class:`LitePoseConfig` holds one; :func:`config_from_mobile_config` reads upstream's
``mobile_configs/*.json`` format, and :data:`ARCHITECTURES` names the paper's searched models (XS, S, M, L; the
bundled CrowdPose model is Auto-M). Complexity is counted as multiply-accumulates of the convolutions and
transposed convolutions (BN, activations and additions not counted), on one RGB image at the named size:
:func:`macs`. Upstream's README lists larger figures (:data:`PAPER_GMACS`, about 1.4x ours for every model: its
counting convention is not stated).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# make_divisible: upstream's _make_divisible (ties up, <= 10 % down)
from .layers import ConvAct, export_runtime, init_normal_, make_divisible

#: Output stride of the deepest feature: inputs must be multiples of it.
STRIDE = 16
#: ImageNet normalisation of RGB values in [0, 1] (upstream's ``Normalize``).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Channels of the stem's first two convolutions (fixed in upstream's network).
STEM_WIDTH = 32
#: Kernel of the separable convolutions of the final layers and of the transposed convolutions.
HEAD_KERNEL = 5
DECONV_KERNEL = 4
#: Standard deviation of the heads' final 1x1 weights at random init (first outputs ~0; see :class:`LitePose`).
HEAD_INIT_STD = 0.001


@dataclass
class LitePoseConfig:
    """Hyper-parameters of a Lite Pose network (everything needed to rebuild it; JSON-serialisable).

    Attributes:
        num_keypoints: K (14: CrowdPose; 17: COCO); one tag map per keypoint.
        stem_channels: C0, the stem's output width (upstream's ``input_channel``).
        stages: four stages, each ``{"channels": C, "stride": s, "blocks": [[expansion, kernel], ...]}`` (one
            ``[expansion, kernel]`` per block; the first block has stride ``s``).
        deconv_widths: widths of the three fusion levels (output strides 8, 4, 2).
        input_size: the default input's short side in pixels (upstream's ``img_size``; a multiple of 32).
    """

    num_keypoints: int = 14
    stem_channels: int = 16
    stages: list = field(default_factory=lambda: [dict(s) for s in _SEARCH_M["stages"]])
    deconv_widths: list = field(default_factory=lambda: list(_SEARCH_M["deconv_widths"]))
    input_size: int = 448

    def __post_init__(self):
        if len(self.stages) != 4:
            raise ValueError(f"Lite Pose has 4 stages, the config gives {len(self.stages)}")
        if len(self.deconv_widths) != 3:
            raise ValueError(f"Lite Pose has 3 fusion levels, the config gives {len(self.deconv_widths)} widths")
        for i, stage in enumerate(self.stages):
            if set(stage) != {"channels", "stride", "blocks"} or not stage["blocks"]:
                raise ValueError(f"stage {i}: expected channels, stride and a non-empty blocks list, got {stage}")
            if any(len(b) != 2 or b[1] % 2 == 0 or b[0] < 1 for b in stage["blocks"]):
                raise ValueError(f"stage {i}: each block is [expansion >= 1, odd kernel], got {stage['blocks']}")
        strides = [s["stride"] for s in self.stages]
        if strides[:3] != [2, 2, 2] or strides[3] != 1:
            raise ValueError(f"stage strides must be 2, 2, 2, 1 (output stride {STRIDE}), got {strides}")
        if self.num_keypoints < 1:
            raise ValueError(f"num_keypoints must be >= 1, got {self.num_keypoints}")

    def to_dict(self) -> dict:
        return asdict(self)

    def widths(self) -> list[int]:
        """Output widths of the stem and the four stages."""
        return [self.stem_channels] + [s["channels"] for s in self.stages]


def config_from_mobile_config(arch: dict, num_keypoints: int = 14) -> LitePoseConfig:
    """A :class:`LitePoseConfig` from upstream's ``mobile_configs/*.json`` dict (``input_channel``,
    ``backbone_setting`` [{num_blocks, stride, channel, block_setting}], ``deconv_setting``, ``img_size``) at width
    multiplier 1 (channels rounded by :func:`make_divisible`, as upstream builds them)."""
    try:
        stages = []
        for s in arch["backbone_setting"]:
            blocks = [[int(t), int(k)] for t, k in s["block_setting"]]
            if len(blocks) != s["num_blocks"]:
                raise ValueError(f"num_blocks {s['num_blocks']} but {len(blocks)} block settings")
            stages.append({"channels": make_divisible(s["channel"]), "stride": int(s["stride"]), "blocks": blocks})
        return LitePoseConfig(num_keypoints, make_divisible(arch["input_channel"]), stages,
                              [int(w) for w in arch["deconv_setting"]], int(arch.get("img_size", 448)))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a Lite Pose mobile config (upstream's mobile_configs/*.json): {exc!r}") from None


def _stages(channels: tuple[int, int, int, int], blocks: tuple[int, int, int, int]) -> list[dict]:
    return [{"channels": c, "stride": 1 if i == 3 else 2, "blocks": [[6, 7]] * n}
            for i, (c, n) in enumerate(zip(channels, blocks))]


# The paper's searched models as upstream's mobile_configs/search-*.json describe them (all blocks: expansion 6,
# 7x7 depthwise; 6, 8, 10, 10 blocks per stage).
_SEARCH_M = {"stem": 16, "stages": _stages((24, 48, 72, 120), (6, 8, 10, 10)), "deconv_widths": (64, 40, 32),
             "input_size": 448}
#: The paper's named configurations (upstream's ``mobile_configs/search-{XS,S,M,L}.json``, LitePose-Auto-*).
ARCHITECTURES: dict[str, dict] = {
    "litepose-xs": {"stem": 16, "stages": _stages((16, 32, 48, 80), (6, 8, 10, 10)), "deconv_widths": (16, 24, 24),
                    "input_size": 256},
    "litepose-s": {"stem": 16, "stages": _stages((16, 32, 48, 120), (6, 8, 10, 10)), "deconv_widths": (32, 24, 32),
                   "input_size": 448},
    "litepose-m": _SEARCH_M,
    "litepose-l": {"stem": 24, "stages": _stages((24, 64, 96, 160), (6, 8, 10, 10)), "deconv_widths": (64, 40, 32),
                   "input_size": 512},
}
#: Upstream README's multiply-accumulates (G) of LitePose-Auto-* on CrowdPose (its counting convention unstated).
PAPER_GMACS = {"litepose-xs": 1.2, "litepose-s": 5.0, "litepose-m": 7.8, "litepose-l": 13.7}


def named_config(name: str, num_keypoints: int = 14) -> LitePoseConfig:
    """The :class:`LitePoseConfig` of a name in :data:`ARCHITECTURES` (e.g. ``litepose-m``: Auto-M)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown Lite Pose architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    a = ARCHITECTURES[name]
    return LitePoseConfig(num_keypoints, a["stem"], [dict(s, blocks=[list(b) for b in s["blocks"]])
                                                     for s in a["stages"]], list(a["deconv_widths"]), a["input_size"])


# ------------------------------------------------------------------------------------------------ blocks

def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU6) -> ConvAct:
    """Conv2d (no bias, padding ``kernel // 2``) + BatchNorm [+ activation]: indices 0, 1[, 2]."""
    return ConvAct(cin, cout, kernel, stride, groups, act=act, batch_norm=True, tf_same=False)


class LiteBlock(nn.Module):
    """Inverted residual with a k x k depthwise kernel: 1x1 expand to ``make_divisible(round(cin * t))`` (BN,
    ReLU6) -> k x k depthwise with the block's stride (BN, ReLU6) -> 1x1 project (BN), plus the input when the
    stride is 1 and the widths match. (B, cin, h, w) -> (B, cout, h / stride, w / stride)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, kernel: int):
        super().__init__()
        hidden = make_divisible(round(cin * expansion))
        self.expand = _conv_bn(cin, hidden)
        self.depthwise = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv_bn(hidden, cout, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class SepConv(nn.Sequential):
    """k x k depthwise (BN, ReLU) -> 1x1 conv without bias: (B, cin, h, w) -> (B, cout, h, w)."""

    def __init__(self, cin: int, cout: int, kernel: int = HEAD_KERNEL):
        super().__init__(OrderedDict(depthwise=_conv_bn(cin, cin, kernel, groups=cin, act=nn.ReLU),
                                     pointwise=nn.Conv2d(cin, cout, 1, bias=False)))


class FusionLevel(nn.Module):
    """One level of the fusion deconv head: ``ReLU(BN(up_deep(deep) + up_skip(skip)))``, each ``up`` a 4x4
    stride-2 transposed conv (padding 1, no bias): (B, c_deep, h, w), (B, c_skip, h, w) -> (B, width, 2h, 2w).

    Traced for onnxruntime (:func:`~.layers.export_runtime`) in eval mode, the level is written as
    :meth:`phase_forward`, the same function in the ops onnxruntime runs fastest."""

    def __init__(self, c_deep: int, c_skip: int, width: int):
        super().__init__()
        self.up_deep = nn.ConvTranspose2d(c_deep, width, DECONV_KERNEL, 2, 1, bias=False)
        self.up_skip = nn.ConvTranspose2d(c_skip, width, DECONV_KERNEL, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if export_runtime() == "onnxruntime" and not self.training:
            return self.phase_forward(deep, skip)
        return torch.relu(self.bn(self.up_deep(deep) + self.up_skip(skip)))

    def phase_forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in eval mode as onnxruntime runs it fastest: its ConvTranspose kernel (a matrix product,
        then a scalar scatter-add of 16 taps) took 58 of Lite Pose's 236 ms at 448x640 on a 2-core Xeon.

        Each transposed conv becomes a 2x2 conv (:func:`phase_weight`) whose ``4 * width`` outputs are the four
        output pixels of each 2x2 input window; the batch norm is folded into those convs, the ReLU applied, and one
        grouped 2x2 stride-2 transposed conv with one-hot weights (a copy, exact) interleaves the four phases, its
        padding cropping the windows' extra row and column. The three levels then took 28 ms against 74 (its
        profile, the same machine); DepthToSpace for the interleave cost 20 ms more."""
        bn, width = self.bn, self.bn.num_features
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias - bn.running_mean * scale).repeat_interleave(4)
        scale = scale.repeat_interleave(4)[:, None, None, None]
        y = (F.conv2d(deep, phase_weight(self.up_deep.weight) * scale, shift, padding=1)
             + F.conv2d(skip, phase_weight(self.up_skip.weight) * scale, padding=1))
        one_hot = torch.eye(4, dtype=y.dtype, device=y.device).view(4, 1, 2, 2).repeat(width, 1, 1, 1)
        return F.conv_transpose2d(torch.relu(y), one_hot, stride=2, padding=1, groups=width)


def phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 4x4 stride-2 padding-1 transposed conv's weight (cin, cout, 4, 4) as the weight (4 cout, cin, 2, 2) of a
    2x2 conv with padding 1 giving, at window (s, t) of the padded input, the transposed conv's output pixels
    (2s - 1 + py, 2t - 1 + px) as channels ``4 * c + 2 * py + px``.

    Along one axis, output 2s - 1 + p (phase p) sums window tap j (input s - 1 + j) times kernel index 2 + p - 2j."""
    taps = torch.tensor([[2, 0], [3, 1]], device=weight.device)  # [phase p, tap j] -> kernel index
    w = weight[:, :, taps[:, None, :, None], taps[None, :, None, :]]  # (cin, cout, py, px, jy, jx)
    return w.permute(1, 2, 3, 0, 4, 5).reshape(weight.shape[1] * 4, weight.shape[0], 2, 2)


class LitePose(nn.Module):
    """Lite Pose; ``forward`` returns raw head tensors (see the module docstring)."""

    def __init__(self, config: LitePoseConfig | None = None, **overrides):
        super().__init__()
        self.config = cfg = config or LitePoseConfig(**overrides)
        k, widths = cfg.num_keypoints, cfg.widths()
        self.stem = nn.Sequential(OrderedDict(
            conv=_conv_bn(3, STEM_WIDTH, 3, 2), depthwise=_conv_bn(STEM_WIDTH, STEM_WIDTH, 3, groups=STEM_WIDTH),
            project=_conv_bn(STEM_WIDTH, cfg.stem_channels, act=None)))
        stages, cin = [], cfg.stem_channels
        for stage in cfg.stages:
            blocks = []
            for i, (expansion, kernel) in enumerate(stage["blocks"]):
                blocks.append(LiteBlock(cin, stage["channels"], stage["stride"] if i == 0 else 1, expansion, kernel))
                cin = stage["channels"]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        d = cfg.deconv_widths
        # level i: deep = the previous level (stage 4 for level 0), skip = stage 3, 2, 1
        self.fusion = nn.ModuleList([FusionLevel(widths[4], widths[3], d[0]), FusionLevel(d[0], widths[2], d[1]),
                                     FusionLevel(d[1], widths[1], d[2])])
        # heads after level 1 (with stage 1) and level 2 (with the stem)
        self.head_deep = nn.ModuleList([SepConv(d[1], 2 * k), SepConv(d[2], k)])
        self.head_skip = nn.ModuleList([SepConv(widths[1], 2 * k), SepConv(widths[0], k)])
        # the heads' last 1x1 convs start at std 0.001 (HigherHRNet's init of its final layers), so the first outputs
        # are ~0, the targets' background; PyTorch's default gives |outputs| ~0.4 there, and from random init the
        # 1/2-resolution head then does not learn its peaks (overfitting one image at 128 on that head's MSE alone:
        # 0.18 at the labelled cells after 80 steps, 0.95 with this init)
        for head in (*self.head_deep, *self.head_skip):
            init_normal_(head.pointwise.weight, HEAD_INIT_STD)
        self.register_buffer("mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) raw 0..255 RGB -> ``(x / 255 - mean) / std``, float32, in upstream's order (bit for bit
        the ``input.npy`` of ``golden/litepose``)."""
        return (image.float() / 255.0 - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = image.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"Lite Pose input {w}x{h}: height and width must be multiples of {STRIDE}")
        feats = [self.stem(self.normalise(image))]
        self.run_blocks(feats[0], 0, None, feats)
        return self.heads(feats)

    def blocks_in_order(self) -> list[tuple[nn.Module, bool]]:
        """The backbone's blocks in order over the four stages, each with whether it ends its stage."""
        return [(block, i == len(stage) - 1) for stage in self.stages for i, block in enumerate(stage)]

    def run_blocks(self, x: torch.Tensor, start: int, stop: int | None, feats: list[torch.Tensor]) -> torch.Tensor:
        """The backbone's blocks ``start:stop`` (:meth:`blocks_in_order`) on ``x``; where a stage ends, its output
        is appended to ``feats``. Returns the last block's output."""
        for block, ends_stage in self.blocks_in_order()[start:stop]:
            x = block(x)
            if ends_stage:
                feats.append(x)
        return x

    def split(self, front_blocks: int) -> tuple[nn.Module, nn.Module]:
        """The network as two modules sharing its weights, to run in two precisions (``precision="bf16"`` keeps the
        front in float32): ``front`` = the normalisation, the stem and the first ``front_blocks`` backbone blocks,
        image -> a dict of tensors (the stem's output, the outputs of the stages that end within it, the last
        block's output); ``back`` = the rest, ``back(*front(image).values()) == self(image)``."""
        return _Front(self, front_blocks), _Back(self, front_blocks)

    def heads(self, feats: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The fusion deconv head and the final heads on the stem's and the four stages' outputs."""
        x = feats[4]
        outs = []
        for level, fusion in enumerate(self.fusion):
            x = fusion(x, feats[3 - level])
            if level > 0:  # level 1 with stage 1's features, level 2 with the stem's
                outs.append(self.head_deep[level - 1](x) + self.head_skip[level - 1](feats[2 - level]))
        return {"heatmaps_tags": outs[0], "heatmaps": outs[1]}


class _Front(nn.Module):
    """:meth:`LitePose.split`'s front."""

    def __init__(self, net: LitePose, front_blocks: int):
        super().__init__()
        self.net, self.front_blocks = net, front_blocks

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = [self.net.stem(self.net.normalise(image))]
        x = self.net.run_blocks(feats[0], 0, self.front_blocks, feats)
        return {**{f"features_{i}": f for i, f in enumerate(feats)}, "blocks_out": x}


class _Back(nn.Module):
    """:meth:`LitePose.split`'s back: the front's outputs, in order, -> the heads."""

    def __init__(self, net: LitePose, front_blocks: int):
        super().__init__()
        self.net, self.front_blocks = net, front_blocks

    def forward(self, *parts: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = list(parts[:-1])
        self.net.run_blocks(parts[-1], self.front_blocks, None, feats)
        return self.net.heads(feats)


def macs(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of the convolutions and transposed convolutions of one forward pass on one
    (1, 3, H, W) input (torch's ``FlopCounterMode`` count halved: it counts a multiply-add as 2 FLOPs)."""
    from . import complexity

    return round(complexity(model, input_hw)[1] / 2)
