"""Latency of search candidates on this machine: a lookup table of measured parts, summed.

Measuring a whole candidate (export it, time it: seconds) for each of the hundreds an evolutionary search proposes is
too slow, and a linear model on multiply-accumulates misses: fitted on 32 candidates measured in one session here,
it predicted 10 fresh ones with a mean error of 17 % (max 41 %), because a runtime's kernels are not linear in MACs
(widths that fill the vector registers or not, memory-bound 1x1 convolutions, per-layer overheads). So, as
Once-for-All and ProxylessNAS do, the network is cut into parts whose cost depends on a few numbers: the stem, each
inverted-residual block (its input size, widths, stride and kernel) and the three fusion levels with their heads.
Each part is measured once, alone, with the same backend and threads as the whole network, and kept in a JSON cache
keyed by this machine, the backend and its version and the thread count; a candidate's latency is the sum of its
parts. Same session, same 10 fresh candidates: mean error 6.0 %, max 12.3 % (onnxruntime, 2 threads). Parts a
candidate needs that are not in the table are measured when it is first predicted (a fraction of a second each).
:meth:`LatencyTable.check` measures whole fresh candidates against the sums. The parts leave out what only the
whole graph has: its input conversion (int32 NHWC to float NCHW) and the hand-over between parts' outputs and inputs;
and each part timed alone pays a runtime call of its own. On the 2-core Xeon the sums came out 1-40 % over the whole
networks (all 10 checked over, median 14 %), so :meth:`LatencyTable.calibrate` measures a few random candidates whole
and a prediction is the sum times their median ratio (:attr:`LatencyTable.scale`).

Latency is the network's, on the input a 4:3 frame gets (vtest.avi's 768x576: short side at the candidate's size,
the long side following, as ``featherpose.load`` feeds Lite Pose), batch 1, the fastest of the timed runs.
"""
from __future__ import annotations

import io
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path, cache_dir
from ..models.layers import exporting_for
from ..models.litepose import LitePose
from ..runtime.autoselect import cpu_name
from .space import BLOCKS, Arch, SearchSpace

#: The frame a latency is measured for (vtest.avi's size, H x W).
FRAME_HW = (576, 768)
#: The version of the graphs parts are exported as, in the table's key: 2 since the onnxruntime export writes the
#: fusion levels as phase convolutions (``FusionLevel.phase_forward``), which times them anew.
GRAPHS = 2


def input_hw(arch: Arch, frame_hw: tuple[int, int] = FRAME_HW) -> tuple[int, int]:
    """The network input of a ``frame_hw`` frame at the candidate's size (Lite Pose's own preprocessing)."""
    from ..image import litepose_geometry

    return litepose_geometry(frame_hw, arch.input_size).input_hw


class _Stem(nn.Module):
    """The network's normalisation and stem: (1, 3, H, W) raw pixels -> the stem's features."""

    def __init__(self, net: LitePose):
        super().__init__()
        self.stem, self.normalise = net.stem, net.normalise

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.stem(self.normalise(image))


class _Level(nn.Module):
    """A fusion level and the heads on its output: (deep, skip, the heads' skip features) -> (fused, heads)."""

    def __init__(self, fusion: nn.Module, head_deep: nn.Module, head_skip: nn.Module):
        super().__init__()
        self.fusion, self.head_deep, self.head_skip = fusion, head_deep, head_skip

    def forward(self, deep: torch.Tensor, skip: torch.Tensor, head_skip: torch.Tensor):
        x = self.fusion(deep, skip)
        return x, self.head_deep(x) + self.head_skip(head_skip)


