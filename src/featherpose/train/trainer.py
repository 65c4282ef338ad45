"""``featherpose train CONFIG.yaml``: one readable training loop (nanoGPT-style), DDP when launched by torchrun.

    featherpose train configs/movenet_lightning_coco.yaml            # this machine
    torchrun --nproc_per_node 8 -m featherpose train CONFIG.yaml      # 8 GPUs (or CPU processes, gloo)

On a GPU the step runs in bf16 autocast (``precision: auto``; ``fp32`` or ``bf16`` force it, a CPU trains in
fp32 unless the recipe says ``bf16``), with cuDNN's autotuner; channels-last tensors on every device; the loss is
computed in fp32. Loader workers live for the whole run and send uint8 images, pinned for the copy.

Per epoch (every ``save_every`` epochs and after the last) the trainer writes (rank 0, atomically) into ``out``:
    checkpoints/weights-eNNNN.safetensors   model weights after epoch NNNN
    checkpoints/optim-eNNNN.pt              optimizer state after epoch NNNN
    checkpoints/state.json         epoch, step, config, metrics, and the two files above with their size and
                                   sha256: what --resume continues from
    checkpoints/last.safetensors   the weights state.json names (a hard link, else a copy), loadable by
                                   featherpose.load / eval / export; last.optim.pt likewise
    metrics.csv                    one row per step (loss parts, lr, images/s, ms waited for data) and per
                                   evaluation
    curves.png                     the training curves

A checkpoint is one unit: both files are written under epoch-specific names, then state.json is
replaced in one atomic rename, which is the commit; last.* are published and the previous epoch's
files removed after it. A run killed at any point (mid-epoch or mid-write) leaves state.json naming
complete files, so ``--resume`` restarts after the last committed epoch at the same optimizer step,
with the same optimizer state, learning rate, shuffle order and augmentation, and ends on the same
weights as a run never interrupted. Stale temporaries and uncommitted files are removed on start. A new
run (no ``--resume``) refuses an ``out`` that holds a committed run, so an earlier run is never replaced.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..data.coco import describe_problems
from ..estimator import Estimator
from ..evaluation import evaluate
from ..families import family, loss_parts
from ..fileio import TMP_MARK, atomic_path, check_writable, remove_stale_temporaries, write_text
from ..skeletons import Skeleton, skeleton_to_json
from ..weights_io import load_weights, save_weights
from ..zoo import build, resolve_weights
from .config import TrainConfig, check_paths, load_config, validate
from .data import EpochIndices, TrainDataset
from .distill import Teacher, cache_teacher_keypoints, live_targets
from .losses import DistillationLoss

log = logging.getLogger(__name__)


def get_lr(step: int, total_steps: int, cfg, budget_spent: float = 0.0) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``.

    ``budget_spent``: the fraction of a time budget (``max_minutes``) spent; the decay follows whichever of
    steps and time is further along, so a budgeted run ends at the low learning rate too.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, max(budget_spent, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    """What a run did."""

    out: Path
    epochs_done: int
    step: int
    first_loss: float | None = None
    last_loss: float | None = None
    metrics: dict = field(default_factory=dict)


OPTIMIZERS = {"adamw": torch.optim.AdamW, "sgd": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw),
              "rmsprop": torch.optim.RMSprop}  # RMSProp: FPD's and Newell et al.'s optimiser


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo's flags (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _dist_setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but torch sees no GPU; use auto or cpu")
    use_cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the step runs in bf16 autocast: ``precision: bf16``, or ``auto`` on a GPU that supports bf16."""
    if cfg.precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return cfg.precision == "bf16"


def _as_float32(heads):
    """The network's outputs (a dict, list or tensor) in float32, for a loss computed in full precision."""
    if isinstance(heads, dict):
        return {k: _as_float32(v) for k, v in heads.items()}
    if isinstance(heads, (list, tuple)):
        return type(heads)(_as_float32(v) for v in heads)
    return heads.float() if torch.is_tensor(heads) and heads.is_floating_point() else heads


