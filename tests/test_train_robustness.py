"""Training never loses a run and never shows a traceback: atomic checkpoints, exact resume after a
SIGKILL or a death inside the checkpoint write, safe optimizer loading, one-line recipe errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from featherpose import cli
from featherpose.train import trainer
from featherpose.train.config import load_config
from featherpose.train.trainer import train
from featherpose.weights_io import load_weights

from conftest import DATA, ROOT

LSP = DATA / "lsp" / "lsp_train.json"
LABELED = DATA / "labeled_dev" / "person_keypoints_coco17.json"
TMP_MARK = ".featherpose-tmp-"  # in the name of every temporary fileio.atomic_path makes
EPOCHS, STEPS = 3, 8  # a tiny MoveNet (64 px, width 0.35), 8 steps of 2 LSP crops per epoch: ~1 s an epoch


def tiny_recipe(folder: Path, name: str = "recipe.yaml", **overrides) -> Path:
    recipe = {"model": {"width": 0.35, "input_size": 64},
              "data": {"train": str(LSP), "workers": 0},
              "augment": [{"RandomAffine": {"rotation": 20}}, {"RandomFlip": {}}, {"ColorJitter": {}}],
              "optim": {"lr": 0.002, "warmup_steps": 2},
              "epochs": EPOCHS, "batch_size": 2, "max_steps_per_epoch": STEPS, "seed": 3, "out": str(folder / "run")}
    for key, value in overrides.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(recipe))
    return path


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_weights(run / "checkpoints" / "last.safetensors").state_dict


def metric_rows(run: Path) -> list[dict]:
    """metrics.csv without the timing column."""
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "wait_ms")} for row in csv.DictReader(f)]


def assert_same_run(run: Path, reference: Path) -> None:
    ours, theirs = final_weights(run), final_weights(reference)
    assert ours.keys() == theirs.keys()
    different = [k for k in ours if not torch.equal(ours[k], theirs[k])]
    assert not different, f"{len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"
    assert metric_rows(run) == metric_rows(reference)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == EPOCHS - 1 and state["step"] == EPOCHS * STEPS
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.optim.pt", "last.safetensors", f"optim-e{EPOCHS:04d}.pt", "state.json",
        f"weights-e{EPOCHS:04d}.safetensors"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(tiny_recipe(tmp_path_factory.mktemp("reference")), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.epochs_done == EPOCHS and result.step == EPOCHS * STEPS
    return result.out


def _train_and_kill_in_epoch_2(folder: Path) -> tuple[Path, int]:
    """Start `featherpose train` on the tiny recipe in a subprocess and SIGKILL it early in epoch 2."""
    recipe = tiny_recipe(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "featherpose", "train", str(recipe), "--quiet"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        # epoch 1 is committed and its curves drawn once curves.png exists: the process is then entering
        # epoch 2, whose 8 steps take far longer (~1 s) than the few milliseconds until the kill
        while not (folder / "run" / "curves.png").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return recipe, proc.pid


def test_sigkill_mid_epoch_then_resume_ends_on_the_same_weights(tmp_path, reference):
    for attempt in range(3):  # on a heavily loaded machine this process may wake after epoch 2 ended: try again
        recipe, pid = _train_and_kill_in_epoch_2(tmp_path / f"attempt{attempt}")
        run = tmp_path / f"attempt{attempt}" / "run"
        state = json.loads((run / "checkpoints" / "state.json").read_text())
        if (state["epoch"], state["step"]) == (0, STEPS):
            break
    assert (state["epoch"], state["step"]) == (0, STEPS), "the kill should land in epoch 2"
    # a SIGKILL inside a write leaves its temporary (named by the killed process's pid, or as older versions
    # named them); plant the ones the checkpoint writes could leave, and an uncommitted epoch file
    dead = f"{TMP_MARK}{pid}-x1y2z3"
    for name in (f".weights-e0002.safetensors{dead}.safetensors", f".optim-e0002.pt{dead}.pt",
                 f".state.json{dead}.json", f".last.optim.pt{dead}.pt", ".last.optim.ab12cd34.pt",
                 ".weights-e0002.x1y2z3w4.safetensors", "optim-e0002.pt"):
        (run / "checkpoints" / name).write_bytes(b"partial")
    (run / f".metrics.csv{dead}.csv").write_text("step\n")
    result = train(recipe, resume=True, progress=False)
    assert result.epochs_done == EPOCHS
    assert_same_run(run, reference)
    assert not (run / f".metrics.csv{dead}.csv").exists()


class Death(BaseException):
    """A crash the trainer cannot catch (as a SIGKILL or a power cut at that line)."""


CRASH_POINTS = {  # where the second checkpoint (after epoch 2) dies
    "inside the weights write": ("save_weights", 2),
    "between weights and optimizer state": ("torch.save", 2),
    "before the state commit": ("write_text", 3),  # the metrics.csv header, state 1, state 2
    "after the commit, before last.safetensors": ("_publish", 3),  # last.* of epoch 1, then of epoch 2
    "before removing epoch 1's files": ("_tidy_checkpoints", 3),  # start, epoch 1, epoch 2
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_death_anywhere_in_the_checkpoint_leaves_a_resumable_run(tmp_path, monkeypatch, reference, point):
    name, nth = CRASH_POINTS[point]
    dead_pid = 2**22 + 1  # above Linux's largest pid_max: no such process
    owner, attr = (torch, "save") if name == "torch.save" else (trainer, name)
    real, calls = getattr(owner, attr), []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            if name == "save_weights":  # the temporary is half written when the process dies
                target = Path(args[0])
                (target.parent / f".{target.name}{TMP_MARK}{dead_pid}-ab{target.suffix}").write_bytes(b"half")
            raise Death(point)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, dying)
    recipe = tiny_recipe(tmp_path)
    with pytest.raises(Death):
        train(recipe, progress=False)
    monkeypatch.setattr(owner, attr, real)
    ck = tmp_path / "run" / "checkpoints"
    state = json.loads((ck / "state.json").read_text())
    # whatever state.json names is complete, and last.safetensors is loadable
    assert state["epoch"] in (0, 1)
    load_weights(ck / "last.safetensors")
    train(recipe, resume=True, progress=False)
    assert_same_run(tmp_path / "run", reference)


def test_resume_refuses_a_damaged_or_missing_checkpoint_file(tmp_path):
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=1)
    train(recipe, progress=False)
    ck = tmp_path / "run" / "checkpoints"
    state = json.loads((ck / "state.json").read_text())
    weights = ck / state["files"]["weights"]["name"]
    cfg = load_config(recipe)
    cfg.epochs = 2
    good = weights.read_bytes()
    weights.write_bytes(good[:-8] + bytes(8))  # same size, other bytes
    with pytest.raises(ValueError, match=r"weights-e0001.safetensors: does not match state.json .*restore it"):
        train(cfg, resume=True, progress=False)
    weights.unlink()
    with pytest.raises(ValueError, match=r"state.json: its weights file weights-e0001.safetensors is missing"):
        train(cfg, resume=True, progress=False)
    (ck / "state.json").write_text('{"epoch": 0, "st')
    with pytest.raises(ValueError, match=r"state.json: not a checkpoint state featherpose wrote"):
        train(cfg, resume=True, progress=False)


def test_resume_refuses_another_network_and_reports_changed_settings(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=1)
    train(recipe, progress=False)
    cfg = load_config(tiny_recipe(tmp_path, "wider.yaml", model={"width": 0.5}, epochs=2, max_steps_per_epoch=1))
    with pytest.raises(ValueError, match=r"^cannot resume .*run: the recipe changed model.width \(the run's own "
                                         r"values are in state.json\); restore them, or set out to a new folder"):
        train(cfg, resume=True, progress=False)
    cfg = load_config(tiny_recipe(tmp_path, "other.yaml", data={"train": str(LABELED),
                                                                "image_root": str(LABELED.parent)}, epochs=2))
    with pytest.raises(ValueError) as caught:
        train(cfg, resume=True, progress=False)
    message = str(caught.value)  # field names, not the two long paths
    assert "the recipe changed data.train (" in message and str(LSP) not in message and str(LABELED) not in message
    cfg = load_config(tiny_recipe(tmp_path, "longer.yaml", epochs=2, max_steps_per_epoch=1))
    train(cfg, resume=True, progress=False)
    assert "resuming with changed settings: epochs 1 -> 2" in capsys.readouterr().err


def test_a_new_run_never_replaces_a_trained_run_in_its_folder(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=2)
    train(recipe, progress=False)
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in [*(run / "checkpoints").iterdir(), run / "metrics.csv"]}
    assert cli.main(["train", str(recipe), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"featherpose: error: {run} already holds a trained run (epoch 1); continue it "
                                       "with --resume or set out to a new folder\n")
    assert {p.name: p.read_bytes() for p in [*(run / "checkpoints").iterdir(), run / "metrics.csv"]} == before
    assert train(recipe, dry_run=True, progress=False).step == 1  # a dry run writes nothing: allowed
    cfg = load_config(recipe)
    cfg.epochs = 2
    train(cfg, resume=True, progress=False)  # the earlier run is still whole and continues
    assert [int(r["step"]) for r in metric_rows(run)] == [1, 2, 3, 4]


def test_a_new_run_after_a_killed_first_epoch_starts_clean(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=2)

    def killed(*args, **kwargs):
        raise Death("killed in the first checkpoint")

    monkeypatch.setattr(trainer, "_save_checkpoint", killed)
    with pytest.raises(Death):
        train(recipe, progress=False)
    monkeypatch.undo()
    (tmp_path / "run" / "checkpoints" / "weights-e0001.safetensors").write_bytes(b"half")  # never committed
    train(recipe, progress=False)  # nothing was committed: not a trained run
    assert [int(r["step"]) for r in metric_rows(tmp_path / "run")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "last.optim.pt", "last.safetensors", "optim-e0001.pt", "state.json", "weights-e0001.safetensors"]


def test_loader_workers_see_each_epochs_augmentation(tmp_path):
    """Worker processes draw the same (seed, epoch, index) augmentation as the main process: epoch 2 is not
    epoch 1's augmentation again, so a run with workers ends on the weights of one without (and resumes alike)."""
    recipe = dict(epochs=2, max_steps_per_epoch=2, augment=[{"RandomAffine": {"rotation": 40, "scale": [0.6, 1.4]}}])
    without = train(tiny_recipe(tmp_path / "a", **recipe), progress=False).out
    with_workers = train(tiny_recipe(tmp_path / "b", data={"workers": 1}, **recipe), progress=False).out
    ours, theirs = final_weights(with_workers), final_weights(without)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert metric_rows(with_workers) == metric_rows(without)


