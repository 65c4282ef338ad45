"""Speed of every bundled model, every backend and precision, beside its peers, in one run (issue 14).

For each model in ``featherpose models``, on the first N frames of ``vtest.avi`` (768x576) and on ``messi5.jpg``
repeated N times, preprocess / network / decode / total ms per frame for:

    featherpose configurations  every installed backend at fp32 (onnxruntime, openvino, torch, litert), onnxruntime and
                                openvino int8 (``precision="int8"``: onnxruntime's quantiser, NNCF's) and openvino
                                bf16 (``precision="bf16"``, where the CPU has it); and which of them
                                ``backend="auto"`` picks on this machine (the default)
    peers                       MoveNets: Google's float32 TFLite on LiteRT's interpreter (XNNPACK), from
                                ``movenet_speed.py``; Lightweight OpenPose: Intel's int8 IR in OpenVINO with the
                                reference's grouping, and the reference pipeline in torch fp32 (no_grad), from
                                ``lwop_speed.py``; Lite Pose: upstream's PyTorch pipeline at 448, from
                                ``litepose_speed.py`` (each script's docstring says exactly what its peer runs)

plus the fp32 compute bound of this CPU: torch's float32 matmul peak at the same thread count, measured once here,
and each featherpose network's FLOPs (torch's FlopCounterMode) at its vtest input, so the network column can be
read as a multiple of the least time the arithmetic needs.

Method: frames decoded up front (BGR, as OpenCV gives them: each runner's preprocess takes them so; a peer
converts to RGB, featherpose's ``preprocess(frame, bgr=True)`` converts, or its graph's letterbox reads BGR); each pass (one runner over one input) warms up, then times every frame; the
runners of a model run back to back in rounds, their order reversed every other round, and each reports its best
round (lowest mean total): a peer and featherpose always see the same machine. Targets (issue 14): for every
model the default configuration is faster end to end than its fastest peer on both inputs (ratio >= 1.0), and an
int8 or bf16 configuration is >= 1.5x the peer's fp32 (whose accuracy loss ``quantize_accuracy.py`` measures: the
speed side is checked here).

    python benchmarks/speed.py --out /tmp/speed.md --plot benchmarks/speed.png
    python benchmarks/speed.py --models movenet-lightning --frames 20 --rounds 1   # a quick run
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, Runner, best_round, emit, featherpose_runner, machine_lines, read_frames, time_pass  # noqa: E402

VIDEO = SHARED / "media" / "vtest.avi"
IMAGE = SHARED / "media" / "messi5.jpg"
#: (backend, precision) configurations of featherpose timed for every model, where installed.
CONFIGS = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("torch", "fp32"), ("litert", "fp32"), ("onnxruntime", "int8"),
           ("openvino", "int8"), ("openvino", "bf16"))
DEFAULT_TARGET, APPROX_TARGET = 1.0, 1.5


def matmul_peak_gflops(threads: int, n: int = 1024, calls: int = 20) -> float:
    """This CPU's float32 matmul rate (GFLOP/s) in torch at ``threads`` threads: best of ``calls`` n x n products."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(calls))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def network_gflops(est, frame_bgr: np.ndarray) -> float:
    """FLOPs (G) of one forward pass of ``est``'s network at the input its preprocessing makes of this frame."""
    from featherpose.models import complexity

    x, _ = est.network_input(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    return complexity(est.network, tuple(x.shape[1:3]))[1] / 1e9


def staged_runner(key: str, preprocess, network, decode) -> Runner:
    """A :class:`Runner` from three stage callables (the MoveNet peer's shape): BGR frame -> timed poses."""
    clock = time.perf_counter

    def run(bgr: np.ndarray):
        t0 = clock()
        x, ctx = preprocess(bgr)
        t1 = clock()
        raw = network(x)
        t2 = clock()
        kpts, _ = decode(raw, ctx)
        t3 = clock()
        return (t1 - t0, t2 - t1, t3 - t2), kpts

    return Runner(key, run)


def peer_runners(name: str, threads: int, args, notes: list[str]) -> list[tuple[Runner, bool]]:
    """The peers of model ``name``: (runner, runs in float32)."""
    try:
        if name.startswith("movenet-"):
            import movenet_speed

            r = movenet_speed.tflite_runner(name, threads)
            return [(staged_runner("Google TFLite fp32 (XNNPACK)", r.preprocess, r.network, r.decode), True)]
        if name == "lightweight-openpose":
            import lwop_speed

            import featherpose

            folder, more = lwop_speed.reference_tree(args.lwop_reference, lwop_speed.MIRROR)
            notes += more
            demo, keypoints_mod = lwop_speed.import_reference(folder)
            est = featherpose.load(name, backend="torch", threads=threads)
            width = est.preprocess(cv2.cvtColor(read_frames(VIDEO, 1)[0], cv2.COLOR_BGR2RGB))[0].shape[2]
            ov_net = lwop_speed.openvino_network(threads, width)
            return [(lwop_speed.reference_runner("Intel int8 IR (OpenVINO) + reference grouping", demo, keypoints_mod,
                                                 ov_net), False),
                    (lwop_speed.reference_runner("reference pipeline, torch fp32 no_grad", demo, keypoints_mod,
                                                 lwop_speed.torch_network(est, no_grad=True)), True)]
        if name == "litepose-m-crowdpose":
            import litepose_speed

            folder, more = litepose_speed.reference_tree(args.litepose_reference, litepose_speed.MIRROR)
            notes += more
            ref = litepose_speed.import_reference(folder, args.litepose_deps)
            model = litepose_speed.reference_model(ref, folder)
            return [(litepose_speed.reference_runner("upstream pipeline, torch fp32, 448", ref, folder, model, 448),
                     True)]
    except (SystemExit, ImportError, OSError) as exc:
        notes.append(f"- {name}: peer not run ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    return []


def our_runners(name: str, threads: int, configs, notes: list[str]) -> tuple[list[Runner], str, object]:
    """featherpose's configurations of ``name``, the key of the one ``backend="auto"`` picks, and an fp32
    estimator (for the FLOP count)."""
    import featherpose

    runners, fp32 = [], None
    for backend, precision in configs:
        key = f"featherpose {backend} {precision}"
        try:
            est = featherpose.load(name, backend=backend, threads=threads, precision=precision)
        except (ImportError, ValueError) as exc:
            notes.append(f"- {name}, {backend} {precision}: not run ({str(exc).splitlines()[0][:160]})")
            continue
        fp32 = fp32 or (est if precision == "fp32" else None)
        runners.append(featherpose_runner(key, est))
    saved = {k: os.environ.pop(k, None) for k in ("FEATHERPOSE_BACKEND", "FEATHERPOSE_PRECISION")}
    try:  # the default: backend measured once per machine (then cached), precision "auto"
        backend, _, precision = featherpose.load(name, threads=threads).backend.name.partition("-")
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return runners, f"featherpose {backend} {precision or 'fp32'}", fp32


def time_model(runners: list[Runner], inputs: dict, rounds: int, warmup: int, bar) -> dict[str, dict[str, np.ndarray]]:
    """input name -> runner key -> best round (N, 3) ms."""
    results: dict[str, dict[str, list[np.ndarray]]] = {k: {} for k in inputs}
    for rnd in range(rounds):
        for runner in runners if rnd % 2 == 0 else runners[::-1]:
            for input_name, frames in inputs.items():
                bar.set_postfix_str(f"{runner.key[:40]} {input_name}")
                ms, _ = time_pass(runner, frames, warmup)
                results[input_name].setdefault(runner.key, []).append(ms)
                bar.update()
    return {k: {r: best_round(v) for r, v in per.items()} for k, per in results.items()}


def plot(path: Path, table: dict, models: list[str], input_name: str) -> None:
    """One panel per model: horizontal bars of ms per frame, stacked preprocess / network / decode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from featherpose.fileio import atomic_path

    heights = [len(table[m]["runners"]) for m in models]
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 1.0 + 0.42 * sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    colours = ("#8fb8de", "#2f6fab", "#f2a541")
    for ax, model in zip(axes[:, 0], models):
        rows = table[model]["runners"]
        labels = [label for label, _ in rows]
        stages = np.array([ms[input_name].mean(axis=0) for _, ms in rows])
        left = np.zeros(len(rows))
        for j, stage in enumerate(("preprocess", "network", "decode")):
            ax.barh(labels, stages[:, j], left=left, color=colours[j], label=stage)
            left += stages[:, j]
        for y, total in enumerate(left):
            ax.text(total, y, f" {total:.1f}", va="center", fontsize=8)
        ax.set_title(model, fontsize=10, loc="left")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, left.max() * 1.15)
    axes[0, 0].legend(loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel(f"ms per frame ({input_name}; mean of the best round)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", help="default: every bundled model")
    p.add_argument("--frames", type=int, default=200, help="vtest.avi frames, and messi5.jpg repeats (default 200)")
    p.add_argument("--rounds", type=int, default=2, help="rounds; each runner's best is reported (default 2)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--configs", nargs="*", help="featherpose configurations as BACKEND:PRECISION (default: all)")
    p.add_argument("--no-peers", action="store_true", help="featherpose's configurations only")
    p.add_argument("--lwop-reference", type=Path, help="Lightweight OpenPose reference tree (see lwop_speed.py)")
    p.add_argument("--litepose-reference", type=Path, help="Lite Pose upstream tree (see litepose_speed.py)")
    p.add_argument("--litepose-deps", type=Path, help="folder with munkres and yacs for upstream Lite Pose "
                   "(pip install --target DIR munkres yacs)")
    p.add_argument("--out", type=Path, help="also write the markdown here")
    p.add_argument("--plot", type=Path, help="write the stacked-bar chart (vtest.avi) here, e.g. benchmarks/speed.png")
    args = p.parse_args(argv)
    if min(args.frames, args.rounds, args.threads) < 1:
        p.error("--frames, --rounds and --threads must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import logging

    import torch
    from tqdm import tqdm

    import featherpose

    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    configs = [tuple(c.split(":")) for c in args.configs] if args.configs else list(CONFIGS)
    models = args.models or featherpose.models()
    inputs = {"vtest.avi": read_frames(VIDEO, args.frames)}
    image = cv2.imread(str(IMAGE), cv2.IMREAD_COLOR)
    inputs["messi5.jpg"] = [image] * args.frames
    peak = matmul_peak_gflops(args.threads)
    out = ["## Speed: every bundled model, backend and precision, beside its peers (issue 14)", ""]
    out += machine_lines(args.threads, ("numpy", "opencv-python-headless", "torch", "onnxruntime", "openvino",
                                        "ai-edge-litert"))
    out += [f"- input: the first {len(inputs['vtest.avi'])} frames of vtest.avi (768x576), messi5.jpg (548x342) "
            f"repeated as often; {args.warmup} warm-up frames per pass, {args.rounds} rounds (order reversed every "
            f"other round), best round per runner; frames handed over as OpenCV decodes them (BGR): featherpose "
            f"takes them with `preprocess(frame, bgr=True)`",
            f"- fp32 compute bound: torch float32 matmul at {args.threads} threads peaks at {peak:.1f} GFLOP/s here; "
            f"`bound` = the network's FLOPs at its vtest input / that peak"]
    notes: list[str] = []
    table: dict[str, dict] = {}
    targets = []
    if True:
        for model in models:
            ours, auto_key, fp32 = our_runners(model, args.threads, configs, notes)
            peers = [] if args.no_peers else peer_runners(model, args.threads, args, notes)
            runners = ours + [r for r, _ in peers]
            with tqdm(total=args.rounds * len(runners) * len(inputs), desc=model, unit="pass", file=sys.stderr,
                      dynamic_ncols=True) as bar:
                best = time_model(runners, inputs, args.rounds, args.warmup, bar)
            gflops = network_gflops(fp32, inputs["vtest.avi"][0]) if fp32 is not None else float("nan")
            rows = []
            for r in runners:
                label = r.key + (" (default: auto)" if r.key == auto_key else "")
                rows.append((label, {k: best[k][r.key] for k in inputs}))
            table[model] = {"runners": rows}
            out += ["", f"### {model} (network {gflops:.2f} GFLOPs at its vtest input; bound "
                    f"{1000 * gflops / peak:.2f} ms)", "",
                    "| runner | " + " | ".join(f"{k}: pre / net / decode / total (ms)" for k in inputs)
                    + " | network / bound |", "|---|" + "---:|" * (len(inputs) + 1)]
            for label, ms in rows:
                cells = []
                for k in inputs:
                    m = ms[k].mean(axis=0)
                    cells.append(f"{m[0]:.2f} / {m[1]:.2f} / {m[2]:.2f} / **{m.sum():.2f}**")
                ours_row = label.startswith("featherpose")
                ratio = ms["vtest.avi"].mean(axis=0)[1] / (1000 * gflops / peak) if ours_row else float("nan")
                out.append(f"| {label} | " + " | ".join(cells) + f" | {'' if np.isnan(ratio) else f'{ratio:.1f}x'} |")
            if peers:
                targets += target_lines(model, best, inputs, auto_key, peers, [r.key for r in ours])
    if targets:
        out += ["", "### Targets (ratio = peer mean total / featherpose mean total, same run)", "",
                "| model | what | vtest.avi | messi5.jpg | target | verdict |", "|---|---|---:|---:|---:|---|"] + targets
    out += ["", *notes] if notes else []
    if args.plot:
        plot(args.plot, table, models, "vtest.avi")
        out += ["", f"Plot: `{args.plot}`."]
    emit("\n".join(out) + "\n", args.out)
    return 0


def target_lines(model: str, best: dict, inputs: dict, auto_key: str, peers, our_keys: list[str]) -> list[str]:
    """The issue's two targets for one model, as table rows."""
    def total(input_name, key):
        return best[input_name][key].sum(axis=1).mean()

    lines = []
    if auto_key in our_keys:
        fastest = {k: min(total(k, r.key) for r, _ in peers) for k in inputs}
        ratio = {k: fastest[k] / total(k, auto_key) for k in inputs}
        ok = min(ratio.values()) >= DEFAULT_TARGET
        lines.append(f"| {model} | default ({auto_key}) vs fastest peer | {ratio['vtest.avi']:.2f} | "
                     f"{ratio['messi5.jpg']:.2f} | {DEFAULT_TARGET:.1f} | {'PASS' if ok else 'MISS'} |")
    fp32_peers = [r.key for r, is_fp32 in peers if is_fp32]
    approx = [k for k in our_keys if k.endswith(("int8", "bf16"))]
    if fp32_peers and approx:
        ref = {k: min(total(k, p) for p in fp32_peers) for k in inputs}
        for key in approx:
            ratio = {k: ref[k] / total(k, key) for k in inputs}
            ok = min(ratio.values()) >= APPROX_TARGET
            lines.append(f"| {model} | {key} vs peer fp32 | {ratio['vtest.avi']:.2f} | {ratio['messi5.jpg']:.2f} | "
                         f"{APPROX_TARGET:.1f} | {'PASS' if ok else 'MISS'} (speed; AP: quantize_accuracy.py) |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
