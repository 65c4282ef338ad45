"""Training recipes: one YAML file per model x dataset under ``configs/``, read into dataclasses.

Unknown keys are errors (a typo must not silently train the default), and every error names the
file and the key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class ModelSection:
    """Network: architecture + its hyper-parameters, and optional starting weights.

    ``movenet`` (bottom-up) uses backbone, width, batch_norm and multi; ``hourglass`` (top-down, one
    person per box: Fast Pose Distillation) uses stacks, channels, sigma and crop_expand.
    """

    architecture: str = "movenet"
    backbone: str = "mobilenetv2"  # or shufflenetv2 (seed 003: width 0.75, 3-level FPN)
    width: float = 1.0
    input_size: int = 192
    batch_norm: bool = True
    multi: bool = False  # several people: Google's MultiPose box heads, every centre decoded
    stacks: int = 4  # hourglass: FPD student 4, teacher 8
    channels: int = 128  # hourglass: FPD student 128, teacher 256
    sigma: float = 1.0  # hourglass: Gaussian sigma in heatmap cells
    crop_expand: float = 1.25  # hourglass: crop side / longer side of the person box (as evaluation)
    init: str | None = None  # a zoo name (e.g. movenet-lightning, to fine-tune) or a weight file


ARCHITECTURES = ("movenet", "hourglass")


@dataclass
class DataSection:
    """COCO-format keypoint data; paths relative to the YAML file unless absolute.

    ``train`` may also be a folder of unlabelled images (searched recursively) when a teacher with
    ``alpha: 1`` provides every target.
    """

    train: str = ""
    val: str | None = None
    image_root: str | None = None
    workers: int = 2
    min_keypoints: int = 1


def default_augment() -> list[dict]:
    """The default pipeline (featherpose.data.transforms names), seed 003's recipe."""
    return [{"RandomAffine": {"scale": [0.75, 1.25], "rotation": 30, "translate": 0.1}},
            {"ZoomSmallPeople": {"target": [2000, 12000], "p": 0.3}},
            {"RandomFlip": {"p": 0.5}},
            {"ColorJitter": {}}]


@dataclass
class LossSection:
    head_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    early_head_weights: tuple[float, float, float, float] | None = (1.0, 1.0, 0.1, 1.0)
    early_epochs: int = 0
    k: float = 5.0
    activation: str = "sigmoid"
    bone_weight: float = 0.0
    kernel: str = "exponential"
    center: str = "box"


@dataclass
class TeacherSection:
    """Distillation (FPD, seed 004): ``loss = alpha * L(student, teacher) + (1 - alpha) * L(student, labels)``.

    Attributes:
        model: a zoo name or a featherpose weight file; empty = no distillation.
        alpha: weight of the teacher term (FPD's code: 0.5); 1 trains from the teacher alone.
        cache: a folder to keep the teacher's keypoints in (computed once, then reused by every
            epoch and run); empty = run the teacher live in every step.
        min_confidence: teacher keypoints scoring below this are not used as targets.
    """

    model: str = ""
    alpha: float = 0.5
    cache: str = ""
    min_confidence: float = 0.3


@dataclass
class OptimSection:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0


@dataclass
class TrainConfig:
    """A whole recipe."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: list = field(default_factory=default_augment)  # [{TransformName: {arguments}}, ...]
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    out: str = "runs/train"
    eval_every: int = 1
    max_steps_per_epoch: int | None = None
    device: str = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value, default, where: str):
    """Numbers written as strings (YAML reads ``1e-3`` as text) become numbers; wrong types are errors."""
    if isinstance(default, bool) or default is None or value is None:
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(default, int) and not number.is_integer():
            raise ValueError(f"{where}: expected a whole number, got {value!r}")
        return int(number) if isinstance(default, int) else number
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{where}: expected text, got {value!r}")
    return value


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """Read a recipe; relative data paths are resolved against the YAML's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    cfg = _build(TrainConfig, raw, path.name)
    base = path.parent
    for section, attr in (("data", "train"), ("data", "val"), ("data", "image_root"), ("teacher", "cache")):
        value = getattr(getattr(cfg, section), attr)
        if value and not Path(value).is_absolute():
            setattr(getattr(cfg, section), attr, str((base / value).resolve()))
    teacher = cfg.teacher.model
    if teacher and (teacher.endswith(".safetensors") or "/" in teacher) and not Path(teacher).is_absolute():
        cfg.teacher.model = str((base / teacher).resolve())
    if not cfg.data.train:
        raise ValueError(f"{path.name}: data.train (a COCO keypoints json) is required")
    if Path(cfg.data.train).is_dir() and not (teacher and cfg.teacher.alpha == 1):
        raise ValueError(f"{path.name}: data.train {cfg.data.train} is a folder of images without labels; "
                         "that needs teacher.model and teacher.alpha: 1")
    if not 0 <= cfg.teacher.alpha <= 1:
        raise ValueError(f"{path.name}: teacher.alpha must be in [0, 1], got {cfg.teacher.alpha}")
    choices = {"optim.name": (cfg.optim.name, ("adamw", "sgd", "rmsprop")),
               "device": (cfg.device, ("auto", "cpu", "cuda")),
               "model.architecture": (cfg.model.architecture, ARCHITECTURES)}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{path.name}: {key} {value!r} is not one of {', '.join(allowed)}")
    return cfg
