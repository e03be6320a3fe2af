"""Scaling out: the Ray engine against the local one, and the shard -> merge -> on-disk IVF path
at millions of vectors (`imgsearch bench scale`).

(a) engines: the same corpus (bench/corpus.py) indexed with the same random-initialised model
    by the local engine and by the Ray engine on a local Ray cluster of this machine's cores,
    in alternating order over `rounds` rounds, each into a fresh index dir: images/s of each,
    their ratio per round (the goal is >= 0.8), and the cosine between the two engines' vectors
    of each image. The model is loaded in this process before the local runs (loading is not
    indexing); the Ray runs include their actors' start-up and model loading, as a real run
    does. The cluster's own start is timed apart. Each round also times a Ray run of
    PROBE_IMAGES images in PROBE_SHARDS shards (an actor per shard): nearly all start-up, stated
    apart; the steady-state rate estimated from it, (n - PROBE_IMAGES) images over the
    difference of the two runs' times, is labelled as such and is not the goal figure.
(b) vectors: n synthetic unit vectors (bench/search.py's ClusteredDistribution, no model)
    through the path of a Ray run's driver: image rows as phase A leaves them, the plan of
    shards (shards.plan), each shard's Parquet file written and merged into SQLite (merge.py),
    then the model's FAISS index built by the indexer's own catch_up, on disk past the memory
    budget (ondisk.py); then searched as a reader does. Timed per phase, with the peak resident
    memory of each phase (anonymous memory sampled every SAMPLE_S, and VmHWM, which also
    counts the pages of memory-mapped files), bytes per vector in SQLite and in FAISS, and
    single-query latency and recall@10 against exact search (computed streaming over the
    stored vectors) at several nprobe. The setting quoted against the goal ("at_target") is the
    smallest nprobe reaching the target recall on calibration queries drawn apart from the
    measured ones, so the figure is not chosen on the queries it is reported on. Run it under a
    memory limit (a cgroup) to show the whole path fits in it: the limit in force is recorded.
(c) projection: on paper, from (a)'s measured images/s per Ray worker (and an assumed GPU
    worker rate, given as an input, not measured here) and (b)'s bytes, merge rate and build
    time, what 10M and 100M images cost with N workers and 4 models.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

import faiss
import numpy as np

from .. import ondisk, shards
from ..config import cache_dir as default_cache_dir
from ..autoindex import search_params
from ..errors import UsageError
from ..indexer import index_folder
from ..merge import MergeTally, merge_shard
from ..metrics import ann_recall_at_k, latency_summary
from ..models import get_model
from ..ray_engine import connected
from ..ray_options import RayOptions
from ..shards import SHARD_DIR, ShardModel
from ..store import DB_NAME, Store
from ..vectors import AUTO, VectorIndex, catch_up, load_synced, save
from .corpus import build_corpus, corpus_facts
from .indexing import CAMERA_EVERY, cosine_summary, stored_vectors
from .machine import finish, machine_facts
from .random_models import BENCH_ARCH, save_random_openclip
from .search import ClusteredDistribution

DEFAULT_IMAGES = 256
DEFAULT_VECTORS = 5_000_000
DEFAULT_ROUNDS = 2
PROBE_IMAGES = 16
PROBE_SHARDS = 2  # a shard per actor on this 2-core machine, so both actors start as in a full run
SHARD_IMAGES = 4096  # vectors per shard in (b): 8 MB files at dim 512
CLUSTER_SIZE = 500  # (b)'s collection: as bench search draws it (2,000 clusters at 1M)
NOISE = 0.6
SEED = 1
NPROBES = (4, 8, 16, 32, 64)
TARGET_RECALL = 0.9
N_QUERIES = 500
N_CALIBRATION = 200  # queries that choose at_target's nprobe, never measured
K = 10
SAMPLE_S = 0.2
PROJECTED_IMAGES = (10_000_000, 100_000_000)
PROJECTED_WORKERS = (8, 32, 128)
PROJECTED_MODELS = 4
# clip-retrieval's published rate for ViT-B-32 on one RTX 3080 (REFERENCE.md): an input to the
# projection, not a measurement of this project.
ASSUMED_GPU_IMAGES_PER_S = 1500.0


def run_scale_bench(parts: Sequence[str] = ("engines", "vectors"), *, n_images: int = DEFAULT_IMAGES,
                    n_vectors: int = DEFAULT_VECTORS, dim: int = 512, factory: str = AUTO, rounds: int = DEFAULT_ROUNDS,
                    batch_size: int = 32, workers: int | None = None, work_dir: str | None = None,
                    cache_dir: str | None = None, gpu_images_per_s: float = ASSUMED_GPU_IMAGES_PER_S,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Run the parts asked for ("engines": (a), "vectors": (b)); (c) is worked out from both."""
    unknown = set(parts) - {"engines", "vectors"}
    if unknown or not parts or n_images < 8 or n_vectors < 1000 or rounds < 1 or dim < 8:
        raise UsageError(f"need parts from engines, vectors, >= 8 images, >= 1000 vectors, >= 1 round and "
                         f"dim >= 8; got {list(parts)}, {n_images}, {n_vectors}, {rounds}, {dim}")
    say = progress or (lambda line: None)
    started = time.perf_counter()
    machine = machine_facts()
    result: dict = {"config": {"parts": list(parts), "n_images": n_images, "n_vectors": n_vectors, "dim": dim,
                               "factory": factory, "rounds": rounds, "batch_size": batch_size, "workers": workers,
                               "shard_images": SHARD_IMAGES, "nprobes": list(NPROBES), "n_queries": N_QUERIES,
                               "memory_budget_bytes": ondisk.memory_budget(),
                               "gpu_images_per_s_assumed": gpu_images_per_s}}
    root = os.path.join(cache_dir or default_cache_dir(), "bench-scale")
    if "engines" in parts:
        result["engines"] = run_engines(root, n_images, rounds, batch_size, workers, say)
    if "vectors" in parts:
        result["vectors"] = run_vectors(work_dir or root, n_vectors, dim, factory, say)
    result["projection"] = project(result.get("engines"), result.get("vectors"), gpu_images_per_s)
    result["machine"] = finish(machine)
    result["total_s"] = round(time.perf_counter() - started, 2)
    return result