def test_checkpoint_files_are_never_fsynced_read_only(tmp_path, monkeypatch):
    """On Windows fsync of a file opened for reading fails (EBADF); on Linux it would be a no-op that hides it."""
    import errno
    import fcntl

    real = os.fsync

    def windows_fsync(fd):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd)

    monkeypatch.setattr(os, "fsync", windows_fsync)
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=1)
    assert train(recipe, progress=False).step == 1
    cfg = load_config(recipe)
    cfg.epochs = 2
    assert train(cfg, resume=True, progress=False).step == 2  # resume verifies the files' sha256 too


class Planted:
    """What a hostile optimizer file carries: unpickling it would run code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_planted_optimizer_pickle_is_refused_and_never_runs(tmp_path):
    recipe = tiny_recipe(tmp_path, epochs=1, max_steps_per_epoch=1)
    train(recipe, progress=False)
    ck = tmp_path / "run" / "checkpoints"
    state = json.loads((ck / "state.json").read_text())
    files = state.get("files")
    target = ck / (files["optim"]["name"] if files else "last.optim.pt")
    optim_state = torch.load(target, weights_only=True)
    marker = tmp_path / "pwned"
    torch.save({**optim_state, "extra": Planted(marker)}, target)
    if files:  # the attacker also fixes the recorded size and sha256
        files["optim"].update({k: v for k, v in trainer._describe(target).items() if k != "name"})
        (ck / "state.json").write_text(json.dumps(state))
    cfg = load_config(recipe)
    cfg.epochs = 2
    with pytest.raises(ValueError, match=r"optim-e0001.pt: refused to load: not an optimizer state featherpose train "
                                         r"wrote .*restore the checkpoint, or start again"):
        train(cfg, resume=True, progress=False)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- recipes

BAD_RECIPES = {  # YAML text -> the key the one-line error must name
    "augment: 5\n": "augment",
    "epochs: -1\n": "epochs",
    "epochs: 0\n": "epochs",
    "epochs: 2.5\n": "epochs",
    "epochs: .nan\n": "epochs",
    "epochs: [1]\n": "epochs",
    "epochs: true\n": "epochs",
    "batch_size: 0\n": "batch_size",
    "seed: -3\n": "seed",
    "eval_every: 0\n": "eval_every",
    "max_steps_per_epoch: 0\n": "max_steps_per_epoch",
    "optim: {lr: 0}\n": "optim.lr",
    "optim: {lr: -1e-3}\n": "optim.lr",
    "optim: {lr: .inf}\n": "optim.lr",
    "optim: {lr: fast}\n": "optim.lr",
    "optim: {name: adam}\n": "optim.name",
    "optim: {min_lr_ratio: 2}\n": "optim.min_lr_ratio",
    "optim: {warmup_steps: -1}\n": "optim.warmup_steps",
    "optim: 3\n": "optim",
    "data: {workers: -1}\n": "data.workers",
    "data: {val: 5}\n": "data.val",
    "data: {image_root: [a]}\n": "data.image_root",
    "model: {input_size: 100}\n": "model.input_size",
    "model: {input_size: -64}\n": "model.input_size",
    "model: {input_size: 100000}\n": "model.input_size",
    "model: {architecture: hourglass, input_size: 96}\n": "model.input_size",
    "model: {width: 0}\n": "model.width",
    "model: {backbone: resnet}\n": "model.backbone",
    "model: {batch_norm: 1}\n": "model.batch_norm",
    "model: {init: 7}\n": "model.init",
    "model: {stacks: 0}\n": "model.stacks",
    "teacher: {alpha: 1.5}\n": "teacher.alpha",
    "teacher: {min_confidence: -0.1}\n": "teacher.min_confidence",
    "teacher: {model: [x]}\n": "teacher.model",
    "loss: {head_weights: [1, 2]}\n": "loss.head_weights",
    "loss: {head_weights: [1, 1, 1, -1]}\n": "loss.head_weights",
    "loss: {head_weights: 1}\n": "loss.head_weights",
    "loss: {early_head_weights: [a, b, c, d]}\n": "loss.early_head_weights",
    "loss: {k: 0}\n": "loss.k",
    "loss: {activation: relu}\n": "loss.activation",
    "loss: {kernel: box}\n": "loss.kernel",
    "augment: [5]\n": "augment[0]",
    "augment: [RandomFlip]\n": "augment[0]",
    "augment: [{Blur: {}}]\n": "augment[0]",
    "augment: [{RandomFlip: {p: 0.5}, ColorJitter: {}}]\n": "augment[0]",
    "augment: [{RandomFlip: 3}]\n": "augment[0].RandomFlip",
    "augment: [{RandomFlip: {prob: 0.5}}]\n": "augment[0].RandomFlip: unknown argument(s) prob",
    "augment: [{RandomAffine: {rotation: -5}}]\n": "augment[0].RandomAffine",
    "augment: [{RandomAffine: {rotation: lots}}]\n": "augment[0].RandomAffine",
    "augment: [{RandomAffine: {scale: 2}}]\n": "augment[0].RandomAffine",
    "augment: [{RandomAffine: {scale: [1, b]}}]\n": "augment[0].RandomAffine",
    "augment: [{ColorJitter: {brightness: 7}}]\n": "augment[0].ColorJitter",
    "augment: [{ZoomSmallPeople: {}}]\n": "augment[0].ZoomSmallPeople",
    "augment: [{ZoomSmallPeople: {target: [5, 1]}}]\n": "augment[0].ZoomSmallPeople",
    "augment: [{RandomFlip: {flip_index: [0, 0]}}]\n": "augment[0].RandomFlip",
    "augment: [{1: {}}]\n": "augment[0]",
    "1: 2\n": "unknown key(s) 1",
    "epochz: 3\n": "unknown key(s) epochz",
    "- a\n- b\n": "expected a mapping",
    "just text\n": "expected a mapping",
}


@pytest.mark.parametrize("text", list(BAD_RECIPES))
def test_every_bad_recipe_is_one_value_error_naming_file_and_key(tmp_path, text):
    path = tmp_path / "bad_recipe.yaml"
    path.write_text(f"data: {{train: {LABELED}}}\n" + text if not text.startswith(("data:", "-", "just")) else
                    text.replace("data: {", f"data: {{train: {LABELED}, "))
    with pytest.raises(ValueError) as caught:  # never TypeError / KeyError / AttributeError
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("bad_recipe.yaml"), message
    assert BAD_RECIPES[text] in message, message


def test_a_bad_recipe_through_the_cli_is_one_line(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    for text, key in (("augment: 5\n", "r.yaml.augment: expected a list, got 5"),
                      ("epochs: -1\n", "r.yaml: epochs is -1; it must be a whole number >= 1")):
        path.write_text(f"data: {{train: {LABELED}}}\n{text}")
        assert cli.main(["train", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err == f"featherpose: error: {key}\n", err
    path.write_bytes(b"\xff\xfe\x00binary")
    assert cli.main(["train", str(path)]) == 2
    assert capsys.readouterr().err == "featherpose: error: " + f"{path}: not a text file; a recipe is YAML text " \
                                      "(see configs/)\n"


def test_the_shipped_recipes_load():
    from featherpose.nas.search import load_search_config

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if "_search" in path.stem:  # `featherpose search` recipes
            if path.stem.endswith("_gpu") and not (ROOT / "shared" / "data" / "coco_mini").is_dir():
                continue  # its frames are the checkout's own shared/ (as a GPU machine's copy has it)
            assert load_search_config(path).train.steps >= 1
        else:
            assert load_config(path).epochs >= 1


def test_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = ((("out",), str(tmp_path / "afile" / "run"),  # check_writable's message, as every verb's outputs get
              r"^cannot write out folder .*afile.run: .*afile is a file, not a folder; choose another location$"),
             (("data", "val"), str(tmp_path / "none.json"), r"^data.val .*none.json does not exist; point data.val"),
             (("data", "train"), str(tmp_path / "gone.json"), r"^data.train .*gone.json does not exist"),
             (("teacher", "cache"), str(tmp_path / "afile"), r"^teacher.cache: .*afile is a file, not a folder"))
    for keys, value, message in cases:
        cfg = load_config(tiny_recipe(tmp_path, teacher={"model": "movenet-lightning"}))
        setattr(getattr(cfg, keys[0]) if len(keys) == 2 else cfg, keys[-1], value)
        with pytest.raises((ValueError, OSError), match=message):
            train(cfg, progress=False)
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(OSError, match=r"^out folder .*run is a file, not a folder; give a folder$"):
        train(tiny_recipe(tmp_path), progress=False)


def test_train_prints_one_summary_of_skipped_annotations_and_images(tmp_path, capsys):
    data = json.loads(LABELED.read_text())
    anns = data["annotations"]
    bad_nan = {**anns[0], "id": 90001, "keypoints": [float("nan")] * len(anns[0]["keypoints"])}
    bad_image = {**anns[0], "id": 90002, "image_id": 123456789}
    data["annotations"] = anns + [bad_nan, bad_image]
    data["images"].append({"id": 777, "file_name": "huge.jpg", "width": 30000, "height": 30000})
    train_json = tmp_path / "with_bad.json"
    train_json.write_text(json.dumps(data))  # NaN is written as NaN, as a careless exporter does
    recipe = tiny_recipe(tmp_path, data={"train": str(train_json), "image_root": str(LABELED.parent)})
    train(recipe, dry_run=True, progress=False)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("with_bad.json: skipped")]
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("with_bad.json: skipped 2 annotations: id 90001 (") and ", id 90002 (" in line, line
    assert "; skipped 1 image: id 777 (30000x30000 is over the 250-megapixel limit" in line, line
    assert line.endswith("; training on the rest"), line


def test_a_failing_evaluation_keeps_the_epoch_it_evaluated(tmp_path):
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [], "categories": []}))
    recipe = tiny_recipe(tmp_path, data={"val": str(val)}, epochs=2, max_steps_per_epoch=1)
    with pytest.raises(ValueError, match=r"evaluation on data.val failed after epoch 1 \(.*val.json: .*\); that epoch "
                                         r"is saved in .*checkpoints: fix data.val \(or remove it\) and continue"):
        train(recipe, progress=False)
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (0, 1)
    cfg = load_config(recipe)
    cfg.data.val = None
    assert train(cfg, resume=True, progress=False).step == 2


def test_a_damaged_teacher_cache_is_computed_again(tmp_path, caplog):
    cache = tmp_path / "cache"

    def run(name: str):
        recipe = tiny_recipe(tmp_path, f"{name}.yaml", data={"train": str(LABELED), "image_root": str(LABELED.parent)},
                             teacher={"model": "movenet-lightning", "alpha": 0.5, "cache": str(cache)},
                             epochs=1, max_steps_per_epoch=1, out=str(tmp_path / name))
        return train(recipe, progress=False)

    run("first")
    npz, = cache.glob("teacher-*.npz")
    good = npz.read_bytes()
    for damage in (good[: len(good) // 2], b"not a numpy file", b""):
        npz.write_bytes(damage)
        assert run(f"again{len(damage)}").step == 1
        assert npz.read_bytes() == good  # recomputed, the same keypoints
        assert "is unreadable" in caplog.text and "computing it again" in caplog.text
        caplog.clear()


def test_the_recipe_input_size_cap_is_the_one_load_and_eval_accept(tmp_path):
    from featherpose import zoo

    assert zoo.MAX_INPUT_SIZE == 1024
    for size in (1088, 2048):  # multiples of 64 that a trained network could not be loaded at
        path = tiny_recipe(tmp_path, model={"input_size": size})
        with pytest.raises(ValueError, match=rf"^recipe.yaml: model.input_size is {size}; a movenet needs a multiple "
                                             rf"of 32 from 32 to 1024, e.g. 1024$"):
            load_config(path)
    assert load_config(tiny_recipe(tmp_path, model={"input_size": 1024})).model.input_size == 1024


def test_a_config_changed_in_code_is_checked_too(tmp_path):
    for key, value, message in (("epochs", 0, r"^the recipe: epochs is 0; it must be a whole number >= 1"),
                                ("batch_size", "2", r"^the recipe: batch_size is '2'; it must be"),
                                ("augment", [{"Blur": {}}], r"^the recipe: augment\[0\]: unknown transform 'Blur'")):
        cfg = load_config(tiny_recipe(tmp_path))
        setattr(cfg, key, value)
        with pytest.raises(ValueError, match=message):
            train(cfg, progress=False)
    cfg = load_config(tiny_recipe(tmp_path))
    cfg.model.input_size = 100
    with pytest.raises(ValueError, match=r"model.input_size is 100; a movenet needs a multiple of 32 .*e.g. 96"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()
