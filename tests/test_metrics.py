"""Retrieval metrics against hand-computed cases and brute-force references."""

import math

import numpy as np
import pytest
from faiss.contrib.evaluation import knn_intersection_measure
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imgsearch.errors import UsageError
from imgsearch.metrics import (
    ann_one_recall_at_k,
    ann_recall_at_k,
    exact_scores,
    first_relevant_rank_from_ranking,
    first_relevant_ranks,
    latency_summary,
    mean_rank,
    median_rank,
    mrr,
    ndcg_at_k,
    ndcg_per_query,
    pairwise_accuracy,
    recall_at_k,
    served_first_relevant_ranks,
    served_order,
)

# --- first relevant rank over a score matrix ----------------------------------------------


def test_an_image_with_five_captions_gives_five_queries():
    # Two images; the first has five captions (queries 0-4), the second one (query 5).
    scores = np.array(
        [
            [0.9, 0.1],  # caption of image 0, image 0 first
            [0.2, 0.8],  # caption of image 0, image 1 scores higher
            [0.7, 0.3],
            [0.6, 0.5],
            [0.4, 0.6],
            [0.3, 0.9],  # caption of image 1, image 1 first
        ]
    )
    relevant = [{0}, {0}, {0}, {0}, {0}, {1}]
    ranks = first_relevant_ranks(scores, relevant)
    assert ranks.tolist() == [1, 2, 1, 1, 2, 1]
    assert recall_at_k(ranks, 1) == pytest.approx(4 / 6)
    assert recall_at_k(ranks, 2) == 1.0


def test_several_relevant_images_rank_by_the_best_placed_one():
    scores = np.array([[0.9, 0.5, 0.7, 0.1]])
    # Item 2 (0.7) is the best relevant one; only item 0 (0.9) is ahead of it.
    assert first_relevant_ranks(scores, [{1, 2}]).tolist() == [2]


def test_ties_count_against_the_relevant_item():
    scores = np.array([[0.5, 0.5, 0.5, 0.2]])
    # Items 0 and 2 tie with relevant item 1, so both rank ahead of it.
    assert first_relevant_ranks(scores, [{1}]).tolist() == [3]
    # A relevant item tied with another relevant one is not pushed down by it.
    assert first_relevant_ranks(scores, [{0, 1}]).tolist() == [2]


def test_a_model_giving_every_item_the_same_score_ranks_each_query_last():
    scores = np.zeros((3, 3), dtype=np.float32)
    ranks = first_relevant_ranks(scores, [{0}, {1}, {2}])
    assert ranks.tolist() == [3, 3, 3]
    assert recall_at_k(ranks, 1) == 0.0


def test_float32_scores_keep_their_ties():
    scores = np.array([[0.1, 0.3, 0.3]], dtype=np.float32)
    assert first_relevant_ranks(scores, [{1}]).tolist() == [2]


def test_queries_without_a_relevant_item_are_refused_with_count_and_first_query():
    scores = np.ones((3, 2))
    with pytest.raises(UsageError, match=r"^2 queries have no relevant item in the collection \(first: query 1\)$"):
        first_relevant_ranks(scores, [{0}, set(), set()])


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        first_relevant_ranks(np.array([[0.1, np.nan]]), [{0}])


def test_relevant_index_outside_the_collection_is_refused():
    with pytest.raises(ValueError, match="outside 0..1"):
        first_relevant_ranks(np.ones((1, 2)), [{2}])


def test_one_relevant_set_per_score_row():
    with pytest.raises(ValueError, match="2 relevant sets for 1 score rows"):
        first_relevant_ranks(np.ones((1, 2)), [{0}, {1}])


# --- first relevant rank in a returned ranking --------------------------------------------


def test_rank_from_a_ranking_is_the_first_relevant_position():
    assert first_relevant_rank_from_ranking([4, 2, 7, 9], {7, 9}) == 3
    assert first_relevant_rank_from_ranking(["b.jpg", "a.jpg"], {"a.jpg"}) == 2


def test_rank_from_a_ranking_is_none_when_no_relevant_id_was_returned():
    assert first_relevant_rank_from_ranking([4, 2, 7], {5}) is None


