"""Fast Pose Distillation on Leeds Sports Pose (issue 5, item 5): teacher, student alone, distilled student.

Trains the three recipes (configs/fpd_lsp_teacher.yaml, fpd_lsp_student_scratch.yaml with alpha 0,
fpd_lsp_student.yaml with the paper's alpha 0.5) in that order and scores each on the 1000 LSP test
images: PCK@0.2 with LSP's torso normalisation and the AUC of the PCK curve over [0, 0.2], per joint
and mean, next to the published figure. The recipes hold the paper's full schedule (a GPU's work);
the options shrink it for a CPU, and the output says exactly what ran.

    python benchmarks/fpd_lsp.py                                    # the paper's schedule
    python benchmarks/fpd_lsp.py --input-size 128 --teacher 4x128 --student 2x64 --epochs 8 \\
        --batch-size 8 --lr 1e-3 --runs runs/fpd_lsp_cpu --out benchmarks/fpd_lsp_cpu.md

``--only`` trains some of the three (e.g. the teacher and the alpha-0 student side by side, one thread
each, then the distilled student); a run already finished in ``--runs`` is not trained again, so the
last call (or ``--only none``) scores all three and writes the table. Each run's wall time is kept
beside it (``minutes.txt``). ``--minutes`` gives each run a time budget (the recipe's ``max_minutes``: the
learning rate decays over it and the run stops after the epoch that spends it), as benchmarks/gpu_check.sh does.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from featherpose import load
from featherpose.estimator import Estimator
from featherpose.evaluation import evaluate
from featherpose.train.config import load_config
from featherpose.fileio import write_text
from featherpose.train.trainer import TrainResult, train

from _common import SHARED, emit, machine_lines

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LSP_TEST = SHARED / "data" / "lsp" / "lsp_test.json"  # FEATHERPOSE_SHARED or ../shared beside the checkout
# FPD (Zhang et al., CVPR 2019), Table 3, LSP test, PCK@0.2 (mean of 14 joints, %): the 4x128 student.
PUBLISHED_PCK = {"student, alpha 0.5 (FPD)": 90.8}


def _shape(text: str) -> tuple[int, int]:
    stacks, channels = text.lower().split("x")
    return int(stacks), int(channels)


def _result(out: Path) -> tuple[TrainResult, float, float]:
    """What a finished run in ``out`` did, read back from its metrics.csv: (first and last loss, steps, epochs),
    its median training throughput in images/s and its median wait for the data loader per step (ms)."""
    with (out / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"]]
    return (TrainResult(out, int(rows[-1]["epoch"]), int(rows[-1]["step"]), float(rows[0]["loss"]),
                        float(rows[-1]["loss"])), float(np.median([float(r["images_per_s"]) for r in rows])),
            float(np.median([float(r["wait_ms"]) for r in rows])))


def _scorer(weights: Path) -> Estimator:
    """The trained model for scoring: torch on the GPU when there is one (the 8x256 teacher took 80 s for LSP
    test in onnxruntime on 16 Xeon cores), else onnxruntime on the CPU."""
    if not torch.cuda.is_available():
        return load(weights, backend="onnxruntime")
    est = load(weights, backend="torch")
    est.network.cuda()  # the torch backend runs where the weights are
    return est


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=_shape, help="STACKSxCHANNELS of the teacher (recipe: 8x256)")
    p.add_argument("--student", type=_shape, help="STACKSxCHANNELS of the student (recipe: 4x128)")
    p.add_argument("--input-size", type=int, help="crop side (recipe: 256)")
    p.add_argument("--epochs", type=int, help="epochs of every run (recipe: 70)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--teacher-epochs", type=int, help="epochs of the teacher (default: --epochs)")
    p.add_argument("--lr", type=float, help="peak learning rate; the schedule then decays to 1 %% (cosine)")
    p.add_argument("--optim", choices=("rmsprop", "adamw", "sgd"), help="optimizer (recipe: rmsprop)")
    p.add_argument("--warmup", type=int, help="warm-up steps (recipe: 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--workers", type=int, help="data loader processes (recipe: 4)")
    p.add_argument("--eval-every", type=int, help="epochs between scores on LSP test during training (recipe: 5)")
    p.add_argument("--minutes", type=float, help="time budget of each student run (max_minutes; --epochs caps it)")
    p.add_argument("--teacher-minutes", type=float, help="time budget of the teacher run (default: --minutes)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="training precision (recipe: auto)")
    p.add_argument("--steps-per-epoch", type=int, help="cut every epoch to this many steps (a quick check)")
    p.add_argument("--only", default="teacher,alpha0,fpd",
                   help="which runs to train, comma-separated from teacher, alpha0, fpd (or none)")
    p.add_argument("--runs", default="runs/fpd_lsp", help="folder of the three runs")
    p.add_argument("--out", help="also write the markdown here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only.split(",")) - {"none", ""}
    if only - {"teacher", "alpha0", "fpd"}:
        p.error(f"--only {args.only}: choose from teacher, alpha0, fpd, none")

    runs = Path(args.runs)
    rows, done = [], []
    teacher_ckpt = runs / "teacher" / "checkpoints" / "last.safetensors"
    for label, recipe, shape, name, key in (
            ("teacher", "fpd_lsp_teacher.yaml", args.teacher, "teacher", "teacher"),
            ("student, alpha 0", "fpd_lsp_student_scratch.yaml", args.student, "student_alpha0", "alpha0"),
            ("student, alpha 0.5 (FPD)", "fpd_lsp_student.yaml", args.student, "student_fpd", "fpd")):
        cfg = load_config(CONFIGS / recipe)
        if shape:
            cfg.model.stacks, cfg.model.channels = shape
        cfg.model.input_size = args.input_size or cfg.model.input_size
        cfg.epochs = (args.teacher_epochs if key == "teacher" and args.teacher_epochs else args.epochs) or cfg.epochs
        cfg.batch_size = args.batch_size or cfg.batch_size
        if args.lr:
            cfg.optim.lr, cfg.optim.min_lr_ratio = args.lr, 0.01  # a short schedule: cosine decay to 1 %
        cfg.optim.name = args.optim or cfg.optim.name
        cfg.optim.warmup_steps = cfg.optim.warmup_steps if args.warmup is None else args.warmup
        cfg.data.workers = cfg.data.workers if args.workers is None else args.workers
        cfg.eval_every = args.eval_every or cfg.eval_every
        cfg.max_steps_per_epoch = args.steps_per_epoch
        cfg.max_minutes = (args.teacher_minutes if key == "teacher" and args.teacher_minutes else args.minutes) \
            or cfg.max_minutes
        cfg.precision = args.precision or cfg.precision
        cfg.data.train, cfg.data.val = str(SHARED / "data" / "lsp" / "lsp_train.json"), str(LSP_TEST)
        val = cfg.data.val  # also scored once below, with per-joint figures
        cfg.out = str(runs / name)
        if cfg.teacher.model:
            cfg.teacher.model = str(teacher_ckpt)
            if key in only and not (runs / "teacher" / "minutes.txt").is_file():
                p.error(f"the distilled student needs the finished teacher in {runs / 'teacher'}; train it first "
                        "(--only teacher)")
        timing = Path(cfg.out) / "minutes.txt"
        if key in only:
            shutil.rmtree(cfg.out, ignore_errors=True)  # the benchmark's own run, trained afresh each time
            start = time.perf_counter()
            train(cfg)
            write_text(timing, f"{(time.perf_counter() - start) / 60:.1f}\n")
        if not timing.is_file():
            print(f"{label}: not trained yet in {cfg.out}; run it with --only {key}", file=sys.stderr)
            continue
        minutes = float(timing.read_text())
        result, ips, wait_ms = _result(Path(cfg.out))
        report = evaluate(_scorer(Path(cfg.out) / "checkpoints" / "last.safetensors"), val, progress=True)
        torso = report.pck["torso"]
        rows.append((label, cfg, result, report, torso, ips, wait_ms, minutes))
        budget = f", budget {cfg.max_minutes:g} min" if cfg.max_minutes else ""
        done.append(f"- {label}: `{recipe}` with {cfg.model.stacks}x{cfg.model.channels}, input {cfg.model.input_size}, "
                    f"{result.epochs_done} epochs, {result.step} steps of batch {cfg.batch_size}, {cfg.precision} "
                    f"precision, {cfg.optim.name} lr {cfg.optim.lr:g} (warm-up {cfg.optim.warmup_steps} steps, min "
                    f"ratio {cfg.optim.min_lr_ratio:g}), {cfg.data.workers} loader workers{budget}, {minutes:.1f} min; "
                    f"out {cfg.out}")

    if not rows:
        return 0
    lines = ["## Fast Pose Distillation on LSP (PCK@0.2, torso)", "",
             *machine_lines(torch.get_num_threads(), ("torch", "onnxruntime")), "", "What ran:", *done,
             f"- scored by {'torch on ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'onnxruntime'}",
             "", "| model | PCK@0.2 (%) | AUC 0-0.2 (%) | published PCK@0.2 (%) | training images/s | loader wait "
             "ms/step | minutes | steps | loss first -> last |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, cfg, result, _, torso, ips, wait_ms, minutes in rows:
        pub = PUBLISHED_PCK.get(label)
        lines.append(f"| {label} ({cfg.model.stacks}x{cfg.model.channels}) | {100 * torso.pck.mean:.1f} | "
                     f"{100 * torso.auc.mean:.1f} | {pub if pub else 'n/a'} | {ips:.1f} | {wait_ms:.1f} | "
                     f"{minutes:.1f} | {result.step} | {result.first_loss:.4g} -> {result.last_loss:.4g} |")
    per_joint = [np.asarray(r[4].pck.per_joint) for r in rows]
    lines += ["", "Per joint PCK@0.2 (%):", "", "| joint | " + " | ".join(r[0] for r in rows) + " |",
              "|---|" + "---:|" * len(rows)]
    for j, joint in enumerate(rows[0][3].joints):
        lines.append(f"| {joint} | " + " | ".join(f"{100 * pj[j]:.1f}" for pj in per_joint) + " |")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
