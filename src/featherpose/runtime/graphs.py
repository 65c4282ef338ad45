"""The torch modules an ONNX export traces: the network behind its input conversion (int32 NHWC RGB -> float NCHW)
and optional in-graph decoder, TF's letterbox as a graph in front, the back half of a split network. Imported by
:mod:`.export` only when it exports (a process whose exports are cached never imports torch)."""
from __future__ import annotations

import inspect

import torch
from torch import nn


class NHWCInput(nn.Module):
    """Wraps a network so it takes the (B, H, W, 3) integer image batch the preprocessing produces,
    optionally followed by an in-graph decoder (heads dict -> one ``decoded`` tensor). A decoder with a
    ``sparse_heads`` attribute gets those heads as functions of grid cells where the network's ``forward`` takes
    ``sparse`` (MoveNet's), so the graph computes them only where it reads them; other networks give whole maps."""

    def __init__(self, model: nn.Module, decoder: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = image.permute(0, 3, 1, 2).float()
        if self.decoder is None:
            return tuple(self.model(image).values())
        # a decoder that reads some heads at a few cells only names them; a network that can (its forward takes
        # ``sparse``) then computes just those cells
        sparse = getattr(self.decoder, "sparse_heads", ())
        if sparse and "sparse" in inspect.signature(self.model.forward).parameters:
            return (self.decoder(self.model(image, sparse=sparse)),)
        return (self.decoder(self.model(image)),)


class GraphLetterbox(nn.Module):
    """:func:`featherpose.image.resize_with_pad` as a graph: the frame (1, H, W, 3) uint8 and its
    :class:`~featherpose.image.LetterboxTables` in, the (1, Hi, Wi, 3) network input out (float32 whole numbers: no
    int32 round trip in front of the network's own conversion to float). The same float32 operations in the same
    order as the numpy code (TF's ``a + (b - a) * t`` along x, then y; truncation), as gathers and one elementwise
    pass that the runtime spreads over its threads: bit for bit in torch; a runtime that fuses the multiply-adds
    (OpenVINO) can round a value across an integer (see ``runtime/openvino.py``)."""

    def forward(self, frame: torch.Tensor, rows: torch.Tensor, elements: torch.Tensor, row_weights: torch.Tensor,
                element_weights: torch.Tensor) -> torch.Tensor:
        src = frame[0].flatten(1)  # (H, 3 W): a row's elements

        def along_x(source_rows: torch.Tensor) -> torch.Tensor:
            r = src.index_select(0, source_rows)
            left, right = r.index_select(1, elements[0]).float(), r.index_select(1, elements[1]).float()
            return left + (right - left) * element_weights[0]

        top, bottom = along_x(rows[0]), along_x(rows[1])
        image = torch.floor(top + (bottom - top) * row_weights[0]) * row_weights[1] * element_weights[1]
        return image.view(1, rows.shape[1], -1, 3)


class LetterboxedNetwork(nn.Module):
    """:class:`GraphLetterbox` in front of ``inner`` (an :class:`NHWCInput`): the network's outputs, then the
    letterboxed input itself (``letterboxed``)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.letterbox = GraphLetterbox()
        self.inner = inner

    def forward(self, *frame_and_tables: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = self.letterbox(*frame_and_tables)
        return (*self.inner(image), image)


class Parts(nn.Module):
    """The back of a split network (:func:`~featherpose.runtime.export.export_onnx_split`): the front's outputs in,
    the heads out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *parts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(*parts).values())
