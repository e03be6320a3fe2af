"""Stage 7: run a labelled query set through each model's real index; measure quality and cost.

Every query goes through the path users run (encode -> FAISS -> metadata) at batch size 1.
Recall@k and nDCG@10 are read off that real top-k, so an approximate index shows its loss;
the first relevant rank (MRR, mean and median rank) is taken over the whole collection from
exact scores on the stored vectors. With the default exact index the two agree (up to ties).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import metrics
from .datasets import EvalSet
from .errors import UsageError
from .indexer import NullProgress, default_index_dir, index_folder
from .models import get_model, resolve, slug
from .models.base import concrete_precision, default_device
from .search import Searcher
from .store import Store
from .vectors import index_path

DEFAULT_KS = (1, 5, 10)
WARMUP_QUERIES = 5
THROUGHPUT_SAMPLE = 64  # images re-embedded in a scratch index when the real one was up to date


def eval_index_dir(dataset: EvalSet, precision: str) -> str:
    """By default an eval collection gets its own index dir, never mixed with the user's photos,
    one per precision: an index built at another precision would not measure this one."""
    return os.path.join(default_index_dir(), "eval", slug(f"{dataset.format}:{dataset.root}"), precision)


def evaluate(
    dataset: EvalSet,
    model_specs: list[str],
    index_dir: str | None = None,
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    factory: str | None = None,
    precisions: Sequence[str] = ("auto",),
    progress=NullProgress,
    status: Callable[[str], None] = lambda line: None,
) -> dict:
    ks = tuple(sorted(set(ks)))
    for k in ks:
        if k < 1:
            raise UsageError(f"-k must be a positive integer, got {k}")
    if not dataset.queries:
        raise UsageError(f"{dataset.name}: no queries")
    specs = list(dict.fromkeys(resolve(s) for s in model_specs))
    device = default_device()
    precisions = list(dict.fromkeys(concrete_precision(p, device) for p in precisions or ("auto",)))
    # Several precisions of one model are separate runs, each indexed at its own precision.
    runs = [(spec, precision, spec if len(precisions) == 1 else f"{spec}@{precision}",
             _run_index_dir(index_dir, dataset, precision, len(precisions) > 1))
            for spec in specs for precision in precisions]
    results = {
        "dataset": {
            "name": dataset.name, "format": dataset.format, "root": dataset.root, "lang": dataset.lang,
            "split": dataset.split, "images": len(dataset.images), "queries": len(dataset.queries),
            "captioned_images": len(dataset.captions_per_image), "pairs": len(dataset.pairs),
            "notes": dataset.notes,
        },
        "ks": list(ks),
        "index_dirs": sorted({run[3] for run in runs}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "definitions": DEFINITIONS,
        "models": [],
    }
    prepared = []
    for spec, precision, label, run_dir in runs:
        status(f"indexing the dataset with {label}")
        prepared.append(_prepare(dataset, spec, precision, label, run_dir, factory, progress, status))
    k_max = max(max(ks), 10)
    _run_queries(dataset, prepared, k_max, progress, status)
    for run in prepared:
        results["models"].append(_summarise(dataset, run, ks, k_max))
        run["searcher"].close()
    return results


DEFINITIONS = {
    "t2i_recall@k": "text->image: each query scores 1 if any relevant image is in its top-k of the real "
                    "search; mean over all queries (an image with 5 captions gives 5 queries)",
    "i2t_recall@k": "image->text: each captioned image scores 1 if any of its captions is in its top-k; "
                    "mean over images",
    "mrr": "mean over queries of 1 / rank of the first relevant image over the whole collection",
    "ndcg@10": "binary gains on the real top-10, ideal DCG from min(#relevant, 10)",
    "mean_rank / median_rank": "of the first relevant image over the whole collection (1-based); "
                               "ties count against the model",
    "pairwise_accuracy": "share of pairs where sim(image, positive) > max sim(image, negatives)",
    "ann_recall@k": "k-recall@k of the index's top-k against exact search on the same vectors",
    "latency_ms": "per query at batch size 1 after warm-up queries, the models taking turns query by "
                  "query so that machine noise falls on all alike; percentiles by linear interpolation",
}


def _run_index_dir(given: str | None, dataset: EvalSet, precision: str, several: bool) -> str:
    if given is None:
        return eval_index_dir(dataset, precision)
    return os.path.join(given, precision) if several else given


def _prepare(dataset, spec, precision, label, index_dir, factory, progress, status) -> dict:
    """Load, index (re-using an up-to-date index) and open a searcher for one model."""
    t0 = time.perf_counter()
    model = get_model(spec, precision=precision)
    load_s = time.perf_counter() - t0
    rss_after_load = _rss_mb()
    wanted = set(dataset.images)
    report = index_folder(_common_root(dataset.images), [spec], index_dir, factory=factory,
                          precision=precision, progress=progress, include=wanted.__contains__)
    missing = len(dataset.images) - _count_indexed(index_dir, spec, dataset.images)
    if missing:
        status(f"{label}: {missing} dataset images could not be indexed (see `imgsearch index` summary)")
    searcher = Searcher(spec, index_dir, precision=precision)
    ids = _image_ids(searcher, dataset.images)
    vectors, present = _collection_vectors(searcher, ids)
    relevant = [{i for i in rel if present[i]} for rel in dataset.relevant_indices()]
    usable = [q for q, rel in enumerate(relevant) if rel]
    if not usable:
        raise UsageError(f"{label}: no query has a relevant image in the index")
    return {
        "spec": spec, "label": label, "model": model, "searcher": searcher, "ids": ids, "vectors": vectors, "present": present,
        "relevant": relevant, "usable": usable, "per_query": [], "precision": precision,
        "timings": {"encode": [], "search": [], "metadata": [], "total": []},
        "cost": {"load_s": load_s, "rss_mb_after_load": rss_after_load,
                 "indexing": _indexing_throughput(report, spec, dataset, precision)},
    }


def _run_queries(dataset, prepared, k_max, progress, status) -> None:
    """Every query through every model's real search path, the models taking turns."""
    for run in prepared:
        for q in run["usable"][:WARMUP_QUERIES]:
            run["searcher"].text(dataset.queries[q].text, k_max)
        run["searcher"].clear_cache()  # measured queries must encode, as a new user's would
        run["todo"] = set(run["usable"])
    order = sorted(set().union(*(run["usable"] for run in prepared)))
    status(f"{len(order)} queries through the real search path of {len(prepared)} models")
    bar = progress(total=len(order), desc="queries")
    for q in order:
        for run in prepared:
            if q not in run["todo"]:
                continue
            result = run["searcher"].text(dataset.queries[q].text, k_max)
            for key, values in run["timings"].items():
                values.append(result.timing_ms[key])
            run["per_query"].append({
                "query": dataset.queries[q].text,
                "relevant": sorted(dataset.images[i] for i in run["relevant"][q]),
                "topk": [r["path"] for r in result.results],
                "timing_ms": {k: round(v, 4) for k, v in result.timing_ms.items()},
            })
        bar.update(1)
    bar.close()


