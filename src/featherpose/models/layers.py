"""Layers shared by the network families: convolution blocks, channel rounding, and the runtime an ONNX export is
traced for.

Shapes are NCHW. Every block is an ``nn.Sequential`` or ``nn.Module`` whose sub-module names are
part of the weight files' state_dict keys (``ConvAct`` holds ``[pad,] conv, [bn,] [act]`` at
indices 0, 1, ...), so a network built from them keeps the keys of the files it was trained into.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import nn

#: the runtime an ONNX export in progress is traced for (:func:`exporting_for`); None in torch's own forward
_export_runtime: contextvars.ContextVar[str | None] = contextvars.ContextVar("export_runtime", default=None)


@contextlib.contextmanager
def exporting_for(runtime: str):
    """While an ONNX export for ``runtime`` ("onnxruntime", "openvino") is traced: a module whose fastest equivalent
    graph differs between runtimes reads which one with :func:`export_runtime` (Lite Pose's ``FusionLevel``)."""
    token = _export_runtime.set(runtime)
    try:
        yield
    finally:
        _export_runtime.reset(token)


def export_runtime() -> str | None:
    """The runtime of the ONNX export being traced (:func:`exporting_for`), None outside an export."""
    return _export_runtime.get()


def init_normal_(tensor: torch.Tensor, std: float) -> None:
    """``nn.init.normal_(tensor, std=std)``, skipped on torch's ``meta`` device (shapes only; there it would import
    torch's compiler, 1.3 s of every process that checks a weight file's shapes, ``families/base.rebuild_network``)."""
    if tensor.device.type != "meta":
        nn.init.normal_(tensor, std=std)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvAct(nn.Sequential):
    """Conv2d (+ BatchNorm) (+ activation).

    Args:
        cin, cout: input and output channels.
        kernel, stride, groups: of the convolution.
        act: activation class (built with ``inplace=True``), or None for a linear block.
        batch_norm: BatchNorm2d after the convolution.
        bias: a bias on the convolution; None (default) gives one only without BatchNorm.
        tf_same: pad like TensorFlow's ``SAME`` (a stride-2 convolution on an even input puts the
            extra zero row / column at the bottom / right, as Google's graphs do); False pads
            ``kernel // 2`` on every side (PyTorch's usual, the hourglass's).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6, batch_norm: bool = False, bias: bool | None = None,
                 tf_same: bool = True):
        layers: list[nn.Module] = []
        if tf_same and kernel > 1 and stride == 2:
            layers.append(nn.ZeroPad2d((kernel // 2 - 1, kernel // 2, kernel // 2 - 1, kernel // 2)))
            padding = 0
        else:
            padding = kernel // 2
        layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups,
                                bias=not batch_norm if bias is None else bias))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)

    @property
    def conv(self) -> nn.Conv2d:
        return next(m for m in self if isinstance(m, nn.Conv2d))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 project (linear),
    plus the input when the stride is 1 and the widths match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, batch_norm: bool):
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvAct(cin, hidden, batch_norm=batch_norm) if expansion != 1 else nn.Identity()
        self.depthwise = ConvAct(hidden, hidden, 3, stride, groups=hidden, batch_norm=batch_norm)
        self.project = ConvAct(hidden, cout, act=None, batch_norm=batch_norm)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class SeparableConv(nn.Sequential):
    """3x3 depthwise (no bias, no activation) -> 1x1 pointwise with bias -> ReLU."""

    def __init__(self, cin: int, cout: int, batch_norm: bool = False):
        super().__init__(ConvAct(cin, cin, 3, groups=cin, act=None, bias=False),
                         ConvAct(cin, cout, act=nn.ReLU, batch_norm=batch_norm))
