"""`imgsearch bench query` on a small index: every stage timed, the cache measured apart."""

from imgsearch.bench.query import run_query_bench
from imgsearch.bench.summary import query_lines


def test_query_bench_times_each_stage_and_the_cache(tiny_openclip):
    result = run_query_bench(n=500, precisions=("fp32", "bf16", "int8"), n_queries=8, spec=tiny_openclip)
    assert [r["precision"] for r in result["runs"]] == ["fp32", "bf16", "int8"]
    assert result["ratios"]["fp32_p50_over_bf16_p50"] > 0 and result["ratios"]["fp32_p50_over_int8_p50"] > 0
    assert result["baseline_encode"]["n"] == 8  # open_clip's own encode_text, measured alongside
    assert result["ratios"]["fastest_encode_precision"] in {"fp32", "bf16", "int8"}
    run = result["runs"][0]
    assert run["index_type"] == "Flat" and run["unique"]["total"]["n"] == 8
    assert set(run["unique"]) == {"encode", "search", "metadata", "total"}
    # A repeated query skips the text tower: the cache must make it cheaper than encoding.
    assert run["repeated_total"]["p50"] < run["unique"]["encode"]["p50"]
    assert "new query p50" in query_lines(result)[1]