def _summarise(dataset, run, ks, k_max) -> dict:
    model, searcher, vectors, present = run["model"], run["searcher"], run["vectors"], run["present"]
    usable, per_query = run["usable"], run["per_query"]
    t1 = time.perf_counter()
    query_vectors = model.embed_documents([dataset.queries[q].text for q in usable])
    encode_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    _, ann_ids = searcher.vi.search(query_vectors, k_max)
    search_s = time.perf_counter() - t2

    exact_ranks = _first_ranks(query_vectors, vectors, [run["relevant"][q] for q in usable])
    for record, rank in zip(per_query, exact_ranks):
        record["first_relevant_rank"] = int(rank)

    summary = {
        "label": run["label"],
        "spec": run["spec"],
        "family": model.family,
        "dim": model.dim,
        "device": model.device,
        "precision": run["precision"],
        "index_precision": searcher.row.precision,  # the precision the stored vectors were made at
        "factory": searcher.vi.factory,  # the concrete type searched (the request may be "auto")
        "t2i": t2i_metrics(per_query, ks),
        "latency_ms": {key: metrics.latency_summary(v) for key, v in run["timings"].items()},
        "batched": {
            "queries": len(usable),
            "encode_qps": len(usable) / encode_s if encode_s else None,
            "search_qps": len(usable) / search_s if search_s else None,
            "qps": len(usable) / (encode_s + search_s) if encode_s + search_s else None,
        },
        "cost": {
            **run["cost"],
            "index_bytes": os.path.getsize(index_path(searcher.store, searcher.row)),
            "vector_bytes": int(vectors[present].nbytes),
            "peak_rss_mb": _peak_rss_mb(),
        },
        "images_indexed": int(present.sum()),
        "queries": per_query,
    }
    if searcher.vi.factory != "Flat":
        exact_top = np.argsort(-(query_vectors @ vectors[present].T), axis=1)[:, :k_max]
        ids = np.asarray(run["ids"])[present]
        summary["ann_recall@k"] = {
            f"@{k}": metrics.ann_recall_at_k(ann_ids, ids[exact_top], k) for k in ks
        }
    if dataset.captions_per_image:
        summary["i2t"] = _i2t(dataset, vectors, present, model, ks)
    if dataset.pairs:
        summary["pairwise_accuracy"] = _pairwise(dataset, vectors, model)
    return summary


