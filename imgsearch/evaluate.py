"""Stage 7: run a labelled query set through each model's real index; measure quality and cost.

Every measured query goes through the path users run (encode -> FAISS -> metadata) at batch
size 1, and encodes its text: the searcher's query cache is cleared before each, so no cache
hit is ever timed, repeated texts included. All quality figures of a query are read off one
ranking (metrics.served_first_relevant_ranks): the images its real search returned, ordered by
the exact scores of the query vector that search used against the stored vectors, then the
rest of the collection; ties count against the model. So a query's top-k and its first
relevant rank cannot disagree, and every figure comes from the same query vectors at every
precision. Every model answers the same queries; each one's load time and memory are
measured in a process of its own, away from the other models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import metrics, stats
from .compose import Term, describe, query_terms
from .datasets import EvalSet, Query
from .config import default_index_dir
from .errors import ImgsearchError, UsageError
from .indexer import index_folder
from .models import concrete_precision, get_model, resolve, slug
from .models.base import default_device
from .progress import NullProgress
from .search import Searcher
from .vectors import index_path

DEFAULT_KS = (1, 5, 10)
WARMUP_QUERIES = 5
THROUGHPUT_SAMPLE = 64  # images re-embedded in a scratch index when the real one was up to date
COST_QUERIES = 50  # queries the isolated cost process answers; memory peaks within a few
ALPHA = stats.ALPHA  # evaluate_languages reads it here
NDCG_DEPTH = 10
LEFT_OUT_SHOWN = 5  # texts of left-out queries named in the results


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
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
    isolated_cost: bool = True,
    progress=NullProgress,
    status: Callable[[str], None] = lambda line: None,
) -> dict:
    """isolated_cost: measure each model's load time and memory in a fresh process (a few
    seconds per model); without it those figures are left out."""
    ks = tuple(sorted(set(ks)))
    for k in ks:
        metrics.check_k(k)
    stats.check_resamples(resamples)
    if not dataset.queries:
        raise UsageError(f"{dataset.name}: no queries")
    specs = list(dict.fromkeys(resolve(s) for s in model_specs))
    device = default_device()
    precisions = list(dict.fromkeys(precisions or ("auto",)))
    # Several precisions of one model are separate runs, each indexed at its own precision;
    # "auto" is the one measured fastest for that model on this machine.
    runs = [(spec, precision, spec if len(precisions) == 1 else f"{spec}@{precision}",
             _run_index_dir(index_dir, dataset, precision, len(precisions) > 1))
            for spec in specs
            for precision in dict.fromkeys(concrete_precision(spec, p, device) for p in precisions)]
    prepared = []
    for spec, precision, label, run_dir in runs:
        status(f"indexing the dataset with {label}")
        prepared.append(_prepare(dataset, spec, precision, label, run_dir, factory, progress, status))
    query_set = _query_set(dataset, prepared)
    if query_set["left_out"]:
        status(f"{len(query_set['left_out'])} queries left out: none of their relevant images is indexed "
               "by every model")
    k_max = max(max(ks), NDCG_DEPTH)
    try:
        _run_queries(dataset, prepared, query_set["measured"], k_max, progress, status)
        models = [_summarise(dataset, run, query_set, ks, k_max, resamples, seed) for run in prepared]
    finally:
        for run in prepared:
            run["searcher"].close()
    if isolated_cost:
        texts = [dataset.queries[q].text for q in query_set["measured"][:COST_QUERIES]]
        for run, model in zip(prepared, models):
            status(f"measuring {run['label']}'s load time and memory in a process of its own")
            model["cost"].update(_cost_in_own_process(run, texts, k_max, status))
    comparisons = _uncertainty(models, ks, resamples, seed)
    return {
        "dataset": {
            "name": dataset.name, "format": dataset.format, "root": dataset.root, "lang": dataset.lang,
            "split": dataset.split, "images": len(dataset.images), "queries": len(dataset.queries),
            "captioned_images": len(dataset.captions_per_image), "pairs": len(dataset.pairs),
            "relevance": dataset.relevance, "notes": dataset.notes,
        },
        "query_set": {
            "measured": len(query_set["measured"]),
            "left_out": len(query_set["left_out"]),
            "left_out_first": [dataset.queries[q].text for q in query_set["left_out"][:LEFT_OUT_SHOWN]],
            "images_indexed_by_every_model": len(query_set["images"]),
            "rule": "the same queries for every model: those with a relevant image indexed by every model",
        },
        "ks": list(ks),
        "index_dirs": sorted({run[3] for run in runs}),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "definitions": definitions(dataset.relevance, resamples, seed),
        "uncertainty": stats.uncertainty(resamples, seed),
        "models": models,
        "comparisons": comparisons,
    }


RELEVANCE_TEXT = {
    "own-image": "own-image (CLIP_benchmark's rule): a caption is relevant to the image it was written for only",
    "shared-caption": "shared-caption: a caption is relevant to every image carrying exactly the same text",
    "listed": "as listed by the dataset (qrels, or the members of a class folder)",
}


def definitions(relevance: str, resamples: int, seed: int) -> dict:
    return {
        "relevance": RELEVANCE_TEXT[relevance],
        "ranking": "one ranking per query, from the query vector its real search encoded: the images that "
                   "search returned, by exact score (float64 sums rounded to float32) against the stored "
                   "vectors, then from position k_max + 1 (k_max: the search's depth, max(largest k, 10)) "
                   "every other image of the index in the same order; "
                   "equal scores: a non-relevant image ranks ahead of a relevant one (ties count against the "
                   "model), then the lower image id. Every t2i figure below and each query's top-k and first "
                   "relevant rank come from it, so they never disagree",
        "t2i_recall@k": "text->image: a query scores 1 if its first relevant rank is <= k; mean over queries "
                        "(an image with 5 captions gives 5 queries)",
        "mean_recall@k": "mean of t2i recall@k over the report's k; the figure models are ranked by",
        "mrr": "mean over queries of 1 / first relevant rank",
        "ndcg@10": "binary gains on the ranking's top 10, ideal DCG from min(#relevant, 10)",
        "mean_rank / median_rank": "of the first relevant image in the ranking (1-based)",
        "i2t_recall@k": "image->text: each captioned image scores 1 if any of its relevant captions is in its "
                        "top-k of exact scores over every caption's query vector; ties count against the model; "
                        "mean over images",
        "pairwise_accuracy": "share of pairs where sim(image, positive) > max sim(image, negatives)",
        "ann_recall@k": "k-recall@k of the real search's top-k against exact search with the same query vectors",
        **stats.definitions(resamples, seed),
        "latency_ms": "per query at batch size 1 after warm-up queries, the models taking turns query by "
                      "query so that machine noise falls on all alike; every measured query encodes its text "
                      "(the query cache is cleared before each, so no cache hit is timed); per-query encode / "
                      "search / metadata / total in each query record; percentiles by linear interpolation",
        "cost": f"load time and memory measured in a fresh process per model that loads it alone, opens its "
                f"index and answers up to {COST_QUERIES} of the queries (RSS before load, after load, peak); "
                "other models never share that process",
    }


def _run_index_dir(given: str | None, dataset: EvalSet, precision: str, several: bool) -> str:
    if given is None:
        return eval_index_dir(dataset, precision)
    return os.path.join(given, precision) if several else given


def _prepare(dataset, spec, precision, label, index_dir, factory, progress, status) -> dict:
    """Index (re-using an up-to-date index) and open a searcher for one model; load its vectors."""
    wanted = set(dataset.images)
    report = index_folder(_common_root(dataset.images), [spec], index_dir, factory=factory,
                          precision=precision, progress=progress, include=wanted.__contains__)
    searcher = Searcher(spec, index_dir, precision=precision)
    ids, vectors = _stored_vectors(searcher)
    position = {int(image_id): n for n, image_id in enumerate(ids)}
    # Per dataset image, the row of its vector in `vectors`; -1 when it has none.
    rows = np.array([position.get(searcher.store.image_id(p), -1) for p in dataset.images], dtype=np.int64)
    missing = int((rows < 0).sum())
    if missing:
        status(f"{label}: {missing} dataset images could not be indexed (see `imgsearch index` summary)")
    return {
        "spec": spec, "label": label, "precision": precision, "index_dir": index_dir, "searcher": searcher,
        "ids": ids, "vectors": vectors, "position": position, "rows": rows,
        "query_vectors": [], "plain_vectors": [], "served": [], "paths": {}, "timings": [],
        "indexing": _indexing_throughput(report, spec, dataset, precision),
    }


def _query_set(dataset: EvalSet, prepared: list[dict]) -> dict:
    """The queries every model answers: those with a relevant image indexed by every model."""
    everywhere = set(np.flatnonzero(np.all([run["rows"] >= 0 for run in prepared], axis=0)).tolist())
    relevant = dataset.relevant_indices()
    measured = [q for q, rel in enumerate(relevant) if rel & everywhere]
    if not measured:
        raise UsageError(f"{dataset.name}: no query has a relevant image indexed by every model")
    left_out = [q for q, rel in enumerate(relevant) if not rel & everywhere]
    return {"measured": measured, "left_out": left_out, "relevant": relevant, "images": sorted(everywhere)}


def _run_queries(dataset, prepared, measured, k_max, progress, status) -> None:
    """Every query through every model's real search path, the models taking turns."""
    for run in prepared:
        for q in measured[:WARMUP_QUERIES]:
            run["searcher"].clear_cache()  # a warm-up answered from the cache would warm nothing
            run["searcher"].text(dataset.queries[q].text, k_max)
    status(f"{len(measured)} queries through the real search path of {len(prepared)} models")
    bar = progress(total=len(measured), desc="queries")
    for q in measured:
        text, terms = dataset.queries[q].text, query_terms_of(dataset.queries[q])
        for run in prepared:
            searcher = run["searcher"]
            searcher.clear_cache()  # measured queries encode, repeated texts too: no cache hit is timed
            result = searcher.text(text, k_max) if terms is None else searcher.terms(terms, k_max)
            # the vector that search used (its texts are cached by now)
            run["query_vectors"].append(searcher.encode_text(text) if terms is None else searcher.query_vector(terms))
            run["plain_vectors"].append(searcher.encode_text(text))
            run["timings"].append(result.timing_ms)
            served = []
            for hit in result.results:
                if hit["id"] not in run["position"]:
                    raise ImgsearchError(f"{run['label']}: the index changed during the evaluation; run it again")
                served.append(run["position"][hit["id"]])
                run["paths"][hit["id"]] = hit["path"]
            run["served"].append(served)
        bar.update(1)
    bar.close()


