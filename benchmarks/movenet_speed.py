"""MoveNet speed: featherpose (onnxruntime, torch) beside Google's TFLite models, per stage.

Times preprocess, network, decode and total per frame on the first N frames of
``vtest.avi`` (768x576) and on ``messi5.jpg`` repeated N times, with the same thread count
for every runtime. The peer is Google's MoveNet as float32 TFLite run by LiteRT's CPU
interpreter (XNNPACK); its graph contains Google's decoder, so its stages are:

    preprocess  BGR -> RGB + featherpose.image.resize_with_pad (TF's resize_with_pad, exact)
    network     set_tensor + invoke + get_tensor (includes Google's in-graph decoding)
    decode      normalised output -> image pixels

and featherpose's are ``est.preprocess(frame, bgr=True)`` (the BGR frame as decoded: converted to RGB, or read
reversed by the letterbox in OpenVINO's graph), ``est.infer`` and
``est.postprocess`` (codec.decode + undo letterbox + Poses). Totals compare end to end.

Frames are decoded once up front. Every pass (one runner on one input) warms up, then times
each frame with ``time.perf_counter``. The passes run in rounds, the runners of a model back to
back and their order reversed every other round, so featherpose and TFLite see the same
machine conditions; each runner reports its best round (lowest mean total).

Usage::

    python benchmarks/movenet_speed.py --out benchmarks/RESULTS-movenet.md --plot benchmarks/movenet_speed.png

The markdown on stdout (progress goes to stderr) can be pasted into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from featherpose.fileio import atomic_path

from _common import SHARED, emit, machine_lines, read_frames

VIDEO = SHARED / "media" / "vtest.avi"
PHOTO = SHARED / "media" / "messi5.jpg"
PEERS = SHARED / "peers" / "movenet_tflite"
MODELS = ("movenet-lightning", "movenet-thunder", "movenet-multipose")
BACKENDS = ("onnxruntime", "torch")
TFLITE = "tflite"
STAGES = ("preprocess", "network", "decode")
# Target: featherpose total / TFLite total at most this (Lightning, Thunder: as fast; MultiPose: 1.2x).
TARGET_SLOWDOWN = {"movenet-lightning": 1.0, "movenet-thunder": 1.0, "movenet-multipose": 1.2}


@dataclass
class Runner:
    """One way of running one model: three stage callables.

    Attributes:
        model: featherpose model name.
        name: ``onnxruntime``, ``torch`` or ``tflite``.
        preprocess: HxWx3 uint8 BGR frame -> (network input, context for decode).
        network: network input -> raw output.
        decode: (raw output, context) -> result in image pixels.
    """

    model: str
    name: str
    preprocess: Callable
    network: Callable
    decode: Callable



def runner_label(name: str) -> str:
    """Row label of a runner name."""
    return "Google TFLite (XNNPACK)" if name == TFLITE else f"featherpose {name}"


def featherpose_runner(model: str, backend: str, threads: int) -> Runner:
    """featherpose's Estimator, its three public steps timed apart."""
    import featherpose

    est = featherpose.load(model, backend=backend, threads=threads)

    def preprocess(bgr: np.ndarray):  # OpenCV's frame as decoded (see _common.featherpose_runner)
        return est.preprocess(bgr, bgr=True)

    return Runner(model, backend, preprocess, est.infer, est.postprocess)


