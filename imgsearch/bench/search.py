"""ANN search benchmark: FAISS index types against exact search and an rclip-style baseline.

For each collection size N, `run_search_bench` draws N synthetic L2-normalised vectors around
N / cluster_size cluster centres and two query sets (QUERY_SETS):

  same_distribution: drawn like the base vectors, as an image query is (image-to-image: a
      query's nearest base vector has cosine ~0.9);
  modality_gap: like CLIP text queries against image vectors, whose cosine to their best
      matches is ~0.3: each query is an image-like point of the distribution pulled off the
      image vectors along one direction shared by all queries (the gap between the text and
      image cones) plus its own noise, weighted so that the mean cosine of a query to its
      nearest base vector is gap_similarity (modality_gap_queries).

It builds every index type once with `imgsearch.autoindex.build_index` and measures it on each
query set the way autofaiss `score_index` does: k-recall@k against exact search, single-query
latency after warm-up (batch size 1, time.perf_counter), and batched throughput (all queries
in one call). The automatic choice (`choose_factory` + `search_params`) is measured in the
same run, next to two kinds of ratio: exact vs exact (the numpy baseline over FAISS Flat: what
FAISS's scan alone buys) and ANN vs exact (Flat over the automatic index, at the recall the
automatic index reaches).

autoindex's constants were tuned on this bench's runs with AUTOINDEX_TUNED_ON (seed 0, the
same-distribution queries), so the default seed is another one and the modality-gap queries
are new to them: each query set says whether it is held out, and "auto_check" lists the
automatic index's recall against TARGET_RECALL on each.

The returned dict holds plain numbers, strings, lists and dicts (json.dumps works):

    {"config":  every argument and sweep (factories as templates, before {nlist} is filled),
     "machine": bench/machine.py's facts (CPU model and flags, libraries, load average at start
                and end) plus "faiss_threads", "faiss_latency_threads",
     "runs": [{                                    # one per N, in the order of ns
        "n", "n_clusters", "nlist", "pq_m", "factories", "data_s",
        "builds": [{"factory", "build_s", "size_bytes", "estimated_bytes"}
                   | {"factory", "error"}],        # a factory that cannot be built at this N
        "queries": {QUERY_SET: {
            "description", "held_out", "n_queries", "nn_similarity", "ground_truth_s",
            ("gap_weight": w, "gap_similarity_target")   # modality_gap only
            "baseline": {"method", "latency_ms", "recall_at_k"},
            "indexes": [{"factory",                # one per factory built
                         "settings": [{"params", "latency_ms", "batch_qps", "recall_at_k"}],
                         "params_at_target"}],     # fastest p50 at recall >= target, or None
            "auto": {"factory", "params", "build_s", "size_bytes",
                     "latency_ms", "batch_qps", "recall_at_k", "meets_target"},
            "ratios": {"baseline_p50_over_flat_p50",     # exact vs exact; None without Flat
                       "flat_p50_over_auto_p50",         # ANN vs exact; None without Flat, or
                                                         # when auto is Flat (the same measurement)
                       "baseline_p50_over_auto_p50"}}}}],
     "auto_check": [{"n", "query_set", "held_out", "factory", "params", "recall_at_k",
                     "meets_target"}],
     "total_s"}

nn_similarity is {"mean", "p10", "p50", "p90"} of each query's cosine to its nearest base
vector. latency_ms is imgsearch.metrics.latency_summary: {"p50", "p95", "p99", "mean", "n"},
n being how many single queries were timed (fewer when the latency budget ran out, as for
Flat and the baseline at 1M).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from ..autoindex import (
    apply_search_params,
    build_index,
    choose_factory,
    estimated_index_bytes,
    ivf_nlist,
    search_params,
)
from ..errors import UsageError
from ..metrics import ann_recall_at_k, latency_summary
from .machine import finish, machine_facts

# Index templates; {nlist} and {pq_m} are filled per N (autoindex.ivf_nlist, dim // 8).
DEFAULT_FACTORIES = ("Flat", "HNSW32", "IVF{nlist},Flat", "IVF{nlist},SQ8", "IVF{nlist},PQ{pq_m}np")
EF_SEARCH_VALUES = (16, 32, 64, 128, 256)
NPROBE_VALUES = (1, 4, 8, 16, 32, 64, 128, 256)
TARGET_RECALL = 0.95
WARMUP_QUERIES = 10
WARMUP_BUDGET_S = 1.0
MIN_LATENCY_QUERIES = 5
SAMPLE_CHUNK_ROWS = 65_536  # bounds the float32 temporaries while drawing 1M vectors
NOISE_SPECTRUM_DECAY = 0.5  # noise sd of principal direction i ~ (i+1)^-0.5
QUERY_SETS = ("same_distribution", "modality_gap")
GAP_SIMILARITY = 0.3  # CLIP's text-to-image cosine of a caption to its best-matching photos
CALIBRATION_QUERIES = 200  # the gap weight is fitted on this many of the queries ...
CALIBRATION_STEPS = 12  # ... by bisection, to within 1 / 2^12
DEFAULT_SEED = 1
AUTOINDEX_TUNED_ON = {"seed": 0, "cluster_size": 500, "noise": 0.6, "query_set": "same_distribution"}
QUERY_SET_DESCRIPTIONS = {
    "same_distribution": "drawn like the base vectors (image-to-image)",
    "modality_gap": "image-like points pulled along a direction shared by all queries plus their own noise, "
                    "to a mean cosine of {target} with their nearest base vector (text-to-image)",
}


@dataclass(frozen=True)
class ClusteredDistribution:
    """Unit vectors scattered around cluster centres, like embeddings of a photo collection.

    Cluster sizes are uneven (log-normal weights). The noise is not isotropic: its standard
    deviation decays as a power law over randomly rotated directions (about 28 effective
    dimensions at dim 512), since isotropic 512-d noise is far harder for ANN indexes than
    any real embedding. `noise` is the expected norm of the noise relative to a centre.
    """

    centres: np.ndarray  # (n_clusters, dim) unit rows
    weights: np.ndarray  # (n_clusters,) probabilities
    noise_basis: np.ndarray  # (dim, dim): per-direction scale times a random rotation

    @classmethod
    def random(
        cls, dim: int, n_clusters: int, noise: float, rng: np.random.Generator
    ) -> ClusteredDistribution:
        centres = _normalised(rng.standard_normal((n_clusters, dim), dtype=np.float32))
        weights = rng.lognormal(sigma=1.0, size=n_clusters)
        scales = (np.arange(1, dim + 1) ** -NOISE_SPECTRUM_DECAY).astype(np.float32)
        scales *= noise / np.linalg.norm(scales)
        rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        return cls(centres, weights / weights.sum(), scales[:, None] * rotation.astype(np.float32))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dim = self.centres.shape[1]
        points = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, SAMPLE_CHUNK_ROWS):
            rows = min(SAMPLE_CHUNK_ROWS, n - start)
            labels = rng.choice(len(self.centres), size=rows, p=self.weights)
            noise = rng.standard_normal((rows, dim), dtype=np.float32) @ self.noise_basis
            points[start : start + rows] = _normalised(self.centres[labels] + noise)
        return points


def modality_gap_queries(distribution: ClusteredDistribution, base: np.ndarray, n: int, rng: np.random.Generator,
                         target: float = GAP_SIMILARITY) -> tuple[np.ndarray, float]:
    """n text-like unit queries and their weight w: q = w·x + sqrt(1 - w²)·u, x an image-like
    point of the distribution, u a unit vector orthogonal to x made of one gap direction shared
    by all queries plus the query's own isotropic noise. w is bisected so that the first
    CALIBRATION_QUERIES queries have a mean cosine of `target` to their nearest base vector
    (w = 0 when even unrelated queries come closer than that, as at small dim)."""
    dim = base.shape[1]
    anchors = distribution.sample(n, rng)
    gap = _normalised(rng.standard_normal((1, dim), dtype=np.float32))
    away = gap + _normalised(rng.standard_normal((n, dim), dtype=np.float32))
    away -= np.sum(away * anchors, axis=1, keepdims=True) * anchors
    away = _normalised(away)

    def queries(w: float) -> np.ndarray:
        return np.ascontiguousarray(w * anchors + math.sqrt(1 - w * w) * away, dtype=np.float32)

    def nn_mean(w: float) -> float:
        similarities, _ = faiss.knn(queries(w)[:CALIBRATION_QUERIES], base, 1, metric=faiss.METRIC_INNER_PRODUCT)
        return float(similarities.mean())

    low, high = 0.0, 1.0
    for _ in range(CALIBRATION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if nn_mean(middle) < target else (low, middle)
    weight = (low + high) / 2
    return queries(weight), weight


def run_search_bench(
    ns: Sequence[int] = (10_000, 100_000, 1_000_000),
    dim: int = 512,
    factories: Sequence[str] | None = None,
    n_queries: int = 1000,
    k: int = 10,
    seed: int = DEFAULT_SEED,
    progress: Callable[[str], None] | None = None,
    *,
    n_latency_queries: int = 200,
    latency_budget_s: float = 5.0,
    cluster_size: int = 500,
    noise: float = 0.6,
    gap_similarity: float = GAP_SIMILARITY,
    threads: int | None = None,
    latency_threads: int = 1,
) -> dict:
    """Measure every index type at every N in ns on both query sets; see the module docstring.

    factories: index_factory strings, may hold {nlist} / {pq_m}; default DEFAULT_FACTORIES.
    n_queries: queries per query set for recall and batched QPS. Single-query latency times at
    most n_latency_queries of them, stopping once latency_budget_s is spent (at least
    MIN_LATENCY_QUERIES). Each N draws its own collection of N / cluster_size clusters
    (2,000 at 1M), so that a query's neighbours are real neighbours at every N.
    gap_similarity: the modality-gap queries' mean cosine to their nearest base vector.
    threads: faiss OpenMP threads for building and batched search, default os.cpu_count().
    latency_threads: faiss threads for single queries. faiss searches one query on one
    thread anyway; a larger OpenMP team only adds spin-waits, which on 2 busy shared cores
    made a 10k Flat query take 36 ms instead of 1.2 ms. The baseline runs on numpy's BLAS
    threads (set OPENBLAS_NUM_THREADS before starting Python; machine.env records it).
    """
    if not ns or min(ns) < 1 or n_queries < 1 or k < 1 or not 0 < gap_similarity < 1:
        raise UsageError(f"need sizes, queries and k >= 1 and a gap similarity in (0, 1), got ns={list(ns)}, "
                         f"{n_queries} queries, k={k}, gap similarity {gap_similarity}")
    say = progress or (lambda line: None)
    templates = list(DEFAULT_FACTORIES if factories is None else factories)
    threads = threads or os.cpu_count() or 1
    previous_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    machine = machine_facts(faiss_threads=threads, faiss_latency_threads=latency_threads)
    tuned = tuple(AUTOINDEX_TUNED_ON[key] for key in ("seed", "cluster_size", "noise"))
    same_held_out = (seed, cluster_size, noise) != tuned
    try:
        timing = _Timing(n_latency_queries, latency_budget_s, threads, latency_threads)
        runs = []
        for n in ns:
            rng = np.random.default_rng([seed, n])
            t0 = time.perf_counter()
            distribution = ClusteredDistribution.random(dim, max(1, round(n / cluster_size)), noise, rng)
            base = distribution.sample(n, rng)
            same = distribution.sample(n_queries, rng)
            gap, weight = modality_gap_queries(distribution, base, n_queries, np.random.default_rng([seed, n, 1]),
                                               gap_similarity)
            data_s = time.perf_counter() - t0
            say(f"N={n}: drew {n} vectors and 2 x {n_queries} queries of dim {dim} in {data_s:.1f} s "
                f"(gap weight {weight:.3f})")
            query_sets = {
                "same_distribution": (same, {"held_out": same_held_out}),
                "modality_gap": (gap, {"held_out": True, "gap_weight": weight,
                                       "gap_similarity_target": gap_similarity}),
            }
            facts = {"n_clusters": len(distribution.centres), "data_s": data_s}
            runs.append(_run_one_n(base, query_sets, templates, k, timing, say) | facts)
    finally:
        faiss.omp_set_num_threads(previous_threads)
    return {
        "config": {
            "ns": list(ns),
            "dim": dim,
            "factories": templates,
            "n_queries": n_queries,
            "k": k,
            "seed": seed,
            "n_latency_queries": n_latency_queries,
            "latency_budget_s": latency_budget_s,
            "warmup_queries": WARMUP_QUERIES,
            "cluster_size": cluster_size,
            "noise": noise,
            "noise_spectrum_decay": NOISE_SPECTRUM_DECAY,
            "query_sets": list(QUERY_SETS),
            "gap_similarity": gap_similarity,
            "calibration_queries": CALIBRATION_QUERIES,
            "autoindex_tuned_on": AUTOINDEX_TUNED_ON,
            "target_recall": TARGET_RECALL,
            "ef_search_values": list(EF_SEARCH_VALUES),
            "nprobe_values": list(NPROBE_VALUES),
        },
        "machine": finish(machine),
        "runs": runs,
        "auto_check": [
            {"n": run["n"], "query_set": name, "held_out": entry["held_out"],
             **{key: entry["auto"][key] for key in ("factory", "params", "recall_at_k", "meets_target")}}
            for run in runs for name, entry in run["queries"].items()
        ],
        "total_s": time.perf_counter() - started,
    }


def rclip_style_top_k(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """rclip's search (model.py compute_similarities_to_text): a numpy dot product over the
    whole matrix, then Python `sorted` on (score, row) pairs, of which the first k are kept."""
    similarities = vectors @ query
    ranked = sorted(zip(similarities, range(len(vectors))), key=lambda pair: pair[0], reverse=True)
    return [int(ids[row]) for _, row in ranked[:k]]


@dataclass(frozen=True)
class _Timing:
    max_queries: int
    budget_s: float
    threads: int
    latency_threads: int

    def batch(self, search_all: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
        """Seconds and result of one call that searches all queries, on all threads."""
        t0 = time.perf_counter()
        found = search_all()
        return time.perf_counter() - t0, found

    def single_queries(self, search_one: Callable[[int], object], n_queries: int) -> tuple[list[float], list]:
        """Per-query ms and results of search_one(i) for i = 0, 1, ..., after warm-up on the
        last queries so that the timed ones do not start with a cold cache."""
        faiss.omp_set_num_threads(self.latency_threads)
        try:
            return self._single_queries(search_one, n_queries)
        finally:
            faiss.omp_set_num_threads(self.threads)

    def _single_queries(self, search_one, n_queries: int) -> tuple[list[float], list]:
        warm_start = time.perf_counter()
        for i in range(max(0, n_queries - WARMUP_QUERIES), n_queries):
            search_one(i)
            if time.perf_counter() - warm_start > WARMUP_BUDGET_S:
                break
        timings, results = [], []
        start = time.perf_counter()
        for i in range(min(n_queries, self.max_queries)):
            t0 = time.perf_counter()
            results.append(search_one(i))
            timings.append((time.perf_counter() - t0) * 1000)
            if len(timings) >= MIN_LATENCY_QUERIES and time.perf_counter() - start > self.budget_s:
                break
        return timings, results


def _run_one_n(base: np.ndarray, query_sets: dict[str, tuple[np.ndarray, dict]], templates: list[str], k: int,
               timing: _Timing, say: Callable[[str], None]) -> dict:
    n, dim = base.shape
    ids = np.arange(1, n + 1, dtype=np.int64)  # like SQLite row ids, so positions != ids
    nlist, pq_m = ivf_nlist(n), max(1, dim // 8)
    factories = list(dict.fromkeys(t.format(nlist=nlist, pq_m=pq_m) for t in templates))
    auto_factory = choose_factory(n, dim)
    auto_params = search_params(auto_factory, n)
    if auto_factory not in factories:
        factories.append(auto_factory)

    per_set, truth = {}, {}
    for name, (queries, facts) in query_sets.items():
        t0 = time.perf_counter()
        similarities, exact_rows = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        truth[name] = (queries, ids[exact_rows])
        ground_truth_s = time.perf_counter() - t0
        nearest = similarities[:, 0]
        per_set[name] = {
            "description": QUERY_SET_DESCRIPTIONS[name].format(target=facts.get("gap_similarity_target")),
            **facts,
            "n_queries": len(queries),
            "nn_similarity": {"mean": float(nearest.mean()),
                              **{f"p{q}": float(np.percentile(nearest, q)) for q in (10, 50, 90)}},
            "ground_truth_s": ground_truth_s,
            "baseline": _baseline(base, ids, queries, truth[name][1], k, timing),
            "indexes": [],
        }
        say(f"N={n}, {name} queries: nearest-neighbour cosine {nearest.mean():.3f}; rclip-style baseline p50 "
            f"{per_set[name]['baseline']['latency_ms']['p50']:.1f} ms")

    builds = []
    for factory in factories:
        extra = auto_params if factory == auto_factory else {}
        build, measured = _measure_index(factory, base, ids, truth, k, timing, extra, say)
        builds.append(build)
        for name, entry in measured.items():
            per_set[name]["indexes"].append(entry)
    auto_build = next(b for b in builds if b["factory"] == auto_factory)
    for entry in per_set.values():
        entry["auto"], entry["ratios"] = _auto_and_ratios(entry, auto_build, auto_params)
    return {"n": n, "nlist": nlist, "pq_m": pq_m, "factories": factories, "builds": builds, "queries": per_set}


def _baseline(base: np.ndarray, ids: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray, k: int,
              timing: _Timing) -> dict:
    timings, found = timing.single_queries(lambda i: rclip_style_top_k(base, ids, queries[i], k), len(queries))
    return {
        "method": "numpy dot over all vectors + Python sorted((score, row))",
        "latency_ms": latency_summary(timings),
        "recall_at_k": ann_recall_at_k(np.array(found), exact_ids[: len(found)], k),
    }


def _auto_and_ratios(entry: dict, auto_build: dict, auto_params: dict) -> tuple[dict, dict]:
    by_factory = {index["factory"]: index for index in entry["indexes"]}
    factory = auto_build["factory"]
    setting = next(s for s in by_factory[factory]["settings"] if s["params"] == auto_params)
    auto = {
        "factory": factory,
        "params": auto_params,
        "build_s": auto_build["build_s"],
        "size_bytes": auto_build["size_bytes"],
        **{key: setting[key] for key in ("latency_ms", "batch_qps", "recall_at_k")},
        "meets_target": setting["recall_at_k"] >= TARGET_RECALL,
    }
    flat = by_factory.get("Flat")
    flat_p50 = flat["settings"][0]["latency_ms"]["p50"] if flat else None
    baseline_p50, auto_p50 = entry["baseline"]["latency_ms"]["p50"], auto["latency_ms"]["p50"]
    return auto, {
        "baseline_p50_over_flat_p50": baseline_p50 / flat_p50 if flat_p50 is not None else None,
        # when auto is Flat the two are one measurement: their ratio would be 1 by construction
        "flat_p50_over_auto_p50": flat_p50 / auto_p50 if flat_p50 is not None and factory != "Flat" else None,
        "baseline_p50_over_auto_p50": baseline_p50 / auto_p50,
    }


def _measure_index(factory: str, base: np.ndarray, ids: np.ndarray, truth: dict[str, tuple[np.ndarray, np.ndarray]],
                   k: int, timing: _Timing, extra_params: dict, say: Callable[[str], None]) -> tuple[dict, dict]:
    """Build one index, then sweep its search settings on every query set; the index is freed after."""
    n, dim = base.shape
    t0 = time.perf_counter()
    try:
        index = build_index(factory, base, ids)
    except UsageError as e:
        say(f"N={n}: skipping {factory}: {e}")
        return {"factory": factory, "error": str(e)}, {}
    build_s = time.perf_counter() - t0
    size_bytes = int(faiss.serialize_index(index).size)
    say(f"N={n}: built {factory} in {build_s:.1f} s, {size_bytes / 2**20:.1f} MB")
    build = {"factory": factory, "build_s": build_s, "size_bytes": size_bytes,
             "estimated_bytes": _estimate_or_none(factory, n, dim)}
    measured = {}
    for name, (queries, exact_ids) in truth.items():
        settings = []
        for params in _param_grid(index, extra_params):
            apply_search_params(index, params)
            batch_s, found = timing.batch(lambda: index.search(queries, k)[1])
            timings, _ = timing.single_queries(lambda i: index.search(queries[i : i + 1], k), len(queries))
            settings.append({
                "params": params,
                "latency_ms": latency_summary(timings),
                "batch_qps": len(queries) / batch_s,
                "recall_at_k": ann_recall_at_k(found, exact_ids, k),
            })
            say(f"N={n}, {name}: {factory} {params}: p50 {settings[-1]['latency_ms']['p50']:.2f} ms, "
                f"recall@{k} {settings[-1]['recall_at_k']:.3f}")
        at_target = [s for s in settings if s["recall_at_k"] >= TARGET_RECALL]
        fastest = min(at_target, key=lambda s: s["latency_ms"]["p50"]) if at_target else None
        measured[name] = {"factory": factory, "settings": settings,
                          "params_at_target": fastest["params"] if fastest else None}
    return build, measured


def _param_grid(index: faiss.Index, extra_params: dict) -> list[dict]:
    """The search-time settings to measure: efSearch for HNSW, nprobe up to nlist for IVF."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        grid = [{"nprobe": p} for p in NPROBE_VALUES if p <= ivf.nlist]
    elif isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
        grid = [{"efSearch": ef} for ef in EF_SEARCH_VALUES]
    else:
        grid = [{}]
    if extra_params and extra_params not in grid:
        grid.append(extra_params)
    return grid


def _estimate_or_none(factory: str, n: int, dim: int) -> int | None:
    try:
        return estimated_index_bytes(factory, n, dim)
    except ValueError:  # a factory outside the families autoindex chooses from
        return None


def _normalised(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows
