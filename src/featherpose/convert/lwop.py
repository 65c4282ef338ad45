"""Import Intel's ``human-pose-estimation-0001`` OpenVINO IR (Lightweight OpenPose) into
:class:`featherpose.models.lwop.LightweightOpenPose` (variant ``ir``).

Each of the IR's 58 convolutions is matched by name to one ``nn.Conv2d`` (:func:`module_path`); its stride,
dilation, padding, groups, bias and following activation (ReLU, ELU alpha 1, or none) are checked against
the module's. Any IR convolution without a module, or module convolution without an IR one, fails the import.

Weights: the IR holds them as int8 ``q`` with per-output-channel f16 ``scale`` and f16 ``zero_point`` (0 or
+-2^-17), dequantised in the graph as ``(q - zero_point) * scale``. That product has up to 36 significant
bits: float32 (24) cannot hold it on the channels whose zero point is not 0 (1,076,839 of the 4,086,848
weights), float64 can. The weight file therefore stores the IR's own ``q`` (int8), ``scale`` and ``zero_point``
(f16) unchanged, as ``<conv>.weight_int8`` / ``.weight_scale`` / ``.weight_zero_point``, and the network gets
:func:`featherpose.models.lwop.dequantise`'s float32 weights (the exact product rounded once, which is also
what OpenVINO's float build computes). Biases are f16 in the IR and stored as f16 (exact).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..codecs.openpose import PafCodec
from ..fileio import check_writable
from ..models.lwop import IR_INPUT_SCALE, IR_INPUT_SHIFT, QUANTISED, LightweightOpenPose, LwopConfig
from ..skeletons import OPENPOSE18, skeleton_to_json
from ..weights_io import WeightsFile, save_weights
from .openvino_ir import IRGraph, Layer, read_ir

NAME = "lightweight-openpose"
IR_NAME = "human-pose-estimation-0001"
#: Convolutions in Intel's IR.
NUM_CONVS = 58
LWOP_LICENSE = "Apache-2.0 (Intel Open Model Zoo, human-pose-estimation-0001)"
#: The IR's config: one refinement stage, the ``ir`` variant, BGR input, height 256 by default.
IR_CONFIG = LwopConfig()
#: The bundled model's: the IR's, taking RGB as every featherpose pipeline feeds it (Estimator, trainer).
BUNDLED_CONFIG = replace(IR_CONFIG, rgb_input=True)
_ACTS = {"ReLU": nn.ReLU, "Elu": nn.ELU}
#: sha256 of the FP16-INT8 files as Open Model Zoo 2021.4's ``model.yml`` lists them (weights README).
OMZ_FP16_INT8_SHA256 = {"xml": "581b082e749848fdfc6d4b4b70e8189c3c2bae1c2d59c6b2c1a026a5471754e3",
                        "bin": "df2a9f41f15c3a0c8a0c5a704650338a3cc5c7bb588f2bfc14ea7093fa37b446"}


def module_path(ir_name: str) -> str:
    """The dotted path of the ``nn.Conv2d`` an IR convolution's weights go to (ValueError when none).

    E.g. ``conv2_1/dw`` -> ``backbone.conv2_1_dw.0``, ``conv4_3_CPM/dw2/1x1/WithoutBiases`` ->
    ``cpm.trunk.dw2_1x1.0``, ``Mconv3_stage2_L1/3x3/2/WithoutBiases`` -> ``refinement.0.blocks.2.trunk.1.0``.
    """
    name = ir_name.removesuffix("/WithoutBiases")
    if name == "conv1":
        return "backbone.conv1.0"
    if m := re.fullmatch(r"(conv[2-5]_\d)/(dw|sep)", name):
        return f"backbone.{m[1]}_{m[2]}.0"
    if m := re.fullmatch(r"conv4_3_CPM/(al|red|dw[123]|dw[12]/1x1|inc)", name):
        part = {"al": "align", "red": "red"}.get(m[1])
        return f"cpm.{part}.0" if part else f"cpm.trunk.{m[1].replace('/', '_')}.0"
    if name == "conv4_4_CPM":
        return "cpm.conv.0"
    if m := re.fullmatch(r"conv5_([1-3])_CPM_L1", name):
        return f"initial.trunk.{int(m[1]) - 1}.0"
    if m := re.fullmatch(r"conv5_([45])_CPM_L([12])", name):
        return f"initial.{'pafs' if m[2] == '1' else 'heatmaps'}.{int(m[1]) - 4}.0"
    if m := re.fullmatch(r"Mconv([1-5])_stage(\d+)_L1/(sq|3x3|3x3/2)", name):
        part = {"sq": "initial.0", "3x3": "trunk.0.0", "3x3/2": "trunk.1.0"}[m[3]]
        return f"refinement.{int(m[2]) - 2}.blocks.{int(m[1]) - 1}.{part}"
    if m := re.fullmatch(r"Mconv([67])_stage(\d+)_L([12])", name):
        return f"refinement.{int(m[2]) - 2}.{'pafs' if m[3] == '1' else 'heatmaps'}.{int(m[1]) - 6}.0"
    raise ValueError(f"no Lightweight OpenPose module for the IR convolution {ir_name!r}")


def _only_consumer(graph: IRGraph, layer: Layer) -> Layer:
    consumers = graph.consumers[layer.id]
    if len(consumers) != 1:
        raise ValueError(f"{layer.name!r} feeds {len(consumers)} layers, expected 1")
    return graph.layers[consumers[0]]


def _activation_after(graph: IRGraph, add: Layer) -> type[nn.Module] | None:
    """The activation an IR conv's bias Add feeds (ReLU, ELU alpha 1), or None for a linear output."""
    types = [graph.layers[i] for i in graph.consumers[add.id]]
    acts = [t for t in types if t.type in _ACTS]
    if len(acts) == 1 and len(types) == 1:
        if acts[0].type == "Elu" and float(acts[0].data.get("alpha", "1")) != 1.0:
            raise ValueError(f"{acts[0].name!r}: ELU alpha {acts[0].data['alpha']}, expected 1")
        return _ACTS[acts[0].type]
    if acts:
        raise ValueError(f"{add.name!r}: an activation and other layers read it")
    return None