def test_rank_from_a_ranking_refuses_a_query_without_relevant_ids():
    with pytest.raises(UsageError, match="no relevant item"):
        first_relevant_rank_from_ranking([1, 2], set())


# --- recall, MRR, mean and median rank ------------------------------------------------------


def test_recall_at_k_larger_than_the_collection_counts_every_query():
    assert recall_at_k([1, 3], 100) == 1.0


def test_recall_counts_a_query_missing_from_the_ranking_as_a_miss():
    assert recall_at_k([1, None, 4], 5) == pytest.approx(2 / 3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_recall_refuses_a_k_that_is_not_a_positive_integer(k):
    with pytest.raises(UsageError, match="k must be a positive integer"):
        recall_at_k([1], k)


def test_recall_refuses_ranks_below_one():
    with pytest.raises(ValueError, match="ranks must be integers >= 1"):
        recall_at_k([0, 1], 1)


def test_mrr_is_the_mean_of_reciprocal_ranks_and_a_miss_adds_zero():
    assert mrr([1, 2, 4]) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert mrr([1, None]) == 0.5


def test_mean_and_median_rank():
    assert mean_rank([1, 2, 10]) == pytest.approx(13 / 3)
    assert median_rank([1, 2, 10]) == 2
    assert median_rank([1, 2, 3, 10]) == 2.5


def test_mean_rank_needs_every_rank():
    with pytest.raises(ValueError, match="rank unknown for 1 queries"):
        mean_rank([1, None])


def test_metrics_refuse_an_empty_query_list():
    with pytest.raises(ValueError, match="no queries"):
        recall_at_k([], 1)


# --- nDCG@k ------------------------------------------------------------------------------


def test_ndcg_with_binary_gains():
    # Relevant ids 1 and 2 at positions 2 and 3; the ideal ranking has them at 1 and 2.
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k([[3, 1, 2]], [{1, 2}], k=3) == pytest.approx(dcg / ideal)


def test_ndcg_ideal_counts_at_most_k_relevant_items():
    assert ndcg_at_k([[0, 1, 5, 6]], [{0, 1, 2, 3}], k=2) == 1.0


def test_ndcg_averages_over_queries_and_a_query_with_no_hit_scores_zero():
    assert ndcg_at_k([[0, 1], [5, 6]], [{0}, {9}], k=10) == 0.5


def test_ndcg_per_query_and_its_mean():
    values = ndcg_per_query([[0, 1], [5, 0], [5, 6]], [{0}, {0}, {9}], k=10)
    np.testing.assert_allclose(values, [1.0, 1 / math.log2(3), 0.0])
    assert ndcg_at_k([[0, 1], [5, 0], [5, 6]], [{0}, {0}, {9}], k=10) == pytest.approx(values.mean())


def test_ndcg_ignores_faiss_padding_and_refuses_repeated_ids():
    assert ndcg_at_k([[0, -1, -1]], [{0}], k=3) == 1.0
    with pytest.raises(ValueError, match="query 0: ranking repeats an id"):
        ndcg_at_k([[1, 1, 0]], [{0}], k=3)


def test_ndcg_refuses_queries_without_relevant_items():
    with pytest.raises(UsageError, match="first: query 0"):
        ndcg_at_k([[1, 2]], [set()])


# --- the seed's pairwise accuracy -------------------------------------------------------


def test_pairwise_accuracy_needs_the_positive_strictly_above_every_negative():
    pos = [0.9, 0.5, 0.3]
    negs = [[0.1, 0.8], [0.5], [0.4, 0.2]]  # right, tie (wrong), wrong
    assert pairwise_accuracy(pos, negs) == pytest.approx(1 / 3)


def test_pairwise_accuracy_counts_nan_as_wrong_and_refuses_pairs_without_negatives():
    assert pairwise_accuracy([0.9], [[np.nan, 0.1]]) == 0.0
    with pytest.raises(ValueError, match="pair 1 has no negatives"):
        pairwise_accuracy([0.9, 0.8], [[0.1], []])


# --- ANN quality against exact search ---------------------------------------------------


def test_k_recall_at_k_is_the_mean_overlap_of_the_top_k():
    approx = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[1, 3, 9], [7, 8, 4]])
    assert ann_recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_one_recall_at_k_asks_whether_the_exact_nearest_is_in_the_approx_top_k():
    approx = np.array([[2, 1, 3], [4, 5, 6]])
    exact = np.array([[1, 3, 9], [7, 8, 4]])
    assert ann_one_recall_at_k(approx, exact, 3) == 0.5
    assert ann_one_recall_at_k(approx, exact, 1) == 0.0


