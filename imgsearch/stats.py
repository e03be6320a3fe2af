"""How sure a figure is: bootstrap intervals over queries and paired tests between models.

Every quality figure of an evaluation is a mean over queries of a per-query value (a query's
hit at k, reciprocal rank, nDCG@10), so its uncertainty is that of a mean over a sample of
queries. Small pure numpy functions, seeded, so a report's intervals recompute exactly.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

LEVEL = 0.95
ALPHA = 0.05  # a paired difference with p >= ALPHA is not told apart from noise
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
_EXACT_LIMIT = 2**20  # sign patterns enumerated at most, whatever the resample count
_FLIPS_PER_BLOCK = 64  # random sign patterns drawn at once (bounds a block to 64 x queries)

INTERVAL_METHOD = "percentile bootstrap over queries"
TEST_METHOD = ("two-sided paired sign-flip permutation test of the mean per-query difference, exact over "
               "all 2^m sign patterns of the m nonzero differences when 2^m <= resamples")
PAIRED_INTERVAL = "the same percentile bootstrap with both models on the same resampled queries"


def check_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise UsageError(f"--bootstrap must be a positive integer, got {n_resamples!r}")
    return int(n_resamples)


def bootstrap_means(values, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Means of bootstrap resamples of the rows of values (n queries x m columns): (n_resamples, m).

    Every column is resampled with the same rows, so the difference of two columns' resampled
    means is the paired bootstrap of their per-query difference. Resample b draws its n rows
    as rng.integers(0, n, n) with rng = numpy.random.default_rng(seed), for b = 0, 1, ...
    A 1-d values is one column.
    """
    n_resamples = check_resamples(n_resamples)
    matrix = _columns(values)
    n = len(matrix)
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, matrix.shape[1]))
    for b in range(n_resamples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        means[b] = counts @ matrix / n
    return means


def percentile_interval(samples, level: float = LEVEL) -> np.ndarray:
    """(low, high) per column of resampled statistics: their (1-level)/2 and (1+level)/2
    percentiles, numpy's linear method. 1-d samples give one pair, 2-d an (m, 2) array."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie between 0 and 1, got {level}")
    samples = np.asarray(samples, dtype=np.float64)
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0, method="linear")
    return np.stack([low, high], axis=-1)


def bootstrap_interval(values, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                       level: float = LEVEL) -> np.ndarray:
    """Percentile bootstrap interval of the mean of each column of values."""
    intervals = percentile_interval(bootstrap_means(values, n_resamples, seed), level)
    return intervals[0] if np.ndim(values) == 1 else intervals


def sign_flip_p_value(differences, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> float:
    """Two-sided p-value of a paired randomisation test that the mean difference is zero.

    Under the null hypothesis a query's two values are exchangeable, so its difference is as
    likely to carry either sign. Zero differences cannot change sign and drop out; the
    statistic is |sum of differences|. With m nonzero differences the test is exact over all
    2^m sign patterns when 2^m <= n_resamples; else it draws n_resamples random patterns
    (seeded) and counts the observed one in: p = (1 + #{|S*| >= |S|}) / (1 + n_resamples),
    never 0. On 0/1 hits this is the exact McNemar test.
    """
    n_resamples = check_resamples(n_resamples)
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("no differences")
    if np.isnan(d).any():
        raise ValueError("differences contain NaN")
    d = d[d != 0]
    m = d.size
    if m == 0:
        return 1.0
    observed = abs(d.sum())
    # Sums of the same terms in another order differ in the last bits; an equal sum must count.
    slack = 1e-9 * np.abs(d).sum()
    if m < 63 and 2**m <= min(n_resamples, _EXACT_LIMIT):
        patterns = 1 - 2 * ((np.arange(2**m)[:, None] >> np.arange(m)) & 1)
        return float(np.mean(np.abs(patterns @ d) >= observed - slack))
    rng = np.random.default_rng(seed)
    extreme, left = 0, n_resamples
    while left:
        block = min(left, _FLIPS_PER_BLOCK)
        flips = rng.integers(0, 2, size=(block, m), dtype=np.int8)
        sums = d.sum() - 2 * (flips @ d)  # flipping a set of terms subtracts twice their sum
        extreme += int(np.count_nonzero(np.abs(sums) >= observed - slack))
        left -= block
    return (1 + extreme) / (1 + n_resamples)


def paired_comparison(a, b, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                      level: float = LEVEL) -> dict:
    """Mean of a - b over the same queries, its paired bootstrap interval and sign-flip p-value."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need the same queries: shapes {a.shape} and {b.shape}")
    means = bootstrap_means(np.column_stack([a, b]), n_resamples, seed)
    return {
        "difference": float(np.mean(a - b)),
        "ci95": percentile_interval(means[:, 0] - means[:, 1], level).tolist(),
        "p_value": sign_flip_p_value(a - b, n_resamples, seed),
        "queries": int(a.size),
    }


def uncertainty(resamples: int, seed: int) -> dict:
    """An evaluation's "uncertainty" entry: how its intervals and paired tests were made."""
    return {"interval": INTERVAL_METHOD, "level": LEVEL, "resamples": resamples, "seed": seed,
            "paired_interval": PAIRED_INTERVAL, "test": TEST_METHOD, "alpha": ALPHA}


def definitions(resamples: int, seed: int) -> dict:
    """An evaluation's definitions of its intervals ("ci95") and paired comparisons."""
    return {
        "ci95": f"95% {INTERVAL_METHOD}, {resamples} resamples, seed {seed}",
        "comparisons": f"per pair of models on the same queries: mean difference a - b, its paired bootstrap "
                       f"95% interval, and the p-value of a {TEST_METHOD}, else of {resamples} random "
                       f"sign patterns (seed {seed}); no correction for multiple comparisons",
    }


def intervals_and_comparisons(labels: list[str], values: list[dict[str, np.ndarray]], resamples: int,
                              seed: int) -> tuple[list[dict], list[dict]]:
    """values[i][name]: model i's per-query values of a figure, the same queries for every model.
    Per model, each figure's bootstrap interval; per pair of models and figure, the paired
    comparison. Every column is resampled with the same rows, so the pairs are paired."""
    names = list(values[0])
    columns = np.column_stack([v[name] for v in values for name in names])
    means = bootstrap_means(columns, resamples, seed)
    bounds = percentile_interval(means)
    width = len(names)
    intervals = [{name: bounds[i * width + j].tolist() for j, name in enumerate(names)} for i in range(len(labels))]
    comparisons = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            for n, name in enumerate(names):
                a, b = i * width + n, j * width + n
                difference = columns[:, a] - columns[:, b]
                comparisons.append({
                    "a": labels[i], "b": labels[j], "metric": name,
                    "difference": float(difference.mean()),
                    "ci95": percentile_interval(means[:, a] - means[:, b]).tolist(),
                    "p_value": sign_flip_p_value(difference, resamples, seed),
                    "queries": int(len(difference)),
                    "queries_differing": int(np.count_nonzero(difference)),
                })
    return intervals, comparisons


def _columns(values) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError(f"values must be a non-empty vector or (queries x columns) matrix, got {matrix.shape}")
    if np.isnan(matrix).any():
        raise ValueError("values contain NaN")
    return matrix
