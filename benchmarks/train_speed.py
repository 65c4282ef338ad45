"""MoveNet training speed: images/s of a training step and of the data loader alone.

    python benchmarks/train_speed.py [--batch 32] [--steps 10] [--threads 2] [--data JSON] [--out FILE]

A step = forward + loss + backward + AdamW update of MoveNet Lightning (MobileNetV2 1.0 + FPN,
BatchNorm, 192x192) on a batch of real images (coco_mini train, the default augmentation). The
loader number is the same pipeline (read, augment, encode targets, collate) without the network,
so one can see whether data loading would be the bottleneck. Uses the GPU when one is available.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from featherpose.train.config import TrainConfig
from featherpose.train.data import TrainDataset
from featherpose.train.losses import MoveNetLoss
from featherpose.train.trainer import build_model

from _common import SHARED, emit, machine_lines



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="data loader processes")
    p.add_argument("--data", default=str(SHARED / "data" / "coco_mini" / "person_keypoints_train2017.json"))
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TrainConfig()
    cfg.data.train, cfg.data.workers, cfg.batch_size = args.data, args.workers, args.batch
    dataset = TrainDataset(cfg)
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=False,
                        collate_fn=TrainDataset.collate, persistent_workers=args.workers > 0)

    def batches():
        while True:
            yield from loader

    feed = batches()
    next(feed)  # start the workers
    t = time.perf_counter()
    n = 0
    for _ in range(args.steps):
        images, _ = next(feed)
        n += images.shape[0]
    loader_ips = n / (time.perf_counter() - t)

    model = build_model(cfg, dataset.num_keypoints).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = MoveNetLoss()
    images, targets = next(feed)
    images, targets = images.to(device), {k: v.to(device) for k, v in targets.items()}

    def step():
        loss, _ = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_ips = args.steps * images.shape[0] / (time.perf_counter() - t)
    where = f"{args.threads} (device {device}" + (f", {torch.cuda.get_device_name()})" if device.type == "cuda" else ")")
    text = "\n".join([
        "## MoveNet Lightning training speed", "", *machine_lines(where, ("torch",)),
        f"- data {Path(args.data).name} ({len(dataset)} images), default augmentation",
        "",
        "| what | images/s |", "|---|---:|",
        f"| training step (192x192, batch {args.batch}, forward + backward + AdamW) | {step_ips:.1f} |",
        f"| data loader alone ({args.workers} workers: read, augment, encode, collate) | {loader_ips:.1f} |",
        "",
    ])
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
