"""Stage 7 on your own photos: score every indexed model on the judged pools (eval --judged).

Nothing is indexed: each model's existing index answers every query through the real search
path, at the precision its vectors were made at (Judging.searcher, the rule the pools were
built by), to the pool depth. The figures follow TREC's conventions for pooled judgments:

- an unjudged result counts as not relevant, and every model's unjudged results are counted
  and reported with the command that judges them;
- recall is *pooled* recall: a query's relevant images are those judged relevant among the
  pool, the union of every indexed model's top-depth results (none outside it is known);
- a query with no image judged relevant in its pool is left out (no recall, nDCG or MRR
  exists for it) and named.

Every per-query value is kept in the results, so every mean and interval recomputes.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import metrics, stats
from .config import default_index_dir
from .errors import UsageError
from .judge import DEFAULT_DEPTH, Judging, agreement, iso_time
from .models import resolve

KIND = "judged"
DEFAULT_KS = (1, 5, 10)
NDCG_DEPTH = 10
LEFT_OUT_SHOWN = 5
WARMUP_QUERIES = 5  # untimed queries first, as eval runs them


def default_ks(depth: int) -> tuple[int, ...]:
    """The usual cut-offs that fit in the pool, and the pool depth itself."""
    return tuple(sorted({k for k in DEFAULT_KS if k <= depth} | {depth}))


def check_ks(ks: Sequence[int], depth: int) -> tuple[int, ...]:
    for k in ks:
        metrics.check_k(k)
        if k > depth:
            raise UsageError(f"-k {k} is deeper than the pool (--depth {depth}): only each model's top {depth} "
                             "results were pooled and judged")
    return tuple(sorted(set(ks)))


def evaluate_judged(index_dir: str | None = None, model_specs: Sequence[str] = (), *, depth: int = DEFAULT_DEPTH,
                    ks: Sequence[int] = (), resamples: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED,
                    status: Callable[[str], None] = lambda line: None) -> dict:
    """Score the models (default: every indexed one) on the index dir's judgments."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise UsageError(f"--depth must be a positive integer, got {depth!r}")
    ks = check_ks(ks or default_ks(depth), depth)
    stats.check_resamples(resamples)
    with Judging(index_dir) as judging:
        indexed = judging.models()
        if not indexed:
            raise UsageError(f"no model is indexed in {judging.index_dir}; run `imgsearch index DIR --model SPEC`")
        specs = _chosen(model_specs, indexed, judging.index_dir)
        judgments = [j for j in judging.judgments() if j.state == "valid"]
        if not judgments:
            raise UsageError(f"no judgments in {judging.index_dir} yet: judge the pools first "
                             f"({_judge_hint(judging.index_dir, depth)})")
        qrels = judging.qrels()
        texts = [q["text"] for q in judging.queries()]
        status(f"{len(texts)} queries through the real search path of {len(indexed)} models, to depth {depth}")
        # Every indexed model answers every query: the pool is all of theirs, scored or not.
        answers = {spec: _answers(judging, spec, texts, depth) for spec in indexed}
        facts = {spec: _facts(judging, spec) for spec in specs}
        index_dir = judging.index_dir
    paths = {i: p for spec in indexed for i, p in answers[spec]["paths"].items()}
    pools = {text: set().union(*(answers[spec]["ids"][text] for spec in indexed)) for text in texts}
    judged = {text: {i: yes for i, yes in qrels[text].items() if i in pools[text]} for text in texts}
    relevant = {text: {i for i, yes in judged[text].items() if yes} for text in texts}
    measured = [t for t in texts if relevant[t]]
    no_judgment = [t for t in texts if not judged[t]]
    no_relevant = [t for t in texts if judged[t] and not relevant[t]]
    if not measured:
        raise UsageError(f"no query has an image judged relevant in its pool at depth {depth}: nothing to score "
                         f"({len(no_relevant)} queries judged with none relevant, {len(no_judgment)} not judged)")
    if no_judgment or no_relevant:
        status(f"{len(no_judgment) + len(no_relevant)} queries left out: {len(no_judgment)} with nothing judged, "
               f"{len(no_relevant)} with no image judged relevant")
    n_ndcg = min(NDCG_DEPTH, depth)
    models = []
    for spec in specs:
        records = [_record(text, answers[spec]["ids"][text], paths, judged[text], relevant[text]) for text in measured]
        values = per_query_values(records, ks, n_ndcg)
        unjudged = sum(i not in judged[t] for t in texts for i in answers[spec]["ids"][t])
        unjudged_queries = sum(any(i not in judged[t] for i in answers[spec]["ids"][t]) for t in texts)
        models.append({
            **facts[spec],
            "figures": {name: float(np.mean(v)) for name, v in values.items()},
            "unjudged": {"pairs": unjudged, "queries": unjudged_queries, "of_pairs": sum(
                len(answers[spec]["ids"][t]) for t in texts), "command": _judge_hint(index_dir, depth)},
            "latency_ms": {part: metrics.latency_summary([t[part] for t in answers[spec]["timings"]])
                           for part in ("encode", "search", "metadata", "total")},
            "queries": records,
        })
    quality = quality_names(ks, n_ndcg)
    intervals, comparisons = stats.intervals_and_comparisons(
        [m["label"] for m in models], [{n: per_query_values(m["queries"], ks, n_ndcg)[n] for n in quality}
                                       for m in models], resamples, seed)
    for model, interval in zip(models, intervals):
        model["ci95"] = interval
    pooled = sum(len(p) for p in pools.values())
    judged_pairs = sum(len(j) for j in judged.values())
    return {
        "kind": KIND,
        "index_dir": index_dir,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ks": list(ks),
        "ndcg_depth": n_ndcg,
        "judged": {
            "depth": depth, "queries": len(texts), "measured": len(measured),
            "left_out_no_judgment": len(no_judgment), "left_out_no_relevant": len(no_relevant),
            "left_out_first": (no_judgment + no_relevant)[:LEFT_OUT_SHOWN],
            "pooled_pairs": pooled, "judged_pairs": judged_pairs, "unjudged_pairs": pooled - judged_pairs,
            "relevant_pairs": sum(len(r) for r in relevant.values()),
            "judges": sorted({j.judge for j in judgments}),
            "agreement": agreement(judgments),
            "newest_judgment": iso_time(max(j.judged_at for j in judgments)),
            "pooled_models": indexed,
            "judge_command": _judge_hint(index_dir, depth),
        },
        "definitions": definitions(depth, n_ndcg, resamples, seed),
        "uncertainty": stats.uncertainty(resamples, seed),
        "models": models,
        "comparisons": comparisons,
    }