def tflite_runner(model: str, threads: int) -> Runner:
    """Google's float32 TFLite MoveNet on LiteRT's CPU interpreter (XNNPACK is its default delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    from featherpose.image import resize_with_pad

    path = PEERS / f"{model.removeprefix('movenet-')}_fp32.tflite"
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    in_index, out_index = inp["index"], it.get_output_details()[0]["index"]
    input_hw = (int(inp["shape"][1]), int(inp["shape"][2]))
    size_xy = np.array(input_hw[::-1], np.float32)

    def preprocess(bgr: np.ndarray):
        x, box = resize_with_pad(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), input_hw)
        return x[None], box

    def network(x: np.ndarray) -> np.ndarray:
        it.set_tensor(in_index, x)
        it.invoke()
        return it.get_tensor(out_index)

    def decode(raw: np.ndarray, box):
        """[1, 1, K, 3] or [1, M, 3K + 5] (y, x normalised) -> keypoints (N, K, 3), boxes (N, 4) in pixels."""
        rows = raw.reshape(raw.shape[1], -1)
        k = 17
        yxs = rows[:, :3 * k].reshape(-1, k, 3)
        kpts = yxs[..., [1, 0, 2]].copy()
        kpts[..., :2] = box.to_image(kpts[..., :2] * size_xy)
        if rows.shape[1] == 3 * k:
            return kpts, None
        boxes = box.to_image(rows[:, [3 * k + 1, 3 * k, 3 * k + 3, 3 * k + 2]].reshape(-1, 2, 2) * size_xy)
        return kpts, boxes.reshape(-1, 4)

    return Runner(model, TFLITE, preprocess, network, decode)


def time_pass(runner: Runner, frames: list[np.ndarray], warmup: int) -> np.ndarray:
    """Warm up, then time every frame.

    Returns:
        (N, 3) ms per frame: preprocess, network, decode.
    """
    for frame in frames[:warmup]:
        x, ctx = runner.preprocess(frame)
        runner.decode(runner.network(x), ctx)
    gc.collect()
    clock = time.perf_counter
    out = np.empty((len(frames), 3))
    pre, net, dec = runner.preprocess, runner.network, runner.decode
    for i, frame in enumerate(frames):
        t0 = clock()
        x, ctx = pre(frame)
        t1 = clock()
        raw = net(x)
        t2 = clock()
        dec(raw, ctx)
        t3 = clock()
        out[i] = (t1 - t0, t2 - t1, t3 - t2)
    return out * 1e3


def best_round(rounds: list[np.ndarray]) -> np.ndarray:
    """The round (N, 3) with the lowest mean total."""
    return min(rounds, key=lambda r: r.sum(axis=1).mean())


def tables(results: dict, inputs: dict, models: list[str], runners: list[str]) -> list[str]:
    """Markdown tables (mean and median ms per frame) for each input."""
    lines = []
    for input_name, (desc, _) in inputs.items():
        for stat_name, stat in (("mean", np.mean), ("median", np.median)):
            lines += ["", f"### {input_name} ({desc}): {stat_name} ms per frame, best of rounds", "",
                      "| model | runner | preprocess | network | decode | total | TFLite / this (x faster) |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for model in models:
                tfl = results.get((input_name, model, TFLITE))
                tfl_total = stat(best_round(tfl).sum(axis=1)) if tfl else None
                for name in runners:
                    rounds = results.get((input_name, model, name))
                    if not rounds:
                        continue
                    best = best_round(rounds)
                    stages = [stat(best[:, i]) for i in range(3)]
                    total = stat(best.sum(axis=1))
                    ratio = "" if name == TFLITE or tfl_total is None else f"{tfl_total / total:.2f}"
                    cells = " | ".join(f"{v:.2f}" for v in (*stages, total))
                    lines.append(f"| {model.removeprefix('movenet-')} | {runner_label(name)} | {cells} | {ratio} |")
    return lines


def target_lines(results: dict, inputs: dict, models: list[str], default: str) -> list[str]:
    """PASS / MISS per model for the default backend against the TFLite totals (means)."""
    lines = ["", f"### Targets (default backend: {default}; ratio = TFLite mean total / featherpose mean total)", "",
             "| model | target | " + " | ".join(inputs) + " | result |",
             "|---|---|" + "---:|" * len(inputs) + "---|"]
    for model in models:
        need = 1.0 / TARGET_SLOWDOWN[model]
        ratios = []
        for input_name in inputs:
            fp, tfl = results.get((input_name, model, default)), results.get((input_name, model, TFLITE))
            if fp and tfl:
                ratios.append(best_round(tfl).sum(axis=1).mean() / best_round(fp).sum(axis=1).mean())
            else:
                ratios.append(None)
        cells = " | ".join("n/a" if r is None else f"{r:.2f}" for r in ratios)
        if any(r is None for r in ratios):
            verdict = "n/a"
        else:
            verdict = "PASS" if all(r >= need for r in ratios) else "MISS"
        target = "<= TFLite (ratio >= 1.00)" if need == 1.0 else f"within {TARGET_SLOWDOWN[model]}x (ratio >= {need:.3f})"
        lines.append(f"| {model.removeprefix('movenet-')} | {target} | {cells} | {verdict} |")
    return lines


def plot(path: Path, results: dict, input_name: str, models: list[str], runners: list[str]) -> str | None:
    """Stacked bars (preprocess / network / decode, mean ms of the best round) per model and runner.

    Returns:
        None when written, else the reason it was skipped.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    labels, stacks = [], []
    for model in models:
        for name in runners:
            rounds = results.get((input_name, model, name))
            if rounds:
                labels.append(f"{model.removeprefix('movenet-')}\n{'TFLite' if name == TFLITE else name}")
                stacks.append(best_round(rounds).mean(axis=0))
    stacks = np.array(stacks).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels)), 4.5))
    bottom = np.zeros(len(labels))
    for i, stage in enumerate(STAGES):
        ax.bar(labels, stacks[:, i], bottom=bottom, label=stage)
        bottom += stacks[:, i]
    for j, total in enumerate(bottom):
        ax.text(j, total, f"{total:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per frame (mean, best round)")
    ax.set_title(f"MoveNet on {input_name}: total time per frame by stage")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=200, help="frames per input (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of passes; best round reported (default 3)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames before each pass (default 10)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--models", default=",".join(MODELS), help="comma list (default: all three MoveNets)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="featherpose backends (default: both)")
    p.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    p.add_argument("--plot", type=Path, help="bar chart PNG of vtest.avi totals by stage")
    args = p.parse_args(argv)
    args.models = [m if m.startswith("movenet-") else f"movenet-{m}" for m in args.models.split(",") if m]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    args.backends = [b for b in args.backends.split(",") if b]
    if any(b not in BACKENDS for b in args.backends):
        p.error(f"backends: choose from {', '.join(BACKENDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    import torch

    from featherpose.runtime import default_backend

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    out = ["## MoveNet speed: featherpose vs Google TFLite", ""] + machine_lines(args.threads, ("numpy", "opencv-python-headless", "torch", "onnxruntime", "ai-edge-litert"))
    notes = []

    frames = read_frames(VIDEO, args.frames)
    photo = cv2.imread(str(PHOTO))
    if photo is None:
        raise SystemExit(f"could not read {PHOTO}")
    inputs = {
        "vtest.avi": (f"first {len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}", frames),
        "messi5.jpg": (f"{photo.shape[1]}x{photo.shape[0]}, repeated {args.frames} times", [photo] * args.frames),
    }

    runners: dict[str, list[Runner]] = {}
    for model in args.models:
        runners[model] = [featherpose_runner(model, b, args.threads) for b in args.backends]
    try:
        import ai_edge_litert.interpreter  # noqa: F401
        have_tflite = True
    except ImportError:
        have_tflite = False
        notes.append("- ai_edge_litert is not installed: TFLite rows, ratios and targets are skipped "
                     "(`pip install ai-edge-litert`).")
    if have_tflite:
        for model in args.models:
            path = PEERS / f"{model.removeprefix('movenet-')}_fp32.tflite"
            if path.exists():
                runners[model].append(tflite_runner(model, args.threads))
            else:
                notes.append(f"- {path} is missing: no TFLite row for {model}.")
    names = list(args.backends) + ([TFLITE] if have_tflite else [])

    results: dict[tuple[str, str, str], list[np.ndarray]] = {}
    total_passes = args.rounds * len(inputs) * sum(len(r) for r in runners.values())
    with tqdm(total=total_passes, unit="pass", file=sys.stderr, dynamic_ncols=True) as bar:
        for rnd in range(args.rounds):
            for input_name, (_, seq) in inputs.items():
                for model in args.models:
                    order = runners[model] if rnd % 2 == 0 else runners[model][::-1]
                    for runner in order:
                        bar.set_postfix_str(f"round {rnd + 1} {input_name} {model} {runner.name}")
                        ms = time_pass(runner, seq, args.warmup)
                        results.setdefault((input_name, model, runner.name), []).append(ms)
                        bar.update()

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    out += [f"- load average at end: {load}",
            f"- method: frames decoded up front (BGR); each runner's preprocess takes them so (the peer converts to RGB, "
            f"featherpose's `preprocess(frame, bgr=True)` converts or lets its graph's letterbox read BGR); "
            f"{args.warmup} warm-up frames per pass; {args.rounds} rounds, each timing every runner of a model "
            f"back to back (order reversed in alternate rounds); each runner's best round (lowest mean total) "
            f"is reported. TFLite network = set_tensor + invoke + get_tensor (its graph includes Google's "
            f"decoding); TFLite decode = normalised output -> image pixels. featherpose decode = "
            f"est.postprocess (codec.decode + letterbox undo + Poses)."]
    out += notes
    out += tables(results, inputs, args.models, names)
    if have_tflite:
        out += target_lines(results, inputs, args.models, default_backend())
    if args.plot:
        reason = plot(args.plot, results, "vtest.avi", args.models, names)
        out += ["", f"Plot: {reason}" if reason else f"Plot: `{args.plot}`"]
    emit("\n".join(out) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
