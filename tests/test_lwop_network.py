"""Lightweight OpenPose: the network's shapes and variants, the reference preprocessing, and parity with
the float32 build of Intel's IR on every golden sample (golden/lwop)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from featherpose.image import load_image
from featherpose.models.lwop import LightweightOpenPose, LwopConfig, reference_input

from conftest import SHARED

LWOP_GOLDEN = SHARED / "golden" / "lwop"
IR_XML = SHARED / "weights" / "lwop" / "human-pose-estimation-0001.xml"
if not (LWOP_GOLDEN / "manifest.json").is_file() or not IR_XML.is_file():
    pytest.skip(f"the Lightweight OpenPose golden data or IR is missing under {SHARED}", allow_module_level=True)
MANIFEST = json.loads((LWOP_GOLDEN / "manifest.json").read_text())
SAMPLES = [s["name"] for s in MANIFEST["samples"]]
TOLERANCE = 1e-4  # issue 12: absolute, on heatmaps and PAFs
#: What a float32 re-implementation reaches (golden README: "a few 1e-6"; measured here <= 2.3e-6): one int8
#: step of one weight deep in the trunk moves the outputs by only ~4e-5, under TOLERANCE, so parity is also held
#: to this.
TIGHT = 1e-5


def golden(sample: str, name: str) -> np.ndarray:
    return np.load(LWOP_GOLDEN / sample / name)


def entry(sample: str) -> dict:
    return next(s for s in MANIFEST["samples"] if s["name"] == sample)


@pytest.fixture(scope="module")
def network():
    from featherpose.convert.lwop import import_lwop

    model, _, _ = import_lwop(IR_XML)
    return model


def run(model: LightweightOpenPose, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}


# ------------------------------------------------------------------------------------ shapes, variants

@pytest.mark.parametrize("hw", [(256, 456), (64, 8), (8, 64), (368, 200)])
def test_heads_at_stride_8_for_any_multiple_of_8(one_thread, hw):
    torch.manual_seed(0)
    model = LightweightOpenPose().eval()
    out = run(model, np.full((2, 3, *hw), 128, np.float32))
    assert set(out) == {"heatmaps", "pafs"}
    assert out["heatmaps"].shape == (2, 19, hw[0] // 8, hw[1] // 8)
    assert out["pafs"].shape == (2, 38, hw[0] // 8, hw[1] // 8)


@pytest.mark.parametrize("hw", [(256, 452), (60, 64)])
def test_input_not_multiple_of_8_is_refused(hw):
    with pytest.raises(ValueError, match="multiples of 8"):
        LightweightOpenPose()(torch.zeros(1, 3, *hw))


@pytest.mark.parametrize("stages", [0, 1, 3])
def test_training_returns_every_stage(one_thread, stages):
    torch.manual_seed(0)
    model = LightweightOpenPose(num_refinement_stages=stages, batch_norm=True).train()
    out = model(torch.rand(2, 3, 32, 48) * 255)
    assert out["stages_heatmaps"].shape == (2, stages + 1, 19, 4, 6)
    assert out["stages_pafs"].shape == (2, stages + 1, 38, 4, 6)
    torch.testing.assert_close(out["stages_heatmaps"][:, -1], out["heatmaps"], rtol=0, atol=0)
    torch.testing.assert_close(out["stages_pafs"][:, -1], out["pafs"], rtol=0, atol=0)
    (out["stages_heatmaps"].square().mean() + out["stages_pafs"].square().mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert set(model.eval()(torch.zeros(1, 3, 32, 48))) == {"heatmaps", "pafs"}


def test_variants_differ_as_the_weights_readme_says():
    """IR: 58 convolutions (the CPM's extra ``red``), ELU on align; reference: 57, ReLU on align; BatchNorm only
    where the reference has it (backbone and refinement trunks)."""
    def convs(m):
        return [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)]

    ir, ref = LightweightOpenPose(variant="ir"), LightweightOpenPose(variant="reference", batch_norm=True)
    assert len(convs(ir)) == 58 and len(convs(ref)) == 57
    assert set(convs(ir)) - set(convs(ref)) == {"cpm.red.0"}
    assert isinstance(ir.cpm.align[-1], torch.nn.ELU) and isinstance(ref.cpm.align[-1], torch.nn.ReLU)
    bn = {n.rsplit(".", 1)[0] for n, m in ref.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert len(bn) == 23 + 10  # 23 MobileNet convs, 2 per refinement block
    assert all(n.startswith(("backbone.", "refinement.0.blocks.")) for n in bn)
    with pytest.raises(ValueError, match="variant"):
        LwopConfig(variant="caffe")


def test_refinement_concat_order(network, one_thread):
    """The IR's refinement stage reads concat(pafs, heatmaps, features); the reference's order gives other maps."""
    x = golden("astronaut", "input.npy")
    feats = network.features(torch.from_numpy(x))
    heatmaps, pafs = network.initial(feats)
    stage = network.refinement[0]
    with torch.no_grad():
        got = stage(torch.cat([pafs, heatmaps, feats], 1))[0].numpy()
        swapped = stage(torch.cat([feats, heatmaps, pafs], 1))[0].numpy()
    np.testing.assert_allclose(got, golden("astronaut", "float_heatmaps.npy"), atol=TOLERANCE, rtol=0)
    assert np.abs(swapped - got).max() > 0.1


def test_rgb_input_flips_channels(network, one_thread):
    x = golden("messi5", "input.npy")
    rgb = LightweightOpenPose(LwopConfig(rgb_input=True)).eval()
    rgb.load_state_dict(network.state_dict())
    a, b = run(network, x), run(rgb, np.ascontiguousarray(x[:, ::-1]))
    np.testing.assert_array_equal(a["heatmaps"], b["heatmaps"])
    np.testing.assert_array_equal(a["pafs"], b["pafs"])


def test_ir_normalisation_is_exact_for_integer_pixels():
    """``x * 0.0039215087890625 - 0.501953125`` (the IR's f16 constants) is ``(x - 128) * 0.0039215087890625``
    exactly in float32 for every pixel value 0..255, and the padding value 128 maps to 0."""
    model = LightweightOpenPose()
    x = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    y = model.normalise(x)
    assert torch.equal(y, (x - 128) * torch.tensor(0.0039215087890625))
    assert y[0, 0, 8, 0] == 0.0  # x = 128


# ------------------------------------------------------------------------------------------ preprocessing

@pytest.mark.parametrize("sample", SAMPLES)
def test_reference_input_reproduces_saved_input(sample):
    info = entry(sample)
    x, scale, pad = reference_input(cv2.imread(str(LWOP_GOLDEN / info["image"]), cv2.IMREAD_COLOR))
    np.testing.assert_array_equal(x, golden(sample, "input.npy"))
    assert x.dtype == np.float32
    assert scale == info["scale"] and list(pad) == info["pad_tlbr"]
    # featherpose's own decoder (load_image: RGB) gives the same pixels once flipped back to BGR
    rgb = load_image(LWOP_GOLDEN / info["image"])
    np.testing.assert_array_equal(reference_input(np.ascontiguousarray(rgb[..., ::-1]))[0], x)


def test_reference_input_pads_narrow_images_to_a_square():
    x, scale, pad = reference_input(np.zeros((100, 30, 3), np.uint8), height=368)
    assert x.shape == (1, 3, 368, 368) and scale == 3.68
    assert pad == (0, (368 - 110) // 2, 0, 368 - 110 - (368 - 110) // 2)
    assert (x[..., : pad[1]] == 128).all() and (x[..., pad[1]: 368 - pad[3]] == 0).all()


# ----------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("sample", SAMPLES)
def test_outputs_match_float_build_of_intel_ir(network, one_thread, sample):
    out = run(network, golden(sample, "input.npy"))
    for head, file in (("heatmaps", "float_heatmaps.npy"), ("pafs", "float_pafs.npy")):
        ref = golden(sample, file)
        assert out[head].shape == ref.shape
        err = float(np.abs(out[head] - ref).max())
        print(f"{sample} {head} max abs error {err:.2e}")
        assert err <= TOLERANCE, (sample, head, err)
        assert err <= TIGHT, (sample, head, err)


@pytest.mark.parametrize("path, bound", [("backbone.conv1.0", TOLERANCE), ("backbone.conv4_1_sep.0", TIGHT)])
def test_perturbed_weight_breaks_parity(network, one_thread, path, bound):
    """One weight moved by about one int8 step breaks parity: the first conv's beyond the
    issue's 1e-4, a mid-trunk pointwise conv's (~4e-5) beyond the tight bound."""
    x = golden("vtest_f090", "input.npy")
    refs = {"heatmaps": golden("vtest_f090", "float_heatmaps.npy"), "pafs": golden("vtest_f090", "float_pafs.npy")}
    model = LightweightOpenPose().eval()
    model.load_state_dict(network.state_dict())
    err = lambda out: max(float(np.abs(out[k] - refs[k]).max()) for k in refs)  # noqa: E731
    assert err(run(model, x)) <= TIGHT
    weight = model.get_submodule(path).weight
    with torch.no_grad():
        weight[0, 0, 0, 0] += weight[0].abs().max() / 127  # about one int8 step of channel 0
    assert err(run(model, x)) > bound


# ------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def bundled():
    from featherpose import zoo

    _, network, codec, _ = zoo.build("lightweight-openpose")
    return network, codec


@pytest.mark.parametrize("sample", SAMPLES)
def test_image_to_reference_poses(bundled, one_thread, sample):
    """Image file -> reference_input -> the bundled (RGB) network -> PafCodec -> image pixels gives the reference
    pipeline's people on the float build (poses_float.npy): same people and keypoints, x and y bit for bit,
    keypoint values within 1e-5, pose scores within 1e-4 (measured: 1.3e-6 and 1.5e-5)."""
    from featherpose.codecs.openpose import PafCodec

    network, codec = bundled
    x, scale, (top, left, _, _) = reference_input(cv2.imread(str(LWOP_GOLDEN / entry(sample)["image"]),
                                                              cv2.IMREAD_COLOR))
    heads = {k: v[0] for k, v in run(network, np.ascontiguousarray(x[:, ::-1])).items()}  # BGR -> RGB
    kp, score = PafCodec.from_dict(codec.to_dict(), x.shape[2:], 18).decode_openpose(heads)
    ref, ref_score = golden(sample, "poses_float.npy"), golden(sample, "pose_scores_float.npy")
    assert kp.shape == ref.shape
    present = kp[..., 2] != -1
    np.testing.assert_array_equal(present, ref[..., 2] != -1)
    xy = np.where(present[..., None], (kp[..., :2].astype(np.float64) - [left, top]) / scale, -1)
    np.testing.assert_array_equal(xy.astype(np.float32), ref[..., :2])
    np.testing.assert_allclose(kp[..., 2], ref[..., 2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(score, ref_score, atol=1e-4, rtol=0)
