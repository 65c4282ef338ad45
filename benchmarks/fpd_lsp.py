"""Fast Pose Distillation on Leeds Sports Pose (issue 5, item 5): teacher, student alone, distilled student.

Trains the three recipes (configs/fpd_lsp_teacher.yaml, fpd_lsp_student_scratch.yaml with alpha 0,
fpd_lsp_student.yaml with the paper's alpha 0.5) in that order and scores each on the 1000 LSP test
images: PCK@0.2 with LSP's torso normalisation and the AUC of the PCK curve over [0, 0.2], per joint
and mean, next to the published figure. The recipes hold the paper's full schedule (a GPU's work);
the options shrink it for a CPU, and the output says exactly what ran.

    python benchmarks/fpd_lsp.py                                    # the paper's schedule
    python benchmarks/fpd_lsp.py --input-size 128 --teacher 4x128 --student 2x64 --epochs 8 \\
        --batch-size 8 --lr 1e-3 --runs runs/fpd_lsp_cpu --out benchmarks/fpd_lsp_cpu.md
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from featherpose.evaluation import evaluate
from featherpose.train.config import load_config
from featherpose.train.trainer import train

from _common import emit, machine_lines

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# FPD (Zhang et al., CVPR 2019), Table 3, LSP test, PCK@0.2 (mean of 14 joints, %): the 4x128 student.
PUBLISHED_PCK = {"student, alpha 0.5 (FPD)": 90.8}


def _shape(text: str) -> tuple[int, int]:
    stacks, channels = text.lower().split("x")
    return int(stacks), int(channels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=_shape, help="STACKSxCHANNELS of the teacher (recipe: 8x256)")
    p.add_argument("--student", type=_shape, help="STACKSxCHANNELS of the student (recipe: 4x128)")
    p.add_argument("--input-size", type=int, help="crop side (recipe: 256)")
    p.add_argument("--epochs", type=int, help="epochs of every run (recipe: 70)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--runs", default="runs/fpd_lsp", help="folder of the three runs")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)

    runs = Path(args.runs)
    rows, done = [], []
    teacher_ckpt = runs / "teacher" / "checkpoints" / "last.safetensors"
    for label, recipe, shape, name in (("teacher", "fpd_lsp_teacher.yaml", args.teacher, "teacher"),
                                       ("student, alpha 0", "fpd_lsp_student_scratch.yaml", args.student, "student_alpha0"),
                                       ("student, alpha 0.5 (FPD)", "fpd_lsp_student.yaml", args.student, "student_fpd")):
        cfg = load_config(CONFIGS / recipe)
        if shape:
            cfg.model.stacks, cfg.model.channels = shape
        cfg.model.input_size = args.input_size or cfg.model.input_size
        cfg.epochs = args.epochs or cfg.epochs
        cfg.batch_size = args.batch_size or cfg.batch_size
        if args.lr:
            cfg.optim.lr, cfg.optim.min_lr_ratio = args.lr, 0.01  # a short schedule: cosine decay to 1 %
        val, cfg.data.val = cfg.data.val, None  # evaluated once below, with per-joint figures
        cfg.out = str(runs / name)
        shutil.rmtree(cfg.out, ignore_errors=True)  # the benchmark's own run, trained afresh each time
        if cfg.teacher.model:
            cfg.teacher.model = str(teacher_ckpt)
        start = time.perf_counter()
        result = train(cfg)
        minutes = (time.perf_counter() - start) / 60
        report = evaluate(Path(cfg.out) / "checkpoints" / "last.safetensors", val, backend="onnxruntime",
                          progress=True)
        torso = report.pck["torso"]
        rows.append((label, cfg, result, report, torso))
        done.append(f"- {label}: `{recipe}` with {cfg.model.stacks}x{cfg.model.channels}, input {cfg.model.input_size}, "
                    f"{cfg.epochs} epochs x {result.step // max(1, cfg.epochs)} steps of batch {cfg.batch_size}, "
                    f"{cfg.optim.name} lr {cfg.optim.lr:g} (min ratio {cfg.optim.min_lr_ratio:g}), "
                    f"{minutes:.1f} min; out {cfg.out}")

    lines = ["## Fast Pose Distillation on LSP (PCK@0.2, torso)", "",
             *machine_lines(torch.get_num_threads(), ("torch", "onnxruntime")), "", "What ran:", *done, "",
             "| model | PCK@0.2 (%) | AUC 0-0.2 (%) | published PCK@0.2 (%) | loss first -> last |",
             "|---|---:|---:|---:|---|"]
    for label, cfg, result, _, torso in rows:
        pub = PUBLISHED_PCK.get(label)
        lines.append(f"| {label} ({cfg.model.stacks}x{cfg.model.channels}) | {100 * torso.pck.mean:.1f} | "
                     f"{100 * torso.auc.mean:.1f} | {pub if pub else 'n/a'} | "
                     f"{result.first_loss:.4g} -> {result.last_loss:.4g} |")
    per_joint = [np.asarray(r[4].pck.per_joint) for r in rows]
    lines += ["", "Per joint PCK@0.2 (%):", "", "| joint | " + " | ".join(r[0] for r in rows) + " |",
              "|---|" + "---:|" * len(rows)]
    for j, joint in enumerate(rows[0][3].joints):
        lines.append(f"| {joint} | " + " | ".join(f"{100 * pj[j]:.1f}" for pj in per_joint) + " |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
