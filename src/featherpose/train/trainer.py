"""``featherpose train CONFIG.yaml``: one readable training loop (nanoGPT-style), DDP when launched by torchrun.

    featherpose train configs/movenet_lightning_coco.yaml            # this machine
    torchrun --nproc_per_node 8 -m featherpose train CONFIG.yaml      # 8 GPUs (or CPU processes, gloo)

Per epoch the trainer writes (rank 0, atomically) into ``out``:
    checkpoints/last.safetensors   model weights, loadable by featherpose.load / eval / export
    checkpoints/last.optim.pt      optimizer state
    checkpoints/state.json         epoch, step, config, metrics: what --resume continues from
    metrics.csv                    one row per step (loss parts, lr, images/s) and per evaluation
    curves.png                     the training curves
A run killed mid-epoch loses at most that epoch: ``--resume`` restarts after the last completed one,
at the same optimizer step, with the same optimizer state and learning rate.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..codecs.heatmap import HeatmapCodec
from ..fileio import atomic_path, write_text
from ..models.hourglass import HourglassConfig, StackedHourglass
from ..models.movenet import MoveNet, MoveNetConfig
from ..skeletons import Skeleton, skeleton_to_json
from ..weights_io import load_weights, save_weights
from .config import TrainConfig, load_config
from .data import TrainDataset
from .distill import Teacher, cache_teacher_keypoints, live_targets
from .losses import DistillationLoss, HeatmapLoss, MoveNetLoss

log = logging.getLogger(__name__)


def get_lr(step: int, total_steps: int, cfg) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
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


def build_model(cfg: TrainConfig, num_keypoints: int) -> MoveNet | StackedHourglass:
    """The network of the recipe, with starting weights when ``model.init`` names some."""
    if cfg.model.init:
        from ..zoo import ARCHITECTURES, resolve_weights

        weights = load_weights(resolve_weights(cfg.model.init)[0])
        arch = weights.meta.get("architecture")
        if arch != cfg.model.architecture:
            raise ValueError(f"model.init {cfg.model.init} is a {arch} network, the recipe trains a "
                             f"{cfg.model.architecture}")
        if arch == "movenet":
            weights.config = {**weights.config, "input_size": cfg.model.input_size}
        model, _ = ARCHITECTURES[arch](weights, None)
        if model.config.num_keypoints != num_keypoints:
            raise ValueError(f"model.init {cfg.model.init} predicts {model.config.num_keypoints} keypoints, "
                             f"the data has {num_keypoints}")
        return model.train()
    if cfg.model.architecture == "hourglass":
        return StackedHourglass(HourglassConfig(stacks=cfg.model.stacks, channels=cfg.model.channels,
                                                num_keypoints=num_keypoints, input_size=cfg.model.input_size))
    return MoveNet(MoveNetConfig(width=cfg.model.width, num_keypoints=num_keypoints, input_size=cfg.model.input_size,
                                 batch_norm=cfg.model.batch_norm, backbone=cfg.model.backbone,
                                 box_heads=cfg.model.multi))


def build_loss(cfg: TrainConfig, skeleton: Skeleton) -> MoveNetLoss | HeatmapLoss | DistillationLoss:
    """The family's loss, wrapped in FPD's distillation loss when the recipe names a teacher."""
    if cfg.model.architecture == "hourglass":
        loss = HeatmapLoss()
    else:
        loss = MoveNetLoss(head_weights=tuple(cfg.loss.head_weights), k=cfg.loss.k, activation=cfg.loss.activation,
                           bone_weight=cfg.loss.bone_weight, limbs=list(skeleton.limbs))
    return DistillationLoss(loss, cfg.teacher.alpha) if cfg.teacher.model else loss


def _codec_metadata(cfg: TrainConfig, codec) -> dict:
    if isinstance(codec, HeatmapCodec):
        return codec.to_dict()
    return {"multi": cfg.model.multi, "fp16_constants": False, "activation": cfg.loss.activation}


def _save_checkpoint(out: Path, model, codec, optimizer, cfg: TrainConfig, skeleton: Skeleton, epoch: int,
                     step: int, metrics: dict) -> None:
    ck = out / "checkpoints"
    how = f"featherpose train, epoch {epoch + 1}, step {step}"
    if cfg.teacher.model:
        how += f", distilled from {Path(cfg.teacher.model).name} (alpha {cfg.teacher.alpha:g})"
    save_weights(ck / "last.safetensors", model.state_dict(), name=out.resolve().name,
                 architecture=cfg.model.architecture, config=model.config.to_dict(),
                 codec=_codec_metadata(cfg, codec), skeleton=skeleton_to_json(skeleton), source=how,
                 license="see the training data's licence")
    with atomic_path(ck / "last.optim.pt") as tmp:
        torch.save(optimizer.state_dict(), tmp)
    write_text(ck / "state.json", json.dumps({"epoch": epoch, "step": step, "metrics": metrics,
                                              "config": cfg.to_dict()}, indent=1))


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
    for key in ("loss", "heatmap", "center", "regress", "offset", "distill"):
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


CSV_FIELDS = ["step", "epoch", "lr", "loss", "heatmap", "center", "regress", "offset", "box", "bone", "distill",
              "images_per_s", "AP", "PCK"]


def train(config: TrainConfig | str | Path, resume: bool = False, dry_run: bool = False,
          progress: bool = True) -> TrainResult:
    """Run a training recipe (see the module docstring for what is written where).

    Args:
        config: a TrainConfig or the path of its YAML.
        resume: continue from ``out/checkpoints`` after the last completed epoch.
        dry_run: one training batch, then stop, writing nothing.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    rank, world, device = _dist_setup(cfg)
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    teacher_skeleton = None
    if cfg.teacher.model and Path(cfg.data.train).is_dir():  # unlabelled images: learn the teacher's keypoints
        from ..zoo import build

        teacher_skeleton = build(cfg.teacher.model)[3]
    dataset = TrainDataset(cfg, teacher_skeleton)
    k = dataset.num_keypoints
    model = build_model(cfg, k).to(device)
    codec = dataset.codec
    loss_fn = build_loss(cfg, dataset.skeleton)
    teacher = None
    if cfg.teacher.model:
        teacher = Teacher(cfg.teacher.model, codec, dataset.skeleton, cfg.teacher.min_confidence, device)
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
    state_path = out / "checkpoints" / "state.json"
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_path} does not exist")
        state = json.loads(state_path.read_text())
        model.load_state_dict(load_weights(out / "checkpoints" / "last.safetensors").state_dict)
        optimizer.load_state_dict(torch.load(out / "checkpoints" / "last.optim.pt", map_location=device))
        start_epoch, step, metrics = state["epoch"] + 1, state["step"], state.get("metrics", {})
        if start_epoch >= cfg.epochs:
            raise ValueError(f"nothing to resume: {out} already finished {start_epoch} of {cfg.epochs} epochs; "
                             "raise epochs in the recipe to train longer")
        log.info("resuming after epoch %d at step %d", state["epoch"] + 1, step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.data.workers, drop_last=len(dataset) >= cfg.batch_size * world,
                        persistent_workers=cfg.data.workers > 0, collate_fn=TrainDataset.collate,
                        generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = min(len(loader), cfg.max_steps_per_epoch or len(loader))
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    csv_path = out / "metrics.csv"
    if rank == 0 and not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        if not resume or not csv_path.exists():
            csv_path.write_text(",".join(CSV_FIELDS) + "\n")
    result = TrainResult(out, start_epoch, step)
    last_plot = 0.0
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        net.train()
        early = cfg.loss.early_head_weights is not None and epoch < cfg.loss.early_epochs
        base_loss = loss_fn.base if isinstance(loss_fn, DistillationLoss) else loss_fn
        if isinstance(base_loss, MoveNetLoss):
            base_loss.head_weights = tuple(cfg.loss.early_head_weights if early else cfg.loss.head_weights)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress or rank != 0, dynamic_ncols=True)
        rows = []
        for i, (images, targets) in enumerate(loader):
            if i >= steps_per_epoch:
                break
            t0 = time.perf_counter()
            lr = get_lr(step, total_steps, cfg.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(device, non_blocking=True)
            if teacher is not None:
                targets.update(live_targets(teacher, dataset, images))
            targets = {n: t.to(device, non_blocking=True) for n, t in targets.items()}
            loss, parts = loss_fn(net(images), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at step {step}; lower optim.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            ips = images.shape[0] * world / (time.perf_counter() - t0)
            value = float(loss.detach())
            result.step, result.last_loss = step, value
            result.first_loss = value if result.first_loss is None else result.first_loss
            rows.append({"step": step, "epoch": epoch + 1, "lr": f"{lr:.6g}", "loss": f"{value:.6g}",
                         **{n: f"{v:.6g}" for n, v in parts.items()}, "images_per_s": f"{ips:.1f}"})
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
            bar.update()
            if dry_run:
                break
        bar.close()
        if dry_run:
            return result
        if rank == 0:
            if cfg.data.val and (epoch + 1) % cfg.eval_every == 0:
                metrics = _evaluate(model, codec, dataset.skeleton, cfg)
                pck = metrics.get("PCK@0.2 (torso)", metrics.get("PCK@0.2 (box)", float("nan")))
                rows.append({"step": step, "epoch": epoch + 1, "AP": f"{metrics.get('AP', float('nan')):.4f}",
                             "PCK": f"{pck:.4f}"})
            _save_checkpoint(out, model, codec, optimizer, cfg, dataset.skeleton, epoch, step, metrics)
            with csv_path.open("a", newline="") as f:  # after the checkpoint: a resumed run never repeats rows
                csv.DictWriter(f, CSV_FIELDS).writerows(rows)
            if time.monotonic() - last_plot > 30 or epoch + 1 == cfg.epochs:  # plotting costs ~1 s
                _plot_curves(csv_path, out / "curves.png")
                last_plot = time.monotonic()
        if world > 1:
            dist.barrier()
        result.epochs_done, result.step, result.metrics = epoch + 1, step, metrics
    return result


def _evaluate(model, codec, skeleton, cfg: TrainConfig) -> dict:
    """OKS AP, PCK and the other metrics of the current weights on ``data.val``."""
    from ..estimator import Estimator
    from ..evaluation import evaluate

    cpu_model = type(model)(model.config)
    cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    est = Estimator(Path(cfg.out).name, cpu_model.eval(), codec, skeleton, backend="torch")
    return evaluate(est, cfg.data.val, progress=False).metrics()
