"""Retrieval metrics as the field defines them: small pure functions over arrays.

Ranks are 1-based. A query's "first rank" is the position of its best-placed relevant item;
None (or inf) means "not in the returned ranking" (a truncated top-k from the real search).
Definitions follow LAION CLIP_benchmark (recall@k), MTEB (nDCG@10, binary gains) and
autofaiss `score_index` (k-recall@k, 1-recall@k).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

import numpy as np

from .errors import UsageError

FAISS_PADDING = -1  # FAISS fills a row with -1 when fewer than k results exist
_ROWS_PER_BLOCK = 1024  # bounds the temporary arrays for 25k x 5k COCO score matrices


def first_relevant_ranks(scores: np.ndarray, relevant: Sequence[Collection[int]]) -> np.ndarray:
    """1-based rank, over the whole collection, of each query's best-scored relevant item.

    scores[q, i] is the similarity of query q to item i; relevant[q] holds item indices.
    Tie rule, pessimistic: a non-relevant item whose score equals the best relevant score
    ranks ahead of it, so rank = 1 + #(non-relevant items scoring >= best relevant score).
    Other relevant items tied with it do not push it down. CLIP_benchmark's torch.topk leaves
    tie order unspecified; counting ties against the model means one that gives every item
    the same score ranks each query last instead of looking perfect by index order.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d (queries x items), got shape {scores.shape}")
    n_queries, n_items = scores.shape
    if len(relevant) != n_queries:
        raise ValueError(f"{len(relevant)} relevant sets for {n_queries} score rows")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    _require_relevant(relevant)
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"scores contain NaN ({nan_rows.size} queries, first: query {nan_rows[0]})")
    ranks = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, _ROWS_PER_BLOCK):
        block = scores[start : start + _ROWS_PER_BLOCK]
        is_relevant = np.zeros(block.shape, dtype=bool)
        for row, ids in enumerate(relevant[start : start + _ROWS_PER_BLOCK]):
            is_relevant[row, _item_indices(ids, n_items, start + row)] = True
        best_relevant = np.where(is_relevant, block, -np.inf).max(axis=1)
        ahead = (block >= best_relevant[:, None]) & ~is_relevant
        ranks[start : start + len(block)] = ahead.sum(axis=1) + 1
    return ranks


def first_relevant_rank_from_ranking(
    ranked_ids: Sequence[Hashable], relevant: Collection[Hashable]
) -> int | None:
    """1-based position of the first relevant id in a ranked list; None when none is in it."""
    if not relevant:
        raise UsageError("query has no relevant item in the collection")
    for position, item in enumerate(ranked_ids, start=1):
        if item in relevant:
            return position
    return None


def recall_at_k(first_ranks: Sequence[int | None], k: int) -> float:
    """Fraction of queries with a relevant item in their top k (CLIP_benchmark recall@k).

    A k beyond the collection size is allowed. A None rank (not in a truncated ranking)
    counts as a miss at every k, so k beyond the ranking's length undercounts.
    """
    _require_k(k)
    return float(np.mean(_as_ranks(first_ranks) <= k))


