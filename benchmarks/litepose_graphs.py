"""Lite Pose's network, one process, the graphs side by side: what each runtime runs of ``litepose-m-crowdpose``.

Rows (ms per vtest frame at 448 or ``--size``, the network call only, the same preprocessed frames):
- OpenVINO fp32: the export for OpenVINO (4x4 transposed convs), a static compile per size (featherpose's backend);
- onnxruntime, the transposed convs: the same graph in a dynamic onnxruntime session (featherpose's backend before
  the fusion levels were written as phase convolutions for it);
- onnxruntime, phase convolutions, dynamic session: the export for onnxruntime (``FusionLevel.phase_forward``);
- onnxruntime, phase convolutions, static session: the same with the input size fixed (featherpose's backend now).

The runners alternate pass by pass (order reversed every other round) so that all see the same machine; the table
gives each one's median and best pass. Usage: ``python benchmarks/litepose_graphs.py [--frames 40] [--rounds 8] [--size 448]``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import featherpose
from featherpose.runtime import OnnxBackend, onnx_session
from featherpose.runtime.export import export_onnx

from _common import SHARED, emit, machine_lines, read_frames

NAME = "litepose-m-crowdpose"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40, help="vtest.avi frames per pass (default 40)")
    ap.add_argument("--rounds", type=int, default=8, help="passes per runner (default 8)")
    ap.add_argument("--size", type=int, default=448, help="the model's input size, its short side (default 448)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.rounds < 1:
        ap.error("--frames and --rounds must be >= 1")

    est = featherpose.load(NAME, backend="onnxruntime", precision="fp32", threads=args.threads, input_size=args.size)
    frames = read_frames(SHARED / "media" / "vtest.avi", args.frames)
    xs = [est.preprocess(f[..., ::-1].copy())[0] for f in frames]
    hw = est.input_hw
    transposed = export_onnx(est.network, hw, dynamic_size=True, runtime="openvino")

    def session(data, fixed):
        s = onnx_session(data, args.threads, {"height": xs[0].shape[1], "width": xs[0].shape[2]} if fixed else None)
        return lambda x: s.run(None, {"image": x})

    runners = {
        "onnxruntime, the transposed convs (dynamic session)": session(transposed, False),
        "onnxruntime, phase convolutions (dynamic session)":
            session(export_onnx(est.network, hw, dynamic_size=True), False),
        "onnxruntime, phase convolutions (static session: featherpose now)": OnnxBackend(
            export_onnx(est.network, hw, dynamic_size=True), args.threads),
    }
    try:
        runners["OpenVINO fp32 (static compile: featherpose before)"] = featherpose.load(
            NAME, backend="openvino", precision="fp32", threads=args.threads, input_size=args.size).backend
    except ImportError as exc:
        print(f"OpenVINO row left out: {exc}", file=sys.stderr)
    outs = {}
    for name, run in runners.items():  # warm-up; a backend's static compile happens on its second call
        for x in xs[:3]:
            outs[name] = run(x)
    ref = outs["onnxruntime, the transposed convs (dynamic session)"]
    diffs = {name: max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                       for a, b in zip(ref, out.values() if isinstance(out, dict) else out))
             for name, out in outs.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name, run in (runners.items() if r % 2 == 0 else reversed(runners.items())):
            start = time.perf_counter()
            for x in xs:
                run(x)
            times[name].append((time.perf_counter() - start) / len(xs) * 1e3)
    lines = [f"## Lite Pose's network by graph and runtime ({NAME}, {xs[0].shape[1]}x{xs[0].shape[2]})", "",
             *machine_lines(args.threads, ("numpy", "torch", "onnxruntime", "openvino")),
             f"- input: the first {args.frames} frames of vtest.avi, preprocessed once; {args.rounds} passes per "
             "runner, alternating", "",
             "| runner | median ms / frame | best pass | max abs difference to the first row's heads |",
             "|---|---:|---:|---:|"]
    lines += [f"| {name} | {np.median(t):.2f} | {min(t):.2f} | {diffs[name]:.2e} |" for name, t in times.items()]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