def _summarise(dataset, run, query_set, ks, k_max, resamples, seed) -> dict:
    searcher, vectors, ids = run["searcher"], run["vectors"], run["ids"]
    model = searcher.model
    measured = query_set["measured"]
    query_vectors = np.stack(run["query_vectors"])
    rows = run["rows"]
    relevant = [{int(rows[i]) for i in query_set["relevant"][q] if rows[i] >= 0} for q in measured]
    records, exact_top = [], []
    for start in range(0, len(measured), 1024):
        scores = metrics.exact_scores(query_vectors[start:start + 1024], vectors)
        block = range(start, start + len(scores))
        ranks = metrics.served_first_relevant_ranks(
            scores, [run["served"][n] for n in block], [relevant[n] for n in block], k_max)
        for row, n, rank in zip(scores, block, ranks):
            order = metrics.served_order(row, run["served"][n], relevant[n])
            records.append({
                "query": query_label(dataset.queries[measured[n]]),
                "relevant": sorted(dataset.images[i] for i in query_set["relevant"][measured[n]] if rows[i] >= 0),
                "topk": [run["paths"][int(ids[p])] for p in order],
                "first_relevant_rank": int(rank),
                "timing_ms": {key: round(value, 4) for key, value in run["timings"][n].items()},
            })
            if searcher.vi.factory != "Flat":
                exact_top.append(np.lexsort((np.arange(len(row)), -row))[:k_max])
    timings = {key: [t[key] for t in run["timings"]] for key in ("encode", "search", "metadata", "total")}
    summary = {
        "label": run["label"],
        "spec": run["spec"],
        "family": model.family,
        "dim": model.dim,
        "device": model.device,
        "precision": run["precision"],
        "index_precision": searcher.row.precision,  # the precision the stored vectors were made at
        "factory": searcher.vi.factory,  # the concrete type searched (the request may be "auto")
        "t2i": t2i_metrics(records, ks),
        "latency_ms": {key: metrics.latency_summary(values) for key, values in timings.items()},
        "batched": _batched_throughput(searcher, [dataset.queries[q].text for q in measured], k_max),
        "cost": {
            "indexing": run["indexing"],
            "index_bytes": os.path.getsize(index_path(searcher.store, searcher.row)),
            "vector_bytes": int(vectors.nbytes),
        },
        "images_indexed": len(ids),
        "queries": records,
    }
    if exact_top:
        served_ids = np.full((len(measured), k_max), metrics.FAISS_PADDING, dtype=np.int64)
        for n, served in enumerate(run["served"]):
            served_ids[n, :len(served)] = ids[served]
        exact_ids = _padded(ids, exact_top, k_max)
        summary["ann_recall@k"] = {f"@{k}": metrics.ann_recall_at_k(served_ids, exact_ids, k) for k in ks}
    composed = [n for n, q in enumerate(measured) if query_terms_of(dataset.queries[q]) is not None]
    if composed:
        summary["composition"] = _composition(run, composed, relevant, query_vectors, ks, resamples, seed)
    if dataset.captions_per_image:
        text_vectors = _text_vectors(dataset, model, measured, query_vectors)
        summary["i2t"] = _i2t(dataset, run, query_set, text_vectors, ks)
    if dataset.pairs:
        summary["pairwise_accuracy"] = _pairwise(dataset, run, model)
    return summary


