"""Bootstrap intervals and paired tests against brute-force references and simulated data."""

import itertools
from math import comb

import numpy as np
import pytest

from imgsearch.errors import UsageError
from imgsearch.stats import (
    bootstrap_interval,
    bootstrap_means,
    paired_comparison,
    percentile_interval,
    sign_flip_p_value,
)

# --- the bootstrap ------------------------------------------------------------------------


def test_bootstrap_means_equal_a_literal_resampling_loop():
    values = np.random.default_rng(3).normal(size=(37, 3))
    rng = np.random.default_rng(11)
    reference = np.array([values[rng.integers(0, 37, 37)].mean(axis=0) for _ in range(200)])
    np.testing.assert_allclose(bootstrap_means(values, 200, seed=11), reference, rtol=1e-12)


def test_every_column_is_resampled_with_the_same_queries():
    a = np.arange(20, dtype=float)
    means = bootstrap_means(np.column_stack([a, a + 1.0, 2 * a]), 300, seed=0)
    np.testing.assert_allclose(means[:, 1], means[:, 0] + 1)
    np.testing.assert_allclose(means[:, 2], 2 * means[:, 0])


def test_percentile_interval_by_hand():
    samples = np.arange(1, 101, dtype=float)  # 1..100
    # numpy's linear percentiles: 2.5% sits at position 2.475 -> 3.475, 97.5% at 97.525
    assert percentile_interval(samples).tolist() == pytest.approx([3.475, 97.525])
    np.testing.assert_allclose(percentile_interval(np.column_stack([samples, -samples])),
                               [[3.475, 97.525], [-97.525, -3.475]])


def test_a_constant_has_a_zero_width_interval():
    assert bootstrap_interval(np.full(50, 0.25), 100, seed=0).tolist() == [0.25, 0.25]


def test_bootstrap_is_seeded():
    values = np.random.default_rng(0).random(100)
    assert bootstrap_interval(values, 500, seed=4).tolist() == bootstrap_interval(values, 500, seed=4).tolist()
    assert bootstrap_interval(values, 500, seed=4).tolist() != bootstrap_interval(values, 500, seed=5).tolist()


@pytest.mark.parametrize("kind", ["hits", "reciprocal ranks"])
def test_intervals_cover_the_true_mean_about_95_percent_of_the_time(kind):
    rng = np.random.default_rng(2024)
    trials, n, covered = 300, 150, 0
    for trial in range(trials):
        if kind == "hits":  # recall@k: 0/1 per query
            true_mean, sample = 0.3, (rng.random(n) < 0.3).astype(float)
        else:  # MRR: 1/rank with geometric ranks, mean sum p(1-p)^(r-1)/r = -p ln(p) / (1-p)
            p = 0.4
            true_mean, sample = -p * np.log(p) / (1 - p), 1.0 / rng.geometric(p, n)
        low, high = bootstrap_interval(sample, 1000, seed=trial)
        covered += low <= true_mean <= high
    # 300 trials: the binomial standard error at 95% is 1.3 points
    assert 0.91 <= covered / trials <= 0.98


# --- the paired sign-flip test ------------------------------------------------------------


def brute_force_p(differences) -> float:
    d = np.asarray([x for x in differences if x != 0], dtype=float)
    observed = abs(d.sum())
    sums = [abs(np.dot(signs, d)) for signs in itertools.product([1, -1], repeat=len(d))]
    return float(np.mean(np.array(sums) >= observed - 1e-12))


def test_exact_p_value_equals_full_enumeration():
    d = [0.5, -0.25, 1.0, 0.0, 0.0, 0.125, -1.0, 0.75, 0.2]
    assert sign_flip_p_value(d, n_resamples=1000) == pytest.approx(brute_force_p(d))


def test_on_hits_the_exact_test_is_mcnemars():
    # 7 queries only model a finds, 2 only model b finds, 40 both or neither.
    d = [1] * 7 + [-1] * 2 + [0] * 40
    # two-sided exact binomial on the 9 discordant queries: P(X <= 2 or X >= 7), X ~ Bin(9, 1/2)
    expected = 2 * (comb(9, 0) + comb(9, 1) + comb(9, 2)) / 2**9
    assert sign_flip_p_value(d, n_resamples=1000) == pytest.approx(expected)
    assert expected == pytest.approx(92 / 512)


def test_random_sign_flips_approach_the_exact_p_value():
    d = np.random.default_rng(5).normal(0.3, 1.0, size=16)  # 2^16 patterns > 5000 resamples
    exact = brute_force_p(d)
    estimate = sign_flip_p_value(d, n_resamples=5000, seed=1)
    assert abs(estimate - exact) < 4 * np.sqrt(exact * (1 - exact) / 5000) + 1e-3
    assert estimate >= 1 / 5001


def test_no_difference_gives_p_one_and_the_smallest_p_is_never_zero():
    assert sign_flip_p_value([0, 0, 0]) == 1.0
    assert sign_flip_p_value([1.0] * 200, n_resamples=100, seed=0) == pytest.approx(1 / 101)


def test_false_positive_rate_under_the_null_is_about_alpha():
    rng = np.random.default_rng(77)
    trials, rejected = 400, 0
    for trial in range(trials):
        difficulty = rng.random(120)  # both models see the same queries, equally good on average
        a, b = 1 / (1 + difficulty * rng.geometric(0.3, 120)), 1 / (1 + difficulty * rng.geometric(0.3, 120))
        rejected += sign_flip_p_value(a - b, n_resamples=500, seed=trial) < 0.05
    assert 0.025 <= rejected / trials <= 0.08


def test_on_hits_the_test_is_conservative_never_liberal():
    rng = np.random.default_rng(78)
    trials, rejected = 400, 0
    for trial in range(trials):
        easy = rng.random(120) < 0.4  # found by both; either model finds 10% more, by chance
        a = (easy | (rng.random(120) < 0.1)).astype(float)
        b = (easy | (rng.random(120) < 0.1)).astype(float)
        rejected += sign_flip_p_value(a - b, n_resamples=500, seed=trial) < 0.05
    assert rejected / trials <= 0.06


def test_a_real_difference_is_found():
    rng = np.random.default_rng(8)
    base = rng.random(400)
    a, b = (base < 0.5).astype(float), (base < 0.4).astype(float)  # a finds 10% more, never fewer
    result = paired_comparison(a, b, n_resamples=1000, seed=0)
    assert result["difference"] == pytest.approx(np.mean(a - b))
    assert result["p_value"] < 0.001
    assert 0 < result["ci95"][0] < result["difference"] < result["ci95"][1]


def test_paired_interval_is_the_bootstrap_of_the_differences():
    rng = np.random.default_rng(9)
    a, b = rng.random(60), rng.random(60)
    result = paired_comparison(a, b, n_resamples=400, seed=3)
    assert result["ci95"] == pytest.approx(bootstrap_interval(a - b, 400, seed=3).tolist())
    assert result["queries"] == 60


def test_bad_input_is_refused():
    with pytest.raises(UsageError, match="--bootstrap must be a positive integer, got 0"):
        bootstrap_means([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_means([1.0, np.nan], 10)
    with pytest.raises(ValueError, match="same queries"):
        paired_comparison([1.0, 2.0], [1.0], 10)
    with pytest.raises(ValueError, match="no differences"):
        sign_flip_p_value([])
