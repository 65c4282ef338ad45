"""Lite Pose's architecture search (``featherpose.nas``, issue 13 item 7): the space holds the paper's searched
models, the super-network shares its tensors with every candidate and starts as the bundled Auto-M exactly, the cost
count equals the network's layers, the latency table caches, and ``featherpose search`` runs end to end and writes a
network that featherpose loads and runs."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import featherpose
from featherpose import zoo
from featherpose.cli import main
from featherpose.families.litepose import litepose_preprocess
from featherpose.image import load_image
from featherpose.models.litepose import LitePose, named_config
from featherpose.nas import latency as latency_mod
from featherpose.nas.latency import LatencyTable, input_hw
from featherpose.nas.space import SearchSpace, arch_of
from featherpose.nas.supernet import Supernet, _slice

from conftest import SHARED

MESSI = SHARED / "media" / "messi5.jpg"


@pytest.fixture(scope="module")
def auto_m():
    _, net, _, _ = zoo.build("litepose-m-crowdpose")
    return net


def messi_input(size: int) -> torch.Tensor:
    x, _ = litepose_preprocess(load_image(MESSI), (size, size))
    return torch.from_numpy(x).permute(2, 0, 1)[None].float()


def test_the_papers_searched_models_are_points_of_the_space():
    space = SearchSpace()
    for name in ("litepose-xs", "litepose-s", "litepose-m", "litepose-l"):
        arch = arch_of(named_config(name))
        assert space.contains(arch), (name, arch.key)
    assert not space.contains(dataclasses.replace(arch_of(named_config("litepose-m")), stem=20))  # 20: no multiplier


def test_mutation_and_crossover_stay_in_the_space():
    space, rng = SearchSpace(kernels=(3, 5, 7)), random.Random(0)
    archs = [space.sample(rng) for _ in range(50)]
    for a, b in zip(archs, archs[1:]):
        assert space.contains(space.mutate(a, rng, 0.5)) and space.contains(space.crossover(a, b, rng))
    assert len({a.key for a in archs}) == 50  # samples differ
    assert space.mutate(archs[0], rng, 0.0) == archs[0]


def test_supernet_starts_as_the_bundled_auto_m_exactly(auto_m):
    """Inherited: the Auto-M candidate gives the bundled network's outputs bit for bit and extracts its weights;
    the largest candidate (extra channels read with zero weights) computes the same function."""
    space = SearchSpace()
    supernet = Supernet(space, 14)
    supernet.inherit(auto_m)
    supernet.eval()
    arch = arch_of(auto_m.config)
    x = messi_input(192)
    with torch.no_grad():
        ref, out = auto_m(x), supernet(x, arch)
        largest = supernet(x, dataclasses.replace(space.largest(), input_size=arch.input_size))
    for k in ref:
        assert torch.equal(ref[k], out[k]), k
        assert (ref[k] - largest[k]).abs().max() < 1e-4 * ref[k].abs().max(), k
    extracted = supernet.extract(arch).state_dict()
    for k, v in auto_m.state_dict().items():
        assert torch.equal(extracted[k], v), k


@pytest.mark.slow
def test_a_narrower_candidate_inherits_most_of_the_accuracy(auto_m, tmp_path):
    """Weight sharing gives meaningful candidates before any training: Auto-M at input 256 with stage 3 cut from
    72 to 48 channels (its leading channels) keeps >= 80 % of Auto-M's OKS AP on coco_mini val at 256."""
    from featherpose.nas.search import Scorer

    _, _, codec, skeleton = zoo.build("litepose-m-crowdpose")
    space = SearchSpace(sizes=(256,))
    supernet = Supernet(space, 14, cover=arch_of(auto_m.config))
    supernet.inherit(auto_m)
    full = dataclasses.replace(arch_of(auto_m.config), input_size=256)
    narrow = dataclasses.replace(full, stages=(24, 48, 48, 120))
    score = Scorer(supernet, codec, skeleton, [], str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"),
                   0, 2, tmp_path)
    assert score(full) > 0.3 and score(narrow) >= 0.8 * score(full), (score(full), score(narrow))


