"""What every codec is: the :class:`Codec` protocol and the :class:`Decoded` instances it returns.

A codec turns keypoints into a family's training targets (``encode``) and a network's raw heads back
into keypoints (``decode``); it is the one place that knows a family's head layout. Dimensions: N
instances, K keypoints, heads channel-first with the batch axis dropped.

A codec's kind says how it meets images:
    ``single``     one person per whole image (MoveNet SinglePose),
    ``multi``      several people per whole image (MoveNet MultiPose),
    ``top-down``   one person per input, run on each person's crop (stacked hourglass).

Weight files store a codec through it: ``to_dict()`` (JSON metadata) and ``arrays()`` (tensors), read
back by ``from_dict(d, input_hw, num_keypoints, arrays)``; the input size and keypoint count come from
the model's config, so they are not stored twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from torch import nn

#: The kinds of codec (see the module docstring).
KINDS = ("single", "multi", "top-down")


@dataclass
class Decoded:
    """Decoded instances in input pixels.

    Attributes:
        keypoints: (N, K, 3) x, y, score.
        boxes: (N, 4) x1, y1, x2, y2, or None when the model predicts no boxes.
        scores: (N,) instance scores.
    """

    keypoints: np.ndarray
    boxes: np.ndarray | None
    scores: np.ndarray


@runtime_checkable
class Codec(Protocol):
    """The protocol every codec implements; a codec may subclass it for the defaults below.

    Attributes:
        input_hw: network input (H, W) in pixels.
        num_keypoints: K.
        kind: one of :data:`KINDS`.
        keypoint_threshold: the keypoint score under which a drawing leaves a keypoint out (0.3; a codec whose
            keypoint scores are on another scale sets its own).
    """

    input_hw: tuple[int, int]
    num_keypoints: int
    kind: str
    keypoint_threshold: float = 0.3

    @property
    def multi(self) -> bool:
        """Several people per input (``kind == "multi"``)."""
        return self.kind == "multi"

    @property
    def top_down(self) -> bool:
        """One person per input, run on person crops (``kind == "top-down"``)."""
        return self.kind == "top-down"

    def encode(self, keypoints: np.ndarray, ignore: np.ndarray | None = None,
               boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Training targets for one input: keypoints (N, K, 3) x, y, v in input pixels -> {name: array}.

        ``ignore`` (h, w) masks regions without labels and ``boxes`` (N, 4) are the people's boxes; a codec
        that has no use for them accepts and ignores them."""
        ...

    def decode(self, heads: dict[str, np.ndarray]) -> Decoded:
        """Raw heads (batch axis dropped) -> instances in input pixels; never raises on NaN/inf heads."""
        ...

    def head_shapes(self) -> dict[str, tuple[int, ...]]:
        """The raw heads :meth:`decode` takes, name -> (C, h, w)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The codec's settings as a JSON-able dict (weight-file metadata 'codec'), without input size and K."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """Constant arrays the settings do not determine (weight-file tensors ``codec.<name>``); none by default."""
        return {}

    @classmethod
    def from_dict(cls, d: dict[str, Any], input_hw: tuple[int, int], num_keypoints: int,
                  arrays: dict[str, np.ndarray] | None = None) -> Codec:
        """The codec :meth:`to_dict` and :meth:`arrays` describe, at ``input_hw`` with K keypoints.

        Raises:
            TypeError, ValueError (and the like): ``d`` does not describe this codec (an unknown key, a bad value).
        """
        ...

    def graph_decoder(self) -> nn.Module | None:
        """The codec's decoder as a torch module (heads dict -> one ``decoded`` tensor) for export into the
        ONNX graph, or None where decoding stays in NumPy (the default)."""
        return None

    @property
    def decodes_in_graph(self) -> bool:
        """Whether :meth:`graph_decoder` gives a module, known without building it (which imports torch)."""
        return False
