"""Shared model behaviour: one query encodes on one thread, and the thread count comes back;
"auto" precision follows the hardware."""

import pytest
import torch

from imgsearch.errors import UsageError
from imgsearch.models.base import (
    auto_precision,
    concrete_precision,
    cpu_flag_set,
    one_thread,
)


@pytest.mark.parametrize("device, flags, expected", [
    ("cuda", set(), "fp16"),
    ("cuda:1", {"amx_bf16"}, "fp16"),
    ("cpu", {"avx2", "amx_bf16", "amx_tile"}, "bf16"),  # Sapphire Rapids and later
    ("cpu", {"avx2", "avx512f", "avx512_bf16"}, "bf16"),  # Zen 4, Cooper Lake
    ("cpu", {"avx2", "avx512f"}, "fp32"),  # bf16 emulated: ~10x slower than fp32
    ("cpu", set(), "fp32"),
])
def test_auto_precision_picks_what_the_hardware_runs_fast(device, flags, expected):
    assert auto_precision(device, flags) == expected


def test_auto_on_this_machine_reads_its_cpu_flags():
    assert concrete_precision("auto", "cpu") == auto_precision("cpu", cpu_flag_set())
    assert "fpu" in cpu_flag_set()  # /proc/cpuinfo was read


def test_named_precisions_pass_through_and_unknown_ones_are_refused():
    assert concrete_precision("int8", "cpu") == "int8"
    assert concrete_precision("fp32", "cuda") == "fp32"
    with pytest.raises(UsageError, match="unknown precision 'int4'"):
        concrete_precision("int4", "cpu")
    with pytest.raises(UsageError, match="CPU only"):
        concrete_precision("int8", "cuda")


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
