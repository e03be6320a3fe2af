"""What `imgsearch demo` prints: each figure with its interval, and the paired comparison."""

from imgsearch.cli import demo_text
from imgsearch.stats import INTERVAL_METHOD, TEST_METHOD


def test_demo_prints_intervals_beside_its_figures_and_the_paired_test():
    result = {
        "searches": [],
        "recall": {"bridge:lite0": {"recall@10": 0.2675}, "bridge:lite2": {"recall@10": 0.2676}},
        "recall_ci95": {"bridge:lite0": {"recall@10": [0.2369, 0.2981]},
                        "bridge:lite2": {"recall@10": [0.2357, 0.2994]}},
        "uncertainty": {"interval": INTERVAL_METHOD, "level": 0.95, "resamples": 2000, "seed": 0,
                        "test": TEST_METHOD},
        "comparisons": [{"a": "bridge:lite0", "b": "bridge:lite2", "metric": "recall@10", "difference": 0.0,
                         "ci95": [-0.0166, 0.0191], "p_value": 1.0, "queries": 785, "queries_differing": 31}],
        "report": {"report.html": "reports/x/report.html"},
    }
    lines = list(demo_text(result))
    assert lines[0] == "bridge:lite0: recall@10 0.268 [0.237,0.298]"
    assert lines[1] == "bridge:lite2: recall@10 0.268 [0.236,0.299]"
    assert lines[2] == ("bridge:lite0 - bridge:lite2, recall@10: +0.000 [-0.017,+0.019] p=1 "
                        "(31 of 785 queries differ)")
    assert lines[3].startswith(f"[low,high]: 95% {INTERVAL_METHOD}, 2000 resamples, seed 0; p: ")
    assert lines[4] == "report: reports/x/report.html"
