"""Reader for TensorFlow.js graph models (``model.json`` + binary weight shards), without TensorFlow.

A TFJS graph model is a JSON file holding a TensorFlow ``GraphDef`` (``modelTopology.node``)
and a ``weightsManifest`` that lists every constant tensor in the order its bytes appear in
the concatenated ``.bin`` shards. Tensors marked ``quantization: {dtype: float16}`` are stored
as IEEE half floats and widened to float32 here (exactly: every fp16 value is a float32 value).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import read_json

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QDTYPES = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


@dataclass
class GraphNode:
    """One node of the graph: op type, name, input names and raw attributes."""

    name: str
    op: str
    inputs: list[str]
    attr: dict = field(default_factory=dict)


@dataclass
class TFJSGraph:
    """A parsed TFJS graph model.

    Attributes:
        nodes: graph nodes by name, in file order (``dict`` keeps insertion order).
        weights: every constant tensor by node name, float tensors as float32.
        meta: the JSON's top-level ``format`` / ``generatedBy`` / ``convertedBy`` fields.
        shards: the weight files read.
    """

    nodes: dict[str, GraphNode]
    weights: dict[str, np.ndarray]
    meta: dict
    shards: list[Path] = field(default_factory=list)


def _read_tensor(buf: bytes, offset: int, spec: dict) -> tuple[np.ndarray, int]:
    shape = spec["shape"]
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    if quant:
        qtype = _QDTYPES.get(quant["dtype"])
        if qtype is None:
            raise ValueError(f"unsupported TFJS weight quantization {quant['dtype']!r} for {spec['name']}")
        raw = np.frombuffer(buf, qtype, count, offset)
        if qtype is np.float16:
            arr = raw.astype(np.float32)
        else:
            arr = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant.get("min", 0.0))
        nbytes = raw.nbytes
    else:
        dtype = _DTYPES.get(spec["dtype"])
        if dtype is None:
            raise ValueError(f"unsupported TFJS weight dtype {spec['dtype']!r} for {spec['name']}")
        arr = np.frombuffer(buf, dtype, count, offset).copy()
        nbytes = arr.nbytes
    return arr.reshape(shape), offset + nbytes


def read_graph_model(json_path: str | Path) -> TFJSGraph:
    """Parse a TFJS graph model and load its weights.

    Args:
        json_path: the ``model.json`` file; its weight shards must sit beside it.

    Returns:
        The parsed graph.

    Raises:
        FileNotFoundError: the JSON or a shard is missing.
        ValueError: the file is not a TFJS graph model, or the shards are too short.
    """
    json_path = Path(json_path)
    spec = read_json(json_path, "TFJS model file")
    if not isinstance(spec, dict) or spec.get("format") != "graph-model" or "modelTopology" not in spec:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"{json_path} is not a TFJS graph model (format={found!r}, expected 'graph-model' with a "
                         "'modelTopology'); pass a TFJS graph model.json such as movenet-lightning.json")
    try:
        return _parse(json_path, spec)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        why = (f"field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) and exc.args else
               f"a field has the wrong type or length: {(str(exc).splitlines() or ['?'])[0]}")
        raise ValueError(f"{json_path}: malformed TFJS graph model ({why}); the file or its weight shards are "
                         "damaged, fetch them again") from None


def _parse(json_path: Path, spec: dict) -> TFJSGraph:
    """The graph and weights of a parsed model.json (malformed fields raise KeyError / TypeError)."""
    weights: dict[str, np.ndarray] = {}
    shard_paths: list[Path] = []
    for group in spec["weightsManifest"]:
        paths = [json_path.parent / name for name in group["paths"]]
        for shard in paths:
            if not shard.is_file():
                raise FileNotFoundError(f"TFJS weight shard not found: {shard}")
        shard_paths += paths
        buf = b"".join(p.read_bytes() for p in paths)
        offset = 0
        for w in group["weights"]:
            try:
                weights[w["name"]], offset = _read_tensor(buf, offset, w)
            except ValueError as exc:
                if "buffer is smaller" in str(exc):
                    raise ValueError(f"weight shards of {json_path} are truncated at {w['name']}") from None
                raise
        if offset != len(buf):
            raise ValueError(f"weight shards of {json_path}: {len(buf) - offset} bytes left unread")

    nodes = {
        n["name"]: GraphNode(n["name"], n["op"], list(n.get("input", [])), n.get("attr", {}))
        for n in spec["modelTopology"]["node"]
    }
    meta = {k: spec.get(k) for k in ("format", "generatedBy", "convertedBy")}
    return TFJSGraph(nodes, weights, meta, shard_paths)
