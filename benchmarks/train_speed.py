"""Training speed: images/s of the data loader (per worker process) and of a training step, per model.

    python benchmarks/train_speed.py [--workers 1 2] [--steps 10] [--threads 2] [--precision auto] [--out FILE]

Two models, each with its own recipe's data and augmentation:
  - MoveNet Lightning (MobileNetV2 1.0 + FPN, 192x192) on coco_mini train, the default augmentation;
  - the FPD student hourglass (4x128, 256x256) on LSP train, configs/fpd_lsp_student_scratch.yaml's augmentation.

The loader rows run the trainer's own pipeline (read, augment, encode targets, collate; uint8 images,
persistent workers) with nothing else in the process, over enough items that every worker stays busy,
once per ``--workers`` count; "per worker" is images/s divided by the workers. The first row of each model
is the same work in this process, per second of its CPU time: what a worker delivers on a core of its own,
however loaded the machine is. A machine feeds about that x (cores - 1) images/s (the main process needs a
core). The step rows are the trainer's step
(forward in the recipe's precision, loss, backward, optimizer) on a real batch, on the GPU when there is
one (the ``device`` line says which). Data: ``FEATHERPOSE_SHARED`` or ``../shared`` beside the checkout.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from featherpose.train.config import TrainConfig, load_config
from featherpose.train.data import EpochIndices, TrainDataset
from featherpose.train.trainer import OPTIMIZERS, batch_to, build_loss, build_model, forward_loss, place_model

from _common import SHARED, emit, machine_lines

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def recipes(batch: int) -> list[tuple[str, TrainConfig]]:
    """(label, recipe) of the two models timed."""
    movenet = TrainConfig()  # the default recipe: MoveNet Lightning at 192
    movenet.data.train = str(SHARED / "data" / "coco_mini" / "person_keypoints_train2017.json")
    hourglass = load_config(CONFIGS / "fpd_lsp_student_scratch.yaml")
    hourglass.data.train = str(SHARED / "data" / "lsp" / "lsp_train.json")
    for cfg in (movenet, hourglass):
        cfg.batch_size = batch
    return [("MoveNet Lightning 192 (coco_mini)", movenet),
            (f"hourglass {hourglass.model.stacks}x{hourglass.model.channels} 256 (LSP)", hourglass)]


def item_images_per_cpu_s(dataset: TrainDataset, items: int) -> float:
    """Items per second of this process's CPU time (read, augment, encode one item): what one loader worker
    delivers on a core of its own, however loaded the machine is now."""
    for i in range(8):  # warm-up: first reads, caches
        dataset[(0, i % len(dataset))]
    start = time.process_time()
    for i in range(items):
        dataset[(1, i % len(dataset))]
    return items / (time.process_time() - start)


def loader_images_per_s(dataset: TrainDataset, batch: int, workers: int, batches: int) -> float:
    """Images/s of the trainer's loader alone, after its start (the first two batches of each worker)."""
    sampler = EpochIndices(RandomSampler(dataset, replacement=True, num_samples=batch * (batches + 2 + 2 * workers)))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=TrainDataset.collate, persistent_workers=workers > 0,
                        pin_memory=torch.cuda.is_available())
    feed = iter(loader)
    for _ in range(2 * max(1, workers)):  # every worker has started, and the batches they prefetched are gone
        next(feed)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        n += next(feed)[0].shape[0]
    return n / (time.perf_counter() - start)


def step_images_per_s(cfg: TrainConfig, dataset: TrainDataset, device: torch.device, steps: int) -> tuple[float, bool]:
    """Images/s of the training step on one real batch, and whether it ran in bf16."""
    model, bf16 = place_model(build_model(cfg, dataset.num_keypoints).train(), cfg, device)
    optimizer = OPTIMIZERS[cfg.optim.name](model.parameters(), lr=cfg.optim.lr)
    loss_fn = build_loss(cfg, dataset.skeleton)
    images, targets = TrainDataset.collate([dataset[i % len(dataset)] for i in range(cfg.batch_size)])
    images = batch_to(images, device)
    targets = {k: v.to(device) for k, v in targets.items()}

    def step():
        loss, _ = forward_loss(model, loss_fn, images, targets, bf16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up (cuDNN's autotuner)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start), bf16


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--loader-batches", type=int, default=12, help="timed loader batches per worker count")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the step on a CPU")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="loader process counts to time")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="the step's precision (auto: bf16 on a GPU that has it, else fp32)")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = f"{args.threads} (device {device}" + (f", {torch.cuda.get_device_name()})" if device.type == "cuda" else ")")
    lines = ["## Training speed", "", *machine_lines(where, ("torch", "opencv-python-headless")), "",
             "| model | what | images/s | per worker |", "|---|---|---:|---:|"]
    for label, cfg in recipes(args.batch):
        cfg.precision = args.precision
        dataset = TrainDataset(cfg)
        cpu_ips = item_images_per_cpu_s(dataset, 100)
        lines.append(f"| {label} | one item at a time, per CPU-second (a worker with a core of its own) | "
                     f"{cpu_ips:.1f} | {cpu_ips:.1f} |")
        for workers in args.workers:
            ips = loader_images_per_s(dataset, args.batch, workers, args.loader_batches * max(1, workers))
            lines.append(f"| {label} | data loader, {workers} worker{'s' * (workers != 1)} | {ips:.1f} | "
                         f"{ips / max(1, workers):.1f} |")
            print(lines[-1], file=sys.stderr, flush=True)
        ips, bf16 = step_images_per_s(cfg, dataset, device, args.steps)
        lines.append(f"| {label} | training step, batch {args.batch}, {'bf16' if bf16 else 'fp32'} | {ips:.1f} | |")
        print(lines[-1], file=sys.stderr, flush=True)
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
