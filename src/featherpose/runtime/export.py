"""ONNX export: the network with its input conversion (int32 NHWC RGB -> float NCHW) inside the graph, optionally with
TF's letterbox in front (``letterbox=True``: the graph takes the frame itself); the graphs' modules are in
:mod:`.graphs`.

Exports are cached in ``~/.cache/featherpose/onnx``. A network may come as a :class:`LazyNetwork`, built only when its
export is not cached: a process that loads a model whose exports are cached never imports torch (2.2 s of a
`featherpose predict` start on this project's 2-core machines; :mod:`featherpose.zoo` hands the backends such a
network, named by its weight file and load arguments).
"""
from __future__ import annotations

import functools
import hashlib
import io
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..fileio import atomic_path, cache_dir, read_cached, write_cached
from ..image import letterbox_tables

if TYPE_CHECKING:
    import torch
    from torch import nn


#: the ONNX opset of every export
OPSET = 17
#: the inputs of a graph exported with ``letterbox=True``, in order: the frame, then its LetterboxTables
LETTERBOX_INPUTS = ["frame", "rows", "elements", "row_weights", "element_weights"]
#: its last output: the network input the letterbox made
LETTERBOXED = "letterboxed"


#: exports kept in ``~/.cache/featherpose/onnx`` (the most recently used; an export takes 1-4 s of a process's start)
CACHED_EXPORTS = 16


@functools.cache
def source_digest() -> bytes:
    """sha256 of every featherpose source file: any change to the code can change a graph, so none survives one."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.parent.rglob("*.py")):
        h.update(f.as_posix().encode() + f.read_bytes())
    return h.digest()


def torch_version() -> str:
    """The installed torch's version, read from its install (importing torch to ask takes 2 s)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


class LazyNetwork:
    """A torch network built on first use (:attr:`module`) and named by ``key`` for the export cache: its exports with
    the same settings are the same graphs, so a process that finds them cached never builds it.

    Args:
        key: what the network is made of and from (the zoo's: the code, the weight file, the load arguments); two
            networks with the same key must be the same network.
        build: () -> the network.
        parameter_count: its number of parameters (``backend="auto"``'s cache key names it).
        module: the network, when it is built already.
    """

    def __init__(self, key: str, build: Callable[[], nn.Module], parameter_count: int = 0,
                 module: nn.Module | None = None):
        self.key = key
        self._build = build
        self.parameter_count = parameter_count
        self._module = module

    @property
    def module(self) -> nn.Module:
        """The network (built now, in eval mode, if it was not, which imports torch)."""
        if self._module is None:
            self._module = self._build().eval()
        return self._module

    def part(self, name: str, build: Callable[[nn.Module], nn.Module]) -> LazyNetwork:
        """A network made from this one (an in-graph decoder, a half of a split), keyed by this one's key and
        ``name``; ``build`` takes this network."""
        return LazyNetwork(f"{self.key}:{name}", lambda: build(self.module))

    def __repr__(self) -> str:
        return f"LazyNetwork({self.key!r}, {'built' if self._module is not None else 'not built'})"


def module_of(network):
    """The torch module of a :class:`LazyNetwork` (built now if need be); anything else as it is."""
    return network.module if isinstance(network, LazyNetwork) else network


def graph_decoder(codec, network):
    """``codec``'s in-graph decoder for ``network``: for a :class:`LazyNetwork`, a part of it (built, and torch
    imported, only if its export is not cached), else the module (None where the codec decodes in NumPy)."""
    if isinstance(network, LazyNetwork):
        return network.part("decoder", lambda _: codec.graph_decoder()) if codec.decodes_in_graph else None
    return codec.graph_decoder()


def _export_key(modules: tuple, settings: tuple) -> str:
    """What an export depends on: the code (:func:`source_digest`), torch's version, ``settings`` (the export's
    arguments), and the modules: a :class:`LazyNetwork` by its key (when all are lazy), else each module's every
    submodule: its type, its plain attributes (configs, flags; arrays by value), its parameters and buffers by name,
    dtype, shape and value."""
    h = hashlib.sha256(source_digest())
    h.update(repr((torch_version(), OPSET, settings)).encode())
    if all(m is None or isinstance(m, LazyNetwork) for m in modules):
        h.update(repr([m.key if m is not None else None for m in modules]).encode())
        return "lazy-" + h.hexdigest()[:32]
    import torch

    for i, module in enumerate(map(module_of, modules)):
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


def _cached(modules: tuple, settings: tuple, export: Callable[[], bytes]) -> bytes:
    """``export()``'s ONNX bytes, or the same export of the same code, ``modules`` and ``settings`` read back from
    ``~/.cache/featherpose/onnx`` (the :data:`CACHED_EXPORTS` most recently used are kept): a model is exported
    once per machine, not in every process that loads it."""
    path = cache_dir("onnx") / f"{_export_key(modules, settings)}.onnx"
    data = read_cached(path)
    if data is None:
        data = export()
        write_cached(path, data, CACHED_EXPORTS)
    return data


def _export(wrapper: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str],
            axes: dict | None, runtime: str) -> bytes:
    """``wrapper`` traced for ``runtime`` (:func:`~featherpose.models.layers.exporting_for`) on ``args`` to ONNX
    bytes (the TorchScript exporter, its warnings muted)."""
    import torch

    from ..models.layers import exporting_for

    buf = io.BytesIO()
    with warnings.catch_warnings(), exporting_for(runtime):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper.eval(), args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)
    return buf.getvalue()


