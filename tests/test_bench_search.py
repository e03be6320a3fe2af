"""The ANN search bench: what its result holds, on a collection small enough for a test."""

import json

import numpy as np
import pytest

from imgsearch.bench.search import (
    AUTOINDEX_TUNED_ON,
    ClusteredDistribution,
    modality_gap_queries,
    rclip_style_top_k,
    run_search_bench,
)
from imgsearch.bench.summary import search_lines
from imgsearch.errors import UsageError

LATENCY_KEYS = {"p50", "p95", "p99", "mean", "n"}
DIM = 256  # high enough that unrelated vectors stay below the gap's cosine of 0.3


@pytest.fixture(scope="module")
def result():
    lines = []
    bench = run_search_bench(
        ns=(2000,), dim=DIM, n_queries=40, k=10, progress=lines.append,
        n_latency_queries=10, latency_budget_s=0.01,
    )
    bench["progress_lines"] = lines
    return bench


def _nearest_cosines(queries, base):
    return np.max(queries @ base.T, axis=1)


def test_result_names_its_config_and_the_machine_with_its_cpu_flags(result):
    config = result["config"]
    assert (config["ns"], config["dim"], config["k"], config["seed"]) == ([2000], DIM, 10, 1)
    assert config["query_sets"] == ["same_distribution", "modality_gap"]
    machine = result["machine"]
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    assert set(machine["cpu_flags"]) == flags & {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16",
                                                  "amx_tile", "amx_int8", "avx512_vnni", "avx_vnni", "f16c"}
    assert machine["bf16_native"] == bool(flags & {"amx_bf16", "avx512_bf16"})
    assert machine["faiss_threads"] >= 1 and machine["faiss_latency_threads"] == 1
    assert len(machine["load_average_start"]) == len(machine["load_average_end"]) == 3
    assert json.loads(json.dumps(result)) == result  # plain data only


def test_every_default_index_type_is_built_once_or_says_why_not(result):
    (run,) = result["runs"]
    assert run["n"] == 2000 and run["nlist"] == 32
    assert run["factories"] == ["Flat", "HNSW32", "IVF32,Flat", "IVF32,SQ8", f"IVF32,PQ{DIM // 8}np"]
    builds = {b["factory"]: b for b in run["builds"]}
    assert builds[f"IVF32,PQ{DIM // 8}np"]["error"].startswith(f"index 'IVF32,PQ{DIM // 8}np' needs at least 9984")
    assert builds["Flat"]["size_bytes"] >= 2000 * DIM * 4  # the vectors themselves
    assert builds["IVF32,SQ8"]["size_bytes"] < builds["IVF32,Flat"]["size_bytes"] / 3  # one byte per component
    for name, queries in run["queries"].items():
        measured = [index["factory"] for index in queries["indexes"]]
        assert measured == ["Flat", "HNSW32", "IVF32,Flat", "IVF32,SQ8"], name
        for index in queries["indexes"]:
            for setting in index["settings"]:
                assert set(setting["latency_ms"]) == LATENCY_KEYS
                assert 1 <= setting["latency_ms"]["n"] <= 10
                assert setting["latency_ms"]["p50"] <= setting["latency_ms"]["p99"]


def test_search_params_are_swept_per_index_type(result):
    (run,) = result["runs"]
    for queries in run["queries"].values():
        by_factory = {entry["factory"]: entry for entry in queries["indexes"]}
        assert [s["params"] for s in by_factory["Flat"]["settings"]] == [{}]
        assert [s["params"]["efSearch"] for s in by_factory["HNSW32"]["settings"]] == [16, 32, 64, 128, 256]
        # nprobe stops at nlist
        assert [s["params"]["nprobe"] for s in by_factory["IVF32,Flat"]["settings"]] == [1, 4, 8, 16, 32]


def test_exact_search_has_recall_one_and_one_probe_misses_some(result):
    (run,) = result["runs"]
    for name, queries in run["queries"].items():
        by_factory = {entry["factory"]: entry for entry in queries["indexes"]}
        assert by_factory["Flat"]["settings"][0]["recall_at_k"] == 1.0
        ivf = [s["recall_at_k"] for s in by_factory["IVF32,Flat"]["settings"]]
        assert ivf[-1] == 1.0 and ivf[0] < 0.95, name  # all 32 lists: exact; one list: not
        assert by_factory["Flat"]["params_at_target"] == {}
        # numpy's dot product may round differently from FAISS's, nothing more
        assert queries["baseline"]["recall_at_k"] >= 0.99


def test_modality_gap_queries_sit_at_clip_text_to_image_similarity(result):
    (run,) = result["runs"]
    same, gap = run["queries"]["same_distribution"], run["queries"]["modality_gap"]
    assert gap["gap_similarity_target"] == 0.3
    assert gap["nn_similarity"]["mean"] == pytest.approx(0.3, abs=0.02)
    assert same["nn_similarity"]["mean"] > 0.6  # the same-distribution set is nowhere near the gap
    assert gap["nn_similarity"]["p10"] <= gap["nn_similarity"]["p50"] <= gap["nn_similarity"]["p90"]
    assert 0 < gap["gap_weight"] < 1


