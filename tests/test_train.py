"""Trainer: recipes, checkpoints loadable by the rest of featherpose, resume after a kill, DDP on 2 CPU processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import featherpose
from featherpose.train.config import load_config
from featherpose.train.trainer import get_lr, train

from conftest import DATA, MEDIA, ROOT

LABELED = DATA / "labeled_dev" / "person_keypoints_coco17.json"


def write_recipe(tmp_path: Path, **overrides) -> Path:
    recipe = {
        "model": {"width": 0.5, "input_size": 96, "batch_norm": True, "multi": True},
        "data": {"train": str(LABELED), "workers": 0},
        "augment": [{"RandomAffine": {"rotation": 10}}, {"RandomFlip": {}}],
        "optim": {"lr": 0.002, "warmup_steps": 2},
        "epochs": 2, "batch_size": 2, "out": str(tmp_path / "run"), "seed": 1,
    }
    for key, value in overrides.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_config_errors(tmp_path):
    path = write_recipe(tmp_path)
    text = path.read_text()
    path.write_text(text + "epochz: 3\n")
    with pytest.raises(ValueError, match="unknown key.*epochz"):
        load_config(path)
    path.write_text(text.replace("width: 0.5", "widht: 0.5"))
    with pytest.raises(ValueError, match=r"recipe.yaml.model: unknown key\(s\) widht"):
        load_config(path)
    path.write_text(text.replace("lr: 0.002", "lr: 2e-3"))
    assert load_config(path).optim.lr == 0.002  # YAML reads 2e-3 as text
    path.write_text(text.replace("epochs: 2", "epochs: many"))
    with pytest.raises(ValueError, match="recipe.yaml.epochs: expected a number, got 'many'"):
        load_config(path)
    path.write_text("model: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="training config not found"):
        load_config(tmp_path / "none.yaml")


def test_dry_run_writes_nothing(tmp_path):
    result = train(write_recipe(tmp_path), dry_run=True, progress=False)
    assert result.step == 1 and np.isfinite(result.last_loss)
    assert not (tmp_path / "run").exists()


def test_checkpoint_resume_same_step_and_optimizer(tmp_path):
    recipe = write_recipe(tmp_path)
    first = train(recipe, progress=False)
    ck = tmp_path / "run" / "checkpoints"
    state = json.loads((ck / "state.json").read_text())
    assert first.epochs_done == 2 and state["epoch"] == 1 and state["step"] == first.step == 4
    saved_optim = torch.load(ck / "last.optim.pt")
    # the checkpoint is an ordinary featherpose weight file
    est = featherpose.load(ck / "last.safetensors", backend="torch")
    assert est.multi_person and len(est(MEDIA / "messi5.jpg", min_score=0)) == 6
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,loss") and len(rows) == 1 + 4
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000

    cfg = load_config(recipe)
    cfg.epochs = 3
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.epochs_done == 3 and resumed.step == 6
    rows = [r.split(",") for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5, 6]
    total = 3 * 2  # the schedule of the longer run
    assert float(rows[4][2]) == pytest.approx(get_lr(4, total, cfg.optim), rel=1e-5)
    # the optimizer state was restored: Adam's step counters continue from 4
    resumed_optim = torch.load(ck / "last.optim.pt")
    first_param = next(iter(saved_optim["state"]))
    assert float(saved_optim["state"][first_param]["step"]) == 4
    assert float(resumed_optim["state"][first_param]["step"]) == 6


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(write_recipe(tmp_path), resume=True, progress=False)


def test_save_every_checkpoints_every_n_epochs_and_the_last(tmp_path, monkeypatch):
    """save_every 2 over 3 epochs commits after epochs 2 and 3 only (the memorisation recipes' one step per epoch
    spent a third of their time writing checkpoints); a resume starts after the last saved epoch."""
    import featherpose.train.trainer as trainer

    saved = []
    real = trainer._save_checkpoint
    monkeypatch.setattr(trainer, "_save_checkpoint",
                        lambda *a, **kw: (saved.append(a[6]), real(*a, **kw)))  # a[6]: the epoch
    recipe = write_recipe(tmp_path, epochs=3, save_every=2, max_steps_per_epoch=1)
    result = train(recipe, progress=False)
    assert result.epochs_done == 3 and saved == [1, 2]
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (2, 3)
    cfg = load_config(recipe)
    cfg.epochs = 4
    assert train(cfg, resume=True, progress=False).step == 4 and saved == [1, 2, 3]
    path = write_recipe(tmp_path, save_every=0)
    with pytest.raises(ValueError, match="save_every.*epochs between checkpoints"):
        load_config(path)


def test_lsp_checkpoint_keeps_its_skeleton(tmp_path):
    """A model trained on LSP-14 reloads as a 14-keypoint LSP model, not COCO-17."""
    recipe = write_recipe(tmp_path, data={"train": str(DATA / "lsp" / "lsp_train.json")}, epochs=1,
                          max_steps_per_epoch=1)
    train(recipe, progress=False)
    est = featherpose.load(tmp_path / "run" / "checkpoints" / "last.safetensors", backend="torch")
    poses = est(MEDIA / "messi5.jpg", min_score=0)
    assert est.skeleton.name == "lsp14" and poses.keypoints.shape[1:] == (14, 3)
    with pytest.raises(ValueError, match="nothing to resume.*already finished 1 of 1 epochs"):
        train(recipe, resume=True, progress=False)


def test_kill_mid_epoch_loses_at_most_that_epoch(tmp_path):
    recipe = write_recipe(tmp_path, epochs=50, batch_size=1)
    proc = subprocess.Popen([sys.executable, "-m", "featherpose", "train", str(recipe), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = tmp_path / "run" / "checkpoints" / "state.json"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert state.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no checkpoint"
    time.sleep(1.0)  # now somewhere inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())
    steps_per_epoch = 4  # 4 images with people, batch 1
    assert saved["step"] == (saved["epoch"] + 1) * steps_per_epoch
    cfg = load_config(recipe)
    cfg.epochs = saved["epoch"] + 2
    result = train(cfg, resume=True, progress=False)
    assert result.epochs_done == saved["epoch"] + 2 and result.step == saved["step"] + steps_per_epoch


def test_ddp_two_cpu_processes(tmp_path):
    recipe = write_recipe(tmp_path, epochs=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29517", "-m", "featherpose", "train", str(recipe), "--quiet"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert state["step"] == 1  # 4 images, 2 processes x batch 2: one step per epoch
    assert proc.stdout.count("trained 1 epochs") == 1  # rank 0 reports; rank 1 printed its own loss too


@pytest.mark.slow
def test_memorise_short(tmp_path):
    """Short variant of benchmarks/movenet_memorise.py: from random init, 150 steps on the 4 labelled
    labeled_dev images at 128x128 (the recipe's 192 took twice as long); the loss falls 10x and the model already
    finds those people."""
    cfg = load_config(ROOT / "configs" / "movenet_memorise.yaml")
    cfg.out, cfg.epochs, cfg.eval_every, cfg.model.input_size = str(tmp_path / "mem"), 150, 150, 128
    cfg.data.train = cfg.data.val = str(LABELED)  # the recipe's relative path assumes ../shared beside the repo
    result = train(cfg, progress=False)
    assert result.first_loss / result.last_loss >= 10
    assert result.metrics["AP"] >= 0.6  # measured: 0.823 (48 s on one thread; 192x192: 0.761, 105 s)
