"""Estimator: preprocess -> backend -> codec.decode -> Poses. The one place a model meets its codec."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from .image import Letterbox, load_image, resize_with_pad
from .poses import Poses
from .runtime import create_backend
from .runtime.graph_decoders import graph_decoder
from .skeletons import Skeleton


class Estimator:
    """Runs one pose model on images.

    ``est(image)`` accepts a path or an HxW(x3/4) array (RGB) and returns :class:`Poses` in the
    image's pixels. The three steps are public so benchmarks can time them apart.

    Args:
        name: model name.
        network: the torch module (also the source of the ONNX export).
        codec: decodes raw heads; has ``input_hw``, ``multi`` and ``decode(heads)``.
        skeleton: the keypoint set the model predicts.
        backend: ``auto``, ``onnxruntime`` or ``torch``.
        threads: CPU threads (None: runtime default).
    """

    def __init__(self, name: str, network: nn.Module, codec, skeleton: Skeleton, backend: str = "auto",
                 threads: int | None = None):
        self.name = name
        self.network = network
        self.codec = codec
        self.skeleton = skeleton
        self.input_hw = codec.input_hw
        self.multi_person = codec.multi
        self.top_down = getattr(codec, "top_down", False)  # one person per input, needs person boxes on whole images
        self.backend = create_backend(network, self.input_hw, backend, threads, graph_decoder(codec))

    def __repr__(self) -> str:
        return f"Estimator({self.name!r}, input {self.input_hw[1]}x{self.input_hw[0]}, backend {self.backend.name})"

    def __call__(self, image: str | Path | np.ndarray) -> Poses:
        x, letterbox = self.preprocess(load_image(image))
        return self.postprocess(self.infer(x), letterbox)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """HxWx3 uint8 RGB -> ((1, H, W, 3) int32 network input, letterbox geometry)."""
        x, letterbox = resize_with_pad(image, self.input_hw)
        return x[None], letterbox

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Network input -> raw heads (batch axis dropped)."""
        return self.backend(x)

    def postprocess(self, heads: dict[str, np.ndarray], letterbox: Letterbox) -> Poses:
        """Raw heads -> Poses in image pixels."""
        dec = self.codec.decode(heads)
        kpts = dec.keypoints.copy()
        kpts[..., :2] = letterbox.to_image(kpts[..., :2])
        boxes = None
        if dec.boxes is not None:  # person boxes
            boxes = letterbox.to_image(dec.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return Poses.create(kpts, dec.scores, boxes, letterbox.image_hw, self.skeleton)
