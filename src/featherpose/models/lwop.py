"""Lightweight OpenPose (Osokin 2018, seeds 000 / 001): MobileNetV1 trunk + CPM + initial stage + refinement stages.

Shapes (batch B, input [H, W] multiples of 8, grid [h, w] = [H/8, W/8], stages S = 1 + num_refinement_stages):
    input   (B, 3, H, W) float, raw 0..255 pixel values, **BGR** channel order (as Intel's IR and the reference
            take them, and as ``golden/lwop/*/input.npy`` holds them); ``rgb_input=True`` takes RGB instead
            (the channels are flipped first), which is what the other families take (MoveNet: RGB 0..255).
            Normalisation is inside the network.
    output  dict of raw head tensors, NCHW, no activation (the last stage's):
        heatmaps (B, K + 1, h, w)  K keypoint heatmaps, then the background channel (K = 18: OpenPose order)
        pafs     (B, 2L, h, w)     part affinity fields, L limbs x (x, y)
      in training mode also every stage's, for intermediate supervision:
        stages_heatmaps (B, S, K + 1, h, w), stages_pafs (B, S, 2L, h, w)

Two variants (``LwopConfig.variant``):
    ``ir``         Intel's Open Model Zoo ``human-pose-estimation-0001`` (the bundled weights): the CPM has an
                   extra 1x1 conv (``red``, ELU) before its three depthwise blocks, its ``align`` conv uses ELU,
                   a refinement stage reads ``concat(pafs, heatmaps, features)``, and the input is normalised
                   as the IR does in f16 constants: ``x * 0.0039215087890625 - 0.501953125`` (~ (x - 128) / 255).
    ``reference``  the PyTorch class of Daniil-Osokin/lightweight-human-pose-estimation.pytorch: no ``red``, ReLU
                   on ``align``, ``concat(features, heatmaps, pafs)``, input ``(x - 128) / 256``.
With ``batch_norm`` (for training from scratch) BatchNorm follows the convolutions that have it in the
reference (MobileNet trunk, refinement trunks); Intel's IR has it folded into the convolution biases.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

VARIANTS = ("ir", "reference")
#: The IR's f16 input constants: 1028 / 2^18 (~1 / 255) and -1028 / 2^11 (~ -128 / 255).
IR_INPUT_SCALE = 0.0039215087890625
IR_INPUT_SHIFT = -0.501953125
#: MobileNetV1 trunk (conv4_2's stride removed, conv5_1 dilated): (name, cin, cout, stride, dilation);
#: ``conv1`` is a full 3x3 conv, every other entry a depthwise 3x3 (``_dw``) + pointwise 1x1 (``_sep``) pair.
MOBILENET = (("conv1", 3, 32, 2, 1), ("conv2_1", 32, 64, 1, 1), ("conv2_2", 64, 128, 2, 1),
             ("conv3_1", 128, 128, 1, 1), ("conv3_2", 128, 256, 2, 1), ("conv4_1", 256, 256, 1, 1),
             ("conv4_2", 256, 512, 1, 1), ("conv5_1", 512, 512, 1, 2), ("conv5_2", 512, 512, 1, 1),
             ("conv5_3", 512, 512, 1, 1), ("conv5_4", 512, 512, 1, 1), ("conv5_5", 512, 512, 1, 1))
STRIDE = 8
#: Raw pixel value of the padding: 128 is exactly 0 after either variant's normalisation (the reference pads
#: with 0 after normalising).
PAD_VALUE = 128


@dataclass
class LwopConfig:
    """Hyper-parameters of a Lightweight OpenPose network (everything needed to rebuild it).

    Attributes:
        num_keypoints: K heatmap channels besides the background (18: OpenPose's keypoints).
        num_pafs: PAF channels, 2 per limb (38: 19 limbs).
        num_refinement_stages: refinement stages after the initial one (1 in the paper's fast model and the IR).
        channels: width of the CPM, stages and refinement blocks (128).
        input_size: default input height in pixels (a multiple of 8); the width follows the image.
        variant: ``ir`` (Intel's IR, the bundled weights) or ``reference`` (the reference PyTorch class).
        batch_norm: BatchNorm where the reference has it (training from scratch).
        rgb_input: the input is RGB (flipped to the BGR the weights expect first); False: BGR.
    """

    num_keypoints: int = 18
    num_pafs: int = 38
    num_refinement_stages: int = 1
    channels: int = 128
    input_size: int = 256
    variant: str = "ir"
    batch_norm: bool = False
    rgb_input: bool = False

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Lightweight OpenPose variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.num_refinement_stages < 0:
            raise ValueError(f"num_refinement_stages must be >= 0, got {self.num_refinement_stages}")

    def to_dict(self) -> dict:
        return asdict(self)


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1,
         act: type[nn.Module] | None = nn.ReLU, batch_norm: bool = False) -> nn.Sequential:
    """Conv2d ("same" padding: ``dilation * (kernel // 2)`` on every side) [+ BatchNorm] [+ activation];
    the convolution is always index 0, with a bias unless BatchNorm follows."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, groups,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def mobilenet(batch_norm: bool) -> nn.Sequential:
    """The trunk: (B, 3, H, W) normalised -> (B, 512, H/8, W/8); children named as the IR's convolutions."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, cin, cout, stride, dilation in MOBILENET:
        if name == "conv1":
            layers[name] = conv(cin, cout, 3, stride, batch_norm=batch_norm)
            continue
        layers[f"{name}_dw"] = conv(cin, cin, 3, stride, dilation, groups=cin, batch_norm=batch_norm)
        layers[f"{name}_sep"] = conv(cin, cout, 1, batch_norm=batch_norm)
    return nn.Sequential(layers)


class Cpm(nn.Module):
    """Convolutional pose machine adapter: (B, 512, h, w) -> (B, C, h, w).

    ``a = align(x)``; ``f = conv(a + trunk(red(a)))`` (the ``ir`` variant; ``reference`` has no ``red`` and
    ReLU on ``align``); ``trunk`` is three [depthwise 3x3, pointwise 1x1] pairs, all ELU.
    """

    def __init__(self, cin: int, channels: int, variant: str):
        super().__init__()
        ir = variant == "ir"
        self.align = conv(cin, channels, act=nn.ELU if ir else nn.ReLU)
        self.red = conv(channels, channels, act=nn.ELU) if ir else nn.Identity()
        pairs: OrderedDict[str, nn.Module] = OrderedDict()
        for i, last in ((1, "dw1_1x1"), (2, "dw2_1x1"), (3, "inc")):
            pairs[f"dw{i}"] = conv(channels, channels, 3, groups=channels, act=nn.ELU)
            pairs[last] = conv(channels, channels, act=nn.ELU)
        self.trunk = nn.Sequential(pairs)
        self.conv = conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.align(x)
        return self.conv(a + self.trunk(self.red(a)))


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv(cin, hidden), conv(hidden, cout, act=None))


class InitialStage(nn.Module):
    """Three 3x3 convs (ReLU), then the heatmap and PAF heads (1x1 to 512, ReLU, 1x1 to the outputs)."""

    def __init__(self, channels: int, num_heatmaps: int, num_pafs: int):
        super().__init__()
        self.trunk = nn.Sequential(*(conv(channels, channels, 3) for _ in range(3)))
        self.heatmaps = _head(channels, 512, num_heatmaps)
        self.pafs = _head(channels, 512, num_pafs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.trunk(x)
        return self.heatmaps(t), self.pafs(t)


class RefinementBlock(nn.Module):
    """``s = ReLU(1x1(x))``; out ``s + ReLU(3x3 dilation 2 (ReLU(3x3(s))))``."""

    def __init__(self, cin: int, channels: int, batch_norm: bool):
        super().__init__()
        self.initial = conv(cin, channels)
        self.trunk = nn.Sequential(conv(channels, channels, 3, batch_norm=batch_norm),
                                   conv(channels, channels, 3, dilation=2, batch_norm=batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.initial(x)
        return s + self.trunk(s)


class RefinementStage(nn.Module):
    """Five refinement blocks on the concatenated input, then heatmap and PAF heads (1x1 C, ReLU, 1x1 out)."""

    def __init__(self, cin: int, channels: int, num_heatmaps: int, num_pafs: int, batch_norm: bool):
        super().__init__()
        self.blocks = nn.Sequential(RefinementBlock(cin, channels, batch_norm),
                                    *(RefinementBlock(channels, channels, batch_norm) for _ in range(4)))
        self.heatmaps = _head(channels, channels, num_heatmaps)
        self.pafs = _head(channels, channels, num_pafs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.blocks(x)
        return self.heatmaps(t), self.pafs(t)


class LightweightOpenPose(nn.Module):
    """Lightweight OpenPose; ``forward`` returns raw head tensors (see the module docstring)."""

    def __init__(self, config: LwopConfig | None = None, **overrides):
        super().__init__()
        self.config = cfg = config or LwopConfig(**overrides)
        heatmaps, pafs, c = cfg.num_keypoints + 1, cfg.num_pafs, cfg.channels
        self.backbone = mobilenet(cfg.batch_norm)
        self.cpm = Cpm(512, c, cfg.variant)
        self.initial = InitialStage(c, heatmaps, pafs)
        self.refinement = nn.ModuleList(RefinementStage(c + heatmaps + pafs, c, heatmaps, pafs, cfg.batch_norm)
                                        for _ in range(cfg.num_refinement_stages))

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) raw 0..255 (BGR, or RGB with ``rgb_input``) -> the normalised BGR input of the trunk."""
        if self.config.rgb_input:
            image = image.flip(1)
        if self.config.variant == "ir":  # the IR's Multiply then Add, each rounded to float32
            return image * IR_INPUT_SCALE + IR_INPUT_SHIFT
        return (image - 128.0) / 256.0

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """CPM features (B, C, H/8, W/8) of an image batch (see :meth:`normalise`)."""
        h, w = image.shape[-2:]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"Lightweight OpenPose input {w}x{h}: height and width must be multiples of {STRIDE}")
        return self.cpm(self.backbone(self.normalise(image)))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(image)
        heatmaps, pafs = self.initial(feats)
        stages = [(heatmaps, pafs)]
        for stage in self.refinement:
            order = (pafs, heatmaps, feats) if self.config.variant == "ir" else (feats, heatmaps, pafs)
            heatmaps, pafs = stage(torch.cat(order, dim=1))
            stages.append((heatmaps, pafs))
        out = {"heatmaps": heatmaps, "pafs": pafs}
        if self.training:
            out["stages_heatmaps"] = torch.stack([s[0] for s in stages], dim=1)
            out["stages_pafs"] = torch.stack([s[1] for s in stages], dim=1)
        return out


#: Suffixes of a convolution weight stored as Intel's IR stores it (see :func:`dequantise`).
QUANTISED = (".weight_int8", ".weight_scale", ".weight_zero_point")


def dequantise(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every int8-stored convolution weight made float32; other tensors unchanged.

    A weight stored as ``<conv>.weight_int8`` (O, I, kh, kw) integer values, ``<conv>.weight_scale`` and
    ``<conv>.weight_zero_point`` (O, 1, 1, 1) becomes ``<conv>.weight = (q - zero_point) * scale``, computed
    exactly in float64 (at most 36 significant bits) and rounded once to float32: the weights OpenVINO's float
    build of Intel's IR uses (its ``(float32(q) - float32(zp)) * float32(scale)`` gives the same bits).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(QUANTISED[0]):
            base = key[: -len(QUANTISED[0])]
            q, scale, zero = (state[base + s].double() for s in QUANTISED)
            out[base + ".weight"] = ((q - zero) * scale).float()
        elif not key.endswith(QUANTISED[1:]):
            out[key] = value
    return out


def reference_input(image_bgr: np.ndarray, height: int = 256) -> tuple[np.ndarray, float, tuple[int, int, int, int]]:
    """The network input the reference demo (``infer_fast``) makes of an image, bit for bit.

    ``image_bgr`` (h, w, 3) uint8 BGR (``cv2.imread(path, cv2.IMREAD_COLOR)``) is resized by
    ``scale = height / h`` on both axes (``cv2.resize`` with ``fx = fy = scale``, bilinear), then padded with
    raw :data:`PAD_VALUE` to ``ceil(height / 8) * 8`` x ``ceil(max(w', height) / 8) * 8``, centred (the odd
    pixel at the bottom / right).

    Returns:
        (float32 (1, 3, H, W) BGR 0..255, as ``golden/lwop/*/input.npy``; ``scale`` in input pixels per image
        pixel; the padding (top, left, bottom, right) in input pixels). An input point (x, y) is image point
        ``((x - left) / scale, (y - top) / scale)``.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
    scale = height / image_bgr.shape[0]
    scaled = cv2.resize(image_bgr, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = scaled.shape[:2]
    out_h = math.ceil(height / STRIDE) * STRIDE
    out_w = math.ceil(max(w, height) / STRIDE) * STRIDE
    top, left = (out_h - h) // 2, (out_w - w) // 2
    padded = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    padded[top:top + h, left:left + w] = scaled
    x = padded.transpose(2, 0, 1)[None].astype(np.float32)
    return x, scale, (top, left, out_h - h - top, out_w - w - left)
