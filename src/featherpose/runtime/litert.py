"""LiteRT backend: a featherpose network converted by ``litert-torch`` to a ``.tflite`` file and run by Google's
LiteRT interpreter (XNNPACK on the CPU), the runtime of Google's own MoveNet graphs.

The converted graph takes what every backend takes, the (1, H, W, 3) int32 RGB batch the preprocessing makes (the
conversion to float NCHW is inside it, as in the ONNX export), and outputs the raw heads; the codec decodes them in
numpy (the MoveNet in-graph decoders use ops litert-torch cannot lower). Converting takes several seconds per model
and input size (8 s for Lightning here), so each ``.tflite`` is cached under ``~/.cache/featherpose/litert/``, keyed
by a hash of the network's weights, the input size and the converter's version; a model whose input size follows
the image (Lightweight OpenPose, Lite Pose) is converted once per size it meets.

Measured (``benchmarks/speed.py --configs onnxruntime:fp32 litert:fp32``, 2 threads, vtest frames, network ms,
litert vs onnxruntime fp32 in the same rounds): Lightning 1.96 vs 3.57, Thunder 7.97 vs 9.68, MultiPose 6.54 vs 6.90,
Lightweight OpenPose 25.55 vs 27.43, but Lite Pose 331 vs 66 (its 7x7 depthwise convolutions). ``backend="auto"``
does not measure it: a conversion per model and input size on first use (and a model whose size follows the image
would convert again at every new size); name it with ``backend="litert"``.
Optional extra: ``pip install featherpose[litert]`` (litert-torch and ai-edge-litert).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path, cache_dir as featherpose_cache_dir

log = logging.getLogger(__name__)

INSTALL_HINT = ("backend='litert' needs litert-torch and ai-edge-litert: pip install featherpose[litert] "
                "(or: pip install litert-torch ai-edge-litert)")


class LiteRTMissingError(ImportError, ValueError):
    """``backend="litert"`` without its packages: an ImportError, and a ValueError so that the CLI prints it as one
    line (exit code 2)."""


def import_litert():
    """(litert_torch, the LiteRT Interpreter class), or :class:`LiteRTMissingError` (one line)."""
    try:
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise LiteRTMissingError(INSTALL_HINT) from None
    return litert_torch, Interpreter


def cache_dir() -> Path:
    return featherpose_cache_dir("litert")


class LiteRTBackend:
    """``backend(x)`` maps (1, H, W, 3) int32 RGB to the raw heads through LiteRT's interpreter.

    Args:
        model: the torch network (eval mode); converted at ``input_hw`` now, at other sizes when they come.
        input_hw: the size converted first.
        threads: the interpreter's threads (None: its default).
    """

    name = "litert"

    def __init__(self, model: nn.Module, input_hw: tuple[int, int], threads: int | None = None):
        self.converter, self.interpreter_class = import_litert()
        self.model = model.eval()
        self.threads = threads
        with torch.no_grad():
            self.heads = list(model(torch.zeros(1, 3, *input_hw)).keys())
        digest = hashlib.sha256(self.converter.__version__.encode())
        for key, tensor in model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        self.weights_hash = digest.hexdigest()[:16]
        self._runners: dict[tuple[int, int], tuple] = {}
        self._runner(tuple(input_hw))

    def model_file(self, hw: tuple[int, int]) -> Path:
        """The network converted for input size ``hw``: a ``.tflite`` in the cache, converted on first use."""
        path = cache_dir() / f"{self.weights_hash}-{hw[0]}x{hw[1]}.tflite"
        if not path.is_file():
            from .graphs import NHWCInput

            log.info("converting the network to LiteRT at %dx%d (once; cached in %s)", hw[0], hw[1], path)
            edge = self.converter.convert(NHWCInput(self.model).eval(), (torch.zeros(1, *hw, 3, dtype=torch.int32),))
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                edge.export(str(tmp))
        return path

    def load_file(self, path: str | Path, hw: tuple[int, int]) -> None:
        """Run input size ``hw`` through the ``.tflite`` at ``path``: :meth:`model_file`'s, or a copy of it with the
        same input and outputs (e.g. quantised)."""
        it = self.interpreter_class(model_path=str(path), num_threads=self.threads or os.cpu_count() or 1)
        it.allocate_tensors()
        outs = it.get_output_details()  # named ..._output_<i>_...: the heads in the network's order
        order = sorted(outs, key=lambda o: int(o["name"].split("output_")[1].split("_")[0]))
        self._runners[tuple(hw)] = (it, it.get_input_details()[0]["index"], [o["index"] for o in order])

    def _runner(self, hw: tuple[int, int]):
        """(interpreter, input index, output indices in head order) for input size ``hw``."""
        if hw not in self._runners:
            self.load_file(self.model_file(hw), hw)
        return self._runners[hw]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        it, index, outputs = self._runner(tuple(x.shape[1:3]))
        it.set_tensor(index, np.ascontiguousarray(x, np.int32))
        it.invoke()
        return {head: it.get_tensor(i)[0].copy() for head, i in zip(self.heads, outputs)}