def test_gap_queries_are_calibrated_on_their_own_nearest_neighbours():
    rng = np.random.default_rng(5)
    distribution = ClusteredDistribution.random(dim=DIM, n_clusters=6, noise=0.6, rng=rng)
    base = distribution.sample(3000, rng)
    queries, weight = modality_gap_queries(distribution, base, 300, rng, target=0.35)
    assert queries.dtype == np.float32 and queries.shape == (300, DIM)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    # brute force, not the faiss call the calibration used
    assert _nearest_cosines(queries, base).mean() == pytest.approx(0.35, abs=0.02)
    same = distribution.sample(300, rng)
    assert _nearest_cosines(same, base).mean() > 0.6
    # the queries share the gap direction: they are closer to one another than to any image
    query_cosines = queries @ queries.T
    assert np.mean(query_cosines[np.triu_indices(300, 1)]) > _nearest_cosines(queries, base).mean()
    assert 0 < weight < 0.6


def test_auto_choice_is_checked_on_each_query_set_and_ratios_recompute(result):
    (run,) = result["runs"]
    checks = {c["query_set"]: c for c in result["auto_check"]}
    assert set(checks) == {"same_distribution", "modality_gap"}
    for name, queries in run["queries"].items():
        auto = queries["auto"]
        assert auto["factory"] == "Flat" and auto["params"] == {}
        assert auto["meets_target"] == (auto["recall_at_k"] >= result["config"]["target_recall"])
        assert checks[name] == {"n": 2000, "query_set": name, "held_out": queries["held_out"], "factory": "Flat",
                                "params": {}, "recall_at_k": auto["recall_at_k"], "meets_target": auto["meets_target"]}
        flat = next(i for i in queries["indexes"] if i["factory"] == "Flat")["settings"][0]["latency_ms"]["p50"]
        baseline = queries["baseline"]["latency_ms"]["p50"]
        ratios = queries["ratios"]
        assert ratios["baseline_p50_over_flat_p50"] == baseline / flat  # exact vs exact
        assert ratios["baseline_p50_over_auto_p50"] == baseline / auto["latency_ms"]["p50"]
        assert ratios["flat_p50_over_auto_p50"] is None  # auto is Flat: one measurement, not a ratio
    # seed 1 is not the seed autoindex was tuned on; the gap queries are new to it at any seed
    assert result["config"]["autoindex_tuned_on"] == AUTOINDEX_TUNED_ON
    assert run["queries"]["same_distribution"]["held_out"] and run["queries"]["modality_gap"]["held_out"]


def test_an_ivf_auto_index_reports_ann_against_exact_and_the_tuned_seed_is_not_held_out():
    bench = run_search_bench(
        ns=(20_000,), dim=512, factories=["Flat"], n_queries=20, seed=0,
        n_latency_queries=5, latency_budget_s=0.01,
    )
    (run,) = bench["runs"]
    assert run["factories"] == ["Flat", "IVF512,Flat"]  # the automatic choice is always measured too
    same = run["queries"]["same_distribution"]
    assert same["held_out"] is False and run["queries"]["modality_gap"]["held_out"] is True
    auto = same["auto"]
    assert auto["factory"] == "IVF512,Flat" and auto["params"] == {"nprobe": 16}
    flat = same["indexes"][0]["settings"][0]["latency_ms"]["p50"]
    assert same["ratios"]["flat_p50_over_auto_p50"] == flat / auto["latency_ms"]["p50"]
    text = "\n".join(search_lines(bench))
    assert "auto: IVF512,Flat nprobe=16" in text and "ANN vs exact: Flat / auto p50" in text
    assert "autoindex was tuned on these" in text and "held out from autoindex's tuning" in text


def test_progress_and_summary_report_each_step(result):
    lines = result["progress_lines"]
    assert lines[0].startswith("N=2000: drew 2000 vectors and 2 x 40 queries of dim 256")
    assert any(line.startswith("N=2000: built HNSW32 in ") for line in lines)
    assert any(line.startswith(f"N=2000: skipping IVF32,PQ{DIM // 8}np: ") for line in lines)
    text = search_lines(result)
    assert text[0].startswith("machine: ") and "modality_gap queries (held out" in "\n".join(text)


@pytest.mark.parametrize("kwargs", [{"ns": (0,)}, {"gap_similarity": 1.0}, {"k": 0}])
def test_bad_arguments_are_a_usage_error(kwargs):
    with pytest.raises(UsageError, match="need sizes, queries and k >= 1"):
        run_search_bench(**{"ns": (100,), "dim": 16, **kwargs})


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


def test_index_auto_on_the_command_line_measures_the_automatic_index_alone():
    from click.testing import CliRunner

    from imgsearch.cli import cli

    out = CliRunner().invoke(cli, ["bench", "search", "--n", "2000", "--dim", "64", "--queries", "10",
                                   "--index", "auto", "--json"])
    assert out.exit_code == 0, out.output
    (run,) = json.loads(out.stdout)["runs"]
    assert run["factories"] == ["Flat"]  # auto at 2000 vectors is Flat; nothing else was asked for
    assert [b["factory"] for b in run["builds"]] == ["Flat"]
