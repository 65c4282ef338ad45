"""Importing upstream's LitePose-Auto-M CrowdPose checkpoint: the strict name mapping (and its failures), the
stored tensors, and the raw outputs on every golden sample within 1e-4 of upstream's (output_0 / output_1)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import featherpose
from featherpose import cli
from featherpose.convert.litepose import (KNOWN_SHA256, NAME, config_from_state, convert_litepose,
                                          featherpose_name, import_litepose, litepose_tensors)
from featherpose.image import litepose_preprocess
from featherpose.image import load_image
from featherpose.models.litepose import LitePose, named_config
from featherpose.skeletons import CROWDPOSE14, skeleton_from_json
from featherpose.weights_io import load_weights
from featherpose.zoo import model_info, weights_path

from conftest import SHARED

CHECKPOINT = SHARED / "weights" / "litepose" / "litepose-auto-m-crowdpose.pth"
GOLDEN = SHARED / "golden" / "litepose"
if not CHECKPOINT.is_file() or not (GOLDEN / "manifest.json").is_file():
    pytest.skip(f"the Lite Pose checkpoint or golden data is missing under {SHARED}", allow_module_level=True)
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())["samples"]
FULL = [s for s, e in MANIFEST.items() if e["full_tensors"]]
#: Samples whose raw outputs are checked against the manifest's statistics (no arrays stored for them).
STATS_ONLY = [s for s in MANIFEST if s not in FULL]
TOLERANCE = 1e-4  # upstream's own torch vs onnxruntime spread is 7.2e-5 (golden README)


@pytest.fixture(scope="module")
def state():
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def imported():
    torch.set_num_threads(1)
    return import_litepose(CHECKPOINT)


def raw_outputs(model: LitePose, sample: str) -> dict[str, np.ndarray]:
    """The network's raw heads on a golden image through featherpose's own preprocessing."""
    x, _ = litepose_preprocess(load_image(GOLDEN / MANIFEST[sample]["image"]), (448, 448))
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(2, 0, 1)[None].float())
    return {"output_0": out["heatmaps_tags"].numpy(), "output_1": out["heatmaps"].numpy()}


def max_errors(model: LitePose, sample: str) -> dict[str, float]:
    """Largest absolute difference of each raw output from upstream's stored array."""
    out = raw_outputs(model, sample)
    return {k: float(np.abs(v - np.load(GOLDEN / sample / f"{k}.npy")).max()) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ the mapping

def test_every_upstream_tensor_maps_to_one_network_tensor(state):
    assert len(state) == 679
    names = {featherpose_name(k) for k in state}
    assert len(names) == 679 and names == set(LitePose().state_dict())
    assert featherpose_name("first.2.weight") == "stem.project.0.weight"
    assert featherpose_name("stage.2.4.depth_conv.1.running_var") == "stages.2.4.depthwise.1.running_var"
    assert featherpose_name("deconv_bnrelu.1.0.weight") == "fusion.1.bn.weight"
    assert featherpose_name("final_raw.1.conv.3.weight") == "head_skip.1.pointwise.weight"


def test_checkpoint_shapes_describe_auto_m(state):
    assert config_from_state(state) == named_config("litepose-m", num_keypoints=14)


def test_stored_tensors_are_the_checkpoints_unchanged(state, imported):
    model, tensors = imported
    assert len(tensors) == 679
    for key, value in state.items():
        got = tensors[featherpose_name(key)]
        assert got.dtype == value.dtype and torch.equal(got, value), key
    assert not model.training


def test_unmapped_name_fails(state):
    bad = dict(state)
    bad["stage.0.0.extra.weight"] = bad.pop("stage.0.0.inv.0.weight")
    with pytest.raises(ValueError, match="no Lite Pose tensor for the upstream name 'stage.0.0.extra.weight'"):
        litepose_tensors(bad, LitePose())


def test_missing_tensor_fails(state):
    bad = {k: v for k, v in state.items() if k != "final_raw.0.conv.1.running_mean"}
    with pytest.raises(ValueError, match="1 network tensors get no weights.*head_skip.0.depthwise.1.running_mean"):
        litepose_tensors(bad, LitePose())


def test_wrong_shape_and_extra_block_fail(state):
    bad = dict(state)
    bad["deconv_raw.0.weight"] = bad["deconv_raw.0.weight"][:, :8]
    with pytest.raises(ValueError, match="deconv_raw.0.weight': shape"):
        litepose_tensors(bad, LitePose())
    extra = dict(state)
    extra["stage.3.10.inv.0.weight"] = state["stage.3.9.inv.0.weight"]
    with pytest.raises(ValueError, match="the network has no such tensor"):
        litepose_tensors(extra, LitePose())


def test_not_a_checkpoint_fails_in_one_line(tmp_path, state):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.pth: not a Lite Pose .*weights_only=True.*pass litepose-auto-m"):
        import_litepose(junk)
    small = tmp_path / "small.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("stage.3.9.")}, small)
    with pytest.raises(ValueError, match="small.pth: not a Lite Pose .*not litepose-m"):
        import_litepose(small)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        import_litepose(tmp_path / "nothere.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.pth: empty file \(0 bytes\)"):
        import_litepose(tmp_path / "empty.pth")
    converted = tmp_path / "w.safetensors"
    converted.write_bytes(b"{}")
    with pytest.raises(ValueError, match="w.safetensors is a .safetensors file, not upstream's PyTorch checkpoint"):
        import_litepose(converted)
    cut = tmp_path / "cut.pth"  # a truncated download: torch's first sentence only
    torch.save(state, cut)
    cut.write_bytes(cut.read_bytes()[:5000])
    with pytest.raises(ValueError) as err:
        import_litepose(cut)
    assert "cut.pth: not a Lite Pose" in str(err.value) and "If you are seeing" not in str(err.value)


# ------------------------------------------------------------------------------------------ parity

@pytest.mark.parametrize("sample", FULL)
def test_raw_outputs_match_upstream(imported, sample):
    model, _ = imported
    errors = max_errors(model, sample)
    assert errors["output_0"] <= TOLERANCE and errors["output_1"] <= TOLERANCE, errors


@pytest.mark.parametrize("sample", STATS_ONLY)
def test_raw_outputs_match_the_manifest_statistics(imported, sample):
    """Frames without stored arrays: min, max, mean and absolute sum of each output as the manifest records."""
    model, _ = imported
    for key, out in raw_outputs(model, sample).items():
        ref = MANIFEST[sample][key]
        assert list(out.shape) == ref["shape"]
        assert abs(out.min() - ref["min"]) <= TOLERANCE and abs(out.max() - ref["max"]) <= TOLERANCE
        assert abs(out.astype(np.float64).mean() - ref["mean"]) <= 1e-6
        assert np.abs(out.astype(np.float64)).sum() == pytest.approx(ref["abs_sum"], rel=1e-5)


def test_a_perturbed_weight_fails_parity(imported):
    """One BatchNorm mean of one block moved by 0.01 takes the outputs out of tolerance (3e-4): the check can fail."""
    model, tensors = imported
    perturbed = LitePose(model.config).eval()
    state = {k: v.clone() for k, v in tensors.items()}
    state["stages.2.3.project.1.running_mean"][5] += 0.01
    perturbed.load_state_dict(state)
    errors = max_errors(perturbed, "astronaut")
    assert max(errors.values()) > TOLERANCE, errors


# ------------------------------------------------------------------------------------------ the weight file

def test_convert_writes_a_self_describing_file(tmp_path, state):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CHECKPOINT, src / CHECKPOINT.name)
    [path] = convert_litepose(src, tmp_path)  # a folder holding the checkpoint
    assert path == tmp_path / f"{NAME}.safetensors"
    weights = load_weights(path)
    assert weights.meta["architecture"] == "litepose" and weights.meta["name"] == NAME
    assert weights.config == named_config("litepose-m").to_dict()
    assert skeleton_from_json(weights.meta["skeleton"]) == CROWDPOSE14
    assert KNOWN_SHA256 in weights.meta["source"] and "THIRD-PARTY COPY" in weights.meta["source"]
    assert "no licence" in weights.meta["license"]
    for key, value in state.items():
        if value.is_floating_point():
            assert torch.equal(weights.state_dict[featherpose_name(key)], value), key


