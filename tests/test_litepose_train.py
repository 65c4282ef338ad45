"""Lite Pose training (issue 13 item 5): the loss (upstream's masked heatmap MSE at 1/4 and 1/2 + associative-
embedding push / pull), its section in a recipe, the recipes, fine-tuning the bundled litepose-m-crowdpose.

The family-table checks (round trip, two training steps, reload) are tests/test_families.py's; the proof of
learning is tests/test_memorise_hourglass.py's MEMORISE row and benchmarks/litepose_memorise.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from featherpose.families import FAMILIES
from featherpose.train.config import load_config
from featherpose.train.data import TrainDataset
from featherpose.train.losses import AELoss
from featherpose.train.trainer import build_loss, build_model, train

from conftest import DATA, ROOT

MINI = DATA / "coco_mini" / "person_keypoints_train2017.json"
CROWDPOSE = DATA / "labeled_dev" / "crowdpose14.json"
ROW = FAMILIES["litepose"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread


def batch(tmp_path: Path, size: int = 128, n: int = 12):
    """(dataset, targets stacked over coco_mini's first ``n`` train images) at ``size``, no augmentation."""
    if not MINI.exists():
        pytest.skip(f"{MINI} is not here")
    path = tmp_path / "litepose.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"architecture": "litepose", "variant": "litepose-xs", "input_size": size}, "augment": [],
        "data": {"train": str(MINI), "workers": 0}, "epochs": 1, "batch_size": 2, "out": str(tmp_path / "run")}))
    ds = TrainDataset(load_config(path))
    items = [ds[i] for i in range(n)]
    return ds, {k: torch.stack([t[k] for _, t in items]) for k in items[0][1]}


def loop_reference(tags: torch.Tensor, joints: torch.Tensor) -> tuple[float, float]:
    """(push, pull) unscaled, one image and one person at a time (the per-image formulation of HigherHRNet's AE
    loss): tags (B, K, h, w), joints (B, M, K, 2)."""
    pushes, pulls = [], []
    for flat_tags, rows in zip(tags.reshape(len(tags), -1).double(), joints):
        refs, pull = [], 0.0
        for row in rows:
            t = flat_tags[row[row[:, 1] > 0, 0]]
            if len(t):
                refs.append(t.mean())
                pull += float(((t - t.mean()) ** 2).mean())
        n = len(refs)
        pulls.append(pull / n if n else 0.0)
        if n < 2:
            pushes.append(0.0)
            continue
        r = torch.stack(refs)
        pushes.append(float(0.5 * (torch.exp(-(r[:, None] - r[None]) ** 2).sum() - n) / (n * (n - 1))))
    return float(np.mean(pushes)), float(np.mean(pulls))


def test_ae_loss_equals_a_person_by_person_loop_on_real_targets(tmp_path):
    """Measured: on coco_mini targets (8 images at 256, 0-3 people each) with random heads, upstream's own
    loss.py (HeatmapLoss + batchTagLoss, run outside the repo) and AELoss agree to 1e-7 relative in every part."""
    ds, t = batch(tmp_path)
    people = (t["joints"][..., 1].sum(2) > 0).sum(1)
    assert people.max() >= 3 and (people == 0).any()  # several people, and images without any
    k = ds.num_keypoints
    g = torch.Generator().manual_seed(0)
    heads = {"heatmaps_tags": torch.randn(len(people), 2 * k, 32, 32, generator=g),
             "heatmaps": torch.randn(len(people), k, 64, 64, generator=g)}
    total, parts = AELoss()(heads, t)
    push, pull = loop_reference(heads["heatmaps_tags"][:, k:], t["joints"])
    assert parts["push"] == pytest.approx(0.001 * push, rel=1e-5)
    assert parts["pull"] == pytest.approx(0.001 * pull, rel=1e-5)
    heat = sum(float(((p - t[f"heatmaps_{s}"]) ** 2 * t[f"mask_{s}"][:, None]).mean((1, 2, 3)).mean())
               for p, s in ((heads["heatmaps_tags"][:, :k], 4), (heads["heatmaps"], 2)))
    assert parts["heatmaps"] == pytest.approx(heat, rel=1e-5)
    assert float(total) == pytest.approx(sum(parts.values()), rel=1e-6)
    assert set(parts) == set(ROW.loss_parts)


def test_perfect_heads_cost_only_their_push(tmp_path):
    """The row's ideal heads (targets, person p's tags all 2p) have no heatmap or pull loss; their push is the
    closed form exp(-(2p - 2q)^2) over the pairs; every tag equal gives the largest push, 0.5 per image."""
    ds, t = batch(tmp_path)
    heads = {}
    for i in range(len(t["joints"])):
        ideal = ROW.ideal_heads(ds.codec, {k: v[i].numpy() for k, v in t.items()})
        for name, v in ideal.items():
            heads.setdefault(name, []).append(torch.from_numpy(v))
    heads = {name: torch.stack(v) for name, v in heads.items()}
    loss = AELoss(push_factor=1, pull_factor=1)
    _, parts = loss(heads, t)
    assert parts["heatmaps"] == 0 and parts["pull"] == 0
    people = (t["joints"][..., 1].sum(2) > 0).sum(1).numpy()
    want = [0.0 if n < 2 else sum(np.exp(-4.0 * (p - q) ** 2) for p in range(n) for q in range(n) if p != q)
            * 0.5 / (n * (n - 1)) for n in people]
    assert parts["push"] == pytest.approx(np.mean(want), rel=1e-5) and parts["push"] > 0
    k = ds.num_keypoints
    heads["heatmaps_tags"][:, k:] = 0.7
    _, parts = loss(heads, t)
    assert parts["push"] == pytest.approx(0.5 * (people >= 2).mean(), rel=1e-6) and parts["pull"] < 1e-9


