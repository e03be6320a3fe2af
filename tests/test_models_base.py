"""Shared model behaviour: a family plugs in through ModelFamily and one registry entry; one
query encodes on one thread, and the thread count comes back; named precisions are checked
("auto" is measured: tests/test_precision.py)."""

import pytest
import torch

import imgsearch.models
from imgsearch.errors import ModelUnavailable, UsageError, first_line
from imgsearch.models import FAMILIES, PRESETS, describe_spec, family_of, get_model, list_models, resolve
from imgsearch.models.base import (
    EmbeddingModel,
    ModelFamily,
    check_precision,
    cpu_flag_set,
    one_thread,
    registry,
)


class Toy(EmbeddingModel):
    family, dim = "toy", 3

    def __init__(self, name, device, precision):
        self.spec, self.device, self.precision = f"toy:{name}", device, precision


class ToyFamily(ModelFamily):
    """Models "toy:N" for N a number; a bare "toyN" is one too. Weights are "local" for even N."""

    name = "toy"

    def recognises(self, spec):
        return spec.startswith("toy") and spec[3:].isdigit()

    def canonical(self, name):
        name = name.removeprefix("toy")
        if not name.isdigit():
            raise UsageError(f"toy:{name} is not a number")
        return str(int(name))  # "007" and "7" are one model

    def info(self, name):
        return {"dim": Toy.dim, "offline": True}

    def weights_local(self, name):
        return int(name) % 2 == 0

    def load(self, name, device, precision):
        if not self.weights_local(name):
            raise ModelUnavailable(f"toy:{name} has no weights here")
        return Toy(name, device, precision)


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setattr(imgsearch.models, "FAMILIES", registry(*FAMILIES.values(), ToyFamily()))


def test_a_registered_family_gets_parsing_facts_and_loading(toy_family):
    assert resolve("toy:007") == "toy:7" and resolve("toy12") == "toy:12"
    assert family_of("toy:7").name == "toy"
    assert describe_spec("toy:12") == {"spec": "toy:12", "family": "toy", "dim": 3, "offline": True, "weights_local": True}
    assert describe_spec("toy:7")["weights_local"] is False
    model = get_model("toy:0012", device="cpu", precision="bf16")
    assert (model.spec, model.device, model.precision) == ("toy:12", "cpu", "bf16")
    with pytest.raises(ModelUnavailable, match="toy:7 has no weights"):
        get_model("toy:7", device="cpu")
    with pytest.raises(UsageError, match="not a number"):
        resolve("toy:seven")
    with pytest.raises(UsageError, match=r"openclip\|hf\|bridge\|toy:NAME"):
        resolve("toys")  # no family recognises it: the message names every family


def test_without_the_registry_line_the_family_does_not_exist():
    with pytest.raises(UsageError, match="unknown model spec 'toy:7'"):
        resolve("toy:7")


def test_the_registry_takes_only_model_families_with_free_names():
    class Nameless(ToyFamily):
        name = ""

    class Prefixed(ToyFamily):
        name = "to:y"

    with pytest.raises(TypeError):
        registry(FAMILIES["hf"], object())
    for bad in ((ToyFamily(), ToyFamily()), (Nameless(),), (Prefixed(),)):
        with pytest.raises(ValueError):
            registry(*bad)


def test_every_preset_has_its_dimension_without_loading_weights():
    rows = {row["preset"]: row for row in list_models()}
    assert set(rows) == set(PRESETS)
    for row in rows.values():
        assert isinstance(row["dim"], int) and row["dim"] > 0, row
    assert rows["blip"]["dim"] == 256  # BLIP's ITC projection; its config is not downloaded here
    assert rows["blip"]["weights_local"] is False
    assert rows["fast"]["dim"] == 512 and rows["quality"]["dim"] == 768 and rows["best"]["dim"] == 1024


def test_first_line_keeps_one_line_of_a_library_error():
    assert first_line(OSError("\n  Can't load config.\nTraceback follows")) == "Can't load config."
    assert first_line(ValueError("")) == "ValueError"
    assert len(first_line(RuntimeError("x" * 1000))) == 300


def test_cpu_flags_are_read_from_the_machine():
    assert "fpu" in cpu_flag_set()  # /proc/cpuinfo was read


def test_named_precisions_pass_through_and_unknown_ones_are_refused():
    assert check_precision("int8", "cpu") == "int8"
    assert check_precision("fp32", "cuda") == "fp32"
    with pytest.raises(UsageError, match="unknown precision 'int4'"):
        check_precision("int4", "cpu")
    with pytest.raises(UsageError, match="CPU only"):
        check_precision("int8", "cuda")


def test_overlapping_queries_restore_the_thread_count():
    before = torch.get_num_threads()
    first, second = one_thread(), one_thread()
    first.__enter__()
    second.__enter__()  # a second query (another server thread) starts before the first ends
    assert torch.get_num_threads() == 1
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1  # the second is still encoding
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == before