def test_convert_cli_writes_the_bundled_file(tmp_path, capsys):
    assert cli.main(["convert", "litepose", str(CHECKPOINT), "--out", str(tmp_path)]) == 0
    path = tmp_path / f"{NAME}.safetensors"
    assert f"wrote {path}" in capsys.readouterr().out
    ours, bundled = load_weights(path), load_weights(weights_path(model_info(NAME)))
    assert {k: v for k, v in ours.meta.items()} == bundled.meta
    assert ours.state_dict.keys() == bundled.state_dict.keys()
    assert all(torch.equal(ours.state_dict[k], bundled.state_dict[k]) for k in ours.state_dict)


def test_convert_cli_fails_in_one_line(tmp_path, capsys):
    assert cli.main(["convert", "litepose", str(tmp_path / "missing.pth"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pth: no such file" in err


# ------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def bundled():
    return featherpose.load(NAME, backend="torch", threads=1)


@pytest.mark.parametrize("sample", ["messi5", "vtest_f090"])
def test_bundled_model_gives_upstreams_poses(bundled, sample):
    """featherpose.load's whole path (decode, warpAffine preprocessing, codec, inverse affine) on a photo and on a
    crowded vtest frame: upstream's people in upstream's order, keypoints and scores as poses.npy / scores.npy
    (measured on all 13 samples: x, y identical; scores within 8e-7 on torch, 6e-6 on onnxruntime)."""
    poses = bundled(GOLDEN / MANIFEST[sample]["image"], min_score=0)
    ref, ref_scores = np.load(GOLDEN / sample / "poses.npy"), np.load(GOLDEN / sample / "scores.npy")
    assert len(poses) == len(ref) > 0
    assert np.abs(poses.keypoints[..., :2] - ref[..., :2]).max() <= 1e-3
    assert np.abs(poses.keypoints[..., 2] - ref[..., 2]).max() <= 1e-5
    assert np.abs(poses.scores - ref_scores).max() <= 1e-5
    assert bundled.skeleton == CROWDPOSE14 and bundled.multi_person


def test_portrait_image_runs_at_short_side_448(bundled):
    """A portrait image gets width 448 and its own height; the people of messi5 are found in it, transposed."""
    image = load_image(GOLDEN / MANIFEST["messi5"]["image"])
    x, _ = bundled.preprocess(np.ascontiguousarray(image.transpose(1, 0, 2)))
    assert x.shape == (1, 768, 448, 3)
    poses = bundled(np.ascontiguousarray(image.transpose(1, 0, 2)), min_score=0)
    upright = bundled(image, min_score=0)
    assert len(poses) >= 1 and poses.scores.max() == pytest.approx(upright.scores.max(), abs=0.05)


def test_portrait_image_on_onnxruntime_equals_torch(bundled):
    """The default backend's graph has a dynamic height as well as width: a portrait input (768 x 448) runs, and
    its poses are torch's."""
    image = np.ascontiguousarray(load_image(GOLDEN / MANIFEST["messi5"]["image"]).transpose(1, 0, 2))
    ort = featherpose.load(NAME, backend="onnxruntime", threads=1)(image, min_score=0)
    ref = bundled(image, min_score=0)
    assert len(ort) == len(ref) >= 1
    assert np.abs(ort.keypoints[..., :2] - ref.keypoints[..., :2]).max() <= 0.5
    assert np.abs(ort.scores - ref.scores).max() <= 1e-3


@pytest.mark.parametrize("sample", ["basketball1", "vtest_f120"])
def test_network_and_codec_give_upstreams_flip_test_poses(bundled, sample):
    """Upstream's flip test: the network's raw heads on the input and on its mirror image, decoded together, mapped
    by the letterbox: poses_flip.npy's people, keypoints and scores (measured on all 13 samples: x, y identical,
    scores within 1.5e-6)."""
    x, letterbox = bundled.preprocess(load_image(GOLDEN / MANIFEST[sample]["image"]))
    image = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        heads, mirrored = bundled.network(image), bundled.network(image.flip(3))
    decoded = bundled.codec.decode({**{k: v[0].numpy() for k, v in heads.items()},
                                    **{f"{k}_flip": v[0].numpy() for k, v in mirrored.items()}})
    ref, ref_scores = np.load(GOLDEN / sample / "poses_flip.npy"), np.load(GOLDEN / sample / "scores_flip.npy")
    assert len(decoded.keypoints) == len(ref) > 0
    assert np.abs(letterbox.to_image(decoded.keypoints[..., :2]) - ref[..., :2]).max() <= 1e-3
    assert np.abs(decoded.keypoints[..., 2] - ref[..., 2]).max() <= 1e-5
    assert np.abs(decoded.scores - ref_scores).max() <= 1e-5