def parts(arch: Arch, num_keypoints: int, net: LitePose | None = None, frame_hw: tuple[int, int] = FRAME_HW
          ) -> list[tuple[str, list[tuple[int, ...]], nn.Module | None]]:
    """The candidate's parts in forward order: (key, input shapes, the part's module taken from ``net`` (the
    candidate's network) or None without it). The key names everything the part's latency depends on."""
    h, w = input_hw(arch, frame_hw)
    half = lambda hw: ((hw[0] + 1) // 2, (hw[1] + 1) // 2)  # noqa: E731 - a stride-2 layer's output (padding k // 2)
    sizes = [half((h, w))]  # the stem's output, then each stage's
    for i in range(4):
        sizes.append(half(sizes[-1]) if i < 3 else sizes[-1])
    widths = [arch.stem, *arch.stages]
    d, k = arch.deconv, num_keypoints
    take = lambda make: make() if net is not None else None  # noqa: E731
    out = [(f"stem {h}x{w} >{arch.stem}", [(1, 3, h, w)], take(lambda: _Stem(net)))]
    cin = arch.stem
    for i, (c, kernel, n) in enumerate(zip(arch.stages, arch.kernels, BLOCKS)):
        (y, x), stride = sizes[i], 2 if i < 3 else 1
        for j in range(n):
            out.append((f"block {y}x{x} {cin}>{c} s{stride} k{kernel}", [(1, cin, y, x)],
                        take(lambda: net.stages[i][j])))
            (y, x), stride, cin = sizes[i + 1], 1, c
    shape = lambda c, s: (1, c, *s)  # noqa: E731
    out.append((f"fuse {sizes[4][0]}x{sizes[4][1]} {widths[4]}+{widths[3]}>{d[0]}",
                [shape(widths[4], sizes[4]), shape(widths[3], sizes[3])], take(lambda: net.fusion[0])))
    for level in (1, 2):  # level 1 fuses stage 2's features and adds the heads on stage 1's; level 2: stage 1, stem
        skip, head_skip = 3 - level, 2 - level
        out.append((f"fuse+heads {sizes[skip][0]}x{sizes[skip][1]} {d[level - 1]}+{widths[skip]}>{d[level]} "
                    f"+{widths[head_skip]}>{(3 - level) * k}",
                    [shape(d[level - 1], sizes[skip]), shape(widths[skip], sizes[skip]),
                     shape(widths[head_skip], sizes[head_skip])],
                    take(lambda: _Level(net.fusion[level], net.head_deep[level - 1], net.head_skip[level - 1]))))
    return out


def _runner(module: nn.Module, shapes: list[tuple[int, ...]], backend: str, threads: int | None
            ) -> Callable[[], object]:
    """A call that runs ``module`` on zero inputs of ``shapes`` float32 with ``backend`` (onnxruntime and openvino
    run its ONNX export, as the network's backends do)."""
    module = module.eval()
    inputs = [torch.zeros(s) for s in shapes]
    if backend == "torch":
        if threads:
            torch.set_num_threads(threads)

        def run():
            with torch.no_grad():
                return module(*inputs)
        return run
    names = [f"x{i}" for i in range(len(inputs))]
    buf = io.BytesIO()
    with warnings.catch_warnings(), exporting_for(backend):  # the graph the network's backend runs
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs), buf, dynamo=False, opset_version=17, input_names=names)
    feed = {n: x.numpy() for n, x in zip(names, inputs)}
    if backend == "onnxruntime":
        from ..runtime import onnx_session

        session = onnx_session(buf.getvalue(), threads)
        return lambda: session.run(None, feed)
    if backend == "openvino":
        from ..runtime.openvino import cpu_config, import_openvino

        ov = import_openvino()
        core = ov.Core()
        compiled = core.compile_model(core.read_model(buf.getvalue(), b""), "CPU", cpu_config(threads))
        return lambda: compiled(feed)
    raise ValueError(f"latency tables measure onnxruntime, openvino or torch, not {backend!r}")


def _fastest_ms(run: Callable[[], object], runs: int) -> float:
    """Milliseconds of the fastest of ``runs`` calls after 2 warm-up calls (the least disturbed by other work)."""
    for _ in range(2):
        run()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def _whole(arch: Arch, num_keypoints: int, backend: str, threads: int | None, frame_hw: tuple[int, int] = FRAME_HW
           ) -> Callable[[], object]:
    """A call that runs the whole candidate (random weights) on ``backend``, its input as ``featherpose.load``
    feeds it."""
    from ..runtime import create_backend

    hw = input_hw(arch, frame_hw)
    run = create_backend(LitePose(arch.config(num_keypoints)).eval(), hw, backend, threads, dynamic_size=True)
    x = np.zeros((1, *hw, 3), np.int32)
    return lambda: run(x)


def measure(arch: Arch, num_keypoints: int, backend: str = "auto", threads: int | None = None, runs: int = 10,
            frame_hw: tuple[int, int] = FRAME_HW) -> float:
    """Milliseconds per forward pass of the whole candidate (random weights) on ``backend``, its input as
    ``featherpose.load`` feeds it: the fastest of ``runs``."""
    return _fastest_ms(_whole(arch, num_keypoints, resolve_backend(backend), threads, frame_hw), runs)


def machine_key(backend: str, threads: int | None) -> str:
    """What a latency depends on besides the network: CPU, cores, backend and its version, threads, and the graphs
    featherpose exports (:data:`GRAPHS`)."""
    name = resolve_backend(backend)
    version = "?"
    try:
        version = __import__(name).__version__
    except (ImportError, AttributeError):
        pass
    return f"{cpu_name()} x{os.cpu_count()} | {name} {version} | threads {threads or 'default'} | graphs {GRAPHS}"


def resolve_backend(backend: str) -> str:
    from ..runtime import default_backend

    return default_backend() if backend == "auto" else backend


