"""Latency of search candidates on this machine: a lookup table of the parts of networks, each timed inside a whole
network, summed.

Measuring every candidate whole (export, compile, time: about a second each) for the hundreds an evolutionary search
proposes is slow, and a linear model on multiply-accumulates misses: fitted on 32 candidates measured in one session
here, it predicted 10 fresh ones with a mean error of 17 % (max 41 %), because a runtime's kernels are not linear in
MACs (widths that fill the vector registers or not, memory-bound 1x1 convolutions, per-layer overheads). So, as
Once-for-All and ProxylessNAS do, the network is cut into parts whose cost depends on a few numbers (:func:`parts`):
the stem, each inverted-residual block (its input size, widths, stride and kernel) and the three fusion levels with
their heads. A candidate's latency is the sum of its parts' in a JSON table cached per machine, backend and version,
threads and exported graphs (:func:`machine_key`).

Parts are timed where they run: inside a whole network. Timed alone, as this table first did, each part paid a
runtime call and layout conversions of its own that the whole network does not; on the 2-core AMD EPYC the parts'
sums came out 0.80-1.04 x the whole networks, and one scale fitted on a few candidates measured whole left a max error
of 12.8-33.9 % over 10 fresh ones. Now a network is profiled by its runtime (onnxruntime's profiler, OpenVINO's
per-node counters): each node's time goes to the part whose module path its name carries (:func:`node_part`; a node
of no module, a layout conversion, to the part before it), and each part's share of the profiled time
(:func:`part_shares`) times the network's own latency unprofiled is the part's (the profiler's cost per node is not
counted).

This machine's speed also swings by 20-40 % from one minute to the next (2-core cloud VMs; in one check run every
network took 25 % longer than while the table was filled a minute before). So latencies are kept relative to a
:data:`REFERENCE` network timed in turn with each network measured whole, call by call (:func:`_fastest_pair`), in
:data:`PASSES` passes over a batch of networks (the ratio of the pass whose reference ran fastest kept), and read out
in milliseconds at the reference's fastest time so far (:attr:`LatencyTable.reference_ms`): the latency at this
machine's own best speed. In the run above the raw predictions missed by up to 30.2 %, the relative ones by 7.3 %;
in the noisiest runs neither came within 10 % (benchmarks/RESULTS.md, "latency parts timed inside whole networks").

The swings were mostly of the measurement's own making. onnxruntime's threads spin on after a call, so the session
that ran last kept two spinning threads busy on this 2-core machine while the next one ran: the reference network
and each measured one, called in turn, slowed each other by turns. The table's onnxruntime sessions now let their
threads sleep when a call ends (``onnx_session(..., spinning=False)``). With that, the passes of one check agreed
within 1.2-1.4 % on average in calm spells (28.5 % before), and the check's error fell from 15.6 / 33.1 % (mean /
max) to 2.0-2.3 / 4.1-6.3 % in three runs (benchmarks/RESULTS.md, 2026-11-29). Each call then pays its threads'
wake-up (the reference 6.0 ms against 4.5 spinning). Read out at the reference's fastest time, a latency is still
the network's at the fastest the machine ran while the table was measured, not at its usual speed: the search of
2026-11-29 measured its chosen network at 23.2 ms, which ``featherpose.load``'s session ran in 27.1-28.6 ms later that
hour (benchmarks/RESULTS.md, "the searched network end to end"). Leave room in a budget for that.

A candidate whose parts are all in the table is predicted without running it; one with a part missing is profiled
itself, which makes its prediction its own measured latency. :meth:`LatencyTable.check` keeps the predictions honest:
a fresh candidate's missing parts come from two other networks that together hold them
(:meth:`~featherpose.nas.space.SearchSpace.donors`), measured in the same passes as the candidate.

Latency is the network's, on the input a 4:3 frame gets (vtest.avi's 768x576: short side at the candidate's size,
the long side following, as ``featherpose.load`` feeds Lite Pose), batch 1, compiled for that input size (as a
backend compiles a size it meets again, :class:`~featherpose.runtime.StaticCompiles`).
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..fileio import atomic_path, cache_dir
from ..runtime.autoselect import cpu_name
from .space import BLOCKS, Arch, SearchSpace

#: The frame a latency is measured for (vtest.avi's size, H x W).
FRAME_HW = (576, 768)
#: The version of how parts are timed, in the table's key: 4 since onnxruntime's threads do not spin between calls
#: (3: they did; parts timed inside whole networks since 3; 2: alone, the fusion levels as phase convolutions).
GRAPHS = 4
#: The runtimes whose profilers give each node's time.
PROFILED = ("onnxruntime", "openvino")
#: Calls before the timed ones; passes over a batch of networks measured whole.
WARMUP, PASSES = 2, 2
#: The network timed in turn with every network measured whole (:meth:`LatencyTable.measure`): a small Lite Pose
#: (5 ms on a vtest frame on the 2-core AMD EPYC).
REFERENCE = Arch(192, 16, (16, 32, 48, 80), (7, 7, 7, 7), (32, 24, 16))
#: A node's part, from the module path in its name (see :func:`node_part`).
_NODE_PART = re.compile(r"/model/(?:(stem)|stages\.(\d+)\.(\d+)|fusion\.(\d+)|head_(?:deep|skip)\.(\d+))/")


def input_hw(arch: Arch, frame_hw: tuple[int, int] = FRAME_HW) -> tuple[int, int]:
    """The network input of a ``frame_hw`` frame at the candidate's size (Lite Pose's own preprocessing)."""
    from ..image import litepose_geometry

    return litepose_geometry(frame_hw, arch.input_size).input_hw


def parts(arch: Arch, num_keypoints: int, frame_hw: tuple[int, int] = FRAME_HW
          ) -> list[tuple[str, list[tuple[int, ...]]]]:
    """The candidate's parts in forward order: (key, input shapes). The key names everything the part's latency
    depends on: its input size, widths, stride and kernel."""
    h, w = input_hw(arch, frame_hw)
    half = lambda hw: ((hw[0] + 1) // 2, (hw[1] + 1) // 2)  # noqa: E731 - a stride-2 layer's output (padding k // 2)
    sizes = [half((h, w))]  # the stem's output, then each stage's
    for i in range(4):
        sizes.append(half(sizes[-1]) if i < 3 else sizes[-1])
    widths = [arch.stem, *arch.stages]
    d, k = arch.deconv, num_keypoints
    out = [(f"stem {h}x{w} >{arch.stem}", [(1, 3, h, w)])]
    cin = arch.stem
    for i, (c, kernel, n) in enumerate(zip(arch.stages, arch.kernels, BLOCKS)):
        (y, x), stride = sizes[i], 2 if i < 3 else 1
        for _ in range(n):
            out.append((f"block {y}x{x} {cin}>{c} s{stride} k{kernel}", [(1, cin, y, x)]))
            (y, x), stride, cin = sizes[i + 1], 1, c
    shape = lambda c, s: (1, c, *s)  # noqa: E731
    out.append((f"fuse {sizes[4][0]}x{sizes[4][1]} {widths[4]}+{widths[3]}>{d[0]}",
                [shape(widths[4], sizes[4]), shape(widths[3], sizes[3])]))
    for level in (1, 2):  # level 1 fuses stage 2's features and adds the heads on stage 1's; level 2: stage 1, stem
        skip, head_skip = 3 - level, 2 - level
        out.append((f"fuse+heads {sizes[skip][0]}x{sizes[skip][1]} {d[level - 1]}+{widths[skip]}>{d[level]} "
                    f"+{widths[head_skip]}>{(3 - level) * k}",
                    [shape(d[level - 1], sizes[skip]), shape(widths[skip], sizes[skip]),
                     shape(widths[head_skip], sizes[head_skip])]))
    return out


def node_part(name: str) -> int | None:
    """The index in :func:`parts` of the part a graph node belongs to, read from the module path the ONNX export
    writes into node names (``/model/stages.1.2/expand/...``: block 2 of stage 1; ``head_*.0`` go with fusion level
    1, ``head_*.1`` with level 2); None for a node of no part's module (the input's conversion, a layout reorder)."""
    m = _NODE_PART.match(name)
    if m is None:
        return None
    stem, stage, block, fusion, head = m.groups()
    if stem:
        return 0
    if stage is not None:
        return 1 + sum(BLOCKS[: int(stage)]) + int(block)
    return 1 + sum(BLOCKS) + (int(fusion) if fusion is not None else int(head) + 1)


def part_shares(runs: list[list[tuple[str, float]]], count: int) -> np.ndarray:
    """Each of ``count`` parts' share of a network's time, from profiled runs (per run, ``(node name, ms)`` in the
    order the nodes ran): a part's time is the fastest run's sum of its nodes (:func:`node_part`; a node of no part goes
    to the part before it, the first ones to the stem)."""
    best = np.full(count, np.inf)
    for nodes in runs:
        t, part = np.zeros(count), 0
        for name, ms in nodes:
            owner = node_part(name)
            part = part if owner is None else owner
            t[part] += ms
        best = np.minimum(best, t)
    if not runs or not (best > 0).all():
        raise RuntimeError(f"the profile gave no time to parts {np.flatnonzero(~(best > 0)).tolist()} of {count}: "
                           "the runtime's node names no longer carry the modules' paths")
    return best / best.sum()


def _compiled(onnx: bytes, hw: tuple[int, int], backend: str, threads: int | None, profile: str | None = None):
    """The network compiled for the input ``hw`` (static) and a call that runs it once on zeros; ``profile``: with the
    runtime's profiler on (onnxruntime: its JSON under this path prefix)."""
    x = np.zeros((1, *hw, 3), np.int32)
    if backend == "onnxruntime":
        from ..runtime import onnx_session

        session = onnx_session(onnx, threads, {"height": hw[0], "width": hw[1]}, profile, spinning=False)
        name = session.get_inputs()[0].name
        return session, lambda: session.run(None, {name: x})
    from ..runtime.openvino import Request, cpu_config, import_openvino, reshaped

    core = import_openvino().Core()
    config = {**cpu_config(threads), **({"PERF_COUNT": True} if profile else {})}
    run = Request(core.compile_model(reshaped(core.read_model(onnx, b""), {0: x.shape}), "CPU", config))
    return run, lambda: run(x)


