"""MoveNet codec: decode raw head tensors into keypoints (Google's in-graph decoders, in NumPy),
and ``encode`` keypoints into training targets (:mod:`.movenet_targets`).

Dimensions: K keypoints, grid [h, w] (input / 4), M instances (6 in Google's MultiPose graph).
Heads are channel-first float32 arrays with the batch axis dropped:
    heatmap (K, h, w) logits, center (1, h, w) logits,
    regress (2K, h, w) and offset (2K, h, w) with (y, x) interleaved per keypoint,
    box_scale, box_offset (2, h, w) for the MultiPose graph.

``decode`` returns :class:`~.base.Decoded` in input pixels (x before y). ``decode_graph_layout`` returns
exactly what Google's graph outputs ([1, 1, K, 3] or [1, M, 3K + 5], y before x, normalised),
which is what the parity tests compare.

Google's graphs store every float constant in fp16, so an imported model decodes with the
fp16-rounded constants (``fp16_constants=True``): 1.7998047 for 1.8, 1/48 -> 0.02082825, and
the centre prior map as read from the graph when the importer saved it.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Codec, Decoded
from .movenet_multipose import GOOGLE_MULTIPOSE, MultiposeConstants, decode_multipose
from .movenet_targets import TargetConfig, encode_movenet
from .ops import ACTIVATIONS, sigmoid

if TYPE_CHECKING:  # the codec is numpy; torch is needed only to export its decoder into a graph
    from torch import nn

f32 = np.float32


def _fp16(x) -> np.ndarray:
    return np.asarray(x, np.float64).astype(np.float16).astype(f32)


def make_center_prior(h: int, w: int, fp16: bool = True) -> np.ndarray:
    """(h, w) weight ``1 / (distance to the grid centre + 1.8)`` that favours the person in the middle."""
    i, j = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    prior = 1.0 / (np.sqrt((i - h / 2) ** 2 + (j - w / 2) ** 2) + 1.8)
    return _fp16(prior) if fp16 else prior.astype(f32)


def decode_single_pose(heatmap: np.ndarray, center: np.ndarray, regress: np.ndarray, offset: np.ndarray,
                       prior: np.ndarray, distance_bias: float, grid_scale: np.ndarray,
                       activation=sigmoid) -> np.ndarray:
    """Google's single-pose decoder.

    1. centre = argmax of sigmoid(center) * prior (row-major, first maximum wins);
    2. regressed keypoint = centre + regress at the centre;
    3. per keypoint, argmax of sigmoid(heatmap) / (distance to the regressed keypoint + bias);
    4. position = (cell + offset at that cell) * grid_scale; score = sigmoid(heatmap) there.

    Args:
        heatmap (K, h, w), center (1, h, w), regress (2K, h, w), offset (2K, h, w): raw heads.
        prior: (h, w) centre prior. distance_bias: the 1.8 of step 3. grid_scale: (2,) y, x factors.
        activation: logits -> probabilities (Google's: sigmoid).

    Returns:
        (K, 3) y, x, score with y, x normalised to the input (the graph's output layout).
    """
    k, h, w = heatmap.shape
    c = int(np.argmax(activation(center[0]) * prior))
    cy, cx = divmod(c, w)
    reg = regress[:, cy, cx].reshape(k, 2)
    ky0 = f32(cy) + reg[:, 0]
    kx0 = f32(cx) + reg[:, 1]
    rows = np.arange(h, dtype=f32)[None, :, None]
    cols = np.arange(w, dtype=f32)[None, None, :]
    dist = np.sqrt((rows - ky0[:, None, None]) ** 2 + (cols - kx0[:, None, None]) ** 2) + f32(distance_bias)
    heat = activation(heatmap)
    best = np.argmax((heat / dist).reshape(k, -1), axis=1)
    ky, kx = np.divmod(best, w)
    kidx = np.arange(k)
    off = offset.reshape(k, 2, h, w)[kidx, :, ky, kx]  # (K, 2) y, x
    y = (ky.astype(f32) + off[:, 0]) * grid_scale[0]
    x = (kx.astype(f32) + off[:, 1]) * grid_scale[1]
    return np.stack([y, x, heat[kidx, ky, kx]], axis=1).astype(f32)


class MoveNetCodec(Codec):
    """Encoder / decoder for MoveNet heads (single-pose, or multi-person; box heads optional); a :class:`~.base.Codec`.

    Args:
        input_hw: network input (H, W) in pixels.
        num_keypoints: K.
        multi: decode up to M people with Google's MultiPose decoder (needs box heads).
        fp16_constants: use the fp16-rounded constants of Google's graphs (imported models).
        center_prior: (h, w) centre prior read from the graph by the importer; computed when absent.
        multipose: MultiPose decoder constants (default: those of Google's graph).
        stride: input pixels per grid cell.
        targets: how ``encode`` draws training targets.
        activation: ``sigmoid`` (Google's) or ``soft_sigmoid`` (seed 003's stand-in); must be the
            one the model was trained with.
    """

    def __init__(self, input_hw: tuple[int, int], num_keypoints: int = 17, multi: bool = False,
                 fp16_constants: bool = True, center_prior: np.ndarray | None = None,
                 multipose: MultiposeConstants | None = None, stride: int = 4, targets: TargetConfig | None = None,
                 activation: str = "sigmoid"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.input_hw = tuple(input_hw)
        self.num_keypoints = num_keypoints
        self.kind = "multi" if multi else "single"
        self.fp16_constants = bool(fp16_constants)
        self.stride = stride
        h, w = self.input_hw[0] // stride, self.input_hw[1] // stride
        self.prior_given = center_prior is not None and center_prior.shape == (h, w)  # stored in weight files
        if not self.prior_given:
            center_prior = make_center_prior(h, w, fp16_constants)
        self.prior = np.asarray(center_prior, f32)
        round_ = _fp16 if fp16_constants else (lambda v: np.asarray(v, f32))
        self.distance_bias = round_(1.8)
        self.grid_scale = round_([1.0 / h, 1.0 / w])
        self.multipose = multipose or GOOGLE_MULTIPOSE
        self.targets = targets or TargetConfig()

    def to_dict(self) -> dict[str, Any]:
        """The settings that rebuild this codec (weight-file metadata 'codec'); the centre prior read from a
        graph is in :meth:`arrays`, input size and K come from the model config."""
        d = {"multi": self.multi, "fp16_constants": self.fp16_constants, "activation": self.activation,
             "stride": self.stride, "targets": asdict(self.targets)}
        if self.multi:
            d["multipose"] = self.multipose.to_dict()
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        """``center_prior`` when one was given (the importer's, read from Google's graph), else nothing."""
        return {"center_prior": self.prior} if self.prior_given else {}

    @classmethod
    def from_dict(cls, d: dict[str, Any], input_hw: tuple[int, int], num_keypoints: int,
                  arrays: dict[str, np.ndarray] | None = None) -> MoveNetCodec:
        """The codec :meth:`to_dict` / :meth:`arrays` describe; also reads the older files' metadata (no
        ``targets`` or ``stride``; ``multipose`` absent or null for Google's constants).

        Raises:
            TypeError, ValueError, KeyError: ``d`` has an unknown key or a bad value.
        """
        args = dict(d)
        multipose = args.pop("multipose", None)
        targets = args.pop("targets", None)
        return cls(input_hw, num_keypoints, center_prior=(arrays or {}).get("center_prior"),
                   multipose=MultiposeConstants.from_dict(multipose) if multipose else None,
                   targets=TargetConfig(**targets) if targets else None, **args)

    @property
    def decodes_in_graph(self) -> bool:
        """Single-pose codecs decode in the graph (:meth:`graph_decoder`); MultiPose decodes in NumPy."""
        return not self.multi

    def graph_decoder(self) -> nn.Module | None:
        """The single-pose decoder in torch ops (:mod:`.movenet_graph`) for export into the ONNX graph, as in
        Google's graphs; None for multi-person codecs (the MultiPose decoder runs in NumPy)."""
        if not self.decodes_in_graph:
            return None
        from .movenet_graph import SinglePoseDecoder

        return SinglePoseDecoder(self.prior, self.distance_bias, self.grid_scale, self.activation)

    def encode(self, keypoints: np.ndarray, ignore: np.ndarray | None = None,
               boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Training targets for one image: keypoints (N, K, 3) x, y, v in input pixels, and person
        boxes (N, 4) for models with box heads (see :func:`~.movenet_targets.encode_movenet`)."""
        return encode_movenet(keypoints, self.input_hw, self.stride, self.targets, ignore, boxes)

    def decode_graph_layout(self, heads: dict[str, np.ndarray]) -> np.ndarray:
        """Heads (batch axis dropped) -> the graph's own output: [1, 1, K, 3] or [1, M, 3K + 5].

        A backend whose graph already decoded (output ``decoded``, see :meth:`graph_decoder`) passes that
        through.
        """
        if "decoded" in heads:
            return heads["decoded"].reshape(1, 1, self.num_keypoints, 3)
        with np.errstate(over="ignore", invalid="ignore"):  # huge or non-finite heads: no warnings, no exceptions
            if self.multi:
                if "box_scale" in heads:
                    box_scale, box_offset = heads["box_scale"], heads["box_offset"]
                else:  # models without box heads: boxes = the whole grid
                    h, w = heads["center"].shape[1:]
                    box_scale, box_offset = np.full((2, h, w), 2 * max(h, w), f32), np.zeros((2, h, w), f32)
                return decode_multipose(heads["heatmap"], heads["center"], heads["regress"], heads["offset"],
                                        box_scale, box_offset, self.multipose, ACTIVATIONS[self.activation])[None]
            out = decode_single_pose(heads["heatmap"], heads["center"], heads["regress"], heads["offset"],
                                     self.prior, self.distance_bias, self.grid_scale, ACTIVATIONS[self.activation])
        return out[None, None]

    def head_shapes(self, box_heads: bool = True) -> dict[str, tuple[int, ...]]:
        """The raw heads :meth:`decode` takes, name -> (C, h, w) (box heads for multi-person models with them)."""
        k, h, w = self.num_keypoints, self.input_hw[0] // self.stride, self.input_hw[1] // self.stride
        shapes = {"heatmap": (k, h, w), "center": (1, h, w), "regress": (2 * k, h, w), "offset": (2 * k, h, w)}
        if self.multi and box_heads:
            shapes.update(box_scale=(2, h, w), box_offset=(2, h, w))
        return shapes

    def decode(self, heads: dict[str, np.ndarray]) -> Decoded:
        """Heads (batch axis dropped) -> instances in input pixels (x, y, score).

        Never raises on NaN/inf or huge heads: finite heads give finite keypoints and scores; non-finite
        ones may give NaN (the :class:`~featherpose.estimator.Estimator` checks the heads once and reports them).
        """
        raw = self.decode_graph_layout(heads)[0]  # (1, K, 3) or (M, 3K + 5)
        k = self.num_keypoints
        yxs = raw[:, :3 * k].reshape(-1, k, 3) if self.multi else raw  # (N, K, 3) y, x, score normalised
        size_xy = np.array(self.input_hw[::-1], f32)
        kpts = np.concatenate([yxs[..., 1::-1] * size_xy, yxs[..., 2:]], axis=-1).astype(f32)
        if not self.multi:
            return Decoded(kpts, None, yxs[..., 2].mean(axis=1).astype(f32))
        boxes = raw[:, [3 * k + 1, 3 * k, 3 * k + 3, 3 * k + 2]] * np.tile(size_xy, 2)  # from ymin, xmin, ymax, xmax
        return Decoded(kpts, boxes.astype(f32), raw[:, 3 * k + 4].astype(f32))