def test_ignored_cells_do_not_count_and_gradients_reach_every_head(tmp_path):
    ds, t = batch(tmp_path)
    k, b = ds.num_keypoints, len(t["joints"])
    quarter = torch.zeros(b, 2 * k, 32, 32)
    quarter[:, k:] = 0.1 * torch.randn(b, k, 32, 32, generator=torch.Generator().manual_seed(0))
    heads = {"heatmaps_tags": quarter.requires_grad_(), "heatmaps": torch.zeros(b, k, 64, 64, requires_grad=True)}
    t["mask_4"][:, :16], t["mask_2"][:, :32] = 0, 0  # the top half ignored
    total, parts = AELoss()(heads, t)
    total.backward()
    assert heads["heatmaps_tags"].grad[:, :k, :16].abs().max() == 0
    assert heads["heatmaps"].grad[:, :, :32].abs().max() == 0
    assert heads["heatmaps_tags"].grad[:, :k, 16:].abs().max() > 0 and heads["heatmaps"].grad[:, :, 32:].abs().max() > 0
    assert heads["heatmaps_tags"].grad[:, k:].abs().max() > 0  # the pull gathers, the push separates
    bumped = {n: h.detach().clone() for n, h in heads.items()}
    bumped["heatmaps_tags"][:, :k, :16] += 5.0
    bumped["heatmaps"][:, :, :32] -= 5.0
    assert AELoss()(bumped, t)[1]["heatmaps"] == pytest.approx(parts["heatmaps"], rel=1e-6)


def test_loss_section_is_read_and_checked(tmp_path):
    path = tmp_path / "r.yaml"
    base = {"model": {"architecture": "litepose", "input_size": 128}, "data": {"train": str(MINI)}}
    path.write_text(yaml.safe_dump({**base, "loss": {"push_factor": 0.01, "tag_loss": "max"}}))
    cfg = load_config(path)
    loss = build_loss(cfg, None)
    assert (loss.push_factor, loss.pull_factor, loss.loss_type) == (0.01, 0.001, "max")
    for bad, match in (({"tag_loss": "hinge"}, "tag_loss"), ({"pull_factor": -1}, "pull_factor"),
                       ({"pafs": 1}, "pafs")):
        path.write_text(yaml.safe_dump({**base, "loss": bad}))
        with pytest.raises(ValueError, match=match):
            load_config(path)


@pytest.mark.parametrize("name, keypoints", [("litepose_coco.yaml", 17), ("litepose_crowdpose.yaml", 14)])
def test_recipes_build_upstream_settings(name, keypoints):
    cfg = load_config(ROOT / "configs" / name)
    assert (cfg.model.architecture, cfg.model.variant, cfg.model.input_size) == ("litepose", "litepose-m", 448)
    assert (cfg.loss.push_factor, cfg.loss.pull_factor, cfg.loss.tag_loss) == (0.001, 0.001, "exp")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.epochs, cfg.batch_size) == (0.004, 1e-4, 500, 16)
    with torch.device("meta"):
        net = build_model(cfg, keypoints)
        heads = net(torch.zeros(1, 3, 448, 448))
    codec = ROW.training_codec(cfg.model, cfg.loss, keypoints)
    assert {n: tuple(v.shape[1:]) for n, v in heads.items()} == codec.head_shapes()


def test_finetune_starts_from_the_bundled_model_and_trains(tmp_path):
    """configs/litepose_finetune.yaml: litepose-m-crowdpose's weights (rebuilt at the recipe's size) on labeled_dev's
    CrowdPose-14 image; 2 steps at 128 keep its people (measured: AP 0.55, PCK@0.2 0.84 at 128)."""
    if not CROWDPOSE.exists():
        pytest.skip(f"{CROWDPOSE} is not here")
    from featherpose import zoo

    cfg = load_config(ROOT / "configs" / "litepose_finetune.yaml")
    assert cfg.model.init == "litepose-m-crowdpose"
    cfg.model.input_size, cfg.epochs, cfg.eval_every, cfg.out = 128, 2, 2, str(tmp_path / "ft")
    start = build_model(cfg, 14).state_dict()
    _, bundled, _, _ = zoo.build("litepose-m-crowdpose")
    assert all(torch.equal(v, start[n]) for n, v in bundled.state_dict().items())
    result = train(cfg, progress=False)
    assert result.step == 2 and np.isfinite(result.last_loss)
    _, tuned, codec, _ = zoo.build(result.out / "checkpoints" / "last.safetensors")
    assert codec.num_keypoints == 14
    moved = [n for n, v in tuned.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[n])]
    assert moved
    assert result.metrics["PCK@0.2 (box)"] >= 0.6, result.metrics


def test_heads_start_near_the_background():
    """From random init the heads' outputs are ~0 (the heatmap targets' background), not PyTorch's default |0.4|:
    with that default the 1/2-resolution head did not learn its peaks (memorising 4 images at 128: AP 0.01)."""
    from featherpose.models.litepose import LitePose, named_config

    torch.manual_seed(0)
    net = LitePose(named_config("litepose-xs", 17)).train()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 128, 128) * 255)
    assert float(out["heatmaps"].abs().max()) < 0.05
    assert float(out["heatmaps_tags"].abs().max()) < 0.05