def query_terms_of(query: Query) -> list[Term] | None:
    """A dataset query's terms when it is compositional (plus/minus), else None."""
    if not query.plus and not query.minus:
        return None
    return query_terms(query.text, plus=query.plus, minus=query.minus)


def query_label(query: Query) -> str:
    terms = query_terms_of(query)
    return query.text if terms is None else describe(terms)


def _composition(run: dict, composed: list[int], relevant: list[set[int]], query_vectors: np.ndarray, ks,
                 resamples: int, seed: int) -> dict:
    """The effect of the plus/minus terms, per model: exact-search recall of the composed queries
    with their terms and with their main text alone, on the same relevant images."""
    plain = np.stack([run["plain_vectors"][n] for n in composed])
    wanted = [relevant[n] for n in composed]
    ranks = {name: metrics.first_relevant_ranks(metrics.exact_scores(vectors, run["vectors"]), wanted)
             for name, vectors in (("with_terms", query_vectors[composed]), ("text_only", plain))}
    values = {name: rank_values(r, ks) for name, r in ranks.items()}
    out = {"queries": len(composed),
           "rule": "exact search over the indexed vectors; text_only drops plus/minus; difference: per query "
                   "with_terms - text_only, its mean, paired bootstrap 95% interval and sign-flip p-value over "
                   "the composed queries (the evaluation's resamples and seed)"}
    for name, per_query in values.items():
        out[name] = {key: float(np.mean(v)) for key, v in per_query.items()}
    out.update(composition_effect(values["with_terms"], values["text_only"], resamples, seed))
    out["first_relevant_ranks"] = {name: [int(r) for r in rs] for name, rs in ranks.items()}
    return out


def rank_values(ranks, ks) -> dict[str, np.ndarray]:
    """Each query's recall@k hit and reciprocal rank, from its first relevant rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {**{f"recall@{k}": (ranks <= k).astype(np.float64) for k in ks}, "mrr": 1.0 / ranks}


def composition_effect(with_terms: dict[str, np.ndarray], text_only: dict[str, np.ndarray], resamples: int,
                       seed: int) -> dict:
    """Per figure, the mean per-query difference with_terms - text_only, its paired bootstrap
    interval and p-value; every figure is resampled with the same queries (the same seed)."""
    effects = {key: stats.paired_comparison(with_terms[key], text_only[key], resamples, seed) for key in with_terms}
    return {"difference": {key: e["difference"] for key, e in effects.items()},
            "difference_ci95": {key: e["ci95"] for key, e in effects.items()},
            "difference_p_value": {key: e["p_value"] for key, e in effects.items()}}


def per_query_values(records: list[dict], ks) -> dict[str, np.ndarray]:
    """Each query's contribution to each t2i figure; every mean (and interval) is over these."""
    ranks = np.array([r["first_relevant_rank"] for r in records], dtype=np.float64)
    values = {f"recall@{k}": (ranks <= k).astype(np.float64) for k in ks}
    values["mean_recall@k"] = np.mean([values[f"recall@{k}"] for k in ks], axis=0)
    values["mrr"] = 1.0 / ranks
    values["ndcg@10"] = metrics.ndcg_per_query([r["topk"] for r in records], [set(r["relevant"]) for r in records],
                                               NDCG_DEPTH)
    return values


def t2i_metrics(records: list[dict], ks) -> dict:
    """Aggregates recomputable from results.json's per-query records alone."""
    out = {key: float(np.mean(values)) for key, values in per_query_values(records, ks).items()}
    ranks = [r["first_relevant_rank"] for r in records]
    out["mean_rank"] = metrics.mean_rank(ranks)
    out["median_rank"] = metrics.median_rank(ranks)
    out["queries"] = len(records)
    return out


def _uncertainty(models: list[dict], ks, resamples: int, seed: int) -> list[dict]:
    """A bootstrap interval for every t2i figure of every model (model["t2i_ci95"]) and a
    paired comparison for every pair of models on every figure (returned)."""
    values = [per_query_values(m["queries"], ks) for m in models]
    texts = [[r["query"] for r in m["queries"]] for m in models]
    if any(t != texts[0] for t in texts):
        raise ImgsearchError("models answered different query sets; a paired comparison needs the same")
    intervals, comparisons = stats.intervals_and_comparisons([m["label"] for m in models], values, resamples, seed)
    for model, interval in zip(models, intervals):
        model["t2i_ci95"] = interval
    return comparisons


def _batched_throughput(searcher: Searcher, texts: list[str], k: int) -> dict:
    """Throughput figures only: nothing is ranked from these batched vectors."""
    t1 = time.perf_counter()
    query_vectors = searcher.model.embed_documents(texts)
    encode_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    searcher.vi.search(query_vectors, k)
    search_s = time.perf_counter() - t2
    return {
        "queries": len(texts),
        "encode_qps": len(texts) / encode_s if encode_s else None,
        "search_qps": len(texts) / search_s if search_s else None,
        "qps": len(texts) / (encode_s + search_s) if encode_s + search_s else None,
    }


def _text_vectors(dataset, model, measured, query_vectors) -> np.ndarray:
    """Every caption's vector from embed_query, the function the search path calls: the
    measured queries' own vectors, the rest encoded the same way."""
    known = dict(zip(measured, query_vectors))
    return np.stack([known[q] if q in known else model.embed_query(query.text)
                     for q, query in enumerate(dataset.queries)])


def _i2t(dataset, run, query_set, text_vectors, ks) -> dict:
    everywhere = set(query_set["images"])
    relevant = dataset.image_to_text_relevant()
    images = [i for i in relevant if i in everywhere]
    image_vectors = run["vectors"][run["rows"][images]]
    ranks = np.concatenate([
        metrics.first_relevant_ranks(metrics.exact_scores(image_vectors[s:s + 1024], text_vectors),
                                     [relevant[i] for i in images[s:s + 1024]])
        for s in range(0, len(images), 1024)])
    out = {f"recall@{k}": metrics.recall_at_k(ranks, k) for k in ks}
    out["mrr"] = metrics.mrr(ranks)
    out["images"] = len(images)
    return out