def quality_names(ks: Sequence[int], n_ndcg: int) -> list[str]:
    """The figures with intervals and paired comparisons (judged@k is coverage, not quality)."""
    return [*(f"precision@{k}" for k in ks), *(f"recall@{k}" for k in ks), f"ndcg@{n_ndcg}", "mrr"]


def per_query_values(records: list[dict], ks: Sequence[int], n_ndcg: int) -> dict[str, np.ndarray]:
    """Each measured query's value of each figure, from its record alone (results.json)."""
    hits = [[r["judgment"] is True for r in record["results"]] for record in records]
    known = [[r["judgment"] is not None for r in record["results"]] for record in records]
    n_relevant = np.array([len(record["relevant"]) for record in records], dtype=np.float64)
    values: dict[str, np.ndarray] = {}
    for k in ks:
        found = np.array([sum(h[:k]) for h in hits], dtype=np.float64)
        values[f"precision@{k}"] = found / k  # TREC: over k, even where fewer came back
        values[f"recall@{k}"] = found / n_relevant
    values[f"ndcg@{n_ndcg}"] = metrics.ndcg_per_query(
        [[r["path"] for r in record["results"]] for record in records], [set(record["relevant"]) for record in records],
        n_ndcg)
    values["mrr"] = np.array([1.0 / (h.index(True) + 1) if True in h else 0.0 for h in hits])
    for k in ks:
        values[f"judged@{k}"] = np.array([sum(j[:k]) / len(j[:k]) if j else 0.0 for j in known])
    return values


