"""The plus/minus terms' effect carries a seeded paired bootstrap interval over the composed
queries (evaluate.composition_effect), shown in the report's composition table."""

import numpy as np
import pytest

from imgsearch.evaluate import composition_effect, rank_values
from imgsearch.report_tables import composition_table

# Six composed queries' first relevant ranks, with their terms and with their text alone.
WITH_TERMS = [1, 1, 2, 1, 7, 3]
TEXT_ONLY = [4, 1, 9, 2, 7, 1]


def literal_paired_bootstrap(a, b, resamples, seed):
    """Resample the queries with replacement, rng.integers(0, n, n) per resample, and take the
    2.5 and 97.5 percentiles of the resampled mean difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        rows = rng.integers(0, len(a), len(a))
        diffs.append(a[rows].mean() - b[rows].mean())
    return np.percentile(diffs, [2.5, 97.5]).tolist()


def test_rank_values_by_hand():
    values = rank_values([1, 2, 5], (1, 3))
    assert values["recall@1"].tolist() == [1, 0, 0]
    assert values["recall@3"].tolist() == [1, 1, 0]
    assert values["mrr"].tolist() == pytest.approx([1, 0.5, 0.2])


def test_the_effect_and_its_interval_on_a_hand_built_case():
    effect = composition_effect(rank_values(WITH_TERMS, (1,)), rank_values(TEXT_ONLY, (1,)), 500, 4)
    # recall@1 hits: with terms 1,1,0,1,0,0; text only 0,1,0,0,0,1 -> +1/6 on average
    assert effect["difference"]["recall@1"] == pytest.approx(1 / 6)
    rr_with = [1, 1, 1 / 2, 1, 1 / 7, 1 / 3]
    rr_text = [1 / 4, 1, 1 / 9, 1 / 2, 1 / 7, 1]
    assert effect["difference"]["mrr"] == pytest.approx(np.mean(np.subtract(rr_with, rr_text)))
    assert effect["difference_ci95"]["recall@1"] == pytest.approx(
        literal_paired_bootstrap([1, 1, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1], 500, 4))
    assert effect["difference_ci95"]["mrr"] == pytest.approx(literal_paired_bootstrap(rr_with, rr_text, 500, 4))
    # three discordant queries, two for the terms and one against: of the 8 sign patterns of
    # the exact test, every one has |sum| >= 1
    assert effect["difference_p_value"]["recall@1"] == 1.0
    # three for the terms, none against: only the 2 of 8 patterns with all signs alike reach |sum| 3
    one_sided = composition_effect({"recall@1": np.array([1.0, 1, 1, 0])}, {"recall@1": np.zeros(4)}, 500, 4)
    assert one_sided["difference_p_value"]["recall@1"] == pytest.approx(2 / 8)
    low, high = effect["difference_ci95"]["recall@1"]
    assert low < 1 / 6 < high


def test_the_interval_is_seeded():
    a, b = rank_values(WITH_TERMS, (1, 5)), rank_values(TEXT_ONLY, (1, 5))
    assert composition_effect(a, b, 300, 9) == composition_effect(a, b, 300, 9)
    assert composition_effect(a, b, 300, 9)["difference_ci95"] != composition_effect(a, b, 300, 10)["difference_ci95"]


def composition(effect: dict) -> dict:
    return {"queries": 6, "with_terms": {"recall@1": 0.5, "mrr": 0.66}, "text_only": {"recall@1": 1 / 3, "mrr": 0.5},
            **effect}


def test_the_table_shows_each_effect_with_its_interval():
    effect = {"difference": {"recall@1": 1 / 6, "mrr": 0.16},
              "difference_ci95": {"recall@1": [-0.5, 0.6666], "mrr": [-0.25, 0.5]}}
    cols, rows = composition_table({"models": [{"label": "m", "composition": composition(effect)},
                                               {"label": "plain"}]})
    assert cols == ["model", "queries", "recall@1 with terms / text only (diff)", "recall@1 diff 95% CI",
                    "mrr with terms / text only (diff)", "mrr diff 95% CI"]
    assert rows == [["m", "6", "0.500 / 0.333 (+0.167)", "[-0.500, +0.667]", "0.660 / 0.500 (+0.160)",
                     "[-0.250, +0.500]"]]


def test_results_written_before_the_interval_still_render():
    _, rows = composition_table({"models": [{"label": "m", "composition": composition(
        {"difference": {"recall@1": 1 / 6, "mrr": 0.16}})}]})
    assert rows[0][3] == "—" and rows[0][5] == "—"
