"""How `imgsearch index --engine ray` runs on a cluster: plain settings, importable without Ray
(Ray is an optional extra; the engine itself is ray_engine.py)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from .errors import UsageError

ENGINES = ("local", "ray")
INSTALL_HINT = "this needs Ray: pip install 'imgsearch-bench[ray]'"
DEFAULT_SHARD_IMAGES = 512  # mean images per shard: ~1 MB of vectors per 512-d model


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # "auto", "ray://HOST:PORT"; None: a cluster already joined, or a local one
    workers: int | None = None  # actors per model, at most; None: as many as the cluster's resources allow
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    shard_size: int = DEFAULT_SHARD_IMAGES

    def check(self) -> "RayOptions":
        if self.gpus_per_worker < 0 or self.cpus_per_worker <= 0:
            raise UsageError("--gpus-per-worker must be >= 0 and --cpus-per-worker > 0")
        if self.workers is not None and self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.shard_size < 1:
            raise UsageError("the shard size must be at least 1")
        return self


def import_with_ray(module: str) -> ModuleType:
    """A module that needs the ray extra (Ray, pyarrow), imported when first needed, so that
    imgsearch works without it; UsageError with the install line when it is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] in ("ray", "pyarrow"):
            raise UsageError(INSTALL_HINT) from None
        raise