def place_model(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, bool]:
    """``model`` on ``device`` set up to train there (channels-last; cuDNN autotuning on a GPU), and whether its
    steps run in bf16 autocast (:func:`use_bf16`).

    Channels-last on a CPU too: oneDNN's kernels for it train faster. benchmarks/train_layout.py, three runs on a
    2-core Xeon: a step of each memorisation recipe 1.38-2.26x faster for Lite Pose XS (its 7x7 depthwise backward
    above all), 1.31-1.59x MoveNet, 1.10-1.32x Lightweight OpenPose, 1.17-1.30x the hourglass."""
    model = model.to(device).to(memory_format=torch.channels_last)
    bf16 = use_bf16(cfg, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # a fixed input size: cuDNN picks the fastest kernels once
    elif bf16 and not _cpu_has_bf16():
        _say("precision: bf16 on a CPU without AVX512-BF16 or AMX runs emulated, slower than fp32; "
             "use precision: fp32 here")
    return model, bf16


def forward_loss(net, loss_fn, images: torch.Tensor, targets: dict, bf16: bool) -> tuple[torch.Tensor, dict]:
    """The step's forward pass (in bf16 autocast when ``bf16``) and its loss, computed in float32."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        heads = net(images)
    return loss_fn(_as_float32(heads), targets)


def batch_to(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader batch (B, 3, H, W) uint8 as float32 0..255 on ``device``, channels-last (as :func:`place_model`)."""
    return images.to(device, non_blocking=True).to(torch.float32, memory_format=torch.channels_last)


def build_model(cfg: TrainConfig, num_keypoints: int) -> torch.nn.Module:
    """The network of the recipe's family, with starting weights when ``model.init`` names some."""
    row = family(cfg.model.architecture)
    if cfg.model.init:
        weights = load_weights(resolve_weights(cfg.model.init)[0])
        arch = weights.meta.get("architecture")
        if arch != cfg.model.architecture:
            raise ValueError(f"model.init {cfg.model.init} is a {arch} network, the recipe trains a "
                             f"{cfg.model.architecture}")
        if row.init_any_size:
            weights.config = {**weights.config, "input_size": cfg.model.input_size}
        model, _ = row.from_weights(weights, None)
        wanted = row.network_config(cfg.model, num_keypoints).num_keypoints  # a family may add some (lwop's neck)
        if model.config.num_keypoints != wanted:
            raise ValueError(f"model.init {cfg.model.init} predicts {model.config.num_keypoints} keypoints, "
                             f"the data needs {wanted}")
        return model.train()
    return row.network(row.network_config(cfg.model, num_keypoints))


def build_loss(cfg: TrainConfig, skeleton: Skeleton):
    """The family's loss, wrapped in FPD's distillation loss when the recipe names a teacher."""
    loss = family(cfg.model.architecture).loss(cfg.model, cfg.loss, skeleton)
    return DistillationLoss(loss, cfg.teacher.alpha) if cfg.teacher.model else loss


CHECKPOINT_FILE = re.compile(r"^(weights|optim)-e\d{4,}\.(safetensors|pt)$")
COMMIT_FILES = ("state.json", "last.safetensors", "last.optim.pt")
# what earlier featherpose versions' atomic_path left of a killed checkpoint write: ".{stem}.{8 random}{suffix}"
LEGACY_TEMPORARY = re.compile(r"^\.(weights-e\d+|optim-e\d+|last|last\.optim|state)\.[a-z0-9_]{8}"
                              r"\.(safetensors|pt|json)$")


def _describe(path: Path) -> dict:
    """{"name", "size", "sha256"} of a checkpoint file (:func:`~featherpose.fileio.atomic_path` wrote it to disk)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _publish(src: Path, dst: Path) -> None:
    """Make ``dst`` (last.*) the same content as ``src`` atomically: a hard link, or a copy where links fail."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _tidy_checkpoints(ck: Path, keep: set[str]) -> None:
    """Remove the temporaries killed checkpoint writes left and the epoch files no committed state.json names.

    A temporary of a process still running (a concurrent writer) is left alone
    (:func:`~featherpose.fileio.remove_stale_temporaries`).
    """
    if not ck.is_dir():
        return
    targets = []
    for path in ck.iterdir():
        name = path.name
        if name.startswith(".") and TMP_MARK in name:
            target = name[1:name.index(TMP_MARK)]
            if CHECKPOINT_FILE.match(target) or target in COMMIT_FILES:
                targets.append(ck / target)
        elif (LEGACY_TEMPORARY.match(name) or (CHECKPOINT_FILE.match(name) and name not in keep)) and path.is_file():
            path.unlink()
    remove_stale_temporaries(*targets)


def _save_checkpoint(out: Path, model, codec, optimizer, cfg: TrainConfig, skeleton: Skeleton, epoch: int,
                     step: int, metrics: dict, minutes: float) -> None:
    """Write epoch ``epoch``'s weights and optimizer state, then commit them with one rename of state.json."""
    ck = out / "checkpoints"
    how = f"featherpose train, epoch {epoch + 1}, step {step}"
    if cfg.teacher.model:
        how += f", distilled from {Path(cfg.teacher.model).name} (alpha {cfg.teacher.alpha:g})"
    weights, optim = ck / f"weights-e{epoch + 1:04d}.safetensors", ck / f"optim-e{epoch + 1:04d}.pt"
    save_weights(weights, model.state_dict(), name=out.resolve().name,
                 architecture=cfg.model.architecture, config=model.config.to_dict(),
                 codec=codec, skeleton=skeleton_to_json(skeleton), source=how,
                 license="see the training data's licence")
    with atomic_path(optim) as tmp:
        torch.save(optimizer.state_dict(), tmp)
    files = {"weights": _describe(weights), "optim": _describe(optim)}
    write_text(ck / "state.json", json.dumps({"epoch": epoch, "step": step, "minutes": round(minutes, 4),
                                              "metrics": metrics, "files": files, "config": cfg.to_dict()},
                                             indent=1))  # the commit
    _publish(weights, ck / "last.safetensors")
    _publish(optim, ck / "last.optim.pt")
    _tidy_checkpoints(ck, {weights.name, optim.name})


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"model.width": 0.5, ...} of a nested config dict."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# what a checkpoint cannot be continued with: another network, another skeleton or another optimizer
RESUME_FIXED = ("model.", "data.train", "optim.name")