def quantised_weights(graph: IRGraph, conv: Layer) -> dict[str, np.ndarray]:
    """An IR convolution's int8 weight ``q``, f16 ``scale`` and ``zero_point`` (O, 1, 1, 1), as stored.

    Raises:
        ValueError: the weight is not ``[Reshape](Multiply(Subtract(Convert(Const i8), Const f16), Const f16))``.
    """
    node = graph.input_of(conv, 1)
    if node.type == "Reshape":
        node = graph.input_of(node, 0)
    ok = node.type == "Multiply" and graph.input_of(node, 0).type == "Subtract"
    if ok:
        sub, scale = graph.input_of(node, 0), graph.input_of(node, 1)
        cvt, zero = graph.input_of(sub, 0), graph.input_of(sub, 1)
        ok = (cvt.type == "Convert" and graph.input_of(cvt, 0).type == "Const" and scale.type == "Const"
              and zero.type == "Const" and graph.input_of(cvt, 0).data.get("element_type") == "i8"
              and scale.data.get("element_type") == zero.data.get("element_type") == "f16")
    if not ok:
        raise ValueError(f"{conv.name!r}: weights are {'(' .join(graph.chain(graph.input_of(conv, 1)))}, not an "
                         "int8 Const -> Convert -> Subtract(f16 zero point) -> Multiply(f16 scale) chain")
    return {"q": graph.const(graph.input_of(cvt, 0)), "scale": graph.const(scale), "zero_point": graph.const(zero)}


def _check_geometry(conv: Layer, module: nn.Conv2d, path: str) -> None:
    dilation = conv.ints("dilations") or (1, 1)
    found = {"stride": conv.ints("strides"), "dilation": dilation, "padding": conv.ints("pads_begin"),
             "padding_end": conv.ints("pads_end")}
    expected = {"stride": module.stride, "dilation": module.dilation, "padding": module.padding,
                "padding_end": module.padding}
    for key, value in found.items():
        if tuple(value) != tuple(expected[key]):
            raise ValueError(f"{conv.name!r}: {key} {tuple(value)} but {path} has {tuple(expected[key])}")
    if conv.data.get("auto_pad", "explicit") not in ("explicit", "notset"):
        raise ValueError(f"{conv.name!r}: auto_pad {conv.data['auto_pad']!r}, expected explicit pads")


