"""Precision "auto" is measured on the machine: fastest precision whose vectors match fp32's."""

import json
import time

import numpy as np
import pytest
import torch

from imgsearch.models import concrete_precision, get_model, precision
from imgsearch.models.base import EmbeddingModel


class Timed(EmbeddingModel):
    """A model whose speed and accuracy per precision the test decides."""

    family, dim = "fake", 16

    def __init__(self, precision_name: str, delay: float, noise: float):
        self.spec, self.precision = "fake:timed", precision_name
        self.delay, self.noise = delay, noise
        generator = torch.Generator().manual_seed(0)
        self.w = torch.randn(3 * 8 * 8, self.dim, generator=generator)

    def preprocess(self, image):
        return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32) / 255).permute(2, 0, 1)

    def preprocess_config(self):
        return {"size": 8}

    def _perturb(self, x):
        return x + self.noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))

    def _encode_pixels(self, batch):
        time.sleep(self.delay)
        return self._perturb(batch.flatten(1) @ self.w)

    def _encode_texts(self, texts):
        return self._perturb(torch.stack([self.w[len(t) % 100] for t in texts]))


def loader(settings: dict, calls: list):
    def load(p):
        calls.append(p)
        return Timed(p, *settings[p])
    return load


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_chosen", {})


def test_a_faster_precision_with_the_same_vectors_is_chosen():
    calls = []
    load = loader({"fp32": (0.05, 0.0), "bf16": (0.0, 0.0)}, calls)
    assert precision.choose("fake:timed", "cpu", load) == "bf16"
    result = precision.measured()[0]
    assert result["chosen"] == "bf16" and result["candidates"]["bf16"]["speedup"] > precision.MIN_SPEEDUP
    assert result["candidates"]["bf16"]["min_cosine_image"] == pytest.approx(1.0)


def test_a_faster_precision_that_changes_the_vectors_is_not():
    load = loader({"fp32": (0.05, 0.0), "bf16": (0.0, 0.5)}, [])
    assert precision.choose("fake:timed", "cpu", load) == "fp32"
    row = precision.measured()[0]["candidates"]["bf16"]
    assert row["min_cosine_image"] < precision.MIN_COSINE and not row["eligible"]


def test_an_equally_fast_precision_leaves_fp32():
    load = loader({"fp32": (0.02, 0.0), "bf16": (0.02, 0.0)}, [])
    assert precision.choose("fake:timed", "cpu", load) == "fp32"


def test_the_measurement_is_cached_per_machine_and_torch_version(monkeypatch):
    calls = []
    load = loader({"fp32": (0.0, 0.0), "bf16": (0.0, 0.0)}, calls)
    precision.choose("fake:timed", "cpu", load)
    assert sorted(calls) == ["bf16", "fp32"]
    precision.choose("fake:timed", "cpu", load)
    assert len(calls) == 2  # remembered: nothing loaded
    precision._chosen.clear()  # as in a new process
    precision.choose("fake:timed", "cpu", load)
    assert len(calls) == 2  # from the cache file: nothing loaded
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    precision.choose("fake:timed", "cpu", load)
    assert len(calls) == 4  # another torch is another machine
    assert len(precision.measured()) == 2


def test_a_damaged_cache_file_is_measured_again():
    calls = []
    load = loader({"fp32": (0.0, 0.0), "bf16": (0.0, 0.0)}, calls)
    precision.choose("fake:timed", "cpu", load)
    with open(precision.cache_path("fake:timed", "cpu"), "w") as f:
        f.write("{not json")
    precision._chosen.clear()  # as in a new process
    precision.choose("fake:timed", "cpu", load)
    assert len(calls) == 4
    with open(precision.cache_path("fake:timed", "cpu")) as f:
        assert json.load(f)["chosen"] in ("fp32", "bf16")


def test_the_machine_key_names_the_cpu_and_its_half_precision_flags():
    key = precision.machine_key("cpu")
    assert key["cpu"] and key["torch"] == torch.__version__
    assert set(key["flags"]) <= set(precision.RELEVANT_FLAGS)


def test_auto_resolves_through_the_registry_to_a_measured_precision(tiny_openclip):
    chosen = concrete_precision(tiny_openclip, "auto", "cpu")
    assert chosen in precision.candidates("cpu")
    assert get_model(tiny_openclip, device="cpu").precision == chosen
    (result,) = precision.measured()
    assert result["spec"] == tiny_openclip and result["chosen"] == chosen
    assert concrete_precision(tiny_openclip, "int8", "cpu") == "int8"  # asked by name: not measured
