"""End-to-end text query latency on a large index: encode -> FAISS -> metadata, per precision.

The index dir holds n image rows with clustered unit vectors (as if indexed) so that the
search and metadata stages see a real SQLite file and FAISS index of that size; the text tower
is a real architecture (random-initialised ViT-B-32 by default: speed does not need weights).
Unique queries measure what a new query costs; repeated queries measure the query cache.
The baseline is open_clip's own CLIP.encode_text in fp32 on one thread, which runs all 77
context positions where imgsearch stops at the end-of-text token. The result's "machine" holds
bench/machine.py's facts (CPU model and flags, libraries, load average at start and end).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable

import numpy as np
import torch

from .. import metrics
from ..model_rows import register_model
from ..models import get_model
from ..models.base import one_thread
from ..search import Searcher
from ..store import Store
from ..vectors import load_synced, save
from .machine import finish, machine_facts
from .random_models import save_random_openclip
from .search import ClusteredDistribution

WARMUP = 5
DEFAULT_PRECISIONS = ("fp32", "bf16", "int8")
WORDS = ("dog cat beach sunset mountain city car bicycle child birthday cake snow forest river "
         "boat street night market flower garden kitchen portrait dinner concert stadium").split()


def run_query_bench(n: int = 100_000, arch: str = "ViT-B-32", precisions=DEFAULT_PRECISIONS,
                    n_queries: int = 100, k: int = 10, factory: str | None = None,
                    progress: Callable[[str], None] | None = None, spec: str | None = None) -> dict:
    """spec: bench this model instead of a random-initialised `arch`."""
    say = progress or (lambda line: None)
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="imgsearch-query-bench-") as scratch:
        spec = spec or save_random_openclip(os.path.join(scratch, "model"), arch)
        index_dir = os.path.join(scratch, "index")
        t0 = time.perf_counter()
        _fill_index(index_dir, spec, n, factory)
        say(f"index of {n} vectors built in {time.perf_counter() - t0:.1f} s")
        queries = _queries(n_queries)
        baseline = _baseline_encode(spec, queries)
        runs = []
        for precision in precisions:
            searcher = Searcher(spec, index_dir, precision=precision)
            for q in queries[:WARMUP]:
                searcher.text(q + " warm-up", k)
            unique = [searcher.text(q, k).timing_ms for q in queries]
            repeated = [searcher.text(q, k).timing_ms for q in queries]  # served by the query cache
            runs.append({
                "precision": precision,
                "index_type": searcher.vi.factory,
                "unique": {part: metrics.latency_summary([t[part] for t in unique])
                           for part in ("encode", "search", "metadata", "total")},
                "repeated_total": metrics.latency_summary([t["total"] for t in repeated]),
            })
            searcher.close()
            say(f"{precision}: p50 {runs[-1]['unique']['total']['p50']:.1f} ms per new query")
    by = {r["precision"]: r["unique"]["total"]["p50"] for r in runs}
    fastest = min(runs, key=lambda r: r["unique"]["encode"]["p50"])
    return {
        "config": {"n": n, "arch": arch, "spec": spec, "precisions": list(precisions), "n_queries": n_queries, "k": k,
                   "factory": factory or "auto"},
        "baseline_encode": baseline,
        "runs": runs,
        "ratios": {
            "fp32_p50_over_bf16_p50": by["fp32"] / by["bf16"] if {"fp32", "bf16"} <= set(by) else None,
            "fp32_p50_over_int8_p50": by["fp32"] / by["int8"] if {"fp32", "int8"} <= set(by) else None,
            "baseline_encode_p50_over_fastest_encode_p50": (
                baseline["p50"] / fastest["unique"]["encode"]["p50"] if baseline else None),
            "fastest_encode_precision": fastest["precision"],
        },
        "machine": finish(machine),
    }


def _baseline_encode(spec: str, queries: list[str]) -> dict | None:
    """ms per query of open_clip's own encode_text (all 77 positions, fp32, 1 thread)."""
    model = get_model(spec, precision="fp32")
    module, tokenizer = getattr(model, "_model", None), getattr(model, "_tokenizer", None)
    if not hasattr(module, "encode_text") or tokenizer is None:
        return None  # not an open_clip model
    times = []
    with one_thread(), torch.inference_mode():
        for i, q in enumerate(queries[:WARMUP] + queries):
            began = time.perf_counter()
            module.encode_text(tokenizer([q]))
            if i >= WARMUP:
                times.append((time.perf_counter() - began) * 1000)
    return metrics.latency_summary(times)


def _fill_index(index_dir: str, spec: str, n: int, factory: str | None) -> None:
    """n image rows and vectors committed as the indexer would, then the FAISS file saved."""
    model = get_model(spec)
    rng = np.random.default_rng(0)
    vectors = ClusteredDistribution.random(model.dim, max(1, n // 500), 0.6, rng).sample(n, rng)
    store = Store(index_dir)
    row = register_model(store, model, factory)
    with store.atomic():
        store.add_images({"path": f"/bench/photos/{i:07d}.jpg", "status": "ok", "size": 1, "mtime_ns": i,
                          "hash": f"{i:032x}", "width": 4000, "height": 3000} for i in range(n))
        ids = store.image_ids()
        store.put_embeddings(row.id, store.bump_generation(row.id), ids, vectors)
    row = store.model(row.spec)
    vi, _ = load_synced(store, row)
    save(store, row, vi)
    store.close()


def _queries(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    return [f"a photo of a {' '.join(rng.choice(WORDS, size=3, replace=False))} {i}" for i in range(n)]