def t2i_metrics(per_query: list[dict], ks) -> dict:
    """Aggregates recomputable from results.json's per-query records alone."""
    real_first = [metrics.first_relevant_rank_from_ranking(r["topk"], set(r["relevant"])) for r in per_query]
    exact_first = [r["first_relevant_rank"] for r in per_query]
    out = {f"recall@{k}": metrics.recall_at_k(real_first, k) for k in ks}
    out["ndcg@10"] = metrics.ndcg_at_k([r["topk"] for r in per_query], [set(r["relevant"]) for r in per_query], 10)
    out["mrr"] = metrics.mrr(exact_first)
    out["mean_rank"] = metrics.mean_rank(exact_first)
    out["median_rank"] = metrics.median_rank(exact_first)
    out["queries"] = len(per_query)
    return out


def _first_ranks(query_vectors, vectors, relevant, block: int = 1024) -> np.ndarray:
    out = []
    for start in range(0, len(query_vectors), block):
        scores = query_vectors[start:start + block] @ vectors.T
        out.append(metrics.first_relevant_ranks(scores, relevant[start:start + block]))
    return np.concatenate(out)


def _i2t(dataset, vectors, present, model, ks) -> dict:
    texts = [q.text for q in dataset.queries]
    text_vectors = model.embed_documents(texts)
    relevant = dataset.image_to_text_relevant()
    images = [i for i in relevant if present[i]]
    ranks = _first_ranks(vectors[images], text_vectors, [relevant[i] for i in images])
    out = {f"recall@{k}": metrics.recall_at_k(ranks, k) for k in ks}
    out["mrr"] = metrics.mrr(ranks)
    out["images"] = len(images)
    return out


def _pairwise(dataset, vectors, model) -> dict:
    position = {p: i for i, p in enumerate(dataset.images)}
    pos, neg = [], []
    for pair in dataset.pairs:
        image = vectors[position[pair.image]]
        texts = model.embed_documents([pair.positive, *pair.negatives])
        pos.append(float(texts[0] @ image))
        neg.append([float(t @ image) for t in texts[1:]])
    return {"accuracy": metrics.pairwise_accuracy(pos, neg), "pairs": len(pos)}


def _collection_vectors(searcher: Searcher, ids: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Stored vectors in collection order (ids: each image's row id); unindexed rows are zero."""
    vectors = np.zeros((len(ids), searcher.row.dim), np.float32)
    present = np.zeros(len(ids), bool)
    position = {image_id: i for i, image_id in enumerate(ids) if image_id is not None}
    for batch_ids, batch in searcher.store.iter_embeddings(searcher.row.id, searcher.row.dim):
        for image_id, vector in zip(batch_ids.tolist(), batch):
            if image_id in position:
                vectors[position[image_id]] = vector
                present[position[image_id]] = True
    return vectors, present


def _image_ids(searcher: Searcher, images: list[str]) -> list[int | None]:
    return [searcher.store.image_id(p) for p in images]


def _count_indexed(index_dir: str, spec: str, images: list[str]) -> int:
    store = Store(index_dir)
    row = store.model(spec)
    stored = set(store.embedding_ids(row.id).tolist())
    n = sum(1 for p in images if store.image_id(p) in stored)
    store.close()
    return n


def _indexing_throughput(report, spec: str, dataset: EvalSet, precision: str) -> dict:
    embedded = report.embedded.get(spec, 0)
    if embedded >= min(THROUGHPUT_SAMPLE // 2, len(dataset.images)):
        return {"images": embedded, "seconds": report.seconds, "images_per_s": embedded / report.seconds,
                "source": "this run"}
    sample = set(dataset.images[:THROUGHPUT_SAMPLE])
    with tempfile.TemporaryDirectory(prefix="imgsearch-throughput-") as scratch:
        sample_report = index_folder(_common_root(sorted(sample)), [spec], scratch, precision=precision,
                                     include=sample.__contains__)
    n = sample_report.embedded[spec]
    return {"images": n, "seconds": sample_report.seconds,
            "images_per_s": n / sample_report.seconds if sample_report.seconds else None,
            "source": f"sample of {n} images in a scratch index (the real index was up to date)"}


def _common_root(paths: list[str]) -> str:
    root = os.path.commonpath(paths)
    return root if os.path.isdir(root) else os.path.dirname(root)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """High-water mark of this process so far (Linux reports KiB): cumulative over models."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
