"""Retrieval metrics as the field defines them: small pure functions over arrays.

Ranks are 1-based. A query's "first rank" is the position of its best-placed relevant item;
None (or inf) means "not in the returned ranking" (a truncated top-k from the real search).
Definitions follow LAION CLIP_benchmark (recall@k), MTEB (nDCG@10, binary gains) and
autofaiss `score_index` (k-recall@k, 1-recall@k).

One tie rule everywhere: among equal scores a non-relevant item ranks ahead of a relevant one
(ties count against the model), then the lower item index first. A query's served ranking
(`served_first_relevant_ranks`, `served_order`) puts the items the real search returned first,
so that its top-k and its first relevant rank are read off one list and cannot disagree.
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
    scores = _score_matrix(scores, relevant)
    n_queries, n_items = scores.shape
    ranks = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, _ROWS_PER_BLOCK):
        block = scores[start : start + _ROWS_PER_BLOCK]
        is_relevant = np.zeros(block.shape, dtype=bool)
        for row, ids in enumerate(relevant[start : start + _ROWS_PER_BLOCK]):
            is_relevant[row, _item_indices(ids, n_items, start + row)] = True
        ranks[start : start + len(block)] = _ahead_of_best_relevant(block, is_relevant, ~is_relevant) + 1
    return ranks


def exact_scores(query_vectors: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Inner products (queries x items), summed in float64 and rounded to float32.

    BLAS may sum two identical rows in different orders (blocking, remainders); in float64
    the difference stays far below float32's resolution, so identical vectors tie exactly.
    """
    queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float64))
    items = np.asarray(item_vectors, dtype=np.float64)
    return (queries @ items.T).astype(np.float32)


def served_first_relevant_ranks(
    scores: np.ndarray, served: Sequence[Collection[int]], relevant: Sequence[Collection[int]], depth: int
) -> np.ndarray:
    """1-based rank of each query's first relevant item in its served ranking.

    A query's served ranking: the items its real search returned (served[q], at most depth),
    ordered by score with the tie rule above; positions up to depth that the search left
    empty stay empty; then every other item of the collection from position depth + 1 on, in
    the same order. So an item the search did not return ranks after everything it returned;
    where served[q] holds the first `depth` items of the tie rule's order over the whole
    collection (an exact search), the rank equals `first_relevant_ranks`.
    """
    check_k(depth)
    scores = _score_matrix(scores, relevant)
    n_queries, n_items = scores.shape
    if len(served) != n_queries:
        raise ValueError(f"{len(served)} served lists for {n_queries} score rows")
    ranks = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, _ROWS_PER_BLOCK):
        block = scores[start : start + _ROWS_PER_BLOCK]
        is_relevant = np.zeros(block.shape, dtype=bool)
        is_served = np.zeros(block.shape, dtype=bool)
        for row in range(len(block)):
            query = start + row
            is_relevant[row, _item_indices(relevant[query], n_items, query)] = True
            if len(served[query]) > depth:
                raise ValueError(f"query {query}: {len(served[query])} served items, more than depth {depth}")
            if len(served[query]):
                is_served[row, _item_indices(served[query], n_items, query)] = True
        ahead_served = _ahead_of_best_relevant(block, is_relevant & is_served, is_served & ~is_relevant)
        ahead_rest = _ahead_of_best_relevant(block, is_relevant & ~is_served, ~is_served & ~is_relevant)
        found = (is_relevant & is_served).any(axis=1)
        ranks[start : start + len(block)] = np.where(found, 1 + ahead_served, depth + 1 + ahead_rest)
    return ranks


def served_order(scores: np.ndarray, served: Collection[int], relevant: Collection[int]) -> list[int]:
    """The served items of one query (scores: that query's row) in served-ranking order."""
    return sorted(served, key=lambda item: (-scores[item], item in relevant, item))


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
    check_k(k)
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
    return float(np.mean(ndcg_per_query(ranked_ids_per_query, relevant_per_query, k)))


def ndcg_per_query(
    ranked_ids_per_query: Sequence[Sequence[Hashable]],
    relevant_per_query: Sequence[Collection[Hashable]],
    k: int = 10,
) -> np.ndarray:
    """Each query's nDCG@k (binary gains), as defined in `ndcg_at_k`."""
    check_k(k)
    if len(ranked_ids_per_query) != len(relevant_per_query):
        raise ValueError(
            f"{len(ranked_ids_per_query)} rankings for {len(relevant_per_query)} relevant sets"
        )
    if not relevant_per_query:
        raise ValueError("no queries")
    _require_relevant(relevant_per_query)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = np.empty(len(relevant_per_query))
    for query, (ranked, relevant) in enumerate(zip(ranked_ids_per_query, relevant_per_query)):
        top = _without_padding(ranked[:k])
        if len(set(top)) != len(top):
            raise ValueError(f"query {query}: ranking repeats an id")
        hits = np.array([item in relevant for item in top], dtype=bool)
        ideal = discounts[: min(len(relevant), k)].sum()
        # Both as sums of the same discounts in the same order: an ideal ranking is exactly 1
        # (a dot product rounded differently and gave 1.0000000000000002).
        values[query] = float(discounts[: len(top)][hits].sum()) / ideal
    return values


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


def check_k(k: int) -> int:
    """The one rule for every cut-off and result count (metrics, search, eval, the CLI)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"-k must be a positive integer, got {k!r}")
    return int(k)


def _score_matrix(scores: np.ndarray, relevant: Sequence[Collection[int]]) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d (queries x items), got shape {scores.shape}")
    if len(relevant) != len(scores):
        raise ValueError(f"{len(relevant)} relevant sets for {len(scores)} score rows")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    _require_relevant(relevant)
    nan_rows = np.flatnonzero(np.isnan(scores).any(axis=1))
    if nan_rows.size:
        raise ValueError(f"scores contain NaN ({nan_rows.size} queries, first: query {nan_rows[0]})")
    return scores


def _ahead_of_best_relevant(block: np.ndarray, candidates: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Per row, how many `others` score at least the best-scored of the `candidates`
    (meaningless for a row without candidates: the caller does not use it)."""
    best = np.where(candidates, block, -np.inf).max(axis=1)
    return (others & (block >= best[:, None])).sum(axis=1)


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
    check_k(k)
    approx = np.asarray(approx_ids)
    exact = np.asarray(exact_ids)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise ValueError(f"id tables must be 2-d with one row per query: {approx.shape}, {exact.shape}")
    if len(exact) == 0:
        raise ValueError("no queries")
    if approx.shape[1] < k or exact.shape[1] < k:
        raise ValueError(f"id tables hold {approx.shape[1]} / {exact.shape[1]} columns, fewer than k={k}")
    return approx, exact