# -- (a) the local engine and the Ray engine on the same images ----------------------------------

def run_engines(root: str, n_images: int, rounds: int, batch_size: int, workers: int | None,
                say: Callable[[str], None]) -> dict:
    say(f"corpus of {n_images} images")
    corpus_started = time.perf_counter()
    folder, paths = build_corpus(os.path.join(root, f"corpus-mixed-{n_images}"), n_images, CAMERA_EVERY)
    corpus = corpus_facts(paths, time.perf_counter() - corpus_started)
    spec = save_random_openclip(os.path.join(root, "models"), BENCH_ARCH)
    model = get_model(spec, precision="fp32")
    cpus = os.cpu_count() or 1
    options = RayOptions(workers=workers, shard_size=shards_for(n_images, cpus))
    probe_folder, _ = build_corpus(os.path.join(root, f"corpus-mixed-{PROBE_IMAGES}"), PROBE_IMAGES, CAMERA_EVERY)
    probe_options = RayOptions(workers=workers, shard_size=PROBE_IMAGES // PROBE_SHARDS)
    say(f"starting a local Ray cluster on {cpus} CPUs")
    cluster_started = time.perf_counter()
    runs, vectors = [], {}
    with connected(None):
        cluster_start_s = time.perf_counter() - cluster_started
        for r in range(rounds):
            order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
            entry = {"order": list(order)}
            for engine in order:
                if engine == "ray":
                    say(f"round {r + 1}/{rounds}: Ray start-up probe ({PROBE_IMAGES} images)")
                    probe = _index_run(probe_folder, spec, batch_size, "ray", probe_options)
                    entry["ray_startup_probe"] = {"images": PROBE_IMAGES, "shards": PROBE_SHARDS,
                                                  "seconds": round(probe.seconds, 2)}
                say(f"round {r + 1}/{rounds}: {engine} engine")
                report = _index_run(folder, spec, batch_size, engine, options,
                                    keep=(lambda d, engine=engine: vectors.setdefault(engine, stored_vectors(d, spec)))
                                    if r == 0 else None)
                embedded = report.embedded[spec]
                entry[engine] = {"seconds": round(report.seconds, 2), "embedded": embedded,
                                 "images_per_s": round(embedded / report.seconds, 2), "notes": report.notes}
            entry["ray_over_local"] = round(entry["ray"]["images_per_s"] / entry["local"]["images_per_s"], 3)
            beyond = entry["ray"]["seconds"] - entry["ray_startup_probe"]["seconds"]
            entry["ray_steady_images_per_s_estimate"] = (round((entry["ray"]["embedded"] - PROBE_IMAGES) / beyond, 2)
                                                         if beyond > 0 else None)
            runs.append(entry)
    common = sorted(set(vectors["local"]) & set(vectors["ray"]))
    ratios = [run["ray_over_local"] for run in runs]
    ray_workers = workers or cpus  # RayOptions default: a worker per CPU
    ray_rate = float(np.median([run["ray"]["images_per_s"] for run in runs]))
    steady = [run["ray_steady_images_per_s_estimate"] for run in runs if run["ray_steady_images_per_s_estimate"]]
    return {
        "corpus": corpus, "spec": spec, "dim": model.dim, "precision": "fp32", "cluster_start_s": round(cluster_start_s, 2),
        "ray_workers": ray_workers, "shard_size": options.shard_size, "rounds": runs,
        "local_images_per_s": float(np.median([run["local"]["images_per_s"] for run in runs])),
        "ray_images_per_s": ray_rate, "ray_images_per_s_per_worker": round(ray_rate / ray_workers, 3),
        "ray_over_local": {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)},
        "ray_startup_probe_s": float(np.median([run["ray_startup_probe"]["seconds"] for run in runs])),
        "ray_steady_images_per_s_estimate": float(np.median(steady)) if steady else None,
        "same_images": len(common) == len(vectors["local"]) == len(vectors["ray"]),
        "cosine_ray_to_local": cosine_summary(np.stack([vectors["ray"][p] for p in common]),
                                              np.stack([vectors["local"][p] for p in common])),
    }