def _pairwise(dataset, run, model) -> dict:
    position = {p: i for i, p in enumerate(dataset.images)}
    encoded: dict[str, np.ndarray] = {}
    pos, neg, left_out = [], [], 0
    for pair in dataset.pairs:
        row = run["rows"][position[pair.image]]
        if row < 0:
            left_out += 1
            continue
        for text in (pair.positive, *pair.negatives):
            if text not in encoded:
                encoded[text] = model.embed_query(text)
        image = run["vectors"][row]
        pos.append(float(encoded[pair.positive] @ image))
        neg.append([float(encoded[t] @ image) for t in pair.negatives])
    if not pos:
        raise UsageError(f"{dataset.name}: no pair's image is indexed")
    return {"accuracy": metrics.pairwise_accuracy(pos, neg), "pairs": len(pos), "pairs_left_out": left_out}


def _stored_vectors(searcher: Searcher) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the model's index (the collection its search sees), by ascending image id."""
    id_batches, vector_batches = [], []
    for batch_ids, batch in searcher.store.iter_embeddings(searcher.row.id, searcher.row.dim):
        id_batches.append(np.asarray(batch_ids, dtype=np.int64))
        vector_batches.append(np.asarray(batch, dtype=np.float32))
    if not id_batches:
        raise UsageError(f"{searcher.row.spec}: no image of the dataset could be indexed")
    ids, vectors = np.concatenate(id_batches), np.concatenate(vector_batches)
    order = np.argsort(ids, kind="stable")
    return ids[order], vectors[order]


def _padded(ids: np.ndarray, exact_top: list[np.ndarray], k: int) -> np.ndarray:
    out = np.full((len(exact_top), k), metrics.FAISS_PADDING, dtype=np.int64)
    for n, top in enumerate(exact_top):
        out[n, :len(top)] = ids[top]
    return out


# A fresh interpreter, not a multiprocessing child: spawn re-imports the caller's __main__,
# which re-runs a script that calls evaluate() without a __name__ guard.
COST_CHILD = "from imgsearch.evaluate import cost_child_main; cost_child_main()"


def _cost_in_own_process(run: dict, texts: list[str], k: int, status) -> dict:
    """isolated_cost in a fresh interpreter: nothing of another model is in its memory."""
    request = json.dumps({"spec": run["spec"], "precision": run["precision"], "index_dir": run["index_dir"],
                          "texts": texts, "k": k})
    done = subprocess.run([sys.executable, "-c", COST_CHILD], input=request, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    # The evaluation's other figures stand; say what failed.
    reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    status(f"{run['label']}: the isolated cost process failed: {reason}")
    return {"isolated_error": reason}


def cost_child_main() -> None:
    """The cost process: a request as JSON on stdin, its figures as one JSON line on stdout."""
    request = json.loads(sys.stdin.read())
    print(json.dumps(isolated_cost(**request)))


def isolated_cost(spec: str, precision: str, index_dir: str, texts: list[str], k: int) -> dict:
    """Load the model alone, open its index, answer the queries: this process's cost figures."""
    before = _rss_mb()
    t0 = time.perf_counter()
    get_model(spec, precision=precision)
    load_s = time.perf_counter() - t0
    after_load = _rss_mb()
    searcher = Searcher(spec, index_dir, precision=precision)  # the model is cached: no second load
    try:
        for text in texts:
            searcher.clear_cache()
            searcher.text(text, k)
    finally:
        searcher.close()
    return {
        "load_s": load_s,
        "rss_mb_before_load": before,
        "rss_mb_after_load": after_load,
        "model_rss_mb": after_load - before,
        "peak_rss_mb": _peak_rss_mb(),
        "cost_queries": len(texts),
        "cost_pid": os.getpid(),
    }


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
    """This address space's high-water mark (VmHWM). Not getrusage's ru_maxrss: across fork and
    exec Linux keeps in it the parent's RSS at the fork, so a child would report the parent's."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise ImgsearchError("no VmHWM in /proc/self/status: peak memory needs Linux")