def test_candidates_are_scored_without_timing_every_runtime(auto_m, tmp_path, monkeypatch):
    """The search scores each candidate with the latency table's backend: backend "auto" would time every installed
    runtime on every new candidate (most of the search's minutes on the 2-core Xeon) and cache an entry for each."""
    from featherpose.nas.search import Scorer
    from featherpose.runtime import autoselect

    monkeypatch.delenv(autoselect.ENV, raising=False)  # the suite pins auto to onnxruntime; a user's run does not

    def timed(*args, **kwargs):
        raise AssertionError("backend auto timed the runtimes for a search candidate")

    monkeypatch.setattr(autoselect, "fastest_backend", timed)
    _, _, codec, skeleton = zoo.build("litepose-m-crowdpose")
    space = SearchSpace(sizes=(128,), width_multipliers=(0.25,))
    supernet = Supernet(space, 14, cover=arch_of(auto_m.config))
    score = Scorer(supernet, codec, skeleton, [], str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"),
                   1, 2, tmp_path, backend="auto")
    assert score.backend == "onnxruntime"
    assert score(space.smallest()) >= 0.0


def test_a_candidate_trains_its_slices_of_the_shared_tensors():
    torch.manual_seed(0)
    space, rng = SearchSpace(), random.Random(1)
    supernet = Supernet(space, 14).train()
    arch = space.smallest()
    out = supernet(messi_input(128), arch)
    sum(v.square().mean() for v in out.values()).backward()
    slices = supernet.tensors(arch)
    for k, p in supernet.net.named_parameters():
        inside = torch.zeros_like(p, dtype=torch.bool)
        _slice(inside, slices[k].shape).fill_(True)
        assert p.grad is not None and not p.grad[~inside].any(), k  # no gradient outside the candidate's slice
    assert any(p.grad.any() for p in supernet.net.parameters())
    # the extracted copy is the candidate: same outputs as the shared tensors give
    supernet.eval()
    x = messi_input(128)
    with torch.no_grad():
        a, b = supernet(x, arch), supernet.extract(arch)(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_parts_are_the_whole_network():
    """The latency table's parts of random candidates are the network's stem, blocks and fusion levels with their
    heads, each with the input shapes the whole network feeds it (forward hooks on the meta device)."""
    space, rng = SearchSpace(kernels=(3, 5, 7)), random.Random(2)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
        with torch.device("meta"):
            net = LitePose(arch.config(17))
        cut = latency_mod.parts(arch, 17)
        seen = {}

        def record(name):
            def hook(module, inputs):  # returns None: the inputs go on unchanged
                seen.setdefault(name, [tuple(x.shape) for x in inputs])
            return hook

        net.stem.register_forward_pre_hook(record("stem"))
        for i, stage in enumerate(net.stages):
            for j, block in enumerate(stage):
                block.register_forward_pre_hook(record(("block", i, j)))
        for level, fusion in enumerate(net.fusion):
            fusion.register_forward_pre_hook(record(("fusion", level)))
        for level, head in enumerate(net.head_skip):
            head.register_forward_pre_hook(record(("head", level)))
        net(torch.empty(1, 3, *input_hw(arch), device="meta"))
        blocks = [seen[("block", i, j)][0] for i, stage in enumerate(net.stages) for j in range(len(stage))]
        levels = [seen[("fusion", 0)]] + [seen[("fusion", lv)] + seen[("head", lv - 1)] for lv in (1, 2)]
        assert [shapes for _, shapes in cut] == [seen["stem"]] + [[b] for b in blocks] + levels, arch.key


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_every_part_is_timed_from_its_own_nodes(backend):
    """A real profile of a candidate as the backend runs it: the nodes' names carry their parts' modules
    (:func:`node_part`) but for a few (the input's conversion, layout reorders), and every part gets time. The parts'
    indices follow the module paths: a node of stage 3's second block goes to that block."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    arch = SearchSpace(sizes=(64,)).sample(random.Random(3))
    table = LatencyTable(14, backend, 1, runs=1)
    runs = latency_mod._profiled_runs(table._export(arch), input_hw(arch), backend, 1, 2)
    assert len(runs) == 2 and all(len(nodes) == len(runs[0]) > 100 for nodes in runs)
    names = [name for name, _ in runs[0]]
    found = {latency_mod.node_part(n) for n in names} - {None}
    assert found == set(range(len(latency_mod.parts(arch, 14))))
    orphans = [n for n in names if latency_mod.node_part(n) is None]
    assert 0 < len(orphans) <= len(names) // 10, orphans  # the input's conversion, layout reorders
    assert latency_mod.node_part("/model/stages.2.1/expand/expand.0/Conv") == 1 + 6 + 8 + 1
    assert latency_mod.node_part("/model/head_skip.0/pointwise/Conv") == latency_mod.node_part("/model/fusion.1/Conv")
    shares = latency_mod.part_shares(runs, len(latency_mod.parts(arch, 14)))
    assert (shares > 0).all() and shares.sum() == pytest.approx(1.0)


def test_donors_hold_every_part_of_the_candidate():
    """The latency check's donors: two candidates of the space, none the candidate where the space has other
    widths, whose parts together include all of the candidate's."""
    space, rng = SearchSpace(), random.Random(4)
    for _ in range(20):
        arch = space.sample(rng)
        donors = space.donors(arch, rng)
        assert len(donors) == 2 and all(space.contains(d) and d != arch for d in donors)
        held = {key for d in donors for key, _ in latency_mod.parts(d, 14)}
        assert {key for key, _ in latency_mod.parts(arch, 14)} <= held
    narrow = SearchSpace(width_multipliers=(1.0,), sizes=(256,))  # one network: it is its own donor
    assert narrow.donors(narrow.largest(), rng) == [narrow.largest()] * 2


def test_latency_table_measures_parts_once_and_caches(tmp_path, monkeypatch):
    space = SearchSpace(sizes=(64, 96))
    table = LatencyTable(14, "onnxruntime", 1, tmp_path, runs=2)
    table.prefill(space, 2, random.Random(0), progress=False)
    assert table.parts and all(v > 0 for v in table.parts.values())
    # a profiled network's parts add up to its measured latency (the parts' shares of its profile x its latency)
    largest = space.largest()
    measured = table.ms(largest)
    assert table.predict(largest) == pytest.approx(measured)
    assert table.predict(largest) > table.predict(space.smallest()) > 0
    monkeypatch.setattr(latency_mod, "_fastest_pair", lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(latency_mod, "_profiled_runs", lambda *a, **k: pytest.fail("profiled again"))
    again = LatencyTable(14, "onnxruntime", 1, tmp_path, runs=2)
    assert again.parts == table.parts and again.ms(largest) == measured
    again.prefill(space, 2, random.Random(0), progress=False)  # the same candidates: all from the cache
    assert again.predict(largest) == table.predict(largest)


def test_the_latency_check_predicts_from_other_networks(tmp_path, monkeypatch):
    """A checked candidate is never profiled itself: its parts come from donors, profiled, and it is measured whole
    in the same passes as they are, each network in turn with the reference network; latencies are read out at the
    reference's fastest time."""
    space = SearchSpace(sizes=(64,), width_multipliers=(0.5, 0.25))
    table = LatencyTable(14, "onnxruntime", 1, tmp_path, runs=1)
    profiled, timed, exports = [], [], {}
    real_profile, real_compiled, real_export = latency_mod._profiled_runs, latency_mod._compiled, LatencyTable._export
    monkeypatch.setattr(latency_mod, "_profiled_runs", lambda onnx, *a: profiled.append(onnx) or real_profile(onnx, *a))
    monkeypatch.setattr(latency_mod, "_compiled", lambda onnx, *a: (len(a) == 3 and timed.append(onnx))
                        or real_compiled(onnx, *a))  # not profiling
    monkeypatch.setattr(LatencyTable, "_export", lambda self, arch: exports.setdefault(arch, real_export(self, arch)))
    (checked,) = table.check(space, 1, random.Random(5), progress=False)
    arch = next(a for a in exports if a.key == checked.key)
    assert exports[arch] not in profiled and len(profiled) == 2 and not table.missing(arch)
    networks = [a for a in exports if a != latency_mod.REFERENCE]
    assert len(networks) == 3 and sorted(map(id, timed)) == sorted(  # each network once a pass; the reference once
        [id(exports[a]) for a in networks] * latency_mod.PASSES + [id(exports[latency_mod.REFERENCE])])
    assert len(checked.passes_ms) == len(checked.reference_passes_ms) == latency_mod.PASSES
    assert table.reference_ms <= min(checked.reference_passes_ms)
    best = int(np.argmin(checked.reference_passes_ms))
    ratio = checked.passes_ms[best] / checked.reference_passes_ms[best]
    assert checked.measured_ms == pytest.approx(table.reference_ms * ratio) and checked.predicted_ms > 0
    assert checked.error == abs(checked.predicted_ms - checked.measured_ms) / checked.measured_ms
    with pytest.raises(ValueError, match="set latency.backend to one of them"):
        LatencyTable(14, "torch", 1, tmp_path)
    assert f"graphs {latency_mod.GRAPHS}" in latency_mod.machine_key("onnxruntime", 1)


def test_the_latency_check_never_checks_a_network_it_profiled(tmp_path):
    """Candidates measured (perhaps profiled) before the check are drawn again, and so would be one that is its own
    donor or another's: each checked prediction comes from other networks. A space with one network has none to
    check: one line."""
    space = SearchSpace(sizes=(64,), width_multipliers=(0.5, 0.25))
    table = LatencyTable(14, "onnxruntime", 1, tmp_path, runs=1)
    table.prefill(space, 2, random.Random(0), progress=False)
    before = set(table.measured)
    checked = table.check(space, 2, random.Random(1), progress=False)
    assert len(checked) == 2 and not {c.key for c in checked} & before
    assert all(c.predicted_ms > 0 and c.measured_ms > 0 for c in checked)
    single = SearchSpace(width_multipliers=(1.0,), sizes=(64,))
    with pytest.raises(ValueError, match="the search space is too small"):
        LatencyTable(14, "onnxruntime", 1, tmp_path / "single", runs=1).check(single, 3, random.Random(0),
                                                                              progress=False)
    assert f"reference {latency_mod.REFERENCE.key}" in latency_mod.machine_key("onnxruntime", 1)


def test_latency_sessions_do_not_spin_between_calls(tmp_path):
    """The table times onnxruntime sessions whose threads sleep when a call ends: spinning on, the session called
    last slowed the next one on a 2-core machine (the check's passes 28.5 % apart, its error up to 33 %; without,
    1.2 % and 4.1 %: benchmarks/RESULTS.md). featherpose.load's own sessions keep spinning."""
    from featherpose.runtime import OnnxBackend

    table = LatencyTable(14, "onnxruntime", 1, tmp_path, runs=1)
    arch = latency_mod.REFERENCE
    session, run = latency_mod._compiled(table._export(arch), latency_mod.input_hw(arch), "onnxruntime", 1)
    run()
    key = "session.intra_op.allow_spinning"
    assert session.get_session_options().get_session_config_entry(key) == "0"
    spinning = OnnxBackend(table._export(arch), 1).session.get_session_options()
    try:
        value = spinning.get_session_config_entry(key)
    except Exception:  # noqa: BLE001 - onnxruntime raises for an entry never set (its default: spinning)
        value = None
    assert value != "0"


@pytest.mark.slow
def test_search_runs_end_to_end_and_its_network_loads(tmp_path, capsys):
    """`featherpose search` on a tiny space and budget: outputs written, every scored candidate under the budget,
    the chosen network loads with featherpose.load and finds poses on a photo."""
    cfg = {"teacher": "litepose-m-crowdpose", "frames": [str(MESSI), str(SHARED / "media" / "basketball1.png")],
           "val": str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"), "val_images": 2, "space": {"sizes": [96, 128], "width_multipliers": [0.5, 0.25]},
           "train": {"steps": 2, "batch_size": 1, "subnets": 2},
           "latency": {"budget_ms": 1000, "samples": 1, "check": 1, "runs": 1,
                       "cache": str(tmp_path / "cache")},
           "evolution": {"population": 2, "generations": 1}, "out": str(tmp_path / "out")}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "chose" in printed and "searched.safetensors" in printed
    out = tmp_path / "out"
    report = json.loads((out / "search.json").read_text())
    assert report["candidates"] and all(c["predicted_ms"] <= 1000 for c in report["candidates"])
    # the latency check measures each of its candidates twice and keeps the faster; the passes' spread is reported
    (checked,) = report["latency_check"]
    assert len(checked["passes_ms"]) == 2 and checked["measured_ms"] > 0
    a, b = checked["passes_ms"]
    assert report["latency_check_repeat_error"] == pytest.approx(abs(a - b) / min(a, b))
    assert report["latency_check_raw_max_error"] == pytest.approx(abs(checked["predicted_ms"] - min(a, b)) / min(a, b))
    assert "each measured twice" in printed
    assert report["candidates"][0]["AP"] == max(c["AP"] for c in report["candidates"])
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    est = featherpose.load(str(out / "searched.safetensors"), backend="torch")
    assert est.skeleton.name == "crowdpose14"
    poses = est(MESSI)
    assert poses.keypoints.shape[1:] == (14, 3)
    # and a training recipe fine-tunes it (one batch of labelled CrowdPose-14 data)
    recipe = {"model": {"architecture": "litepose", "input_size": 128, "init": str(out / "searched.safetensors")},
              "data": {"train": str(SHARED / "data" / "labeled_dev" / "crowdpose14.json"), "workers": 0},
              "augment": [], "batch_size": 1, "epochs": 1, "out": str(tmp_path / "finetune")}
    (tmp_path / "finetune.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "finetune.yaml"), "--dry-run", "--quiet"]) == 0
    assert "dry run: one batch" in capsys.readouterr().out


def test_search_says_when_its_budget_is_out_of_reach(tmp_path, capsys, monkeypatch):
    """A budget under the teacher's widths at every size is said before the super-network trains (the latency table
    comes first), and a search whose candidates all score AP 0 says that its network is not a useful one (printed
    and in search.json), as does a chosen network measured over the budget. Latency is a stand-in here (the sum of a
    candidate's widths; 400 ms measured), the scores are 0."""
    from featherpose.nas import search as search_mod

    monkeypatch.setattr(LatencyTable, "prefill", lambda self, *a, **k: None)
    monkeypatch.setattr(LatencyTable, "check", lambda self, *a, **k: [])
    monkeypatch.setattr(LatencyTable, "predict", lambda self, a: float(a.stem + sum(a.stages) + sum(a.deconv)))
    monkeypatch.setattr(LatencyTable, "ms", lambda self, a: 400.0)  # the chosen one, measured: over the budget
    monkeypatch.setattr(search_mod.Scorer, "__call__", lambda self, arch: 0.0)
    said_before_training = []

    def train(*args, **kwargs):
        said_before_training.append(capsys.readouterr().err)
        return [1.0]

    monkeypatch.setattr(search_mod, "train_supernet", train)
    cfg = {"teacher": "litepose-m-crowdpose", "frames": [str(MESSI)],
           "val": str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"), "val_images": 1,
           "space": {"sizes": [96]}, "train": {"steps": 1, "batch_size": 1},
           "latency": {"budget_ms": 300, "cache": str(tmp_path / "cache")},  # the teacher's widths: 416
           "evolution": {"population": 2, "generations": 1}, "out": str(tmp_path / "out")}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["search", str(tmp_path / "search.yaml"), "--quiet"]) == 0
    assert "predicted at 416.0 ms here (input 96), over the budget of 300 ms" in said_before_training[0]
    err = capsys.readouterr().err
    assert "no candidate under the budget of 300 ms found anyone (AP 0 for all" in err
    report = json.loads((tmp_path / "out" / "search.json").read_text())
    assert len(report["warnings"]) == 2 and "raise latency.budget_ms (the teacher's widths at input 96: 416.0 ms" \
        in report["warnings"][0]
    assert report["warnings"][1].startswith("the chosen network measured 400.0 ms, over the budget of 300 ms")
    assert report["warnings"][1] in err and report["chosen"]["measured_ms"] == 400.0


def test_search_predictions_follow_the_reference_time_as_it_falls(tmp_path, monkeypatch):
    """Every prediction is scaled by the latency table's reference time, which falls when a candidate is profiled in
    the middle of the search (stood in for here by each scoring): search.json's predictions are all at the final
    reference time, none kept from before it fell."""
    from featherpose.nas import search as search_mod
    from featherpose.nas.space import Arch

    tables = []
    init = LatencyTable.__init__

    def remember(self, *args, **kwargs):
        init(self, *args, **kwargs)
        tables.append(self)

    def score(self, arch):
        tables[0].reference_ms *= 0.5
        return 0.5

    units = lambda a: float(a.stem + sum(a.stages) + sum(a.deconv))  # noqa: E731 - a stand-in for the parts' sum
    monkeypatch.setattr(LatencyTable, "__init__", remember)
    monkeypatch.setattr(LatencyTable, "prefill", lambda self, *a, **k: setattr(self, "reference_ms", 1.0))
    monkeypatch.setattr(LatencyTable, "check", lambda self, *a, **k: [])
    monkeypatch.setattr(LatencyTable, "predict", lambda self, a: self.reference_ms * units(a))
    monkeypatch.setattr(LatencyTable, "ms", lambda self, a: 1.0)
    monkeypatch.setattr(search_mod.Scorer, "__call__", score)
    monkeypatch.setattr(search_mod, "train_supernet", lambda *args, **kwargs: [1.0])
    cfg = {"teacher": "litepose-m-crowdpose", "frames": [str(MESSI)],
           "val": str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"), "val_images": 1,
           "space": {"sizes": [96]}, "train": {"steps": 1, "batch_size": 1},
           "latency": {"budget_ms": 10000, "cache": str(tmp_path / "cache")},
           "evolution": {"population": 2, "generations": 2}, "out": str(tmp_path / "out")}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["search", str(tmp_path / "search.yaml"), "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "search.json").read_text())
    final = report["latency_reference_ms"]
    assert final <= 0.5 ** 4  # it fell while the candidates were scored
    for row in report["candidates"]:
        assert row["predicted_ms"] == pytest.approx(final * units(Arch.from_dict(row["arch"])))


def test_unreadable_frames_are_reported_and_skipped(tmp_path, capsys):
    from featherpose.nas.search import read_frames

    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.avi").write_bytes(b"")
    frames = read_frames([str(MESSI), str(tmp_path)], per_video=3)
    assert len(frames) == 1 and frames[0].shape[2] == 3
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.jpg" in err and "empty.avi" in err
    with pytest.raises(ValueError, match="no readable frames"):
        read_frames([str(tmp_path)], per_video=3)


def test_search_config_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"frames": [], "val": "x.json"}))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "frames is required" in err
    path.write_text(yaml.safe_dump({"frames": [str(MESSI)], "val": str(MESSI), "latency": {"check": -1}}))
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "latency.check = -1" in err


