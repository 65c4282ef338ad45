"""Training recipes: one YAML file per model x dataset under ``configs/``, read into dataclasses.

Unknown keys are errors (a typo must not silently train the default), values are checked for
type and range when the file is read, and every error is one ValueError naming the file, the key
and what the value must be. The ``model:`` and ``loss:`` sections are the dataclasses of the family
``model.architecture`` names (:data:`featherpose.families.FAMILIES`), so another family's key is unknown.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..data.coco import Sample
from ..data.transforms import TRANSFORMS, Compose
from ..families import DEFAULT_ARCHITECTURE, FAMILIES, MAX_INPUT_SIZE, LossSection, ModelSection


#: The architectures a recipe can train: the rows of the family table.
ARCHITECTURES = tuple(FAMILIES)


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


def default_section(name: str):
    """The default family's (:data:`~featherpose.families.DEFAULT_ARCHITECTURE`) ``model:`` or ``loss:`` section."""
    row = FAMILIES[DEFAULT_ARCHITECTURE]
    return row.model_section() if name == "model" else row.loss_section()


@dataclass
class TrainConfig:
    """A whole recipe."""

    model: ModelSection = field(default_factory=lambda: default_section("model"))  # the family's own
    data: DataSection = field(default_factory=DataSection)
    augment: list = field(default_factory=default_augment)  # [{TransformName: {arguments}}, ...]
    loss: LossSection = field(default_factory=lambda: default_section("loss"))
    optim: OptimSection = field(default_factory=OptimSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    out: str = "runs/train"
    eval_every: int = 1
    save_every: int = 1  # epochs between checkpoints (the last epoch is always saved): a kill loses at most these
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, fp32 on a CPU; or fp32, bf16
    max_minutes: float | None = None  # a time budget: the learning rate decays over it, the run stops after the
    #                                   epoch that spends it (not reproducible step for step: it follows the clock)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value, hint, where: str):
    """``value`` as the field's type ``hint``: numbers written as strings (YAML reads ``1e-3`` as text) become
    numbers, lists become tuples; a wrong type or a non-finite number is a ValueError naming ``where``."""
    args = typing.get_args(hint)
    if type(None) in args:  # optional field
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if origin in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        if origin is int:
            if not number.is_integer():
                raise ValueError(f"{where}: expected a whole number, got {value!r}")
            return int(number)
        return number
    if origin is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected text, got {value!r}")
        return value
    if origin is tuple:
        n = len(typing.get_args(hint))
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ValueError(f"{where}: expected a list of {n} numbers, got {value!r}")
        return tuple(_coerce(v, float, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is list and not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    return value


def _build(cls, values: dict, where: str, family: str | None = None):
    """``cls(**values)`` with every value coerced to its field's type. ``family``: the architecture of a
    recipe (TrainConfig), whose ``model`` and ``loss`` sections are read into that family's dataclasses."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {type(values).__name__} {values!r:.60}")
    hints = typing.get_type_hints(cls)
    hints = {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # not a section's RULES / CHOICES
    unknown = sorted(str(k) for k in values if k not in hints)
    if unknown:
        if family is not None and cls is not TrainConfig:  # a family section: say whose key it is
            owners = [r.name for r in FAMILIES.values() for s in (r.model_section, r.loss_section)
                      if s is not cls and unknown[0] in {f.name for f in dataclasses.fields(s)}]
            section = where.rpartition(".")[2]
            whose = f" ({section}.{unknown[0]} is a key of {' and '.join(owners)})" if owners else ""
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} for architecture {family}{whose}; "
                             f"known: {', '.join(hints) or 'none'}")
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(hints)}")
    sections = {"model": FAMILIES[family].model_section, "loss": FAMILIES[family].loss_section} \
        if family is not None and cls is TrainConfig else {}
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(sections.get(name, type(default)), {} if value is None else value,
                                  f"{where}.{name}", family)
        else:
            kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    for name, section in sections.items():  # a section the recipe leaves out: the family's defaults
        kwargs.setdefault(name, section())
    return cls(**kwargs)


def build_dataclass(cls, values: dict, where: str):
    """A dataclass (sections nested) from a YAML mapping, every value coerced and checked as recipes are
    (one-line errors naming ``where``); for recipes other than training's (e.g. ``featherpose search``)."""
    return _build(cls, values, where)


def _architecture(raw, where: str) -> str:
    """The family a raw recipe's ``model.architecture`` names (default: ``DEFAULT_ARCHITECTURE``), checked."""
    model = raw.get("model") if isinstance(raw, dict) else None
    arch = model.get("architecture", DEFAULT_ARCHITECTURE) if isinstance(model, dict) else DEFAULT_ARCHITECTURE
    if not isinstance(arch, str) or arch not in FAMILIES:
        raise ValueError(f"{where}: model.architecture {arch!r} is not one of {', '.join(FAMILIES)}")
    return arch


# The value rules of every numeric field: (key, test, what the value must be); a family's model and loss
# sections add their own (their RULES, in families/<family>.py).
RULES = (
    ("epochs", lambda v: v >= 1, "a whole number >= 1"),
    ("batch_size", lambda v: v >= 1, "a whole number >= 1"),
    ("seed", lambda v: v >= 0, "a whole number >= 0"),
    ("eval_every", lambda v: v >= 1, "a whole number >= 1 (epochs between evaluations)"),
    ("save_every", lambda v: v >= 1, "a whole number >= 1 (epochs between checkpoints)"),
    ("max_steps_per_epoch", lambda v: v is None or v >= 1, "empty or a whole number >= 1"),
    ("max_minutes", lambda v: v is None or v > 0, "empty or a number of minutes > 0"),
    ("data.workers", lambda v: v >= 0, "a whole number >= 0 (0: load in the main process)"),
    ("data.min_keypoints", lambda v: v >= 0, "a whole number >= 0"),
    ("optim.lr", lambda v: v > 0, "a number > 0, e.g. 1e-3"),
    ("optim.weight_decay", lambda v: v >= 0, "a number >= 0"),
    ("optim.warmup_steps", lambda v: v >= 0, "a whole number >= 0"),
    ("optim.min_lr_ratio", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("optim.grad_clip", lambda v: v >= 0, "a number >= 0 (0: no clipping)"),
    ("teacher.alpha", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("teacher.min_confidence", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
)


def validate(cfg: TrainConfig, name: str = "the recipe") -> None:
    """Range, choice and augmentation checks of a built recipe (``load_config`` runs them; ``train`` runs them
    again on a TrainConfig changed in code); a ValueError naming ``name`` and the key."""
    arch = cfg.model.architecture
    if arch not in FAMILIES:
        raise ValueError(f"{name}: model.architecture {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    row = FAMILIES[arch]
    for key, section in (("model", row.model_section), ("loss", row.loss_section)):
        if type(getattr(cfg, key)) is not section:
            raise ValueError(f"{name}: the {key} section is a {type(getattr(cfg, key)).__name__}, a {arch} recipe "
                             f"needs a {section.__name__} (featherpose.families)")
    rules = (*RULES, *((f"model.{k}", ok, must) for k, ok, must in row.model_section.RULES),
             *((f"loss.{k}", ok, must) for k, ok, must in row.loss_section.RULES))
    for key, ok, must in rules:
        section, _, attr = key.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, attr)
        try:
            good = ok(value)
        except TypeError:  # a value of the wrong type, set in code
            good = False
        if not good:
            raise ValueError(f"{name}: {key} is {value!r}; it must be {must}")
    # MAX_INPUT_SIZE: the largest network featherpose.load / eval / export accept afterwards
    multiple = row.input_multiple
    size = cfg.model.input_size
    if not (isinstance(size, int) and 0 < size <= MAX_INPUT_SIZE and size % multiple == 0):
        near = min(MAX_INPUT_SIZE, max(multiple, round(size / multiple) * multiple)) if isinstance(size, int) else 192
        raise ValueError(f"{name}: model.input_size is {size}; a {arch} needs a multiple of "
                         f"{multiple} from {multiple} to {MAX_INPUT_SIZE}, e.g. {near}")
    choices = {"optim.name": (cfg.optim.name, ("adamw", "sgd", "rmsprop")),
               "device": (cfg.device, ("auto", "cpu", "cuda")),
               "precision": (cfg.precision, ("auto", "fp32", "bf16")),
               **{f"model.{k}": (getattr(cfg.model, k), allowed) for k, allowed in row.model_section.CHOICES.items()},
               **{f"loss.{k}": (getattr(cfg.loss, k), allowed) for k, allowed in row.loss_section.CHOICES.items()}}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{name}: {key} {value!r} is not one of {', '.join(allowed)}")
    _check_augment(cfg.augment, name)


def _check_augment(augment: list, name: str) -> None:
    """Each entry a one-key mapping {TransformName: {arguments}} with a known name and arguments it accepts;
    the pipeline is built and run once on a small synthetic image so a bad value fails here, not in an epoch."""
    example = "e.g. - RandomAffine: {rotation: 30}"
    steps, k = [], 1
    for i, entry in enumerate(augment):
        where = f"{name}: augment[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{where} is {entry!r}; each entry must be one {{TransformName: {{arguments}}}}, "
                             f"{example}")
        (tname, kwargs), = entry.items()
        if tname not in TRANSFORMS:
            raise ValueError(f"{where}: unknown transform {tname!r}; known: {', '.join(TRANSFORMS)}")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict) or not all(isinstance(a, str) for a in kwargs):
            raise ValueError(f"{where}.{tname}: arguments must be a mapping such as {{p: 0.5}}, got {kwargs!r}")
        params = inspect.signature(TRANSFORMS[tname]).parameters
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"{where}.{tname}: unknown argument(s) {', '.join(unknown)}; known: {', '.join(params)}")
        kwargs = dict(kwargs)
        if tname == "RandomFlip":  # training passes the skeleton's flip_index; the check uses one keypoint
            kwargs.setdefault("flip_index", [0])
            k = len(kwargs["flip_index"]) if isinstance(kwargs["flip_index"], list) else k
        try:
            steps.append(TRANSFORMS[tname](**kwargs))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{tname}: bad argument(s) {kwargs!r:.120} ({exc}); "
                             f"known: {', '.join(params)}") from None
    try:
        pipeline = Compose(steps, (32, 32))
        keypoints = np.tile(np.array([[[20.0, 24.0, 2.0]]], np.float32), (1, k, 1))
        keypoints[0, :, 0] += np.arange(k, dtype=np.float32)
        sample = Sample(np.full((48, 40, 3), 128, np.uint8), keypoints, np.array([[10, 10, 30, 40]], np.float32),
                        np.zeros((48, 40), bool), 0, "check")
        for seed in range(4):
            pipeline(sample, np.random.default_rng(seed))
    except Exception as exc:  # noqa: BLE001 (any failure here is a bad argument value)
        raise ValueError(f"{name}: augment fails on a test image ({type(exc).__name__}: {exc}); "
                         "check the transforms' argument values") from None


def check_paths(cfg: TrainConfig) -> None:
    """Before any work: the data exist and nothing but folders stands at ``out/checkpoints`` and ``teacher.cache``
    (ValueError / FileNotFoundError naming the key; ``train`` checks ``out`` itself with ``check_writable``)."""
    for key, value in (("data.train", cfg.data.train), ("data.val", cfg.data.val),
                       ("data.image_root", cfg.data.image_root)):
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{key} {value} does not exist; point {key} at your data "
                                    "(a relative path is relative to the recipe's folder)")
    if cfg.data.val and not Path(cfg.data.val).is_file():
        raise ValueError(f"data.val {cfg.data.val} is not a file; it must be a COCO keypoints json")
    for key, folder in (("out", Path(cfg.out) / "checkpoints"), ("teacher.cache", cfg.teacher.cache)):
        if folder and Path(folder).exists() and not Path(folder).is_dir():
            raise ValueError(f"{key}: {folder} is a file, not a folder; move it or set {key} to a folder")


def load_config(path: str | Path) -> TrainConfig:
    """Read a recipe; relative data paths are resolved against the YAML's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; a recipe is YAML text (see configs/)") from None
    raw = {} if raw is None else raw
    cfg = _build(TrainConfig, raw, path.name, _architecture(raw, path.name))
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
    validate(cfg, path.name)
    return cfg