def _spatial_axes(names: list[str]) -> dict[str, dict[int, str]]:
    """Dynamic height and width axes of NCHW tensors, named per tensor (at different strides, sizes differ)."""
    return {n: {2: f"{n}_h", 3: f"{n}_w"} for n in names}


def export_onnx(model: nn.Module | LazyNetwork, input_hw: tuple[int, int], path: str | Path | None = None,
                decoder: nn.Module | LazyNetwork | None = None, dynamic_size: bool = False,
                letterbox: bool = False, runtime: str = "onnxruntime", cache: bool = True) -> bytes | Path:
    """Export ``model`` for a fixed input size (H, W), or for any size (traced at ``input_hw``).

    The graph takes ``image`` (1, H, W, 3) int32 RGB and outputs the raw heads (1, C, h, w) by name.

    Args:
        runtime: the runtime the graph is for, "onnxruntime" or "openvino": a layer may be written in other (equal)
            ops where that runtime runs them faster (:func:`~featherpose.models.layers.export_runtime`).
        dynamic_size: the input height and width are dynamic axes (``height``, ``width``; each head's its own,
            ``<head>_h``, ``<head>_w``), for models whose input size follows the image (Lightweight OpenPose: any
            width; Lite Pose: the long side); it is traced at ``input_hw``.
        decoder: an in-graph decoder (a codec's ``graph_decoder()``, see :class:`featherpose.codecs.base.Codec`); when
            given, the graph outputs the decoded keypoints as ``decoded`` instead of the raw heads.
        cache: read and write the export in the cache of exports (False: a network exported once, e.g. a search's
            random candidate, which would only push the bundled models' exports out).
        letterbox: TF's letterbox to the fixed ``input_hw`` in the graph (:class:`.graphs.LetterboxedNetwork`): the
            inputs are :data:`LETTERBOX_INPUTS`, the frame (1, H, W, 3) uint8 of any size and its tables, and the network input
            the letterbox made is the last output, :data:`LETTERBOXED`. Not with ``dynamic_size``.

    Returns:
        The ONNX bytes when ``path`` is None, else the path written (atomically).
    """
    if letterbox and dynamic_size:
        raise ValueError("letterbox=True letterboxes to a fixed input size; it does not go with dynamic_size")

    def export() -> bytes:
        net, dec = module_of(model).eval(), module_of(decoder)  # first: a LazyNetwork's build imports torch paused
        import torch

        from .graphs import LetterboxedNetwork, NHWCInput

        with torch.no_grad():
            names = ["decoded"] if dec is not None else list(net(torch.zeros(1, 3, *input_hw)).keys())
        if letterbox:
            hw = (int(input_hw[0]), int(input_hw[1]))
            tables = tuple(torch.from_numpy(t.copy()) for t in letterbox_tables(hw, hw))  # traced on the identity
            return _export(LetterboxedNetwork(NHWCInput(net, dec)), (torch.zeros(1, *hw, 3, dtype=torch.uint8),
                           *tables), LETTERBOX_INPUTS, [*names, LETTERBOXED], {"frame": {1: "height", 2: "width"}},
                           runtime)
        axes = {"image": {1: "height", 2: "width"}, **({} if dec is not None else _spatial_axes(names))}
        return _export(NHWCInput(net, dec), (torch.zeros(1, *input_hw, 3, dtype=torch.int32),), ["image"],
                       names, axes if dynamic_size else None, runtime)

    data = _cached((model, decoder), ("network", tuple(input_hw), dynamic_size, letterbox, runtime), export) \
        if cache else export()
    if path is None:
        return data
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def export_onnx_split(front: nn.Module | LazyNetwork, back: nn.Module | LazyNetwork, input_hw: tuple[int, int],
                      dynamic_size: bool = False, runtime: str = "openvino") -> tuple[bytes, bytes]:
    """A network split in two (e.g. :meth:`featherpose.models.litepose.LitePose.split`) as two ONNX graphs: the
    front as :func:`export_onnx` exports a network (``image`` in; its dict's tensors out, by name), the back taking
    the front's outputs in order (``part_0``, ``part_1``, ...; NCHW float; a part the back does not use is not
    among its inputs) and giving the heads by name. ``dynamic_size``: every height and width axis is dynamic.
    ``runtime``: as :func:`export_onnx`'s (a split runs in OpenVINO)."""
    front_onnx = export_onnx(front, input_hw, dynamic_size=dynamic_size, runtime=runtime)

    def export_back() -> bytes:
        head = module_of(back).eval()  # first: a LazyNetwork's build imports torch paused
        import torch

        from .graphs import Parts

        with torch.no_grad():
            parts = tuple(module_of(front).eval()(torch.zeros(1, 3, *input_hw)).values())
            names = list(head(*parts).keys())
        inputs = [f"part_{i}" for i in range(len(parts))]
        return _export(Parts(head), parts, inputs, names,
                       {**_spatial_axes(inputs), **_spatial_axes(names)} if dynamic_size else None, runtime)

    return front_onnx, _cached((front, back), ("split back", tuple(input_hw), dynamic_size, runtime), export_back)
