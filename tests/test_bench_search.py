"""The ANN search bench: what its result holds, on a collection small enough for a test."""

import json

import numpy as np
import pytest

from imgsearch.bench.search import ClusteredDistribution, rclip_style_top_k, run_search_bench
from imgsearch.errors import UsageError

LATENCY_KEYS = {"p50", "p95", "p99", "mean", "n"}


@pytest.fixture(scope="module")
def result():
    lines = []
    bench = run_search_bench(
        ns=(2000,), dim=32, n_queries=40, k=10, seed=0, progress=lines.append,
        n_latency_queries=10, latency_budget_s=0.01,
    )
    bench["progress_lines"] = lines
    return bench


def test_result_names_its_config_and_machine(result):
    assert result["config"]["ns"] == [2000]
    assert result["config"]["dim"] == 32
    assert result["config"]["k"] == 10
    machine = result["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["faiss_threads"] >= 1
    assert machine["faiss_latency_threads"] == 1
    assert machine["faiss_version"] and machine["numpy_version"]
    assert result["total_s"] > 0
    json.dumps(result)  # plain data only


def test_every_default_index_type_is_measured_or_says_why_not(result):
    (run,) = result["runs"]
    assert run["n"] == 2000
    assert run["nlist"] == 32
    assert run["factories"] == ["Flat", "HNSW32", "IVF32,Flat", "IVF32,SQ8", "IVF32,PQ4np"]
    by_factory = {entry["factory"]: entry for entry in run["indexes"]}
    assert by_factory["IVF32,PQ4np"]["error"].startswith("index 'IVF32,PQ4np' needs at least 9984 vectors")
    for factory in ["Flat", "HNSW32", "IVF32,Flat", "IVF32,SQ8"]:
        entry = by_factory[factory]
        assert entry["build_s"] >= 0
        assert entry["size_bytes"] > 0
        assert entry["estimated_bytes"] > 0
        for setting in entry["settings"]:
            assert set(setting["latency_ms"]) == LATENCY_KEYS
            assert 1 <= setting["latency_ms"]["n"] <= 10
            assert setting["latency_ms"]["p50"] <= setting["latency_ms"]["p99"]
            assert setting["batch_qps"] > 0
            assert 0.0 <= setting["recall_at_k"] <= 1.0


def test_search_params_are_swept_per_index_type(result):
    (run,) = result["runs"]
    by_factory = {entry["factory"]: entry for entry in run["indexes"]}
    assert [s["params"] for s in by_factory["Flat"]["settings"]] == [{}]
    assert [s["params"]["efSearch"] for s in by_factory["HNSW32"]["settings"]] == [16, 32, 64, 128, 256]
    # nprobe stops at nlist
    assert [s["params"]["nprobe"] for s in by_factory["IVF32,Flat"]["settings"]] == [1, 4, 8, 16, 32]


def test_exact_search_has_recall_one_and_scanning_every_list_too(result):
    (run,) = result["runs"]
    by_factory = {entry["factory"]: entry for entry in run["indexes"]}
    assert by_factory["Flat"]["settings"][0]["recall_at_k"] == 1.0
    assert by_factory["IVF32,Flat"]["settings"][-1]["recall_at_k"] == 1.0
    assert by_factory["Flat"]["params_at_target"] == {}
    # numpy's dot product may round differently from FAISS's, nothing more
    assert run["baseline"]["recall_at_k"] >= 0.99


def test_auto_choice_and_ratios_come_from_the_same_run(result):
    (run,) = result["runs"]
    auto = run["auto"]
    assert auto["factory"] == "Flat" and auto["params"] == {}
    assert auto["recall_at_k"] == 1.0
    ratios = run["ratios"]
    assert ratios["baseline_p50_over_auto_p50"] == pytest.approx(
        run["baseline"]["latency_ms"]["p50"] / auto["latency_ms"]["p50"]
    )
    assert ratios["flat_p50_over_auto_p50"] == pytest.approx(1.0)


def test_progress_lines_report_each_step(result):
    lines = result["progress_lines"]
    assert lines[0].startswith("N=2000: drew 2000 vectors and 40 queries of dim 32")
    assert any(line.startswith("N=2000: built HNSW32 in ") for line in lines)
    assert any(line.startswith("N=2000: skipping IVF32,PQ4np: ") for line in lines)


def test_factories_can_be_chosen_and_templated():
    bench = run_search_bench(
        ns=(1000,), dim=16, factories=["IVF{nlist},Flat"], n_queries=20,
        n_latency_queries=5, latency_budget_s=0.01,
    )
    (run,) = bench["runs"]
    # the automatic choice is always measured too
    assert run["factories"] == ["IVF16,Flat", "Flat"]
    assert run["ratios"]["flat_p50_over_auto_p50"] == pytest.approx(1.0)


def test_bad_sizes_are_a_usage_error():
    with pytest.raises(UsageError, match="need sizes, queries and k >= 1"):
        run_search_bench(ns=(0,), dim=16)


def test_clustered_vectors_are_unit_float32_rows():
    rng = np.random.default_rng(0)
    distribution = ClusteredDistribution.random(dim=16, n_clusters=4, noise=0.6, rng=rng)
    rows = distribution.sample(100, rng)
    assert rows.dtype == np.float32 and rows.shape == (100, 16)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_rclip_style_baseline_is_an_exact_top_k():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8), dtype=np.float32)
    query = rng.standard_normal(8, dtype=np.float32)
    ids = np.arange(100, 150)
    assert rclip_style_top_k(vectors, ids, query, 3) == ids[np.argsort(-(vectors @ query))[:3]].tolist()
