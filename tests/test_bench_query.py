"""`imgsearch bench query` on a small index: every stage timed, the cache measured apart."""

from imgsearch.bench.query import run_query_bench
from imgsearch.bench.summary import query_lines


def test_query_bench_times_each_stage_and_the_cache(tiny_openclip):
    result = run_query_bench(n=500, precisions=("fp32", "bf16", "int8"), n_queries=8, spec=tiny_openclip)
    runs = {r["precision"]: r for r in result["runs"]}
    assert list(runs) == ["fp32", "bf16", "int8"]
    p50 = {p: r["unique"]["total"]["p50"] for p, r in runs.items()}
    ratios = result["ratios"]
    assert ratios["fp32_p50_over_bf16_p50"] == p50["fp32"] / p50["bf16"]
    assert ratios["fp32_p50_over_int8_p50"] == p50["fp32"] / p50["int8"]
    fastest = min(runs, key=lambda p: runs[p]["unique"]["encode"]["p50"])
    assert ratios["fastest_encode_precision"] == fastest
    assert result["baseline_encode"]["n"] == 8  # open_clip's own encode_text, measured alongside
    assert ratios["baseline_encode_p50_over_fastest_encode_p50"] == (
        result["baseline_encode"]["p50"] / runs[fastest]["unique"]["encode"]["p50"])
    for run in runs.values():
        assert run["index_type"] == "Flat"  # 500 vectors: exact search
        assert set(run["unique"]) == {"encode", "search", "metadata", "total"}
        assert run["unique"]["total"]["n"] == run["repeated_total"]["n"] == 8
    assert result["config"]["n"] == 500 and "cpu_flags" in result["machine"]
    lines = query_lines(result)
    assert lines[0].startswith("machine: ") and "new query p50" in lines[2]
