"""What every family shares: the :class:`Family` row, the recipe sections each family extends, and the
checks that rebuild a network from a weight file (:func:`rebuild_network`, :func:`input_hw`).

The family modules (``families/<family>.py``) build their rows from these; :mod:`featherpose.families`
puts the rows in the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from ..weights_io import WeightsFile

#: Largest network input side (pixels) a model is built for. Activation memory grows with the input
#: area: movenet-multipose, one 640x480 image, peak resident memory measured on 2 CPU cores (torch
#: 2.13, onnxruntime with the in-memory export, which dominates): 256: 0.3 / 0.5 GB (torch /
#: onnxruntime), 512: 0.4 / 0.9 GB, 1024: 0.7 / 2.3 GB, 1536: 1.2 / 4.6 GB; so about 8 GB at 2048 and
#: 30 GB at 4096 (killed by the kernel). 1024 (4x MoveNet's 256) keeps a run under ~2.5 GB.
MAX_INPUT_SIZE = 1024

#: The family a recipe trains when its ``model:`` section names no ``architecture``.
DEFAULT_ARCHITECTURE = "movenet"


# ---------------------------------------------------------------------------------- recipe sections
# A recipe's ``model:`` and ``loss:`` sections are read into the family's own dataclasses (train/config.py),
# so a key of another family is an unknown key. ``RULES`` are range checks (field, test, what it must be),
# ``CHOICES`` the allowed values of text fields; both are checked when a recipe is loaded.


@dataclass
class ModelSection:
    """What every family's ``model:`` section has: the architecture, the input side, optional starting weights."""

    RULES: ClassVar[tuple] = ()
    CHOICES: ClassVar[dict[str, tuple]] = {}

    architecture: str = DEFAULT_ARCHITECTURE
    input_size: int = 192
    init: str | None = None  # a zoo name (e.g. movenet-lightning, to fine-tune) or a weight file


@dataclass
class LossSection:
    """What every family's ``loss:`` section has (nothing yet; a family adds its own fields)."""

    RULES: ClassVar[tuple] = ()
    CHOICES: ClassVar[dict[str, tuple]] = {}


# --------------------------------------------------------------------- rebuilding from a weight file

WEIGHTS_FIX = ("re-save the weights with featherpose.weights_io.save_weights, or re-create them with "
               "`featherpose convert`")
#: What a malformed config or codec field raises while a network or codec is built from it.
BAD_FIELD = (TypeError, ValueError, RuntimeError, OverflowError, KeyError, AttributeError, IndexError,
              ZeroDivisionError)


def where(weights: WeightsFile) -> str:
    """How errors name a weight file: its path, or its model name when it was not read from a file."""
    return str(weights.path or weights.meta.get("name"))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
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
        raise ValueError(f"{where(weights)}: metadata field 'config' does not describe a {what} "
                         f"({first_line(exc)}); {WEIGHTS_FIX}") from None
    found = {k: tuple(v.shape) for k, v in weights.state_dict.items()}
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if missing or extra or wrong:
        what_differs = (f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else
                        f"{len(extra)} unexpected tensors (e.g. {extra[0]})" if extra else
                        f"tensor {wrong[0]} is {found[wrong[0]]}, the config needs {expected[wrong[0]]}")
        raise ValueError(f"{where(weights)}: weights do not fit the {what} its 'config' describes "
                         f"({what_differs}); {WEIGHTS_FIX}")
    model = network_cls(config)
    model.load_state_dict(weights.state_dict)
    return model


def codec_from_weights(codec_cls, weights: WeightsFile, input_hw: tuple[int, int], num_keypoints: int, what: str):
    """``codec_cls.from_dict`` of the file's codec settings; a bad field is one clear error naming the file."""
    try:
        return codec_cls.from_dict(weights.codec, input_hw, num_keypoints, weights.codec_arrays)
    except BAD_FIELD as exc:
        raise ValueError(f"{where(weights)}: metadata field 'codec' does not describe a {what} codec "
                         f"({first_line(exc)}); {WEIGHTS_FIX}") from None


def _too_large(hw: tuple[int, int]) -> str:
    return (f"{hw[1]}x{hw[0]} is too large: at most {MAX_INPUT_SIZE} per side (memory grows with the input area, "
            f"about 2.3 GB at {MAX_INPUT_SIZE} and 30 GB at 4096)")