def mrr(first_ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank of the first relevant item; a None rank contributes 0."""
    return float(np.mean(1.0 / _as_ranks(first_ranks)))


def mean_rank(first_ranks: Sequence[int | None]) -> float:
    """Mean of the first relevant ranks; needs every rank (ranks over the whole collection)."""
    return float(np.mean(_known_ranks(first_ranks)))


def median_rank(first_ranks: Sequence[int | None]) -> float:
    """Median of the first relevant ranks ("MedR"); the mean of the middle two for even counts."""
    return float(np.median(_known_ranks(first_ranks)))


def ndcg_at_k(
    ranked_ids_per_query: Sequence[Sequence[Hashable]],
    relevant_per_query: Sequence[Collection[Hashable]],
    k: int = 10,
) -> float:
    """Mean nDCG@k with binary gains (MTEB's main retrieval score).

    DCG = sum over the top k of rel_i / log2(i + 1); the ideal DCG puts min(|relevant|, k)
    relevant items first. -1 entries (FAISS padding) are ignored; a repeated id is an error,
    since it would count one relevant item twice.
    """
    _require_k(k)
    if len(ranked_ids_per_query) != len(relevant_per_query):
        raise ValueError(
            f"{len(ranked_ids_per_query)} rankings for {len(relevant_per_query)} relevant sets"
        )
    if not relevant_per_query:
        raise ValueError("no queries")
    _require_relevant(relevant_per_query)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for query, (ranked, relevant) in enumerate(zip(ranked_ids_per_query, relevant_per_query)):
        top = _without_padding(ranked[:k])
        if len(set(top)) != len(top):
            raise ValueError(f"query {query}: ranking repeats an id")
        hits = np.array([item in relevant for item in top], dtype=bool)
        ideal = discounts[: min(len(relevant), k)].sum()
        # Both as sums of the same discounts in the same order: an ideal ranking is exactly 1
        # (a dot product rounded differently and gave 1.0000000000000002).
        total += float(discounts[: len(top)][hits].sum()) / ideal
    return total / len(relevant_per_query)


def pairwise_accuracy(
    pos_scores: Sequence[float], neg_scores_lists: Sequence[Sequence[float]]
) -> float:
    """Fraction of pairs where sim(image, positive) > max sim(image, negatives), strictly.

    A tie with the best negative, or a NaN anywhere in the pair, counts as wrong.
    """
    if len(pos_scores) != len(neg_scores_lists):
        raise ValueError(f"{len(pos_scores)} positive scores for {len(neg_scores_lists)} pairs")
    if not pos_scores:
        raise ValueError("no pairs")
    correct = 0
    for pair, (positive, negatives) in enumerate(zip(pos_scores, neg_scores_lists)):
        if len(negatives) == 0:
            raise ValueError(f"pair {pair} has no negatives")
        correct += bool(positive > np.max(negatives))
    return correct / len(pos_scores)


def ann_recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """autofaiss k-recall@k: mean of |approx top-k ∩ exact top-k| / |exact top-k|.

    |exact top-k| is k unless the collection holds fewer items; -1 padding is ignored.
    """
    approx_rows, exact_rows = _id_tables(approx_ids, exact_ids, k)
    total = 0.0
    for query, (approx, exact) in enumerate(zip(approx_rows, exact_rows)):
        expected = set(_without_padding(exact[:k]))
        if not expected:
            raise ValueError(f"query {query}: exact search returned no ids")
        total += len(expected & set(approx[:k].tolist())) / len(expected)
    return total / len(exact_rows)


def ann_one_recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """autofaiss 1-recall@k: fraction of queries whose exact nearest id is in the approx top-k."""
    approx_rows, exact_rows = _id_tables(approx_ids, exact_ids, k)
    if np.any(exact_rows[:, 0] == FAISS_PADDING):
        raise ValueError("exact search returned no ids for some query")
    hits = (approx_rows[:, :k] == exact_rows[:, :1]).any(axis=1)
    return float(np.mean(hits))


def latency_summary(ms: Sequence[float]) -> dict[str, float | int]:
    """p50 / p95 / p99 / mean / n of latencies in ms; percentiles by numpy's linear method.

    Linear: the percentile between two sorted samples is interpolated between them, so
    p99 of fewer than 100 samples lies between the two slowest.
    """
    values = np.asarray(ms, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("latency_summary needs a non-empty list of timings")
    p50, p95, p99 = np.percentile(values, [50, 95, 99], method="linear")
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(values.mean()),
        "n": int(values.size),
    }


def _require_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"k must be a positive integer, got {k!r}")


def _require_relevant(relevant: Sequence[Collection]) -> None:
    """The dataset layer names the query text; this guards the arithmetic (recall would
    silently count such a query as a miss, nDCG would divide by zero)."""
    empty = [query for query, ids in enumerate(relevant) if not ids]
    if empty:
        raise UsageError(
            f"{len(empty)} queries have no relevant item in the collection (first: query {empty[0]})"
        )


def _item_indices(ids: Collection[int], n_items: int, query: int) -> np.ndarray:
    indices = np.fromiter(ids, dtype=np.int64, count=len(ids))
    if indices.min() < 0 or indices.max() >= n_items:
        raise ValueError(f"query {query}: relevant index outside 0..{n_items - 1}")
    return indices


def _as_ranks(first_ranks: Sequence[int | None]) -> np.ndarray:
    ranks = np.array([math.inf if r is None else r for r in first_ranks], dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no queries")
    finite = ranks[np.isfinite(ranks)]
    if np.isnan(ranks).any() or (finite < 1).any() or (finite != np.floor(finite)).any():
        raise ValueError("ranks must be integers >= 1 (or None when not retrieved)")
    return ranks


def _known_ranks(first_ranks: Sequence[int | None]) -> np.ndarray:
    ranks = _as_ranks(first_ranks)
    unknown = int(np.isinf(ranks).sum())
    if unknown:
        raise ValueError(f"rank unknown for {unknown} queries (not in the returned ranking)")
    return ranks


def _without_padding(ids: Sequence[Hashable]) -> list:
    return [item for item in np.asarray(ids).tolist() if item != FAISS_PADDING]


def _id_tables(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    _require_k(k)
    approx = np.asarray(approx_ids)
    exact = np.asarray(exact_ids)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise ValueError(f"id tables must be 2-d with one row per query: {approx.shape}, {exact.shape}")
    if len(exact) == 0:
        raise ValueError("no queries")
    if approx.shape[1] < k or exact.shape[1] < k:
        raise ValueError(f"id tables hold {approx.shape[1]} / {exact.shape[1]} columns, fewer than k={k}")
    return approx, exact