def _index_run(folder: str, spec: str, batch_size: int, engine: str, options: RayOptions, keep=None):
    """One index run into a fresh index dir; keep(index_dir), if given, reads it before it goes."""
    with tempfile.TemporaryDirectory(prefix="imgsearch-bench-scale-") as index_dir:
        report = index_folder(folder, [spec], index_dir, precision="fp32", batch_size=batch_size,
                              workers=None, engine=engine, ray_options=options)
        if keep is not None:
            keep(index_dir)
    return report


def shards_for(n_images: int, workers: int) -> int:
    """A shard size giving every worker a few shards of a small corpus (the CLI default is 512)."""
    return max(8, min(512, n_images // (4 * workers)))


# -- (b) millions of vectors through shards, SQLite and the on-disk IVF -------------------------

def run_vectors(work_dir: str, n: int, dim: int, factory: str, say: Callable[[str], None]) -> dict:
    os.makedirs(work_dir, exist_ok=True)
    index_dir = tempfile.mkdtemp(prefix="vectors-", dir=work_dir)
    phases: dict[str, dict] = {}
    baseline_anon = _status_kb("RssAnon") * 1024  # this process before the run: Python, torch, faiss
    try:
        rng = np.random.default_rng(SEED)
        distribution = ClusteredDistribution.random(dim, max(1, n // CLUSTER_SIZE), NOISE, rng)
        store = Store(index_dir)
        with _Phase("images", phases):
            say(f"{n} image rows, as phase A leaves them")
            row = store.add_model(f"synthetic:dim{dim}", "synthetic", dim, "fp32", {}, {}, factory, "synthetic.faiss")
            with store.atomic():
                store.add_images({"path": f"/photos/{i // 1000:05d}/{i:08d}.jpg", "status": "pending",
                                  "hash": f"{i + 1:032x}"} for i in range(n))  # ids run from 1
        with _Phase("plan", phases):
            say("planning shards")
            target = ShardModel(row.id, row.spec, dim, row.precision, None)
            planned = shards.plan(store, [target], None, SHARD_IMAGES)
        folder = os.path.join(index_dir, SHARD_DIR)
        write_s = merge_s = 0.0
        merged = MergeTally()
        with _Phase("shards_and_merge", phases):
            for number, shard in enumerate(planned):
                if number % 100 == 0:
                    say(f"shard {number + 1}/{len(planned)}: written as Parquet, merged into SQLite")
                t0 = time.perf_counter()
                vectors, n_shard = distribution.sample(len(shard), rng), len(shard)
                table = shards.build_table(
                    [target], {"image_id": shard.image_ids.tolist(), "error": [None] * n_shard,
                               "hash": [f"{i:032x}" for i in shard.image_ids.tolist()], "width": [640] * n_shard,
                               "height": [480] * n_shard, "taken_at": [None] * n_shard, "camera": [None] * n_shard},
                    {row.id: list(vectors)})
                shards.write(table, shard.file(folder))
                t1 = time.perf_counter()
                merge_shard(store, shard, [target], folder, merged)
                write_s += t1 - t0
                merge_s += time.perf_counter() - t1
        n_shards = len(planned)
        del planned  # a Ray run's driver drops its plan before the FAISS build too
        store.checkpoint()
        sqlite_bytes = sum(os.path.getsize(os.path.join(index_dir, name)) for name in os.listdir(index_dir)
                           if name.startswith(DB_NAME))
        row = store.model(row.spec)
        with _Phase("faiss_build", phases):
            say("building the FAISS index (catch_up, as at the end of an index run)")
            vi = VectorIndex.empty("Flat", dim)
            catch_up(store, row, vi)
            save(store, row, vi)
        faiss_file = os.path.join(index_dir, row.index_file)
        data = ondisk.data_file(vi.index)
        faiss_bytes = os.path.getsize(faiss_file) + (os.path.getsize(data) if data else 0)
        factory = vi.factory
        del vi
        with _Phase("search", phases):
            say("searching as a reader does")
            search = measure_search(store, store.model(row.spec), distribution, rng, say)
        store.close()
    finally:
        shutil.rmtree(index_dir, ignore_errors=True)
    return {
        "n": n, "dim": dim, "shards": n_shards, "shard_images": SHARD_IMAGES,
        "factory": factory, "on_disk": data is not None,
        "phases": phases,
        "shard_write_s": round(write_s, 2), "merge_s": round(merge_s, 2),
        "merge_vectors_per_s": round(n / merge_s, 1),
        "sqlite_bytes": sqlite_bytes, "sqlite_bytes_per_vector": round(sqlite_bytes / n, 1),
        "faiss_bytes": faiss_bytes, "faiss_bytes_per_vector": round(faiss_bytes / n, 1),
        "faiss_build_s": phases["faiss_build"]["seconds"],
        "baseline_anon_bytes": baseline_anon,
        "peak_anon_bytes": max(p["peak_anon_bytes"] for p in phases.values()),
        "search": search,
    }


def measure_search(store: Store, row, distribution: ClusteredDistribution, rng, say) -> dict:
    """A reader's load, then recall@10 against exact search and single-query latency per nprobe;
    at_target is chosen on calibration queries and reported on the measured ones."""
    t0 = time.perf_counter()
    vi, _ = load_synced(store, row)
    load_s = time.perf_counter() - t0
    queries = distribution.sample(N_QUERIES, rng)
    calibration = distribution.sample(N_CALIBRATION, rng)
    say("exact top-10 of every query, streaming over the stored vectors")
    exact = exact_top_k(store, row, np.concatenate([queries, calibration]), K)
    exact, exact_calibration = exact[:N_QUERIES], exact[N_QUERIES:]
    default = search_params(vi.factory, vi.ntotal).get("nprobe")
    ivf = faiss.extract_index_ivf(vi.index)
    settings = []
    for nprobe in NPROBES if ivf is not None else (None,):
        if ivf is not None:
            ivf.nprobe = min(nprobe, ivf.nlist)
        found_calibration = np.stack([vi.search(q, K)[1][0] for q in calibration])
        passes = []
        for _ in range(2):  # the first pass reads lists from disk, the second finds them in the page cache
            found, ms = [], []
            for q in queries:
                t = time.perf_counter()
                found.append(vi.search(q, K)[1][0])
                ms.append((time.perf_counter() - t) * 1e3)
            passes.append(latency_summary(ms))
        settings.append({"nprobe": nprobe, "latency_ms": passes[0], "warm_latency_ms": passes[1],
                         "recall_at_10": ann_recall_at_k(np.stack(found), exact, K),
                         "calibration_recall_at_10": ann_recall_at_k(found_calibration, exact_calibration, K)})
    meeting = [s for s in settings if s["calibration_recall_at_10"] >= TARGET_RECALL]
    return {"load_s": round(load_s, 2), "default_nprobe": default, "n_queries": N_QUERIES,
            "n_calibration_queries": N_CALIBRATION, "settings": settings,
            "at_target": meeting[0] if meeting else None}


def exact_top_k(store: Store, row, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top k, merging each batch's top k into the running one."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for ids, vectors in store.iter_embeddings(row.id, row.dim, batch=100_000):
        scores, rows = faiss.knn(queries, vectors, min(k, len(ids)), metric=faiss.METRIC_INNER_PRODUCT)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, ids[rows]], axis=1)
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, order, axis=1)
        best_ids = np.take_along_axis(all_ids, order, axis=1)
    return best_ids


class _Phase:
    """Time, peak anonymous memory (RssAnon, sampled) and VmHWM (reset at the start) of one phase."""

    def __init__(self, name: str, into: dict):
        self.name, self.into = name, into

    def __enter__(self):
        self.started = time.perf_counter()
        self.peak_reset = _reset_hwm()
        self.peak_anon = _status_kb("RssAnon")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stop.wait(SAMPLE_S):
            self.peak_anon = max(self.peak_anon, _status_kb("RssAnon"))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak_anon = max(self.peak_anon, _status_kb("RssAnon"))
        self.into[self.name] = {"seconds": round(time.perf_counter() - self.started, 2),
                                "peak_anon_bytes": self.peak_anon * 1024,
                                "vm_hwm_bytes": _status_kb("VmHWM") * 1024, "hwm_reset": self.peak_reset}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- (c) on paper ---------------------------------------------------------------------------

def project(engines: dict | None, vectors: dict | None, gpu_images_per_s: float) -> dict:
    """Hours and bytes for PROJECTED_IMAGES x PROJECTED_MODELS models with N workers, scaled
    linearly from the measured figures (the IVF build grows faster: nlist grows with sqrt(N))."""
    rates = {"gpu_worker_assumed": gpu_images_per_s}
    if engines:
        rates["cpu_worker_measured"] = engines["ray_images_per_s_per_worker"]
    rows = []
    for n in PROJECTED_IMAGES:
        vectors_total = n * PROJECTED_MODELS
        row = {"images": n, "models": PROJECTED_MODELS, "embed_hours": {}}
        for kind, rate in rates.items():
            row["embed_hours"][kind] = {str(w): round(vectors_total / (rate * w) / 3600, 2) for w in PROJECTED_WORKERS}
        if vectors:
            scale = vectors_total / vectors["n"]
            row["sqlite_bytes"] = round(vectors["sqlite_bytes_per_vector"] * vectors_total)
            row["faiss_bytes"] = round(vectors["faiss_bytes_per_vector"] * vectors_total)
            row["merge_hours"] = round(vectors_total / vectors["merge_vectors_per_s"] / 3600, 2)
            # per model: n vectors, built one model after another; IVF assignment costs N * nlist
            per_model = n / vectors["n"]
            row["faiss_build_hours_at_least"] = round(
                PROJECTED_MODELS * vectors["faiss_build_s"] * per_model * np.sqrt(per_model) / 3600, 2)
            row["scale_from_measured"] = round(scale, 1)
        rows.append(row)
    return {"rates_images_per_s": rates, "workers": list(PROJECTED_WORKERS), "rows": rows}


# -- text output ------------------------------------------------------------------------------

def scale_lines(result: dict) -> list[str]:
    from_machine = result["machine"]
    flags = " ".join(from_machine.get("cpu_flags") or []) or "none of note"
    lines = [f"machine: {from_machine.get('cpu_model')}, {from_machine.get('cpu_count')} cores, flags {flags}; "
             f"load average {from_machine['load_average_start'][0]:.2f} -> {from_machine['load_average_end'][0]:.2f}"
             + (f"; memory limit {from_machine['memory_limit_bytes'] / 2**30:.2f} GiB"
                if from_machine.get("memory_limit_bytes") else "; no memory limit")]
    engines = result.get("engines")
    if engines:
        lines.append(f"(a) {engines['corpus']['n_images']} images, {engines['spec'].split('/')[-1]} fp32, batch "
                     f"{result['config']['batch_size']}: local {engines['local_images_per_s']:.1f} img/s, Ray "
                     f"{engines['ray_images_per_s']:.1f} img/s ({engines['ray_workers']} workers): ray/local "
                     f"{engines['ray_over_local']['median']:.2f} (rounds {engines['ray_over_local']['min']:.2f}-"
                     f"{engines['ray_over_local']['max']:.2f}); min cosine ray-local "
                     f"{engines['cosine_ray_to_local']['min']:.6f}; cluster start {engines['cluster_start_s']:.1f} s")
        steady = engines.get("ray_steady_images_per_s_estimate")
        lines.append(f"    Ray start-up probe ({PROBE_IMAGES} images, actor start-up and model load): "
                     f"{engines['ray_startup_probe_s']:.1f} s; Ray steady state past it (estimate, not the goal "
                     f"figure): {steady:.1f} img/s" if steady else "    Ray steady state: not estimable")
    vectors = result.get("vectors")
    if vectors:
        peak = max(p["vm_hwm_bytes"] for p in vectors["phases"].values())
        lines.append(f"(b) {vectors['n']} vectors, dim {vectors['dim']}, {vectors['shards']} shards: {vectors['factory']}"
                     f"{' on disk' if vectors['on_disk'] else ' in memory'}; merge {vectors['merge_vectors_per_s']:.0f} "
                     f"vectors/s, FAISS build {vectors['faiss_build_s']:.0f} s; peak anon "
                     f"{vectors['peak_anon_bytes'] / 2**30:.2f} GiB (VmHWM with mapped files {peak / 2**30:.2f} GiB); "
                     f"bytes/vector SQLite {vectors['sqlite_bytes_per_vector']:.0f}, FAISS {vectors['faiss_bytes_per_vector']:.0f}")
        for s in vectors["search"]["settings"]:
            chosen = " (at target: chosen on the calibration queries)" if s == vectors["search"]["at_target"] else ""
            lines.append(f"    nprobe {s['nprobe']}{chosen}: recall@10 {s['recall_at_10']:.3f} (calibration "
                         f"{s['calibration_recall_at_10']:.3f}), first pass p50 "
                         f"{s['latency_ms']['p50']:.2f} ms (p99 {s['latency_ms']['p99']:.2f}), second pass p50 "
                         f"{s['warm_latency_ms']['p50']:.2f} ms (p99 {s['warm_latency_ms']['p99']:.2f})")
    for row in result["projection"]["rows"]:
        hours = "; ".join(f"{kind} x{w}: {h} h" for kind, by in row["embed_hours"].items() for w, h in by.items())
        lines.append(f"(c) {row['images']:,} images x {row['models']} models: embed {hours}"
                     + (f"; SQLite {row['sqlite_bytes'] / 1e9:.0f} GB, FAISS {row['faiss_bytes'] / 1e9:.0f} GB"
                        if "sqlite_bytes" in row else ""))
    return lines
