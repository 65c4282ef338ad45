"""ONNX export: the network with its input conversion (int32 NHWC RGB -> float NCHW) inside the graph, optionally with
TF's letterbox in front (``letterbox=True``: the graph takes the frame itself)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path, cache_dir
from ..image import letterbox_tables


class NHWCInput(nn.Module):
    """Wraps a network so it takes the (B, H, W, 3) integer image batch the preprocessing produces,
    optionally followed by an in-graph decoder (heads dict -> one ``decoded`` tensor)."""

    def __init__(self, model: nn.Module, decoder: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.model(image.permute(0, 3, 1, 2).float())
        return (self.decoder(heads),) if self.decoder is not None else tuple(heads.values())


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
    letterboxed input itself (:data:`LETTERBOXED`)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.letterbox = GraphLetterbox()
        self.inner = inner

    def forward(self, *frame_and_tables: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = self.letterbox(*frame_and_tables)
        return (*self.inner(image), image)


#: the ONNX opset of every export
OPSET = 17
#: the inputs of a graph exported with ``letterbox=True``, in order: the frame, then its LetterboxTables
LETTERBOX_INPUTS = ["frame", "rows", "elements", "row_weights", "element_weights"]
#: its last output: the network input the letterbox made
LETTERBOXED = "letterboxed"


#: exports kept in ``~/.cache/featherpose/onnx`` (the most recently used; an export takes 1-4 s of a process's start)
CACHED_EXPORTS = 16


@functools.cache
def _source_digest() -> bytes:
    """sha256 of every featherpose source file: any change to the code can change a graph, so none survives one."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.parent.rglob("*.py")):
        h.update(f.as_posix().encode() + f.read_bytes())
    return h.digest()


def _export_key(modules: tuple[nn.Module | None, ...], settings: tuple) -> str:
    """What an export depends on: the code (:func:`_source_digest`), torch's version, ``settings`` (the export's
    arguments), and each module's every submodule: its type, its plain attributes (configs, flags; arrays by value),
    its parameters and buffers by name, dtype, shape and value."""
    h = hashlib.sha256(_source_digest())
    h.update(repr((torch.__version__, OPSET, settings)).encode())
    for i, module in enumerate(modules):
        for name, sub in module.named_modules(prefix=str(i)) if module is not None else ():
            plain = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
            h.update(f"{name}:{type(sub).__qualname__}:{sorted(plain.items(), key=lambda kv: kv[0])!r}".encode())
            for v in plain.values():
                if isinstance(v, (np.ndarray, torch.Tensor)):  # their repr elides the middle of large ones
                    h.update(np.ascontiguousarray(v).tobytes())
            for tname, t in [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]:
                h.update(f"{tname}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _cached(modules: tuple[nn.Module | None, ...], settings: tuple, export: Callable[[], bytes]) -> bytes:
    """``export()``'s ONNX bytes, or the same export of the same code, ``modules`` and ``settings`` read back from
    ``~/.cache/featherpose/onnx`` (the :data:`CACHED_EXPORTS` most recently used are kept): a model is exported
    once per machine, not in every process that loads it."""
    path = cache_dir("onnx") / f"{_export_key(modules, settings)}.onnx"
    try:
        data = path.read_bytes()
        os.utime(path)  # recently used
        return data
    except OSError:
        pass
    data = export()
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs the next process the export
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        kept = sorted(path.parent.glob("*.onnx"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in kept[CACHED_EXPORTS:]:
            old.unlink(missing_ok=True)
    return data


def _export(wrapper: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str],
            axes: dict | None) -> bytes:
    """``wrapper`` traced on ``args`` to ONNX bytes (the TorchScript exporter, its warnings muted)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper.eval(), args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)
    return buf.getvalue()


def _spatial_axes(names: list[str]) -> dict[str, dict[int, str]]:
    """Dynamic height and width axes of NCHW tensors, named per tensor (at different strides, sizes differ)."""
    return {n: {2: f"{n}_h", 3: f"{n}_w"} for n in names}


def export_onnx(model: nn.Module, input_hw: tuple[int, int], path: str | Path | None = None,
                decoder: nn.Module | None = None, dynamic_size: bool = False, letterbox: bool = False) -> bytes | Path:
    """Export ``model`` for a fixed input size (H, W), or for any size (traced at ``input_hw``).

    The graph takes ``image`` (1, H, W, 3) int32 RGB and outputs the raw heads (1, C, h, w) by name.

    Args:
        dynamic_size: the input height and width are dynamic axes (``height``, ``width``; each head's its own,
            ``<head>_h``, ``<head>_w``), for models whose input size follows the image (Lightweight OpenPose: any
            width; Lite Pose: the long side); it is traced at ``input_hw``.
        decoder: an in-graph decoder (a codec's ``graph_decoder()``, see :class:`featherpose.codecs.base.Codec`); when
            given, the graph outputs the decoded keypoints as ``decoded`` instead of the raw heads.
        letterbox: TF's letterbox to the fixed ``input_hw`` in the graph (:class:`LetterboxedNetwork`): the inputs are
            :data:`LETTERBOX_INPUTS`, the frame (1, H, W, 3) uint8 of any size and its tables, and the network input
            the letterbox made is the last output, :data:`LETTERBOXED`. Not with ``dynamic_size``.

    Returns:
        The ONNX bytes when ``path`` is None, else the path written (atomically).
    """
    if letterbox and dynamic_size:
        raise ValueError("letterbox=True letterboxes to a fixed input size; it does not go with dynamic_size")
    model = model.eval()

    def export() -> bytes:
        with torch.no_grad():
            names = ["decoded"] if decoder is not None else list(model(torch.zeros(1, 3, *input_hw)).keys())
        if letterbox:
            hw = (int(input_hw[0]), int(input_hw[1]))
            tables = tuple(torch.from_numpy(t.copy()) for t in letterbox_tables(hw, hw))  # traced on the identity
            return _export(LetterboxedNetwork(NHWCInput(model, decoder)), (torch.zeros(1, *hw, 3, dtype=torch.uint8),
                           *tables), LETTERBOX_INPUTS, [*names, LETTERBOXED], {"frame": {1: "height", 2: "width"}})
        axes = {"image": {1: "height", 2: "width"}, **({} if decoder is not None else _spatial_axes(names))}
        return _export(NHWCInput(model, decoder), (torch.zeros(1, *input_hw, 3, dtype=torch.int32),), ["image"],
                       names, axes if dynamic_size else None)

    data = _cached((model, decoder), ("network", tuple(input_hw), dynamic_size, letterbox), export)
    if path is None:
        return data
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


class _Parts(nn.Module):
    """The back of a split network (:func:`export_onnx_split`): the front's outputs in, the heads out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *parts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(*parts).values())


def export_onnx_split(front: nn.Module, back: nn.Module, input_hw: tuple[int, int],
                      dynamic_size: bool = False) -> tuple[bytes, bytes]:
    """A network split in two (e.g. :meth:`featherpose.models.litepose.LitePose.split`) as two ONNX graphs: the
    front as :func:`export_onnx` exports a network (``image`` in; its dict's tensors out, by name), the back taking
    the front's outputs in order (``part_0``, ``part_1``, ...; NCHW float; a part the back does not use is not
    among its inputs) and giving the heads by name. ``dynamic_size``: every height and width axis is dynamic."""
    front_onnx = export_onnx(front, input_hw, dynamic_size=dynamic_size)
    back = back.eval()

    def export_back() -> bytes:
        with torch.no_grad():
            parts = tuple(front.eval()(torch.zeros(1, 3, *input_hw)).values())
            names = list(back(*parts).keys())
        inputs = [f"part_{i}" for i in range(len(parts))]
        return _export(_Parts(back), parts, inputs, names,
                       {**_spatial_axes(inputs), **_spatial_axes(names)} if dynamic_size else None)

    return front_onnx, _cached((front, back), ("split back", tuple(input_hw), dynamic_size), export_back)