class LatencyTable:
    """Measured latencies of the parts of candidates on this machine (cached), and whole candidates' for checks.

    Args:
        num_keypoints: K of the candidates (the heads' widths).
        backend, threads: what the latency is of (``auto``: the default backend).
        cache: the folder of the JSON cache (default: featherpose's cache folder, ``latency``).
        runs: timed runs per measurement (the fastest counts).
    """

    def __init__(self, num_keypoints: int, backend: str = "auto", threads: int | None = None,
                 cache: str | Path | None = None, runs: int = 10):
        self.num_keypoints, self.threads, self.runs = num_keypoints, threads, runs
        self.backend = resolve_backend(backend)
        self.key = machine_key(backend, threads)
        folder = Path(cache) if cache else cache_dir("latency")
        # K in the name: whole candidates are keyed by their architecture alone, and the heads' width follows K
        self.path = folder / f"litepose-parts-k{num_keypoints}-{hash_text(self.key):016x}.json"
        self.parts: dict[str, float] = {}  # part key -> ms
        self.measured: dict[str, float] = {}  # whole candidates (checks): arch key -> ms
        self.calibration: dict[str, tuple[float, float]] = {}  # arch key -> (sum of its parts, whole) ms
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("machine") == self.key:
                    self.parts = {k: float(v) for k, v in data["parts"].items()}
                    self.measured = {k: float(v) for k, v in data["networks"].items()}
                    self.calibration = {k: (float(a), float(b)) for k, (a, b) in data.get("calibration", {}).items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                self.parts, self.measured, self.calibration = {}, {}, {}  # a damaged cache is measured again

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"machine": self.key, "parts": self.parts, "networks": self.measured,
                                       "calibration": self.calibration}, indent=1))

    @property
    def scale(self) -> float:
        """Whole network / sum of its parts, the median over the calibration candidates (1 before any)."""
        if not self.calibration:
            return 1.0
        return float(np.median([whole / total for total, whole in self.calibration.values()]))

    def missing(self, arch: Arch) -> list[str]:
        """Keys of the candidate's parts not measured yet."""
        return [key for key, _, _ in parts(arch, self.num_keypoints) if key not in self.parts]

    def _measure_parts(self, arch: Arch) -> None:
        if not self.missing(arch):
            return
        net = LitePose(arch.config(self.num_keypoints))
        threads = torch.get_num_threads()
        try:
            for key, shapes, module in parts(arch, self.num_keypoints, net):
                if key not in self.parts:
                    self.parts[key] = _fastest_ms(_runner(module, shapes, self.backend, self.threads), self.runs)
        finally:
            torch.set_num_threads(threads)  # the torch backend sets its own
        self._save()

    def parts_sum(self, arch: Arch) -> float:
        """The sum of the candidate's parts in milliseconds (measuring the ones not in the table)."""
        self._measure_parts(arch)
        return float(sum(self.parts[key] for key, _, _ in parts(arch, self.num_keypoints)))

    def predict(self, arch: Arch) -> float:
        """Predicted milliseconds: the sum of the candidate's parts times :attr:`scale`."""
        return self.scale * self.parts_sum(arch)

    def prefill(self, space: SearchSpace, samples: int, rng: random.Random, progress: bool = True) -> None:
        """Measure the parts of the largest, the smallest and ``samples`` random candidates up front (cached parts
        are not measured again), with a progress bar: most parts the search meets are then in the table."""
        from tqdm import tqdm

        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(samples)]
        todo = [a for a in archs if self.missing(a)]
        for arch in tqdm(todo, desc="latency table", unit="net", disable=not progress or not todo):
            self._measure_parts(arch)

    def ms(self, arch: Arch) -> float:
        """The whole candidate's measured latency (measured now unless cached)."""
        if arch.key not in self.measured:
            self.measured[arch.key] = measure(arch, self.num_keypoints, self.backend, self.threads, self.runs)
            self._save()
        return self.measured[arch.key]

    def _measure_twice(self, archs: list[Arch], desc: str, progress: bool) -> dict[str, tuple[float, float]]:
        """Each candidate measured whole twice, once in a pass over all of them and again in a second pass (their
        parts first); the faster of the two is kept as its latency. How far the two disagree is this machine's own
        noise, which no prediction beats."""
        from tqdm import tqdm

        runs, first = {}, {}
        for arch in tqdm(archs, desc=desc, unit="net", disable=not progress):
            self.parts_sum(arch)
            runs[arch.key] = _whole(arch, self.num_keypoints, self.backend, self.threads)
            first[arch.key] = _fastest_ms(runs[arch.key], self.runs)
        passes = {key: (ms, _fastest_ms(runs[key], self.runs)) for key, ms in first.items()}
        self.measured.update({key: min(ms) for key, ms in passes.items()})
        self._save()
        return passes

    def calibrate(self, space: SearchSpace, count: int, rng: random.Random, progress: bool = True) -> None:
        """Fit :attr:`scale` on ``count`` random candidates measured whole (cached: those measured before count)."""
        archs = [space.sample(rng) for _ in range(max(0, count - len(self.calibration)))]
        passes = self._measure_twice(archs, "latency calibration", progress)
        for arch in archs:
            self.calibration[arch.key] = (self.parts_sum(arch), min(passes[arch.key]))
        self._save()

    def check(self, space: SearchSpace, count: int, rng: random.Random, progress: bool = True
              ) -> list[tuple[str, float, tuple[float, float]]]:
        """(arch key, predicted ms, (first, second) measured ms) for ``count`` fresh random candidates, each measured
        whole twice (:meth:`_measure_twice`)."""
        archs = [space.sample(rng) for _ in range(count)]
        passes = self._measure_twice(archs, "latency check", progress)
        return [(arch.key, self.predict(arch), passes[arch.key]) for arch in archs]


def hash_text(text: str) -> int:
    """A stable 64-bit hash (Python's ``hash`` of a str changes between runs)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