def input_hw(weights: WeightsFile, input_size, native, multiple: int, resizable: bool) -> tuple[int, int]:
    """(H, W) to build for: ``input_size`` or the config's ``native`` side, checked (ints, multiples, the cap).

    ``resizable``: whether the model runs at other sizes than its own (multi-person MoveNets), which decides
    what a file whose own size is over :data:`MAX_INPUT_SIZE` is told to do.
    """
    if input_size is None and (isinstance(native, bool) or not isinstance(native, int)):
        raise ValueError(f"{where(weights)}: metadata field 'config' has input_size {native!r}, not an integer; "
                         f"{WEIGHTS_FIX}")
    try:
        hw = tuple(input_size) if input_size is not None else (native, native)
    except TypeError:  # e.g. a float
        hw = ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in hw):
        raise ValueError(f"input size must be an integer or two (height, width), got {input_size!r}")
    source = "input size" if input_size is not None else f"{where(weights)}: config input_size"
    if hw[0] % multiple or hw[1] % multiple or min(hw) < multiple:
        bad = next(v for v in hw if v % multiple or v < multiple)
        down = max(multiple, bad // multiple * multiple)
        near = f"; e.g. {down} or {down + multiple}" if input_size is not None else ""
        raise ValueError(f"{source} must be positive multiples of {multiple}, got {hw[0]}x{hw[1]}{near}")
    if max(hw) <= MAX_INPUT_SIZE:
        return hw
    if input_size is not None:
        raise ValueError(f"input size {_too_large(hw)}; use --input-size {MAX_INPUT_SIZE} or less")
    fix = (f"pass a smaller input size (--input-size {MAX_INPUT_SIZE} or less)" if resizable else
           "the model is fixed at that size (--input-size cannot change it): re-train or re-convert it with "
           f"input_size {MAX_INPUT_SIZE} or less")
    raise ValueError(f"{source} {_too_large(hw)}; {fix}")


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
        soft_targets: (teacher's raw heads) -> the student's targets (without the ``teacher_`` prefix) when
            ``soft_teacher`` says yes; required with ``soft_teacher``.
        teacher_targets: (targets ``codec.encode`` made of a teacher's keypoints (N, K, 3), those keypoints
            (v = 0: not used), (K,) 1 where the teacher predicts the joint) -> the targets to teach, e.g. with
            the joints the teacher lacks or doubts weighted 0; None: the encoded targets as they are.
        init_any_size: whether ``model.init`` weights fit any input size (a recipe then rebuilds them at
            its own ``model.input_size``).
        importer: (source, out folder) -> written weight files, the ``featherpose convert`` of this family;
            None: nothing to import.
        importer_source: what ``featherpose convert <family>`` takes (its help line).
        preprocess: (HxWx3 uint8 RGB image, the codec's input (H, W)) -> ((Hi, Wi, 3) int32 RGB network input,
            :class:`~featherpose.image.Letterbox` that maps its points back to the image), what the
            :class:`~featherpose.estimator.Estimator` feeds the network; None: TF's letterbox to the codec's
            input (:func:`~featherpose.image.resize_with_pad`, MoveNet's and the hourglass's).
        dynamic_size: ``preprocess`` gives each image its own input size (lwop: the codec's height, the image's
            width; litepose: the short side the codec's, the long side the image's); the ONNX export then has
            dynamic height and width axes.
        bf16_split: (network) -> (front, back), the network in two parts for ``precision="bf16"``: the front (its
            first layers, image -> dict of tensors) runs in float32, ``back(*front(image).values())`` in bf16 (where
            bf16 rounding in the first layers costs accuracy: Lite Pose); None: the whole network in bf16.
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
    soft_targets: Callable[[dict], dict] | None = None
    teacher_targets: Callable[[dict, Any, Any], dict] | None = None
    init_any_size: bool = False
    importer: Callable[..., list] | None = None
    importer_source: str = ""
    preprocess: Callable[[Any, tuple[int, int]], tuple] | None = None
    dynamic_size: bool = False
    bf16_split: Callable[[Any], tuple] | None = None

    @property
    def top_down(self) -> bool:
        """One person per input, run on each person's crop."""
        return "top-down" in self.kinds

