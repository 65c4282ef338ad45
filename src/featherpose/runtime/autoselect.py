"""``backend="auto"``: the fastest backend for this model on this machine, measured once and cached.

The first time a model is loaded with ``backend="auto"`` (at a given input size and thread count), every
installed backend of :data:`CANDIDATES` (onnxruntime, openvino when installed, torch; not litert, which converts for
seconds per model and input size, again at every new size for a model whose size follows the image: :mod:`.litert`)
is built and timed on the same frame, each call what a frame costs the user with that backend (its preprocessing,
which differs: OpenVINO letterboxes MoveNet's input inside its graph, the others in NumPy before the call, and the
network): :data:`WARMUP` calls, then :data:`ROUNDS` rounds of :data:`CALLS` timed calls each (after :data:`REWARM`
untimed ones), the backends alternating round by round so that all see the same machine load; the lowest median
wins. The
choice and the times go to ``~/.cache/featherpose/backends.json`` (``$XDG_CACHE_HOME`` respected), keyed by the
machine (CPU model and core count), the runtime versions, featherpose's code and the model, so later loads build
only the winner.

The measured backends all run float32 and give the same keypoints (within 0.5 px of torch on the golden samples:
``tests/test_backends.py``, ``tests/test_openvino.py``); the choice is about time alone. ``FEATHERPOSE_BACKEND``
(a backend name) pins what ``auto`` means and skips the measurement: the test suite pins onnxruntime so its
numbers do not depend on the machine.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from ..fileio import cache_dir, write_text

log = logging.getLogger(__name__)

WARMUP, ROUNDS, REWARM, CALLS = 2, 3, 2, 5
SLOWER = 1.5
#: machine keys kept in the cache (the most recently measured): each new featherpose version or runtime makes one
CACHED_MACHINES = 8
CANDIDATES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch"}  # backend -> its module
ENV = "FEATHERPOSE_BACKEND"


def cache_path() -> Path:
    return cache_dir("backends.json")


def cpu_name() -> str:
    """The CPU's model name where Linux gives it, else what ``platform`` knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def installed_version(module: str) -> str | None:
    """The version of the installed distribution that provides ``module``, read from its metadata (importing
    onnxruntime to ask took 0.2 s of every start): the one named so, else another that provides it (onnxruntime-gpu
    provides onnxruntime); None when none is installed."""
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        pass
    for dist in metadata.packages_distributions().get(module, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine_key() -> str:
    """CPU model, core count, the runtime versions and featherpose's code (:func:`.export.source_digest`: a change
    may export other graphs, as Lite Pose's for onnxruntime did): a measurement holds for this combination only."""
    from .export import source_digest

    versions = [f"{m} {v}" for m in ("onnxruntime", "openvino", "torch") if (v := installed_version(m)) is not None]
    return f"{cpu_name()} x{os.cpu_count()}; {', '.join(versions)}; featherpose code {source_digest().hex()[:12]}"


def installed_backends() -> list[str]:
    """The backends ``auto`` chooses among: each of :data:`CANDIDATES` whose runtime is installed (found, not
    imported: a runtime that fails to import fails to build, and ``auto`` measures the others)."""
    return [name for name, module in CANDIDATES.items() if importlib.util.find_spec(module) is not None]


def time_backends(backends: dict[str, Callable], frame: Callable[[Callable], object]) -> dict[str, float]:
    """Median ms per call of ``frame(backend)`` (one frame through that backend) for each backend, interleaved
    round by round. Each round first re-warms the backend (:data:`REWARM` untimed calls: a runtime's first calls
    after another runtime ran are slow, its threads asleep and caches cold, which a video never sees); after the
    first round a backend :data:`SLOWER` times slower than the best is timed no more."""
    for backend in backends.values():
        for _ in range(WARMUP):
            frame(backend)
    times: dict[str, list[float]] = {name: [] for name in backends}
    timing = dict(backends)
    for round_ in range(ROUNDS):
        for name, backend in timing.items():
            for _ in range(REWARM):
                frame(backend)
            for _ in range(CALLS):
                start = time.perf_counter()
                frame(backend)
                times[name].append(time.perf_counter() - start)
        if round_ == 0:
            best = min(np.median(t) for t in times.values())
            timing = {name: b for name, b in timing.items() if np.median(times[name]) <= SLOWER * best}
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def cached_choice(key: str) -> str | None:
    """The backend measured fastest for ``key`` on this machine, where the cache holds it (else None)."""
    try:
        entry = json.loads(cache_path().read_text()).get(machine_key(), {}).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry.get("backend") if isinstance(entry, dict) else None


def fastest_backend(key: str, build: Callable[[str], Callable], frame: Callable[[Callable], object],
                    candidates: list[str] | None = None, env: str | None = ENV):
    """The built backend ``auto`` means for the model described by ``key``.

    Args:
        key: the model, its input size and thread count (the cache's entry within this machine's).
        build: backend name -> that backend built for the model.
        frame: runs one sample frame through a built backend: the preprocessing that backend takes, then the
            call (called only when measuring).
        candidates: the names ``build`` takes, to choose among (None: :func:`installed_backends`).
        env: the environment variable that pins the choice (None: nothing pins it).
    """
    pinned = os.environ.get(env) if env else None
    if pinned:
        return build(pinned)
    path, machine = cache_path(), machine_key()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(machine, {}).get(key)
    candidates = installed_backends() if candidates is None else list(candidates)
    if entry and entry.get("backend") in candidates:
        try:
            return build(entry["backend"])
        except Exception as exc:  # noqa: BLE001 - e.g. a runtime whose install broke since: measure the others
            log.warning("backend auto: %s, measured fastest for %s, cannot run it now (%s); measuring again",
                        entry["backend"], key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            candidates.remove(entry["backend"])  # not built a second time below
    built = {}
    for name in candidates:  # a runtime that cannot build this model is left out, with one line
        try:
            built[name] = build(name)
        except Exception as exc:  # noqa: BLE001 - any runtime's export or compile error
            log.warning("backend auto: %s cannot run %s (%s); measuring the others", name, key,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if not built:
        raise ValueError(f"backend auto: no installed backend can run {key}; try --backend torch")
    ms = time_backends(built, frame)
    best = min(ms, key=ms.get)
    log.info("backend auto for %s: %s (%s ms per call; measured once, cached in %s)", key, best,
             ", ".join(f"{n} {t:.2f}" for n, t in sorted(ms.items(), key=lambda kv: kv[1])), path)
    cache.setdefault(machine, {})[key] = {"backend": best, "ms": {n: round(t, 3) for n, t in ms.items()},
                                          "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    newest = {m: max((str(e.get("measured", "")) for e in entries.values() if isinstance(e, dict)), default="")
              for m, entries in cache.items() if isinstance(entries, dict)}
    cache = {m: cache[m] for m in sorted(newest, key=newest.get)[-CACHED_MACHINES:]}
    try:
        write_text(path, json.dumps(cache, indent=1))
    except OSError as exc:  # a read-only home: measure again next time, still run
        log.warning("could not cache the backend choice in %s (%s)", path, exc)
    return built[best]
