"""Issue 11, items 2-3: the loader (uint8 batches, persistent workers that still see each epoch's augmentation),
bf16 autocast, time budgets, throughput and data wait in metrics.csv."""
from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch

from featherpose.train.config import load_config
from featherpose.train.data import EpochIndices, TrainDataset
from featherpose.train.trainer import train, use_bf16
from featherpose.weights_io import load_weights

from test_train import write_recipe


def _recipe(folder, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(folder, **overrides)


def _rows(run) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["loss"]]


def test_items_are_uint8_and_carry_their_epoch(tmp_path):
    dataset = TrainDataset(load_config(write_recipe(tmp_path)))
    image, _ = dataset[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    first, again, later = dataset[(0, 1)][0], dataset[(0, 1)][0], dataset[(1, 1)][0]
    assert torch.equal(first, again) and not torch.equal(first, later)  # the epoch seeds the augmentation
    dataset.set_epoch(1)
    assert torch.equal(dataset[1][0], later)  # a plain index is the current epoch's
    sampler = EpochIndices(torch.utils.data.SequentialSampler(range(3)))
    sampler.set_epoch(4)
    assert list(sampler) == [(4, 0), (4, 1), (4, 2)] and len(sampler) == 3


def test_persistent_workers_train_exactly_as_the_main_process(tmp_path):
    """Workers live across epochs; each epoch's augmentation still reaches them, so 2 workers end on the same
    weights as loading in the main process (a worker stuck on epoch 0's augmentation would not)."""
    finals = []
    for workers in (0, 2):
        recipe = _recipe(tmp_path / f"w{workers}", data={"workers": workers}, epochs=3)
        train(recipe, progress=False)
        finals.append(load_weights(tmp_path / f"w{workers}" / "run" / "checkpoints" / "last.safetensors").state_dict)
    assert finals[0].keys() == finals[1].keys()
    for name, value in finals[0].items():
        assert torch.equal(value, finals[1][name]), name


def test_metrics_show_throughput_and_data_wait(tmp_path, monkeypatch):
    """A loader slowed by 50 ms per item shows as wait_ms (>= 100 ms per batch of 2) and caps images/s."""
    load = TrainDataset.__getitem__

    def slow(self, key):
        time.sleep(0.05)
        return load(self, key)

    monkeypatch.setattr(TrainDataset, "__getitem__", slow)
    train(write_recipe(tmp_path), progress=False)
    rows = _rows(tmp_path / "run")
    assert len(rows) == 4
    for r in rows:
        assert float(r["wait_ms"]) >= 100 and 0 < float(r["images_per_s"]) < 2 / 0.1


def test_bf16_autocast_on_request(tmp_path):
    """``precision: bf16`` runs the forward pass in bf16 (the loss differs from fp32's, and is finite);
    ``auto`` keeps a CPU in fp32."""
    losses = {}
    for precision in ("fp32", "bf16"):
        recipe = _recipe(tmp_path / precision, precision=precision, epochs=1)
        cfg = load_config(recipe)
        assert use_bf16(cfg, torch.device("cpu")) is (precision == "bf16")
        result = train(recipe, progress=False)
        losses[precision] = result.first_loss
    assert np.isfinite(losses["bf16"])
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
    auto = load_config(_recipe(tmp_path / "auto"))
    assert auto.precision == "auto" and not use_bf16(auto, torch.device("cpu"))
    with pytest.raises(ValueError, match="precision 'fp16' is not one of auto, fp32, bf16"):
        load_config(_recipe(tmp_path / "bad", precision="fp16"))


def test_time_budget_stops_the_run_and_decays_the_learning_rate(tmp_path):
    recipe = write_recipe(tmp_path, epochs=5, max_minutes=1e-6, optim={"warmup_steps": 0, "min_lr_ratio": 0.1})
    result = train(recipe, progress=False)
    assert result.epochs_done == 1 and result.step == 2  # the budget was spent in the first epoch
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 0 and state["minutes"] > 0
    lr = [float(r["lr"]) for r in _rows(tmp_path / "run")]
    assert lr == pytest.approx([0.002 * 0.1] * 2)  # the schedule's end, reached by the clock
    assert (tmp_path / "run" / "curves.png").is_file()
    resumed = train(recipe, resume=True, progress=False)  # its budget is spent: nothing more to train
    assert resumed.step == 2 and len(_rows(tmp_path / "run")) == 2
    with pytest.raises(ValueError, match="max_minutes is 0.0; it must be empty or a number of minutes > 0"):
        load_config(_recipe(tmp_path / "bad", max_minutes=0))