def test_ann_recall_over_a_collection_smaller_than_k_ignores_padding():
    padded = np.array([[5, 8, -1, -1]])
    assert ann_recall_at_k(padded, padded, 4) == 1.0
    assert ann_one_recall_at_k(padded, padded, 4) == 1.0


def test_ann_recall_refuses_tables_narrower_than_k():
    with pytest.raises(ValueError, match="fewer than k=3"):
        ann_recall_at_k(np.array([[1, 2]]), np.array([[1, 2]]), 3)


# --- latency ------------------------------------------------------------------------------


def test_latency_summary_interpolates_percentiles_linearly():
    summary = latency_summary([40.0, 10.0, 30.0, 20.0])
    # Sorted 10, 20, 30, 40: p95 sits 0.85 of the way from 30 to 40.
    assert summary == {
        "p50": pytest.approx(25.0),
        "p95": pytest.approx(38.5),
        "p99": pytest.approx(39.7),
        "mean": pytest.approx(25.0),
        "n": 4,
    }


def test_latency_summary_refuses_no_timings():
    with pytest.raises(ValueError, match="non-empty"):
        latency_summary([])


# --- properties on seeded random data -----------------------------------------------------


@st.composite
def scores_and_relevant(draw):
    n_queries = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 8))
    # Small integer scores make ties common.
    scores = draw(arrays(np.float32, (n_queries, n_items), elements=st.integers(0, 3).map(float)))
    relevant = [
        draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items)) for _ in range(n_queries)
    ]
    return scores, relevant


def pessimistic_ranking(row, relevant):
    """Brute force: sort by descending score, non-relevant items first among ties."""
    return sorted(range(len(row)), key=lambda item: (-row[item], item in relevant, item))


@settings(max_examples=200, deadline=None)
@given(scores_and_relevant())
def test_ranks_equal_a_brute_force_sort(case):
    scores, relevant = case
    expected = [
        1 + [item in rel for item in pessimistic_ranking(row, rel)].index(True)
        for row, rel in zip(scores, relevant)
    ]
    assert first_relevant_ranks(scores, relevant).tolist() == expected
    assert [
        first_relevant_rank_from_ranking(pessimistic_ranking(row, rel), rel) for row, rel in zip(scores, relevant)
    ] == expected


@settings(max_examples=100, deadline=None)
@given(scores_and_relevant())
def test_recall_grows_with_k_and_reaches_one_at_the_collection_size(case):
    scores, relevant = case
    ranks = first_relevant_ranks(scores, relevant)
    n_items = scores.shape[1]
    recalls = [recall_at_k(ranks, k) for k in range(1, n_items + 1)]
    assert recalls == sorted(recalls)
    assert recalls[-1] == 1.0
    assert 0 < mrr(ranks) <= 1


@settings(max_examples=100, deadline=None)
@given(scores_and_relevant(), st.integers(1, 10))
def test_ndcg_lies_in_zero_one_and_is_one_for_an_ideal_ranking(case, k):
    scores, relevant = case
    rankings = [pessimistic_ranking(row, rel) for row, rel in zip(scores, relevant)]
    assert 0 <= ndcg_at_k(rankings, relevant, k) <= 1
    ideal = [sorted(range(scores.shape[1]), key=lambda item: item not in rel) for rel in relevant]
    assert ndcg_at_k(ideal, relevant, k) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_k_recall_equals_faiss_intersection_measure(seed, k):
    rng = np.random.default_rng(seed)
    exact = np.stack([rng.permutation(20)[:k] for _ in range(5)])
    approx = np.stack([rng.permutation(20)[:k] for _ in range(5)])
    assert ann_recall_at_k(approx, exact, k) == pytest.approx(knn_intersection_measure(approx, exact))


# --- the served ranking: one list for a query's top-k and its first relevant rank -------------


