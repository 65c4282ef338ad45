"""benchmarks/litepose_speed.py: the script runs on a couple of frames and writes its table; its upstream adapter
is the golden oracle's pipeline, and featherpose agrees with it.

The featherpose-only run needs no upstream. The adapter test runs upstream's own code (mit-han-lab/litepose at the
pinned commit, exported from the git mirror outside the tree) on golden samples and must give upstream's stored
poses; it skips when the mirror is absent or munkres / yacs (upstream's dependencies, not featherpose's) are not
importable (set FEATHERPOSE_LITEPOSE_DEPS to a ``pip install --target`` folder holding them).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED, load_benchmark

GOLDEN = SHARED / "golden" / "litepose"
DEPS = os.environ.get("FEATHERPOSE_LITEPOSE_DEPS")


@pytest.fixture(scope="module")
def bench():
    yield from load_benchmark("litepose_speed")


def test_featherpose_only_run_writes_its_table(bench, tmp_path, capsys):
    out = tmp_path / "speed.md"
    assert bench.main(["--frames", "3", "--image-repeats", "1", "--rounds", "1", "--warmup", "0", "--chunk", "2",
                       "--decode-calls", "1", "--threads", "1", "--no-reference", "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "upstream: not run (--no-reference)" in text
    for name in ("vtest.avi", "messi5.jpg"):
        for size in bench.SIZES:
            rows = [line for line in text.splitlines() if line.startswith(f"| featherpose onnxruntime fp32, {size} |")]
            assert len(rows) == 4  # mean and median tables of both inputs
            cells = rows[0].split("|")[2:7]
            pre, net, dec, total, fps = (float(c) for c in cells)
            assert min(pre, net, dec) > 0 and total == pytest.approx(pre + net + dec, abs=0.02)
            assert fps == pytest.approx(1000 / total, abs=0.06)  # frames/s printed to 0.1, total to 0.01 ms
    # decode alone on the golden outputs: upstream's people counts
    for sample in bench.DECODE_SAMPLES:
        people = len(np.load(GOLDEN / sample / "poses.npy"))
        assert any(line.startswith(f"| {sample} (") and f"| {people} / - |" in line for line in text.splitlines())
    target = [line for line in text.splitlines() if line.startswith("| featherpose decode at 448x640")]
    assert len(target) == 1 and target[0].rstrip().endswith(("PASS |", "MISS |"))
    assert "upstream's, vtest.avi" not in text  # no speed-up rows without upstream


@pytest.fixture(scope="module")
def graphs_bench():
    yield from load_benchmark("litepose_graphs")


def test_graphs_script_times_every_graph_with_the_same_heads(graphs_bench, tmp_path, capsys):
    """benchmarks/litepose_graphs.py: a row per graph and runtime, the phase form's heads within 1e-4 of the
    transposed convs' (OpenVINO's row where it is installed)."""
    out = tmp_path / "graphs.md"
    assert graphs_bench.main(["--frames", "1", "--rounds", "1", "--size", "128", "--threads", "1",
                              "--out", str(out)]) == 0
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| onnxruntime")
            or line.startswith("| OpenVINO")]
    assert len(rows) == 3 + (importlib.util.find_spec("openvino") is not None)
    for name, median, best, diff in rows:
        assert float(median) >= float(best) > 0 and float(diff) <= 1e-4, name
    assert out.read_text() == capsys.readouterr().out


def test_bad_arguments_are_one_line_errors(bench, capsys):
    for bad in (["--frames", "0"], ["--chunk", "-1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
        assert "must be positive" in capsys.readouterr().err


@pytest.fixture(scope="module")
def reference(bench, tmp_path_factory):
    """Upstream's modules and tree; what the import put into sys.path / sys.modules leaves afterwards."""
    if bench.find_mirror(bench.MIRROR) is None:
        pytest.skip(f"no git mirror of upstream at {bench.MIRROR}")
    if DEPS:
        sys.path.insert(0, DEPS)
    missing = [m for m in ("munkres", "yacs") if importlib.util.find_spec(m) is None]
    if DEPS:
        sys.path.remove(DEPS)
    if missing:
        pytest.skip(f"upstream needs {', '.join(missing)} (set FEATHERPOSE_LITEPOSE_DEPS to a folder holding them)")
    folder, _ = bench.reference_tree(tmp_path_factory.mktemp("litepose_ref"), bench.MIRROR)
    before_path, before = list(sys.path), set(sys.modules)
    yield bench.import_reference(folder, Path(DEPS) if DEPS else None), folder
    sys.path[:] = before_path
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file is None or str(folder) in file or (DEPS and DEPS in file):
            del sys.modules[name]


@pytest.mark.parametrize("sample", ("messi5", "vtest_f000"))
def test_upstream_adapter_reproduces_golden_and_featherpose_agrees(bench, reference, sample):
    import torch

    import featherpose

    ref, folder = reference
    torch.set_num_threads(1)
    info = json.loads((GOLDEN / "manifest.json").read_text())["samples"][sample]
    bgr = cv2.imread(str(GOLDEN / info["image"]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    runner = bench.reference_runner(bench.up_key(448), ref, folder, bench.reference_model(ref, folder), 448)
    times, ours_up = runner.run(bgr)
    golden = bench.reference_poses(np.load(GOLDEN / sample / "poses.npy"))
    assert len(golden) == info["num_people"] > 0 and all(t > 0 for t in times)
    r = bench.compare([ours_up], [golden])
    assert (r["count"], r["structure"], r["people"]) == (0, 0, len(golden))
    assert r["xy"] <= 1e-3 and r["score"] <= 1e-5

    est = featherpose.load(bench.MODEL, backend="onnxruntime", threads=1)
    _, fp = bench.featherpose_runner(bench.fp_key(448), est).run(bgr)
    r = bench.compare([fp], [ours_up])
    assert (r["count"], r["structure"], r["people"]) == (0, 0, len(golden))
    assert r["xy"] <= 1e-3 and r["score"] <= 1e-4


@pytest.fixture
def stages_bench():
    yield from load_benchmark("ae_decode_stages")


def test_decode_stages_script_compares_compiled_and_reference(stages_bench, tmp_path):
    """benchmarks/ae_decode_stages.py on 2 vtest frames: a row per stage with both implementations' times (it stops
    when their outputs differ)."""
    out = tmp_path / "stages.md"
    assert stages_bench.main(["--frames", "2", "--rounds", "1", "--size", "256", "--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    assert set(stages_bench.STAGES) <= set(rows) and "`AECodec.parse`, whole" in rows
    assert all(float(v) >= 0 for cells in rows.values() for v in cells)