def _profiled_runs(onnx: bytes, hw: tuple[int, int], backend: str, threads: int | None, runs: int
                   ) -> list[list[tuple[str, float]]]:
    """``(node name, ms)`` in the order the nodes ran, for each of ``runs`` profiled forward passes (after
    :data:`WARMUP`)."""
    if backend == "onnxruntime":
        with tempfile.TemporaryDirectory() as tmp:
            session, run = _compiled(onnx, hw, backend, threads, str(Path(tmp) / "profile"))
            for _ in range(WARMUP + runs):
                run()
            events = json.loads(Path(session.end_profiling()).read_text())
        spans = [(e["ts"], e["ts"] + e["dur"]) for e in events
                 if e.get("cat") == "Session" and e["name"] == "model_run"][WARMUP:]
        nodes = [(e["ts"], e["name"].removesuffix("_kernel_time"), e["dur"] / 1e3) for e in events
                 if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        return [[(name, ms) for ts, name, ms in nodes if a <= ts <= b] for a, b in spans]
    request, run = _compiled(onnx, hw, backend, threads, "on")
    out = []
    for i in range(WARMUP + runs):
        run()
        if i >= WARMUP:
            out.append([(p.node_name, p.real_time.total_seconds() * 1e3) for p in request.request.profiling_info
                        if p.status == p.Status.EXECUTED])
    return out


def _fastest_pair(run: Callable[[], object], reference: Callable[[], object], runs: int) -> tuple[float, float]:
    """Milliseconds of the fastest of ``runs`` calls of ``run`` and of ``reference``, the two called in turn (after
    :data:`WARMUP` calls each): both timed in the same second, at the same speed of the machine."""
    for _ in range(WARMUP):
        run()
        reference()
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, f in enumerate((run, reference)):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return 1e3 * best[0], 1e3 * best[1]


def machine_key(backend: str, threads: int | None) -> str:
    """What a latency depends on besides the network: CPU, cores, backend and its version, threads, the graphs
    featherpose exports (:data:`GRAPHS`) and the :data:`REFERENCE` network the table's latencies are relative to."""
    name = resolve_backend(backend)
    version = "?"
    try:
        version = __import__(name).__version__
    except (ImportError, AttributeError):
        pass
    return (f"{cpu_name()} x{os.cpu_count()} | {name} {version} | threads {threads or 'default'} | graphs {GRAPHS} "
            f"| reference {REFERENCE.key}")


def resolve_backend(backend: str) -> str:
    from ..runtime import default_backend

    return default_backend() if backend == "auto" else backend


class LatencyTable:
    """Latencies of candidates' parts on this machine, timed inside whole networks (cached), and of whole networks.

    Args:
        num_keypoints: K of the candidates (the heads' widths).
        backend, threads: what the latency is of (``auto``: the default backend); onnxruntime or openvino, whose
            profilers time each node (:data:`PROFILED`).
        cache: the folder of the JSON cache (default: featherpose's cache folder, ``latency``).
        runs: timed calls per measurement (the fastest counts).
    """

    def __init__(self, num_keypoints: int, backend: str = "auto", threads: int | None = None,
                 cache: str | Path | None = None, runs: int = 10):
        self.num_keypoints, self.threads, self.runs = num_keypoints, threads, runs
        self.backend = resolve_backend(backend)
        if self.backend not in PROFILED:
            raise ValueError(f"a latency table times {' or '.join(PROFILED)} networks (their profilers time each "
                             f"node), not {self.backend}: set latency.backend to one of them")
        self.key = machine_key(backend, threads)
        folder = Path(cache) if cache else cache_dir("latency")
        # K in the name: whole candidates are keyed by their architecture alone, and the heads' width follows K
        self.path = folder / f"litepose-parts-k{num_keypoints}-{hash_text(self.key):016x}.json"
        # latencies in units of the reference network's time measured in turn with them; ms = units x reference_ms
        self.parts: dict[str, float] = {}  # part key -> units
        self.measured: dict[str, float] = {}  # whole networks: arch key -> units
        self.reference_ms = float("inf")  # the reference network's fastest time so far
        self._reference: Callable[[], object] | None = None
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("machine") == self.key:
                    self.parts = {k: float(v) for k, v in data["parts"].items()}
                    self.measured = {k: float(v) for k, v in data["networks"].items()}
                    self.reference_ms = float(data["reference_ms"])
            except (ValueError, KeyError, TypeError, AttributeError):
                self.parts, self.measured = {}, {}  # a damaged cache is measured again

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({"machine": self.key, "reference_ms": self.reference_ms, "parts": self.parts,
                                       "networks": self.measured}, indent=1))

    def _export(self, arch: Arch) -> bytes:
        """The candidate (random weights) as the backend runs it: ``featherpose.load``'s export for that runtime."""
        from ..models.litepose import LitePose
        from ..runtime.export import export_onnx

        return export_onnx(LitePose(arch.config(self.num_keypoints)).eval(), input_hw(arch), dynamic_size=True,
                           runtime=self.backend, cache=False)

    def measure(self, archs: list[Arch], profile: list[Arch] = (), desc: str = "latency", progress: bool = True
                ) -> dict[str, list[tuple[float, float]]]:
        """Measure ``archs`` whole in :data:`PASSES` passes over them all: in each, a network and the reference
        called in turn, the fastest of ``runs`` calls of each (:func:`_fastest_pair`); the ratio of the pass whose
        reference ran fastest goes to :attr:`measured`. Those also in ``profile`` are profiled first, and their parts
        enter the table (a part already there keeps its time). Returns each network's passes: (its ms, the
        reference's ms)."""
        from tqdm import tqdm

        archs = list(dict.fromkeys(archs))
        profile = [a for a in archs if a in set(profile)]
        graphs, shares = {}, {}
        with tqdm(total=len(profile) + PASSES * len(archs), desc=desc, unit="net", disable=not progress) as bar:
            for arch in archs:
                graphs[arch] = self._export(arch)
            for arch in profile:
                runs = _profiled_runs(graphs[arch], input_hw(arch), self.backend, self.threads, self.runs)
                shares[arch] = part_shares(runs, len(parts(arch, self.num_keypoints)))
                bar.update()
            if self._reference is None:
                self._reference = _compiled(self._export(REFERENCE), input_hw(REFERENCE), self.backend,
                                            self.threads)[1]
            passes: dict[Arch, list[tuple[float, float]]] = {a: [] for a in archs}
            for _ in range(PASSES):
                for arch in archs:
                    _, run = _compiled(graphs[arch], input_hw(arch), self.backend, self.threads)
                    passes[arch].append(_fastest_pair(run, self._reference, self.runs))
                    self.reference_ms = min(self.reference_ms, passes[arch][-1][1])
                    bar.update()
        for arch, ms in passes.items():
            t, ref = min(ms, key=lambda pair: pair[1])  # the pass at the machine's best speed: the fastest reference
            self.measured[arch.key] = t / ref
        for arch, share in shares.items():
            own: dict[str, list[float]] = {}  # a network's identical blocks: their mean
            for (key, _), s in zip(parts(arch, self.num_keypoints), share):
                own.setdefault(key, []).append(float(s) * self.measured[arch.key])
            for key, units in own.items():
                self.parts.setdefault(key, float(np.mean(units)))
        self._save()
        return {arch.key: ms for arch, ms in passes.items()}

    def missing(self, arch: Arch) -> list[str]:
        """Keys of the candidate's parts not in the table yet."""
        return [key for key, _ in parts(arch, self.num_keypoints) if key not in self.parts]

    def predict(self, arch: Arch) -> float:
        """Predicted milliseconds: the sum of the candidate's parts at the reference's fastest time so far (a
        candidate with parts missing from the table is profiled itself first, which can lower that time: predictions
        made at different moments are compared by calling this again, not by keeping its earlier results)."""
        keys = [key for key, _ in parts(arch, self.num_keypoints)]
        if any(key not in self.parts for key in keys):
            self.measure([arch], [arch], progress=False)
        return self.reference_ms * float(sum(self.parts[key] for key in keys))

    def prefill(self, space: SearchSpace, samples: int, rng: random.Random, progress: bool = True) -> None:
        """Profile the largest, the smallest and ``samples`` random candidates up front (those whose parts are all in
        the table are not), with a progress bar: most parts the search meets are then in the table."""
        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(samples)]
        todo = [a for a in archs if self.missing(a)]
        if todo:
            self.measure(todo, todo, "latency table", progress)

    def ms(self, arch: Arch) -> float:
        """The whole candidate's measured latency (measured now unless cached)."""
        if arch.key not in self.measured:
            self.measure([arch], progress=False)
        return self.reference_ms * self.measured[arch.key]

    def check(self, space: SearchSpace, count: int, rng: random.Random, progress: bool = True) -> list[Checked]:
        """``count`` fresh random candidates predicted and measured whole (:class:`Checked`). A candidate's parts
        missing from the table are taken from other networks that hold them (:meth:`SearchSpace.donors`, profiled),
        never from its own profile, and it is measured in the same passes as they are. So a candidate measured before
        (perhaps profiled), or one that is its own donor or another's, is drawn again; a space too small to give
        ``count`` such candidates in ``20 x count`` draws gives fewer, and none is a one-line ValueError."""
        archs: list[Arch] = []
        donors: list[Arch] = []
        for _ in range(20 * count):
            if len(archs) == count:
                break
            arch = space.sample(rng)
            if arch in archs or arch in donors or arch.key in self.measured:
                continue
            own = space.donors(arch, rng) if self.missing(arch) else []
            if arch in own or any(d in archs for d in own):
                continue
            archs.append(arch)
            donors += [d for d in own if d not in donors]
        if count and not archs:
            raise ValueError(f"the latency check found no candidate it can predict from other networks in "
                             f"{20 * count} draws: the search space is too small (add sizes or widths, or set "
                             "latency.check: 0)")
        passes = self.measure(archs + donors, donors, "latency check", progress)
        return [Checked(arch.key, self.predict(arch), self.ms(arch), tuple(t for t, _ in passes[arch.key]),
                        tuple(ref for _, ref in passes[arch.key])) for arch in archs]


class Checked(NamedTuple):
    """A candidate of :meth:`LatencyTable.check`: its prediction and its measured latency (both at the reference's
    fastest, see the module's notes); each pass's own milliseconds, of the candidate and of the reference timed in
    turn with it (how far the passes differ is this machine's own noise)."""
    key: str
    predicted_ms: float
    measured_ms: float
    passes_ms: tuple[float, ...]
    reference_passes_ms: tuple[float, ...]

    @property
    def error(self) -> float:
        """|predicted - measured| / measured."""
        return abs(self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def raw_error(self) -> float:
        """The same against the fastest pass's own milliseconds (not relative to the reference)."""
        return abs(self.predicted_ms - min(self.passes_ms)) / min(self.passes_ms)


def hash_text(text: str) -> int:
    """A stable 64-bit hash (Python's ``hash`` of a str changes between runs)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
