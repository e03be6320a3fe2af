"""What every benchmark reports beside its figures (the machine, its CPU flags, its load), and
the runner of the child processes whose peak RSS a benchmark measures.

The CPU's flags decide how fast each precision runs (bf16 is ~6x fp32 with AMX and ~10x
slower on AVX2 alone; int8 rides on VNNI / AMX-INT8), and other work on shared cores
inflates every timing, so each result carries both, under the same keys in every bench.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import torch

from ..errors import ImgsearchError
from ..models.base import cpu_flag_set, cpu_model
from ..models.precision import RELEVANT_FLAGS

# The flags that decide half-precision speed (models/precision.py) and those int8 uses.
CPU_FLAGS = (*RELEVANT_FLAGS, "amx_int8", "avx512_vnni", "avx_vnni")
BF16_UNITS = frozenset({"amx_bf16", "avx512_bf16"})
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
                   "KMP_BLOCKTIME")
LIBRARIES = ("torch", "open_clip_torch", "faiss-cpu", "numpy", "pillow")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def machine_facts(**extra) -> dict:
    """The machine as a bench starts: CPU, flags, threads, libraries, load; plus `extra`.
    finish() adds the load average at the end."""
    flags = cpu_flag_set()
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": sorted(f for f in CPU_FLAGS if f in flags),
        "bf16_native": bool(flags & BF16_UNITS),  # bf16 units: a fact, not the precision rule
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "env": {name: os.environ[name] for name in THREAD_ENV_VARS if name in os.environ},
        "memory_limit_bytes": memory_limit(),
        **extra,
        "load_average_start": load_average(),
    }


def finish(machine: dict) -> dict:
    machine["load_average_end"] = load_average()
    return machine


def memory_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 memory.max or v1 memory.limit_in_bytes),
    None when there is none: a bench run inside a limit shows that the work fits in it."""
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, path in entries:
        if controllers == "":
            candidate = os.path.join("/sys/fs/cgroup", path.lstrip("/"), "memory.max")
        elif "memory" in controllers.split(","):
            candidate = os.path.join("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.limit_in_bytes")
        else:
            continue
        try:
            with open(candidate) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or the v1 near-2**63 value: no limit
            return int(text)
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- child processes ------------------------------------------------------------------------

def run_module(module: str, args: list) -> dict:
    """`python -m module ARGS_JSON` offline; the JSON object its last stdout line holds."""
    done = subprocess.run([sys.executable, "-m", module, json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, **OFFLINE_ENV})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ImgsearchError(f"the bench's child process {module} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def status_kb(field: str, pid: int | str = "self") -> int:
    """A field of /proc/PID/status in kB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