def test_a_served_tie_puts_the_non_relevant_item_first_in_both_the_order_and_the_rank():
    # Items 0 and 1 are identical (score 0.8); the search returned 1 before 0, FAISS's way.
    scores = np.array([[0.8, 0.8, 0.5, 0.1]], dtype=np.float32)
    served = [[1, 0, 2]]
    assert served_order(scores[0], served[0], {0}) == [1, 0, 2]
    assert served_order(scores[0], served[0], {1}) == [0, 1, 2]
    # The record's top-k says position 2 for the relevant item, and so does its rank.
    assert served_first_relevant_ranks(scores, served, [{0}], depth=3).tolist() == [2]
    assert served_first_relevant_ranks(scores, served, [{1}], depth=3).tolist() == [2]
    assert served_first_relevant_ranks(scores, served, [{0, 1}], depth=3).tolist() == [1]


def test_an_item_the_search_did_not_return_ranks_after_depth():
    # An approximate search returned items 2 and 3 only (depth 3): the best-scored item 0 was missed.
    scores = np.array([[0.9, 0.7, 0.5, 0.4]])
    assert served_first_relevant_ranks(scores, [[2, 3]], [{3}], depth=3).tolist() == [2]
    # Item 0 is not in the served list: it ranks at depth + 1, first of the rest.
    assert served_first_relevant_ranks(scores, [[2, 3]], [{0}], depth=3).tolist() == [4]
    # Item 1 comes after item 0 among the rest.
    assert served_first_relevant_ranks(scores, [[2, 3]], [{1}], depth=3).tolist() == [5]


def test_served_lists_longer_than_depth_are_refused():
    with pytest.raises(ValueError, match="3 served items, more than depth 2"):
        served_first_relevant_ranks(np.ones((1, 3)), [[0, 1, 2]], [{0}], depth=2)


def test_exact_scores_tie_identical_vectors_whatever_the_row():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(257, 515)).astype(np.float32)
    items[200] = items[3]  # same vector in another BLAS block
    queries = rng.normal(size=(9, 515)).astype(np.float32)
    scores = exact_scores(queries, items)
    assert scores.dtype == np.float32
    assert (scores[:, 200] == scores[:, 3]).all()
    np.testing.assert_allclose(scores, queries @ items.T, rtol=1e-4, atol=1e-4)


def served_ranking_brute_force(row, served, relevant, depth):
    """The served ranking spelled out: served items, empty slots up to depth, then the rest."""
    key = lambda item: (-row[item], item in relevant, item)  # noqa: E731
    rest = [i for i in range(len(row)) if i not in served]
    return sorted(served, key=key) + [None] * (depth - len(served)) + sorted(rest, key=key)


@st.composite
def served_cases(draw):
    scores, relevant = draw(scores_and_relevant())
    depth = draw(st.integers(1, scores.shape[1] + 1))
    served = [draw(st.lists(st.integers(0, scores.shape[1] - 1), unique=True, max_size=depth)) for _ in scores]
    return scores, relevant, served, depth


@settings(max_examples=300, deadline=None)
@given(served_cases())
def test_served_ranks_and_order_equal_the_spelled_out_ranking(case):
    scores, relevant, served, depth = case
    expected, heads = [], []
    for row, rel, srv in zip(scores, relevant, served):
        ranking = served_ranking_brute_force(row, srv, rel, depth)
        expected.append(1 + [item is not None and item in rel for item in ranking].index(True))
        heads.append(ranking[: len(srv)])
    assert served_first_relevant_ranks(scores, served, relevant, depth).tolist() == expected
    assert [served_order(row, srv, rel) for row, rel, srv in zip(scores, relevant, served)] == heads
    # The top-k (the served order) and the rank never disagree.
    for head, rel, rank in zip(heads, relevant, expected):
        in_head = [n for n, item in enumerate(head, 1) if item in rel]
        assert (in_head[0] if in_head else None) == (rank if rank <= len(head) else None)


@settings(max_examples=200, deadline=None)
@given(scores_and_relevant(), st.integers(1, 9))
def test_served_exact_top_depth_gives_the_whole_collection_rank(case, depth):
    scores, relevant = case
    served = [pessimistic_ranking(row, rel)[:depth] for row, rel in zip(scores, relevant)]
    assert (served_first_relevant_ranks(scores, served, relevant, max(depth, 1)).tolist()
            == first_relevant_ranks(scores, relevant).tolist())