def _check_input_normalisation(graph: IRGraph) -> None:
    """The IR's input Multiply / Add constants are the ones the ``ir`` variant hard-codes."""
    params = graph.by_type("Parameter")
    if len(params) != 1:
        raise ValueError(f"{len(params)} inputs, expected 1 (data)")
    mul = _only_consumer(graph, params[0])
    add = _only_consumer(graph, mul)
    if mul.type != "Multiply" or add.type != "Add":
        raise ValueError(f"the input feeds {mul.type} -> {add.type}, expected Multiply -> Add (normalisation)")
    scale, shift = graph.value(graph.input_of(mul, 1)), graph.value(graph.input_of(add, 1))  # per channel
    if not (np.all(scale == IR_INPUT_SCALE) and np.all(shift == IR_INPUT_SHIFT)):
        raise ValueError(f"input normalisation x * {scale.ravel()} + {shift.ravel()}, expected x * "
                         f"{IR_INPUT_SCALE} + {IR_INPUT_SHIFT} on every channel")


def lwop_tensors(graph: IRGraph, model: LightweightOpenPose) -> dict[str, torch.Tensor]:
    """Map all of the IR's convolutions onto ``model`` (variant ``ir``): the tensors of its weight file.

    Returns:
        For every ``nn.Conv2d`` at path P: ``P.weight_int8`` (int8, the module's weight shape),
        ``P.weight_scale`` and ``P.weight_zero_point`` (float32 holding the IR's f16 values exactly,
        (O, 1, 1, 1)) and ``P.bias`` (float32 holding the IR's f16 bias); :func:`~featherpose.models.lwop.dequantise`
        turns them into ``model``'s state dict.

    Raises:
        ValueError: an IR convolution has no module, a module convolution gets no weights, or a
            shape, stride, dilation, padding, group count or activation disagrees.
    """
    _check_input_normalisation(graph)
    modules = dict(model.named_modules())
    tensors: dict[str, torch.Tensor] = {}
    for conv in graph.by_type("Convolution", "GroupConvolution"):
        path = module_path(conv.name)
        module = modules.get(path)
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"{conv.name!r}: expected a Conv2d at {path}, found {type(module).__name__}")
        if f"{path}.weight_int8" in tensors:
            raise ValueError(f"{conv.name!r}: a second IR convolution maps to {path}")
        _check_geometry(conv, module, path)
        w = quantised_weights(graph, conv)
        groups = w["q"].shape[0] if conv.type == "GroupConvolution" else 1
        if groups != module.groups or w["q"].size != module.weight.numel():
            raise ValueError(f"{conv.name!r}: weight {w['q'].shape} in {groups} groups does not fit {path} "
                             f"{tuple(module.weight.shape)} in {module.groups} groups")
        out_channels = module.weight.shape[0]
        add = _only_consumer(graph, conv)
        bias = graph.input_of(add, 1) if add.type == "Add" else None
        if bias is None or bias.type != "Const" or graph.const(bias).size != out_channels:
            raise ValueError(f"{conv.name!r}: expected a bias Add of {out_channels} constants after it")
        parent = modules[path.rsplit(".", 1)[0]]
        act = next((type(m) for m in parent if isinstance(m, (nn.ReLU, nn.ELU))), None)
        if _activation_after(graph, add) is not act:
            raise ValueError(f"{conv.name!r}: the IR applies {_activation_after(graph, add)}, {path} {act}")
        tensors[f"{path}.weight_int8"] = torch.from_numpy(w["q"].reshape(module.weight.shape).copy())
        for key in ("scale", "zero_point"):
            tensors[f"{path}.weight_{key}"] = torch.from_numpy(
                w[key].astype(np.float32).reshape(out_channels, 1, 1, 1))
        tensors[f"{path}.bias"] = torch.from_numpy(graph.const(bias).astype(np.float32).reshape(out_channels))
    convs = {name[: -len(".weight")] for name in model.state_dict() if name.endswith(".weight")}
    found = {name[: -len(QUANTISED[0])] for name in tensors if name.endswith(QUANTISED[0])}
    if convs != found or len(found) != NUM_CONVS:
        raise ValueError(f"Lightweight OpenPose import incomplete: {len(found)} IR convolutions; modules without "
                         f"weights {sorted(convs - found)[:5]}, weights without modules {sorted(found - convs)[:5]}")
    return tensors


