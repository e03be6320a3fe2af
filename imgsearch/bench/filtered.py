"""Filtered search benchmark: folder and date filters inside FAISS, against exact filtered search.

An index dir holds n image rows (as if indexed) spread over FOLDERS folders at random, with
capture dates spread at random over ten years, and clustered unit vectors (bench/search.py's
distribution), so folders and dates are unrelated to content, the hard case for a filter
inside an ANN index: the kept vectors are scattered over every cluster. The queries go through
the real path (Searcher.vector: filter -> ids -> FAISS selector -> metadata), at batch size 1
after warm-up; the timing is the whole search (filter, FAISS and metadata; no text encoding).

For each index type and filter: latency, k-recall@k against exact search over the kept
vectors (numpy), how many queries got k results, and the same for the naive alternative,
the unfiltered top `POST_FILTER_DEPTH` trimmed to the filter, which comes back short.

The returned dict (json.dumps works):
    {"config", "machine",
     "runs": [{"factory", "index_type", "build_s",
               "filters": [{"name", "kind", "fraction", "matched", "latency_ms", "recall_at_k",
                            "full_k_share", "post_filter": {"recall_at_k", "full_k_share"}}]}],
     "goal": {"n", "fraction", "p50_ms", "recall_at_k", "met"}, "total_s"}
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from .. import metrics
from ..filters import SearchFilter
from ..model_rows import register_model
from ..models import get_model
from ..search import Searcher
from ..store import Store
from ..vectors import load_synced, save
from .machine import finish, machine_facts
from .random_models import save_probe_openclip
from .search import ClusteredDistribution
from .summary import machine_line

FOLDERS = 100  # a 1% folder filter is one folder
FIRST_DAY = np.datetime64("2015-01-01")
DAYS = 3652
DEFAULT_FRACTIONS = (0.01, 0.1, 0.5)
DEFAULT_FACTORIES = ("auto", "Flat", "HNSW32")
WARMUP = 10
POST_FILTER_DEPTH = 100
GOAL = {"n": 100_000, "fraction": 0.01, "p50_ms": 5.0, "recall_at_k": 0.95}


def run_filter_bench(n: int = 100_000, factories=DEFAULT_FACTORIES, fractions=DEFAULT_FRACTIONS,
                     n_queries: int = 200, k: int = 10, seed: int = 1,
                     progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda line: None)
    machine = machine_facts()
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="imgsearch-filter-bench-") as scratch:
        spec = save_probe_openclip(os.path.join(scratch, "model"))  # dim 512; its weights are never run here
        dim = get_model(spec).dim
        distribution = ClusteredDistribution.random(dim, max(1, n // 500), 0.6, rng)
        vectors = distribution.sample(n, rng)
        folder_of = rng.integers(0, FOLDERS, size=n)
        day_of = rng.integers(0, DAYS, size=n)
        queries = distribution.sample(n_queries + WARMUP, rng)
        runs = []
        for factory in factories:
            index_dir = os.path.join(scratch, f"index-{len(runs)}")
            t0 = time.perf_counter()
            _fill_index(index_dir, spec, vectors, folder_of, day_of, None if factory == "auto" else factory)
            build_s = time.perf_counter() - t0
            searcher = Searcher(spec, index_dir)
            say(f"{factory} ({searcher.vi.factory}): {n} vectors in {build_s:.1f} s")
            ids = np.asarray(searcher.store.image_ids(), dtype=np.int64)  # insertion order = row order
            run = {"factory": factory, "index_type": searcher.vi.factory, "build_s": build_s, "filters": []}
            for fraction in fractions:
                for kind, search_filter, kept in _filters(fraction, folder_of, day_of, ids):
                    entry = _measure(searcher, queries, vectors, ids, kept, search_filter, k)
                    entry.update({"name": f"{kind} {fraction:g}", "kind": kind, "fraction": fraction})
                    run["filters"].append(entry)
                    say(f"  {kind} {fraction:g}: p50 {entry['latency_ms']['p50']:.2f} ms, recall@{k} "
                        f"{entry['recall_at_k']:.3f}, {entry['full_k_share']:.0%} got {k} "
                        f"(post-filter top-{POST_FILTER_DEPTH}: {entry['post_filter']['full_k_share']:.0%})")
            searcher.close()
            runs.append(run)
    goal = _goal(n, runs)
    return {"config": {"n": n, "dim": dim, "factories": list(factories), "fractions": list(fractions),
                       "n_queries": n_queries, "k": k, "seed": seed, "folders": FOLDERS, "days": DAYS,
                       "post_filter_depth": POST_FILTER_DEPTH},
            "runs": runs, "goal": goal, "machine": finish(machine), "total_s": time.perf_counter() - started}


def _fill_index(index_dir: str, spec: str, vectors: np.ndarray, folder_of: np.ndarray, day_of: np.ndarray,
                factory: str | None) -> None:
    model = get_model(spec)
    store = Store(index_dir)
    row = register_model(store, model, factory)
    dates = (FIRST_DAY + day_of.astype("timedelta64[D]")).astype(str)
    with store.atomic():
        store.add_images({"path": f"/bench/photos/folder-{folder_of[i]:03d}/{i:07d}.jpg", "status": "ok",
                          "size": 1, "mtime_ns": 0, "hash": f"{i:032x}", "width": 4000, "height": 3000,
                          "taken_at": dates[i].replace("-", ":") + " 12:00:00", "camera": "Bench Camera"}
                         for i in range(len(vectors)))
        store.put_embeddings(row.id, store.bump_generation(row.id), store.image_ids(), vectors)
    row = store.model(row.spec)
    vi, _ = load_synced(store, row)
    save(store, row, vi)
    store.close()


def _filters(fraction: float, folder_of: np.ndarray, day_of: np.ndarray, ids: np.ndarray):
    """(kind, SearchFilter, kept row mask) for a folder filter and a date filter keeping ~fraction."""
    folders = max(1, round(fraction * FOLDERS))
    yield ("folder", SearchFilter.parse([f"/bench/photos/folder-{j:03d}" for j in range(folders)]),
           folder_of < folders)
    days = max(1, round(fraction * DAYS))
    end = FIRST_DAY + np.timedelta64(days, "D")
    yield ("date", SearchFilter.parse(before=str(end)), day_of < days)


def _measure(searcher: Searcher, queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, kept: np.ndarray,
             search_filter: SearchFilter, k: int) -> dict:
    for q in queries[:WARMUP]:
        searcher.vector(q, k, search_filter)
    timed = queries[WARMUP:]
    kept_ids = ids[kept]
    exact = kept_ids[np.argsort(-(timed @ vectors[kept].T), axis=1, kind="stable")[:, :k]]
    times, found, post = [], [], []
    for q in timed:
        result = searcher.vector(q, k, search_filter)
        times.append(result.timing_ms["total"])
        found.append(_padded([r["id"] for r in result.results], k))
        _, deep = searcher.vi.search(q, POST_FILTER_DEPTH)
        kept_set = set(kept_ids.tolist())
        post.append(_padded([int(i) for i in deep[0] if int(i) in kept_set][:k], k))
    found, post = np.array(found), np.array(post)
    return {"matched": int(kept.sum()), "latency_ms": metrics.latency_summary(times),
            "recall_at_k": metrics.ann_recall_at_k(found, exact, k), "full_k_share": float(np.mean((found >= 0).sum(1) == k)),
            "post_filter": {"recall_at_k": metrics.ann_recall_at_k(post, exact, k),
                            "full_k_share": float(np.mean((post >= 0).sum(1) == k))}}


def _padded(ids: list[int], k: int) -> list[int]:
    return (ids + [metrics.FAISS_PADDING] * k)[:k]


def _goal(n: int, runs: list[dict]) -> dict | None:
    auto = next((r for r in runs if r["factory"] == "auto"), None)
    if auto is None or n != GOAL["n"]:
        return None
    rows = [f for f in auto["filters"] if f["fraction"] == GOAL["fraction"]]
    if not rows:
        return None
    worst = max(rows, key=lambda f: f["latency_ms"]["p50"])
    recall = min(f["recall_at_k"] for f in rows)
    return {**GOAL, "index_type": auto["index_type"], "p50_ms_measured": worst["latency_ms"]["p50"],
            "recall_at_k_measured": recall,
            "met": worst["latency_ms"]["p50"] <= GOAL["p50_ms"] and recall >= GOAL["recall_at_k"]}


def filter_lines(result: dict) -> list[str]:
    k = result["config"]["k"]
    lines = [machine_line(result["machine"]),
             f"{'index':<28} {'filter':<12} {'kept':>7} {'p50 ms':>7} {'p95 ms':>7} {f'R@{k}':>6} "
             f"{'got k':>6}  {f'post-filter top-{POST_FILTER_DEPTH}: R@{k}, got k'}"]
    for run in result["runs"]:
        for f in run["filters"]:
            lines.append(f"{run['factory'] + ' (' + run['index_type'] + ')':<28} {f['name']:<12} {f['matched']:>7} "
                         f"{f['latency_ms']['p50']:>7.2f} {f['latency_ms']['p95']:>7.2f} {f['recall_at_k']:>6.3f} "
                         f"{f['full_k_share']:>6.0%}  {f['post_filter']['recall_at_k']:.3f}, "
                         f"{f['post_filter']['full_k_share']:.0%}")
    goal = result.get("goal")
    if goal:
        lines.append(f"goal (n {goal['n']}, {goal['fraction']:.0%} kept, auto index): p50 {goal['p50_ms_measured']:.2f} ms "
                     f"<= {goal['p50_ms']} and R@{k} {goal['recall_at_k_measured']:.3f} >= {goal['recall_at_k']}: "
                     f"{'met' if goal['met'] else 'NOT met'}")
    return lines
