"""backend="litert": the network converted by litert-torch, run by Google's LiteRT interpreter (optional extra
featherpose[litert]; skipped without it, as make test does not install it)."""
from __future__ import annotations

import numpy as np
import pytest

import featherpose
from featherpose.image import load_image

from conftest import MEDIA, SAMPLES, golden_image_path

pytest.importorskip("litert_torch", reason="featherpose[litert] is not installed")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    try:
        yield (featherpose.load("movenet-lightning", backend="torch", precision="fp32"),
               featherpose.load("movenet-lightning", backend="litert", threads=1, precision="fp32"))
    finally:
        mp.undo()


def test_litert_keypoints_equal_torch_on_the_golden_samples(pair):
    torch_est, litert_est = pair
    assert litert_est.backend.name == "litert"
    for sample in SAMPLES:
        image = load_image(golden_image_path(sample))
        a, b = torch_est(image, min_score=0).keypoints, litert_est(image, min_score=0).keypoints
        assert np.abs(a[..., :2] - b[..., :2]).max() < 0.5, sample
        assert np.abs(a[..., 2] - b[..., 2]).max() < 1e-3, sample


def test_litert_model_is_converted_once_and_cached(pair, monkeypatch):
    _, litert_est = pair
    converter = litert_est.backend.converter
    monkeypatch.setattr(converter, "convert", lambda *a, **k: (_ for _ in ()).throw(AssertionError("converted again")))
    again = featherpose.runtime.litert.LiteRTBackend(litert_est.network, litert_est.input_hw, 1)
    x = litert_est.preprocess(load_image(MEDIA / "messi5.jpg"))[0]
    np.testing.assert_array_equal(again(x)["heatmap"], litert_est.backend(x)["heatmap"])