def import_lwop(xml_path: str | Path) -> tuple[LightweightOpenPose, dict[str, torch.Tensor], IRGraph]:
    """Read Intel's IR: (network with its weights, in eval mode; the weight file's tensors; the graph).

    Raises:
        FileNotFoundError: the .xml or its .bin is missing.
        ValueError: naming the file, when it is not Intel's ``human-pose-estimation-0001`` IR.
    """
    from ..models.lwop import dequantise

    graph = read_ir(xml_path)
    model = LightweightOpenPose(IR_CONFIG)
    try:
        tensors = lwop_tensors(graph, model)
        model.load_state_dict(dequantise(tensors))
    except (ValueError, KeyError, IndexError, RuntimeError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{xml_path}: not Intel's {IR_NAME} OpenVINO IR (Lightweight OpenPose): {why}; pass "
                         f"{IR_NAME}.xml (FP16-INT8, Open Model Zoo) with its .bin beside it") from None
    return model.eval(), tensors, graph


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_lwop(source: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert Intel's IR (``human-pose-estimation-0001.xml``, its .bin beside it, or their folder) into
    ``<out_dir>/lightweight-openpose.safetensors``; returns [that path].

    The file holds the IR's int8 weights, scales, zero points and biases unchanged (see the module docstring),
    :data:`BUNDLED_CONFIG` (RGB input), the OpenPose-18 skeleton and the reference's decoding settings.
    """
    check_writable(out_dir, "--out folder", folder=True)  # before any work
    source = Path(source)
    if source.is_dir():
        source = source / f"{IR_NAME}.xml"
    _, tensors, graph = import_lwop(source)
    hashes = {"xml": _sha256(graph.xml_path), "bin": _sha256(graph.bin_path)}
    official = ("equal to the FP16-INT8 entries of Open Model Zoo 2021.4 model.yml" if hashes == OMZ_FP16_INT8_SHA256
                else "NOT the FP16-INT8 files Open Model Zoo 2021.4 model.yml lists")
    provenance = (f"Intel Open Model Zoo {IR_NAME} (Lightweight OpenPose, Osokin 2018), OpenVINO IR v{graph.version}; "
                  f"{graph.xml_path.name} sha256 {hashes['xml']}, {graph.bin_path.name} sha256 {hashes['bin']} "
                  f"({official}); int8 weights with their f16 scales and zero points, and f16 biases, stored unchanged")
    return [save_weights(Path(out_dir) / f"{NAME}.safetensors", tensors, name=NAME, architecture="lwop",
                         config=BUNDLED_CONFIG.to_dict(), codec=_bundled_codec(), skeleton=skeleton_to_json(OPENPOSE18),
                         source=provenance, license=LWOP_LICENSE)]


def _bundled_codec() -> PafCodec:
    return PafCodec((BUNDLED_CONFIG.input_size, BUNDLED_CONFIG.input_size), BUNDLED_CONFIG.num_keypoints)


def ir_weights(xml_path: str | Path) -> WeightsFile:
    """What :func:`convert_lwop` writes for Intel's IR, in memory, without provenance: how ``featherpose.load``
    builds the network and codec of an ``.xml`` it runs in OpenVINO."""
    _, tensors, _ = import_lwop(xml_path)
    codec = _bundled_codec()
    meta = {"name": Path(xml_path).stem, "architecture": "lwop", "skeleton": skeleton_to_json(OPENPOSE18)}
    return WeightsFile(tensors, codec.arrays(), meta, BUNDLED_CONFIG.to_dict(), codec.to_dict(), Path(xml_path))
