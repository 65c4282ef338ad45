"""Lite Pose's decode stage by stage: the compiled steps (codecs/ae_compiled.py, the default) against the NumPy
reference (``AECodec.parse(reference=True)``), on the same network outputs, in the same process.

    python benchmarks/ae_decode_stages.py [--frames 40] [--size 448] [--rounds 5] [--out FILE]

The network (``litepose-m-crowdpose``, onnxruntime fp32) runs once per frame of vtest.avi up front; each round
then decodes every frame with both implementations, alternating, and each stage's best round is reported (ms a
frame). Both must give the same arrays on every frame, or the script stops.
"""
from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

import featherpose
from featherpose.codecs import ae_compiled, associative_embedding as reference

from _common import SHARED, emit, machine_lines

STAGES = ("maps", "bounds", "top_k", "match_by_tag", "adjust", "refine")


def stages(codec, heads: dict[str, np.ndarray], steps, bounds_of) -> tuple[np.ndarray, np.ndarray]:
    """(ms per stage, refined people) of one decode; ``steps`` holds top_k, adjust, refine."""
    cfg = codec.grouping
    clock = [time.perf_counter()]
    maps = reference._Maps(heads, codec.num_keypoints, None)
    clock.append(time.perf_counter())
    bounds = bounds_of(maps)
    clock.append(time.perf_counter())
    val, loc, tag = steps.top_k(maps, bounds[0], cfg)
    clock.append(time.perf_counter())
    grouped = reference.match_by_tag(val, loc, tag, codec.joint_order, cfg)
    clock.append(time.perf_counter())
    adjusted = steps.adjust(maps, grouped)
    clock.append(time.perf_counter())
    refined = steps.refine(maps, adjusted, bounds)
    clock.append(time.perf_counter())
    return 1e3 * np.diff(clock), refined


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=40, help="frames of vtest.avi (default 40)")
    p.add_argument("--size", type=int, default=448, help="network input height (default 448, upstream's)")
    p.add_argument("--rounds", type=int, default=5, help="rounds; each stage's best is reported (default 5)")
    p.add_argument("--out", help="also write the markdown to this file")
    args = p.parse_args(argv)
    est = featherpose.load("litepose-m-crowdpose", backend="onnxruntime", input_size=args.size)
    cap = cv2.VideoCapture(str(SHARED / "media" / "vtest.avi"))
    heads = []
    for _ in range(args.frames):
        ok, bgr = cap.read()
        if not ok:
            break
        x, _ = est.preprocess(bgr[:, :, ::-1].copy())
        heads.append({k: np.squeeze(v, 0) if v.ndim == 4 else v for k, v in est.infer(x).items()})
    codec = est.codec
    runs = {"compiled": (ae_compiled, ae_compiled.bounds),
            "NumPy reference": (reference, lambda m: (m.heat_bounds(), *m.tag_bounds()))}
    for h in heads:
        got = [stages(codec, h, *run)[1] for run in runs.values()]
        if not np.array_equal(*got):
            sys.exit("the compiled and the reference decode differ on a frame")
    best = {name: np.full(len(STAGES), np.inf) for name in runs}
    whole = {name: np.inf for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            ms = np.mean([stages(codec, h, *run)[0] for h in heads], 0)
            best[name] = np.minimum(best[name], ms)
            start = time.perf_counter()
            for h in heads:
                codec.parse(h, reference=name != "compiled")
            whole[name] = min(whole[name], 1e3 * (time.perf_counter() - start) / len(heads))
    hw = heads[0]["heatmaps"].shape[1:]
    lines = [f"## Lite Pose decode by stage: compiled vs NumPy reference ({2 * hw[0]}x{2 * hw[1]})", "",
             *machine_lines(1, ("numpy", "numba", "scipy", "opencv-python-headless")),
             f"- inputs: network outputs (onnxruntime fp32) of the first {len(heads)} frames of vtest.avi; ms a frame, "
             f"best of {args.rounds} rounds per stage; both give the same arrays on every frame", "",
             "| stage | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for i, stage in enumerate(STAGES):
        lines.append(f"| {stage} | " + " | ".join(f"{best[n][i]:.2f}" for n in runs) + " |")
    lines.append("| sum of stages | " + " | ".join(f"{best[n].sum():.2f}" for n in runs) + " |")
    lines.append("| `AECodec.parse`, whole | " + " | ".join(f"{whole[n]:.2f}" for n in runs) + " |")
    emit("\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
