"""The uncertainty block shared by eval and eval --judged (stats.py): per-model intervals and
paired comparisons, checked against the one-figure functions; neither evaluation imports the other."""

import ast
import os

import numpy as np
import pytest

import imgsearch
from imgsearch import stats


def test_intervals_and_comparisons_equal_the_one_figure_functions():
    rng = np.random.default_rng(5)
    hits_a, hits_b = rng.integers(0, 2, 30).astype(float), rng.integers(0, 2, 30).astype(float)
    rr_a, rr_b = 1 / rng.integers(1, 9, 30), 1 / rng.integers(1, 9, 30)
    values = [{"recall@1": hits_a, "mrr": rr_a}, {"recall@1": hits_b, "mrr": rr_b}]
    intervals, comparisons = stats.intervals_and_comparisons(["a", "b"], values, 400, 3)
    for interval, figures in zip(intervals, values):
        assert list(interval) == ["recall@1", "mrr"]
        for name, column in figures.items():
            assert interval[name] == pytest.approx(stats.bootstrap_interval(column, 400, 3).tolist())
    assert [(c["a"], c["b"], c["metric"]) for c in comparisons] == [("a", "b", "recall@1"), ("a", "b", "mrr")]
    for c, (a, b) in zip(comparisons, [(hits_a, hits_b), (rr_a, rr_b)]):
        expected = stats.paired_comparison(a, b, 400, 3)
        assert c["difference"] == pytest.approx(expected["difference"])
        assert c["ci95"] == pytest.approx(expected["ci95"])
        assert c["p_value"] == pytest.approx(expected["p_value"])
        assert c["queries"] == 30 and c["queries_differing"] == int(np.sum(a != b))


def test_three_models_give_every_pair_once():
    column = np.arange(6, dtype=float)
    _, comparisons = stats.intervals_and_comparisons(
        ["x", "y", "z"], [{"mrr": column}, {"mrr": column + 1}, {"mrr": column * 0}], 100, 0)
    assert [(c["a"], c["b"]) for c in comparisons] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert [c["difference"] for c in comparisons] == pytest.approx([-1.0, 2.5, 3.5])


def test_the_uncertainty_entry_names_how_it_was_made():
    u = stats.uncertainty(300, 7)
    assert u == {"interval": stats.INTERVAL_METHOD, "level": 0.95, "resamples": 300, "seed": 7,
                 "paired_interval": stats.PAIRED_INTERVAL, "test": stats.TEST_METHOD, "alpha": stats.ALPHA}
    d = stats.definitions(300, 7)
    assert "300 resamples, seed 7" in d["ci95"] and "(seed 7)" in d["comparisons"]


def imported_modules(module: str) -> set[str]:
    path = os.path.join(os.path.dirname(imgsearch.__file__), f"{module}.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module, other", [("judged_eval", "evaluate"), ("evaluate", "judged_eval")])
def test_the_two_evaluations_do_not_import_each_other(module, other):
    assert f".{other}" not in imported_modules(module)
    assert f"imgsearch.{other}" not in imported_modules(module)
