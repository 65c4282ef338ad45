"""Self-describing weight files: safetensors tensors + JSON metadata that rebuilds model and codec.

Metadata keys (all strings, as safetensors requires):
    featherpose   format version ("1")
    name          model name, e.g. "movenet-lightning"
    architecture  "movenet"
    config        JSON of the architecture's config dataclass
    codec         JSON of the codec's settings, its ``to_dict()`` (its ``arrays()`` are stored as tensors
                  "codec.<key>"); the family's codec class reads them back with ``from_dict`` (see
                  :class:`featherpose.codecs.base.Codec`). Older files hold the same keys.
    source, license, notes   provenance shown by ``featherpose models --detail``

Tensors are stored in float16 when every value is exactly representable (Google's MoveNet weights
are fp16 at the source, so this is lossless) and in float32 otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .codecs.base import Codec
from .fileio import atomic_path

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = "1"
CODEC_TENSOR_PREFIX = "codec."


@dataclass
class WeightsFile:
    """A loaded weight file: the model's state dict, codec arrays and metadata."""

    state_dict: dict[str, torch.Tensor]
    codec_arrays: dict[str, np.ndarray]
    meta: dict[str, str]
    config: dict = field(default_factory=dict)
    codec: dict = field(default_factory=dict)
    path: Path | None = None


def _compact(t: torch.Tensor) -> torch.Tensor:
    import torch

    if t.dtype == torch.float32:
        half = t.half()
        if torch.equal(half.float(), t):
            return half
    return t.contiguous()


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], *, name: str, architecture: str,
                 config: dict, codec: Codec | dict, codec_arrays: dict[str, np.ndarray] | None = None,
                 **provenance: str) -> Path:
    """Write a weight file atomically (temporary file in the same folder, then rename).

    Args:
        codec: the model's codec, stored through its ``to_dict()`` and ``arrays()``; or those settings as a
            dict (with ``codec_arrays``), as :func:`load_weights` returns them.
        codec_arrays: codec arrays besides (and over) the codec's own ``arrays()``.
    """
    import torch
    from safetensors.torch import save_file

    if not isinstance(codec, dict):
        codec_arrays = {**codec.arrays(), **(codec_arrays or {})}
        codec = codec.to_dict()
    tensors = {k: _compact(v.detach().cpu()) for k, v in state_dict.items()}
    for key, arr in (codec_arrays or {}).items():
        tensors[CODEC_TENSOR_PREFIX + key] = _compact(torch.from_numpy(np.ascontiguousarray(arr, np.float32)))
    meta = {"featherpose": FORMAT_VERSION, "name": name, "architecture": architecture,
            "config": json.dumps(config), "codec": json.dumps(codec), **{k: str(v) for k, v in provenance.items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_weights(path: str | Path) -> WeightsFile:
    """Read a weight file written by :func:`save_weights` (tensors widened to float32).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a featherpose weight file, or corrupt.
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not a weight file; give a .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:  # one read: tensors and metadata
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("featherpose") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a featherpose weight file (no 'featherpose' metadata); "
                         "convert published weights with `featherpose convert`")
    bad = [k for k, v in tensors.items() if v.is_complex()]
    if bad:
        raise ValueError(f"{path}: tensor {bad[0]!r} has dtype {tensors[bad[0]].dtype}; re-save the weights with "
                         "featherpose.weights_io.save_weights")
    state = {k: v.float() for k, v in tensors.items() if not k.startswith(CODEC_TENSOR_PREFIX)}
    arrays = {k[len(CODEC_TENSOR_PREFIX):]: v.float().numpy() for k, v in tensors.items()
              if k.startswith(CODEC_TENSOR_PREFIX)}
    return WeightsFile(state, arrays, meta, _meta_object(meta, "config", path), _meta_object(meta, "codec", path),
                       path)


def _meta_object(meta: dict[str, str], key: str, path: Path) -> dict:
    """The JSON object stored under metadata ``key`` ({} when absent); anything else is one clear error."""
    try:
        value = json.loads(meta.get(key, "{}"))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path}: metadata field '{key}' is not valid JSON ({exc}); re-save the weights with "
                         "featherpose.weights_io.save_weights") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: metadata field '{key}' must be a JSON object, got {type(value).__name__}; "
                         "re-save the weights with featherpose.weights_io.save_weights")
    return value
