"""Latency of search candidates on this machine: measured with the default backend, predicted from a cached table.

Measuring a candidate means exporting it and timing it (seconds each), too slow for the thousands of candidates an
evolutionary search proposes. So a :class:`LatencyTable` measures a set of candidates once (the largest, the
smallest and random ones), keeps the milliseconds in a JSON cache keyed by this machine, the backend, the thread
count and the runtime's version, and fits a linear model on costs every candidate has (multiply-accumulates of the
dense, depthwise and transposed convolutions, elements written by the layers, a constant), each coefficient >= 0
(``scipy.optimize.nnls``). :meth:`LatencyTable.check` measures fresh random candidates against the predictions.

Latency is the network's, on the input a 4:3 frame gets (vtest.avi's 768x576: short side at the candidate's size,
the long side following, as ``featherpose.load`` feeds Lite Pose), batch 1, the fastest of the timed runs.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, cache_dir
from ..runtime.autoselect import cpu_name
from ..models.layers import make_divisible
from ..models.litepose import DECONV_KERNEL, HEAD_KERNEL, STEM_WIDTH, LitePose
from .space import BLOCKS, EXPANSION, Arch, SearchSpace

#: The frame a latency is measured for (vtest.avi's size, H x W).
FRAME_HW = (576, 768)
FEATURES = ("dense MACs", "depthwise MACs", "deconv MACs", "elements written", "constant")


def input_hw(arch: Arch, frame_hw: tuple[int, int] = FRAME_HW) -> tuple[int, int]:
    """The network input of a ``frame_hw`` frame at the candidate's size (Lite Pose's own preprocessing)."""
    from ..families.litepose import upstream_geometry

    return upstream_geometry(frame_hw, arch.input_size).input_hw


def costs(arch: Arch, num_keypoints: int, frame_hw: tuple[int, int] = FRAME_HW) -> np.ndarray:
    """The candidate's :data:`FEATURES` (millions; the constant 1) at its input for ``frame_hw``, counted layer by
    layer as :class:`~featherpose.models.litepose.LitePose` builds it (tests check the count against the network)."""
    h, w = input_hw(arch, frame_hw)
    dense = depthwise = deconv = written = 0

    def conv(pixels: int, cin: int, cout: int, kernel: int, groups: int = 1) -> None:
        nonlocal dense, depthwise, written
        if groups == 1:
            dense += pixels * cin * cout * kernel * kernel
        else:
            depthwise += pixels * cout * kernel * kernel
        written += pixels * cout

    k2 = (h // 2) * (w // 2)
    conv(k2, 3, STEM_WIDTH, 3), conv(k2, STEM_WIDTH, STEM_WIDTH, 3, STEM_WIDTH), conv(k2, STEM_WIDTH, arch.stem, 1)
    pixels, cin, feats = k2, arch.stem, [(k2, arch.stem)]
    for i, (c, k, n) in enumerate(zip(arch.stages, arch.kernels, BLOCKS)):
        for j in range(n):
            hidden = make_divisible(round(cin * EXPANSION))
            out = pixels // 4 if j == 0 and i < 3 else pixels
            conv(pixels, cin, hidden, 1), conv(out, hidden, hidden, k, hidden), conv(out, hidden, c, 1)
            pixels, cin = out, c
        feats.append((pixels, c))
    deep = feats[4]
    for level, width in enumerate(arch.deconv):
        for p, c in (deep, feats[3 - level]):  # a 4x4 stride-2 transposed conv: 16 MACs per input pixel and pair
            deconv += p * c * width * DECONV_KERNEL ** 2
            written += 4 * p * width
        deep = (4 * deep[0], width)
        if level > 0:
            for p, c in (deep, feats[2 - level]):
                conv(p, c, c, HEAD_KERNEL, c), conv(p, c, (3 - level) * num_keypoints, 1)
    return np.array([dense / 1e6, depthwise / 1e6, deconv / 1e6, written / 1e6, 1.0])


def measure(arch: Arch, num_keypoints: int, backend: str = "auto", threads: int | None = None, runs: int = 10,
            frame_hw: tuple[int, int] = FRAME_HW) -> float:
    """Milliseconds per forward pass of the candidate (random weights) on ``backend``: the fastest of ``runs``
    after 2 warm-up runs (the least disturbed by other work on the machine)."""
    from ..runtime import create_backend

    hw = input_hw(arch, frame_hw)
    run = create_backend(LitePose(arch.config(num_keypoints)).eval(), hw, backend, threads, dynamic_size=True)
    x = np.zeros((1, *hw, 3), np.int32)
    for _ in range(2):
        run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return 1e3 * min(times)


def machine_key(backend: str, threads: int | None) -> str:
    """What a latency depends on besides the network: CPU, cores, backend and its version, threads."""
    from ..runtime import default_backend

    name = default_backend() if backend == "auto" else backend
    version = "?"
    try:
        version = __import__("onnxruntime" if name == "onnxruntime" else name).__version__
    except (ImportError, AttributeError):
        pass
    return f"{cpu_name()} x{os.cpu_count()} | {name} {version} | threads {threads or 'default'}"


def default_cache_dir() -> Path:
    return cache_dir("latency")


class LatencyTable:
    """Measured latencies of candidates on this machine (cached) and the linear predictor fitted on them."""

    def __init__(self, num_keypoints: int, backend: str = "auto", threads: int | None = None,
                 cache: str | Path | None = None, runs: int = 10):
        self.num_keypoints, self.backend, self.threads, self.runs = num_keypoints, backend, threads, runs
        self.key = machine_key(backend, threads)
        folder = Path(cache) if cache else default_cache_dir()
        self.path = folder / f"litepose-{abs(hash_text(self.key)):016x}.json"
        self.measured: dict[str, float] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("machine") == self.key:
                    self.measured = {k: float(v) for k, v in data["ms"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                self.measured = {}  # a damaged cache is measured again
        self.coef: np.ndarray | None = None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"machine": self.key, "ms": self.measured}, indent=1))

    def ms(self, arch: Arch) -> float:
        """The measured latency (measured now unless cached)."""
        if arch.key not in self.measured:
            self.measured[arch.key] = measure(arch, self.num_keypoints, self.backend, self.threads, self.runs)
            self._save()
        return self.measured[arch.key]

    def fit(self, space: SearchSpace, samples: int, rng: random.Random, progress: bool = True) -> None:
        """Measure the largest, the smallest and ``samples`` random candidates (cached ones are not measured
        again), then fit the predictor."""
        from scipy.optimize import nnls
        from tqdm import tqdm

        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(samples)]
        todo = [a for a in archs if a.key not in self.measured]
        for arch in tqdm(todo, desc="latency table", unit="net", disable=not progress or not todo):
            self.ms(arch)
        x = np.stack([costs(a, self.num_keypoints) for a in archs])
        y = np.array([self.measured[a.key] for a in archs])
        self.coef = nnls(x / y[:, None], np.ones(len(y)))[0]  # least squares of the relative error

    def predict(self, arch: Arch) -> float:
        if self.coef is None:
            raise RuntimeError("LatencyTable.fit() first")
        return float(costs(arch, self.num_keypoints) @ self.coef)

    def check(self, space: SearchSpace, count: int, rng: random.Random, progress: bool = True
              ) -> list[tuple[str, float, float]]:
        """(arch key, predicted ms, measured ms) for ``count`` fresh random candidates."""
        from tqdm import tqdm

        rows = []
        for _ in tqdm(range(count), desc="latency check", unit="net", disable=not progress):
            arch = space.sample(rng)
            rows.append((arch.key, self.predict(arch), self.ms(arch)))
        return rows


def hash_text(text: str) -> int:
    """A stable 64-bit hash (Python's ``hash`` of a str changes between runs)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