def definitions(depth: int, n_ndcg: int, resamples: int, seed: int) -> dict:
    return {
        "pool": f"per query, the union of every indexed model's top {depth} results (each model at the precision "
                "it was indexed at), judged blind (imgsearch judge / the Judge page); where several judges judged "
                "a pair the latest judgment counts; a judgment of a photo changed since is stale and counts as none",
        "unjudged": "a result nobody judged counts as not relevant (TREC's convention); each model's unjudged "
                    "results are counted below with the command that judges them",
        "measured queries": "those with at least one image judged relevant in their pool; the others are left "
                            "out and counted",
        "precision@k": "relevant results among the model's top k, divided by k; mean over queries",
        "recall@k": "pooled recall: relevant results among the model's top k, divided by the number of images "
                    "judged relevant in the query's pool (all models' top results): relative to what any model "
                    "found, not to every relevant photo in the collection; mean over queries",
        f"ndcg@{n_ndcg}": f"binary gains (the judgments are relevant / not relevant) on the top {n_ndcg}, ideal DCG "
                          f"from min(#relevant in the pool, {n_ndcg})"
                          + ("" if n_ndcg == NDCG_DEPTH else f"; @{n_ndcg}, not @10: the pool is {depth} deep"),
        "mrr": f"mean over queries of 1 / rank of the first relevant result in the top {depth}; 0 when none",
        "judged@k": "share of the model's top k results that were judged; mean over queries. Below 1, the "
                    "model's figures are lower bounds",
        **stats.definitions(resamples, seed),
        "latency_ms": "per query at batch size 1 after warm-up queries, each encoding its text (the query cache "
                      "is cleared before each), every query of the judging set; percentiles by linear "
                      "interpolation",
    }


def _chosen(asked: Sequence[str], indexed: list[str], index_dir: str) -> list[str]:
    if not asked:
        return list(indexed)
    specs = list(dict.fromkeys(resolve(s) for s in asked))
    for spec in specs:
        if spec not in indexed:
            raise UsageError(f"model {spec} is not indexed in {index_dir} (indexed: {', '.join(indexed)}); "
                             "eval --judged scores indexed models only, it never indexes")
    return specs


def _answers(judging: Judging, spec: str, texts: list[str], depth: int) -> dict:
    """One model's top-depth answer to every query, from its real search path, and its timings."""
    searcher = judging.searcher(spec)
    for text in texts[:WARMUP_QUERIES]:
        searcher.clear_cache()  # a warm-up answered from the cache would warm nothing
        searcher.text(text, depth)
    ids, paths, timings = {}, {}, []
    for text in texts:
        searcher.clear_cache()  # every measured query encodes: no cache hit is timed
        result = searcher.text(text, depth)
        ids[text] = [r["id"] for r in result.results]
        paths.update((r["id"], r["path"]) for r in result.results)
        timings.append(result.timing_ms)
    return {"ids": ids, "paths": paths, "timings": timings}


def _facts(judging: Judging, spec: str) -> dict:
    searcher = judging.searcher(spec)
    return {"label": spec, "spec": spec, "precision": searcher.row.precision, "family": searcher.model.family,
            "dim": searcher.model.dim, "device": searcher.model.device, "factory": searcher.vi.factory,
            "images_indexed": searcher.vi.ntotal}


def _record(text: str, ranking: list[int], paths: dict[int, str], judged: dict[int, bool],
            relevant: set[int]) -> dict:
    """A query's ranking as judged (each result's path and judgment, None: unjudged) and the
    relevant images of its pool, which any model may have found."""
    return {
        "query": text,
        "results": [{"path": paths[i], "judgment": judged.get(i)} for i in ranking],
        "relevant": sorted(paths[i] for i in relevant),
    }


def _judge_hint(index_dir: str, depth: int) -> str:
    where = "" if os.path.abspath(index_dir) == os.path.abspath(default_index_dir()) else \
        f" --index-dir {shlex.quote(index_dir)}"
    depth_flag = "" if depth == DEFAULT_DEPTH else f" --depth {depth}"
    return (f"imgsearch serve{where}, then the Judge page /judge" + (f"?depth={depth}" if depth_flag else "")
            + f"; or imgsearch judge pool{depth_flag}{where} --json and imgsearch judge mark / import")