def test_search_config_values_are_checked_with_their_field(tmp_path, capsys):
    """Values the search would trip over later (torch's own errors, a type error) are one line naming the field."""
    for over, said in (({"train": {"lr": -1}}, "train.lr = -1"), ({"train": {"threads": 0}}, "train.threads = 0"),
                       ({"space": {"width_multipliers": ["half"]}},
                        "space.width_multipliers must be a list of numbers"),
                       ({"space": {"sizes": [100]}}, "space.sizes must be multiples of 32"),
                       ({"latency": {"budget_ms": -5}}, "latency.budget_ms = -5.0 must be positive"),
                       ({"evolution": {"parent_ratio": 5}}, "evolution.parent_ratio = 5.0 must be between 0 and 1"),
                       ({"teacher": ""}, "teacher is empty; give a Lite Pose model")):
        assert main(["search", str(_tiny_search(tmp_path, "bad", **over))]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and said in err and "bad.yaml" in err and "subnets" not in err, err
    assert not (tmp_path / "bad").exists()


def test_search_checks_its_outputs_and_validation_set_before_any_work(tmp_path, capsys, monkeypatch):
    """Before the latency table and the training: no output may replace an input (the supernet:, the val: file), nor
    an earlier search's outputs, nor land inside a frames: folder; out must be a writable folder; the val json must
    be readable and its images found. Each is one line, and nothing is written."""
    from featherpose.nas import search as search_mod

    monkeypatch.setattr(LatencyTable, "prefill", lambda *a, **k: pytest.fail("the latency table was measured"))
    monkeypatch.setattr(search_mod, "train_supernet", lambda *a, **k: pytest.fail("the super-network trained"))

    def refused(path, said, *args):
        assert main(["search", str(path), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and said in err, err

    (tmp_path / "sn").mkdir()
    (tmp_path / "sn" / "supernet.safetensors").write_bytes(b"an earlier search's")
    refused(_tiny_search(tmp_path, "sn", supernet="sn/supernet.safetensors", train={"steps": 0}),
            "would overwrite the supernet: file")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "search.json").write_text("{}")
    refused(_tiny_search(tmp_path, "done"), "holds an earlier search's search.json; choose another out")
    (tmp_path / "vs").mkdir()
    val = tmp_path / "vs" / "val_subset.json"
    val.write_text((SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json").read_text())
    refused(_tiny_search(tmp_path, "vs", val=str(val)), "would overwrite the val: file")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "messi5.jpg").write_bytes(MESSI.read_bytes())
    refused(_tiny_search(tmp_path, "inside", frames=[str(frames)], out=str(frames / "out")),
            "inside the frames: folder")
    (tmp_path / "afile").write_text("")
    refused(_tiny_search(tmp_path, "file"), "is a file, not a folder", "--out", str(tmp_path / "afile"))
    (tmp_path / "bad.json").write_text("{")
    refused(_tiny_search(tmp_path, "badval", val=str(tmp_path / "bad.json")), "not valid JSON")
    moved = tmp_path / "moved.json"  # the json without its images
    moved.write_text((SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json").read_text())
    refused(_tiny_search(tmp_path, "noimages", val=str(moved)), f"{moved}: none of the 2 images scored on was found")
    assert not any((tmp_path / n).exists() for n in ("badval", "noimages", "inside"))
    assert [p.name for p in (tmp_path / "sn").iterdir()] == ["supernet.safetensors"]
    assert (tmp_path / "sn" / "supernet.safetensors").read_bytes() == b"an earlier search's"


def test_search_stops_before_training_when_no_candidate_fits_the_budget(tmp_path, capsys, monkeypatch):
    """The smallest candidate's prediction is known once the latency table is: a budget under it stops the search
    there, before the super-network trains. A latency check that finds nothing fresh to measure (a small space
    the table has measured whole) is a warning, not the end of the search."""
    from featherpose.nas import search as search_mod

    def no_check(self, *args, **kwargs):
        raise ValueError("the latency check found no candidate it can predict from other networks in 20 draws")

    monkeypatch.setattr(LatencyTable, "prefill", lambda self, *a, **k: None)
    monkeypatch.setattr(LatencyTable, "check", no_check)
    monkeypatch.setattr(LatencyTable, "predict", lambda self, a: float(a.stem + sum(a.stages) + sum(a.deconv)))
    monkeypatch.setattr(search_mod, "train_supernet", lambda *a, **k: pytest.fail("the super-network trained"))
    assert main(["search", str(_tiny_search(tmp_path, "tight", latency={"budget_ms": 50})), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "found no candidate it can predict" in err and "the search goes on without the check" in err
    assert "no candidate found under the latency budget of 50 ms (the smallest candidate is predicted at" in err


def _tiny_search(tmp_path, name, **over):
    """A tiny search recipe (two photos, inputs 96 / 128, widths 0.5 / 0.25) with ``over`` merged per section."""
    cfg = {"teacher": "litepose-m-crowdpose", "frames": [str(MESSI), str(SHARED / "media" / "basketball1.png")],
           "val": str(SHARED / "data" / "coco_mini" / "person_keypoints_val2017.json"), "val_images": 2,
           "space": {"sizes": [96, 128], "width_multipliers": [0.5, 0.25]},
           "train": {"steps": 1, "batch_size": 1, "subnets": 2, "device": "cpu"}, "out": str(tmp_path / name)}
    for key, value in over.items():
        cfg[key] = dict(cfg[key], **value) if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_supernet_only_writes_the_supernet_and_a_search_resumes_from_it(tmp_path, capsys):
    """--supernet-only: one step, only supernet.safetensors written (its metadata: steps, space, keypoints); a
    second run given it as supernet: with train.steps 0 writes the same tensors (relative path, config's folder)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    assert main(["search", str(_tiny_search(tmp_path, "first")), "--supernet-only", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 steps of batch 1 on cpu" in printed and "supernet.safetensors" in printed
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["supernet.safetensors"]
    with safe_open(str(tmp_path / "first" / "supernet.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["steps"] == "1" and meta["num_keypoints"] == "14" and json.loads(meta["space"])["sizes"] == [96, 128]
    first = load_file(tmp_path / "first" / "supernet.safetensors")
    _, auto_m, _, _ = zoo.build("litepose-m-crowdpose")
    inherited = Supernet(SearchSpace((0.5, 0.25), (96, 128), (7,)), 14, cover=arch_of(auto_m.config))
    inherited.inherit(auto_m)
    assert any(not torch.equal(first[k], v) for k, v in inherited.net.state_dict().items())  # it trained

    again = _tiny_search(tmp_path, "again", supernet="first/supernet.safetensors", train={"steps": 0})
    assert main(["search", str(again), "--supernet-only", "--quiet"]) == 0
    assert "no training (train.steps: 0)" in capsys.readouterr().out
    second = load_file(tmp_path / "again" / "supernet.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_supernet_of_another_space_is_one_clear_error(tmp_path, capsys):
    assert main(["search", str(_tiny_search(tmp_path, "first")), "--supernet-only", "--quiet"]) == 0
    capsys.readouterr()
    other = _tiny_search(tmp_path, "other", supernet=str(tmp_path / "first" / "supernet.safetensors"),
                         space={"sizes": [96, 128], "width_multipliers": [0.5]}, train={"steps": 0})
    assert main(["search", str(other), "--supernet-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not match" in err and "[0.5, 0.25]" in err and "supernet:" in err
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())
    no_supernet = _tiny_search(tmp_path, "zero", train={"steps": 0})
    assert main(["search", str(no_supernet)]) == 2
    assert "train.steps = 0 needs supernet:" in capsys.readouterr().err
    bad_device = _tiny_search(tmp_path, "dev", train={"device": "gpu"})
    assert main(["search", str(bad_device)]) == 2
    assert "train.device 'gpu' is not one of auto, cpu, cuda" in capsys.readouterr().err


def test_a_supernet_searches_input_sizes_it_was_not_trained_at(tmp_path, capsys):
    """The input sizes shape no tensor: a super-network trained at 96 / 128 is searched at 64 too, with a warning
    naming the untrained size; the supernet.safetensors written again still says where it trained."""
    from safetensors import safe_open

    assert main(["search", str(_tiny_search(tmp_path, "first")), "--supernet-only", "--quiet"]) == 0
    capsys.readouterr()
    wider = _tiny_search(tmp_path, "wider", supernet=str(tmp_path / "first" / "supernet.safetensors"),
                         space={"sizes": [64, 96, 128]}, train={"steps": 0})
    assert main(["search", str(wider), "--supernet-only", "--quiet"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not trained at input sizes [64]" in err
    with safe_open(str(tmp_path / "wider" / "supernet.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["space"])["sizes"] == [96, 128]


def test_an_interrupted_training_keeps_its_steps(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the super-network trains: the steps done are written to supernet.safetensors (its metadata says
    how many), the message says where, and the run still ends as interrupted (exit 130)."""
    from safetensors import safe_open

    from featherpose.nas import search as search_mod

    real_batch, calls = search_mod.random_batch, []

    def batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two steps done, the third not begun
            raise KeyboardInterrupt
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(search_mod, "random_batch", batch)
    path = _tiny_search(tmp_path, "cut", train={"steps": 50})
    assert main(["search", str(path), "--supernet-only", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 2 training steps: wrote" in err and "featherpose: interrupted" in err
    with safe_open(str(tmp_path / "cut" / "supernet.safetensors"), "pt") as f:
        assert f.metadata()["steps"] == "2"


def test_train_minutes_stops_after_the_step_that_spends_them(tmp_path, capsys):
    path = _tiny_search(tmp_path, "timed", train={"steps": 50, "minutes": 1e-6})
    assert main(["search", str(path), "--supernet-only", "--quiet"]) == 0
    assert "1 steps of batch 1 on cpu" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_train_device_cuda_without_a_gpu_is_one_clear_error(tmp_path, capsys):
    assert main(["search", str(_tiny_search(tmp_path, "cuda", train={"device": "cuda"})), "--supernet-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sees no GPU" in err and "auto or cpu" in err