def _read_state(ck: Path, cfg: TrainConfig) -> dict:
    """The committed state.json of ``ck``, with its files verified against their size and sha256.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: a damaged or mismatched checkpoint, or a recipe that
            changed what a checkpoint cannot be continued with (model, data.train, optim.name).
    """
    state_path = ck / "state.json"
    if not state_path.is_file():
        raise FileNotFoundError(f"nothing to resume: {state_path} does not exist")
    try:
        state = json.loads(state_path.read_text())
        epoch, step = int(state["epoch"]), int(state["step"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{state_path}: not a checkpoint state featherpose wrote ({type(exc).__name__}: {exc}); "
                         "restore it, or start again with out set to a new folder") from None
    if epoch + 1 >= cfg.epochs:
        raise ValueError(f"nothing to resume: {ck.parent} already finished {epoch + 1} of {cfg.epochs} epochs; "
                         "raise epochs in the recipe to train longer")
    files = state.get("files") or {"weights": {"name": "last.safetensors"}, "optim": {"name": "last.optim.pt"}}
    for part in ("weights", "optim"):
        info = files.get(part) if isinstance(files, dict) else None
        path = ck / str(info.get("name", "")) if isinstance(info, dict) else None
        if path is None or not path.is_file():
            raise ValueError(f"{state_path}: its {part} file {path.name if path else '?'} is missing; restore it, "
                             "or start again with out set to a new folder")
        if "sha256" in info and (path.stat().st_size != info.get("size")
                                 or _describe(path)["sha256"] != info["sha256"]):
            raise ValueError(f"{path}: does not match {state_path.name} (size or sha256 differ: changed or damaged "
                             f"after epoch {epoch + 1} was saved); restore it, or start again with out set to a "
                             "new folder")
        state[f"{part}_path"] = path
    saved, now = _flat(state.get("config") or {}), _flat(json.loads(json.dumps(cfg.to_dict())))
    changed = [k for k in now if k in saved and saved[k] != now[k] and k != "out"]
    fixed = [k for k in changed if k.startswith(RESUME_FIXED)]
    if fixed:
        raise ValueError(f"cannot resume {ck.parent}: the recipe changed {', '.join(fixed)} (the run's own values "
                         f"are in {state_path.name}); restore them, or set out to a new folder to start again")
    if changed:
        _say("resuming with changed settings: " + ", ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in changed))
    state["epoch"], state["step"] = epoch, step
    return state


def _refuse_existing_run(ck: Path) -> None:
    """A new run never replaces a committed one: ValueError when ``ck`` holds a state.json."""
    state_path = ck / "state.json"
    if not state_path.exists():
        return
    try:
        done = f"epoch {int(json.loads(state_path.read_text())['epoch']) + 1}"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        done = f"its {state_path.name} is unreadable"
    raise ValueError(f"{ck.parent} already holds a trained run ({done}); continue it with --resume or set out to "
                     "a new folder")


def _load_optimizer_state(path: Path, device) -> dict:
    """torch.load of an optimizer state with ``weights_only=True``: tensors and plain data, never pickled code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 (unpickling raises many types; all mean "not ours")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: refused to load: not an optimizer state featherpose train wrote ({reason[:200]}); "
                         "restore the checkpoint, or start again with out set to a new folder") from None


def _trim_metrics(csv_path: Path, last_step: int) -> None:
    """Keep the metrics.csv rows of committed steps only (a killed epoch's rows and a torn last row go)."""
    if not csv_path.is_file():
        write_text(csv_path, ",".join(CSV_FIELDS) + "\n")
        return
    with csv_path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if None not in r.values() and None not in r
                and r["step"].isdigit() and int(r["step"]) <= last_step]
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _say(message: str) -> None:
    """One line for the user on stderr (beside the progress bar), from rank 0 only."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, file=sys.stderr, flush=True)


def _epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The torch seed of one epoch on one rank: a resumed run draws exactly what an uninterrupted one did."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def _plot_curves(csv_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows if r["loss"]]
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", *LOSS_PARTS, "distill"):
        values = [float(r[key]) if r.get(key) else float("nan") for r in rows if r["loss"]]
        if any(v == v for v in values):
            ax.plot(steps, values, label=key, lw=1 if key != "loss" else 2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = None
    for key, style in (("AP", "k--o"), ("PCK", "m--s")):
        evals = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) and r[key] != "nan"]
        if evals:
            ax2 = ax2 or ax.twinx()
            ax2.plot(*zip(*evals), style, label=f"val {key}")
            ax2.set_ylabel("AP / PCK@0.2")
            ax2.set_ylim(0, 1)
            ax2.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(csv_path.parent.name)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


#: Every family's loss parts (the table's order), the columns of metrics.csv between ``loss`` and ``distill``.
LOSS_PARTS = tuple(loss_parts())
# images_per_s: the whole step's throughput, data waiting included; wait_ms: of it, the time waiting for the loader
CSV_FIELDS = ["step", "epoch", "lr", "loss", *LOSS_PARTS, "distill", "images_per_s", "wait_ms", "AP", "PCK"]


def train(config: TrainConfig | str | Path, resume: bool = False, dry_run: bool = False,
          progress: bool = True) -> TrainResult:
    """Run a training recipe (see the module docstring for what is written where).

    Args:
        config: a TrainConfig or the path of its YAML.
        resume: continue from ``out/checkpoints`` after the last completed epoch.
        dry_run: one training batch, then stop, writing nothing.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    if config is cfg:
        validate(cfg)
    check_paths(cfg)
    rank, world, device = _dist_setup(cfg)
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    ck = out / "checkpoints"
    if not dry_run and rank == 0:
        check_writable(out, "out folder", folder=True)  # now, not after the data and the teacher's cache
    state = _read_state(ck, cfg) if resume else None  # before any long work: a bad checkpoint fails first
    if not resume and not dry_run:
        _refuse_existing_run(ck)
    teacher_skeleton = None
    if cfg.teacher.model and Path(cfg.data.train).is_dir():  # unlabelled images: learn the teacher's keypoints
        teacher_skeleton = build(cfg.teacher.model)[3]
    dataset = TrainDataset(cfg, teacher_skeleton)
    if rank == 0 and dataset.coco.problems:
        _say(f"{dataset.coco.ann_file.name}: {describe_problems(dataset.coco.problems, 5)}; training on the rest")
    k = dataset.num_keypoints
    model, bf16 = place_model(build_model(cfg, k), cfg, device)
    codec = dataset.codec
    loss_fn = build_loss(cfg, dataset.skeleton)
    teacher = None
    if cfg.teacher.model:
        teacher = Teacher(cfg.teacher.model, codec, dataset.skeleton, cfg.teacher.min_confidence, device, bf16)
        dataset.teacher_joints = teacher.shared_joints
        log.info("distilling from %s (alpha %g, %s, %d of %d keypoints shared)", teacher.name, cfg.teacher.alpha,
                 "cached" if cfg.teacher.cache else ("live, heatmaps" if teacher.soft else "live, keypoints"),
                 int(teacher.shared_joints.sum()), k)
        if cfg.teacher.cache:
            dataset.teacher_keypoints = cache_teacher_keypoints(teacher, dataset, cfg.teacher.cache,
                                                                progress=progress and rank == 0)
            teacher = None  # its work is done
    optimizer = OPTIMIZERS[cfg.optim.name](model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    start_epoch, step, metrics = 0, 0, {}
    if state is not None:
        optim_state = _load_optimizer_state(state["optim_path"], device)
        try:
            model.load_state_dict(load_weights(state["weights_path"]).state_dict)
            optimizer.load_state_dict(optim_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"{state['weights_path']}: does not fit the recipe's network or optimizer "
                             f"({str(exc).strip().splitlines()[0][:200]}); set out to a new folder to start "
                             "again") from None
        start_epoch, step, metrics = state["epoch"] + 1, state["step"], state.get("metrics") or {}
        log.info("resuming after epoch %d at step %d", state["epoch"] + 1, step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    # shuffled by (seed, epoch) alone, on one process too, so a resumed epoch sees the same batches; each index
    # carries its epoch (the augmentation seed), so the workers persist across epochs
    sampler = EpochIndices(DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                        num_workers=cfg.data.workers, drop_last=len(dataset) >= cfg.batch_size * world,
                        collate_fn=TrainDataset.collate, persistent_workers=cfg.data.workers > 0,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    csv_path = out / "metrics.csv"
    if rank == 0 and not dry_run:
        ck.mkdir(parents=True, exist_ok=True)
        _tidy_checkpoints(ck, {state["weights_path"].name, state["optim_path"].name} if state else set())
        remove_stale_temporaries(csv_path, out / "curves.png")  # of killed metrics.csv / curves.png writes
        if state is None:  # a new run (no committed one is here): a killed earlier start's rows go
            write_text(csv_path, ",".join(CSV_FIELDS) + "\n")
        else:
            _trim_metrics(csv_path, step)
            if "files" in state:  # last.* may predate the commit if the run died between the two
                _publish(state["weights_path"], ck / "last.safetensors")
                _publish(state["optim_path"], ck / "last.optim.pt")
    result = TrainResult(out, start_epoch, step)
    last_plot = 0.0
    started = time.perf_counter() - 60 * float((state or {}).get("minutes", 0.0))  # a resumed run's time counts

    def budget_spent() -> float:
        """The fraction of the recipe's time budget (``max_minutes``) spent, 0 without one, by rank 0's clock:
        every process of a DDP run must set the same learning rate and stop after the same epoch."""
        if not cfg.max_minutes:
            return 0.0
        spent = (time.perf_counter() - started) / (60 * cfg.max_minutes)
        if world > 1:
            shared = torch.tensor([spent], dtype=torch.float64, device=device)
            dist.broadcast(shared, 0)
            spent = float(shared)
        return spent

    for epoch in range(start_epoch, cfg.epochs):
        if budget_spent() >= 1:
            _say(f"max_minutes: the {cfg.max_minutes:g}-minute budget is spent after epoch {epoch} of {cfg.epochs} "
                 f"(step {step}); stopping")
            break
        sampler.set_epoch(epoch)  # the items carry their epoch: the augmentation follows it in every worker
        torch.manual_seed(_epoch_seed(cfg.seed, rank, epoch))
        net.train()
        schedule = family(cfg.model.architecture).head_weight_schedule
        if schedule is not None:
            schedule(loss_fn.base if isinstance(loss_fn, DistillationLoss) else loss_fn, cfg.loss, epoch)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress or rank != 0, dynamic_ncols=True)
        rows = []
        t_done = time.perf_counter()  # when the previous step ended: the time until the next batch is data waiting
        for i, (images, targets) in enumerate(loader):
            if i >= steps_per_epoch:
                break
            t0 = time.perf_counter()
            lr = get_lr(step, total_steps, cfg.optim, budget_spent())
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = batch_to(images, device)
            if teacher is not None:
                targets.update(live_targets(teacher, dataset, images))
            targets = {n: t.to(device, non_blocking=True) for n, t in targets.items()}
            loss, parts = forward_loss(net, loss_fn, images, targets, bf16)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = float(loss.detach())  # the step's one wait for the GPU
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}; lower optim.lr")
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            now = time.perf_counter()
            ips, wait_ms = images.shape[0] * world / (now - t_done), 1000 * (t0 - t_done)
            t_done = now
            result.step, result.last_loss = step, value
            result.first_loss = value if result.first_loss is None else result.first_loss
            rows.append({"step": step, "epoch": epoch + 1, "lr": f"{lr:.6g}", "loss": f"{value:.6g}",
                         **{n: f"{v:.6g}" for n, v in parts.items()}, "images_per_s": f"{ips:.1f}",
                         "wait_ms": f"{wait_ms:.1f}"})
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.0f}")
            bar.update()
            if dry_run:
                break
        bar.close()
        if dry_run:
            return result
        save = (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs or budget_spent() >= 1
        if rank == 0:
            failed = None
            if cfg.data.val and (epoch + 1) % cfg.eval_every == 0:
                try:
                    metrics = _evaluate(model, codec, dataset.skeleton, cfg)
                except (ValueError, OSError, FloatingPointError) as exc:  # the epoch's training is kept all the same
                    failed, metrics = exc, {}
                else:
                    pck = metrics.get("PCK@0.2 (torso)", metrics.get("PCK@0.2 (box)", float("nan")))
                    rows.append({"step": step, "epoch": epoch + 1, "AP": f"{metrics.get('AP', float('nan')):.4f}",
                                 "PCK": f"{pck:.4f}"})
            with csv_path.open("a", newline="") as f:  # before the commit: --resume drops rows past it
                csv.DictWriter(f, CSV_FIELDS).writerows(rows)
            if save or failed is not None:
                _save_checkpoint(out, model, codec, optimizer, cfg, dataset.skeleton, epoch, step, metrics,
                                 (time.perf_counter() - started) / 60)
            if failed is not None:
                raise ValueError(f"evaluation on data.val failed after epoch {epoch + 1} ({failed}); that epoch is "
                                 f"saved in {ck}: fix data.val (or remove it) and continue with --resume")
            if time.monotonic() - last_plot > 30:  # plotting costs ~1 s
                _plot_curves(csv_path, out / "curves.png")
                last_plot = time.monotonic()
        if world > 1:
            dist.barrier()
        result.epochs_done, result.step, result.metrics = epoch + 1, step, metrics
    if rank == 0 and result.epochs_done > start_epoch:
        _plot_curves(csv_path, out / "curves.png")
    return result


def _evaluate(model, codec, skeleton, cfg: TrainConfig) -> dict:
    """OKS AP, PCK and the other metrics of the current weights on ``data.val`` (a copy in float32 and eval mode, on
    the training device)."""
    copy = type(model)(model.config).to(next(model.parameters()).device)  # scored where it trains (a GPU's faster)
    copy.load_state_dict(model.state_dict())
    # on the training canvas (the codec's square letterbox), not the family's inference preprocessing: a model
    # learning a handful of images is scored at the scale it learned them (lwop: featherpose eval resizes to the
    # input height, whole width, and scores differently; issue 12)
    est = Estimator(Path(cfg.out).name, copy.eval(), codec, skeleton, backend="torch")
    return evaluate(est, cfg.data.val, progress=False).metrics()
