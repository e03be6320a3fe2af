"""Precision "auto" by measurement: which precision is fastest for this model on this machine
without changing its vectors.

A rule keyed on CPU flags is wrong somewhere (bf16 runs ~6x fp32 with AMX, ~2x with
AVX512-BF16 alone, ~10x slower on AVX2), so the first use of a model on a machine times each
candidate precision on a small fixed workload, side by side, and keeps the fastest whose
vectors stay within MIN_COSINE of fp32's. The result is cached per machine (CPU model, its
bf16/fp16 flags, torch version, device) and model spec, and `imgsearch doctor` shows it.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..config import cache_dir
from .base import EmbeddingModel, cpu_flag_set, cpu_model

MIN_COSINE = 0.999  # the worst image or text vector, against fp32
MIN_SPEEDUP = 1.10  # a faster precision must win by this much: noise must not pick a lossy one
ROUNDS = 3  # candidates take turns, round by round, so a busy moment falls on all alike
BATCH = 8
TEXTS = ("a photo of a dog", "a red car parked on a street", "two people walking on a beach at sunset",
         "a bowl of fruit on a wooden table", "a snowy mountain", "a cat sleeping on a sofa",
         "a city skyline at night", "a plate of food")
CACHE_VERSION = 1
# Flags that decide how fast half precision runs on a CPU.
RELEVANT_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2", "f16c")


_chosen: dict[str, str] = {}  # cache file -> precision, once read in this process


def candidates(device: str) -> tuple[str, ...]:
    return ("fp32", "fp16", "bf16") if device.startswith("cuda") else ("fp32", "bf16")


def machine_key(device: str) -> dict:
    """What decides which precision wins: the same key on another machine means the same answer."""
    return {
        "cpu": cpu_model(),
        "flags": sorted(cpu_flag_set() & set(RELEVANT_FLAGS)),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else device,
    }


def choose(spec: str, device: str, load: Callable[[str], EmbeddingModel]) -> str:
    """The measured precision for spec on this machine: from the cache, else measured now.
    load(precision) builds the model at that precision."""
    path = cache_path(spec, device)
    if path in _chosen:
        return _chosen[path]
    try:
        with open(path) as f:
            _chosen[path] = json.load(f)["chosen"]
            return _chosen[path]
    except (OSError, ValueError, KeyError):
        pass
    result = measure(spec, device, load)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)  # a concurrent first use writes the same answer; neither sees half a file
    _chosen[path] = result["chosen"]
    return result["chosen"]


def cache_path(spec: str, device: str) -> str:
    key = json.dumps({"v": CACHE_VERSION, "spec": spec, **machine_key(device)}, sort_keys=True)
    return os.path.join(cache_dir(), "precision", hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")


def measured() -> list[dict]:
    """Every cached measurement on this machine (any spec)."""
    folder = os.path.join(cache_dir(), "precision")
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        try:
            with open(os.path.join(folder, name)) as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            continue
    return out


def measure(spec: str, device: str, load: Callable[[str], EmbeddingModel]) -> dict:
    """Time each candidate on the same batch, round by round; compare its vectors with fp32's."""
    models = {p: load(p) for p in candidates(device)}
    reference = models["fp32"]
    pixels = torch.stack([reference.preprocess(image) for image in workload_images()])
    seconds: dict[str, list[float]] = {p: [] for p in models}
    vectors = {}
    for p, model in models.items():  # warm-up at the timed batch size, and the vectors to compare
        vectors[p] = (model.encode_pixels(pixels), _texts(model))
    for _ in range(ROUNDS):
        for p, model in models.items():
            start = time.perf_counter()
            model.encode_pixels(pixels)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[p].append(time.perf_counter() - start)
    rows = {}
    for p in models:
        image_cos = float(np.min(np.sum(vectors[p][0] * vectors["fp32"][0], axis=1)))
        text_cos = (1.0 if vectors[p][1] is None  # an image-only model: nothing to compare
                    else float(np.min(np.sum(vectors[p][1] * vectors["fp32"][1], axis=1))))
        median = statistics.median(seconds[p])
        rows[p] = {"images_per_s": BATCH / median, "seconds": seconds[p], "min_cosine_image": image_cos,
                   "min_cosine_text": text_cos}
    base = rows["fp32"]["images_per_s"]
    for p, row in rows.items():
        row["speedup"] = row["images_per_s"] / base
        row["eligible"] = p == "fp32" or (min(row["min_cosine_image"], row["min_cosine_text"]) >= MIN_COSINE
                                          and row["speedup"] >= MIN_SPEEDUP)
    chosen = max((p for p in rows if rows[p]["eligible"]), key=lambda p: rows[p]["images_per_s"])
    return {"spec": spec, "machine": machine_key(device), "chosen": chosen, "candidates": rows,
            "rule": f"fastest precision with min cosine >= {MIN_COSINE} to fp32 (images and texts) and "
                    f">= {MIN_SPEEDUP}x fp32's images/s; median of {ROUNDS} interleaved rounds, batch {BATCH}",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _texts(model: EmbeddingModel) -> np.ndarray | None:
    try:
        return model.embed_documents(TEXTS)
    except NotImplementedError:
        return None


def workload_images() -> list[Image.Image]:
    """BATCH fixed, photo-sized images with structure (gradients and blocks, not flat noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640] / 480.0
    images = []
    for i in range(BATCH):
        base = np.stack([np.sin(x * (i + 1) * 3), np.cos(y * (i + 2) * 2), np.sin((x + y) * (i + 1))], axis=-1)
        noise = rng.normal(0, 0.1, size=base.shape)
        images.append(Image.fromarray(((base + noise + 1) * 127).clip(0, 255).astype(np.uint8)))
    return images
