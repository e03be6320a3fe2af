"""`imgsearch eval`: real images through the real search path; a report that recomputes."""

import csv
import json
import os

import pytest

from imgsearch.datasets import load_dataset
from imgsearch.evaluate import evaluate
from imgsearch.report import pareto_front, recommend, write_report
from imgsearch.samples import write_samples


def fake_model(spec, recall, p50):
    return {"label": spec, "spec": spec, "t2i": {"recall@1": recall, "recall@10": recall}, "latency_ms": {"total": {"p50": p50}}}


def test_pareto_front_drops_models_beaten_on_both_axes():
    models = [fake_model("fast", 0.5, 10), fake_model("slow-good", 0.9, 100),
              fake_model("dominated", 0.4, 50), fake_model("mid", 0.85, 30)]
    assert pareto_front(models) == ["fast", "slow-good", "mid"]


def test_recommendation_per_priority():
    models = [fake_model("fast", 0.5, 10), fake_model("slow-good", 0.9, 100), fake_model("mid", 0.85, 30)]
    rec = recommend(models)
    assert (rec["speed"]["model"], rec["balance"]["model"], rec["quality"]["model"]) == ("fast", "mid", "slow-good")


@pytest.fixture(scope="module")
def sample_eval(tmp_path_factory):
    """bridge:lite0 and bridge:lite2 on the sample photos with their captions, report written."""
    root = tmp_path_factory.mktemp("eval")
    write_samples(str(root / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(root / "photos" / "captions.jsonl"))
    results = evaluate(dataset, ["bridge:lite0", "bridge:lite2"], str(root / "indexes"), ks=(1, 5, 10))
    paths = write_report(results, str(root / "report"))
    return dataset, paths


def test_report_files_are_written(sample_eval):
    _, paths = sample_eval
    assert sorted(paths) == ["report.html", "report.md", "results.csv", "results.json"]
    page = open(paths["report.html"]).read()
    assert page.count("<svg") == 3 and "Pareto front" in page
    with open(paths["results.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["bridge:lite0", "bridge:lite2"]


def test_every_caption_is_a_query_through_the_real_index(sample_eval):
    dataset, paths = sample_eval
    results = json.load(open(paths["results.json"]))
    assert results["dataset"]["images"] == 15 and results["dataset"]["queries"] == 30
    for model in results["models"]:
        assert len(model["queries"]) == 30
        assert model["latency_ms"]["total"]["n"] == 30
        assert all(len(q["topk"]) == 10 for q in model["queries"])


def test_aggregates_recompute_from_the_per_query_records(sample_eval):
    _, paths = sample_eval
    results = json.load(open(paths["results.json"]))
    for model in results["models"]:
        queries = model["queries"]
        for k in results["ks"]:
            hits = [any(p in q["relevant"] for p in q["topk"][:k]) for q in queries]
            assert model["t2i"][f"recall@{k}"] == pytest.approx(sum(hits) / len(hits))
        ranks = [q["first_relevant_rank"] for q in queries]
        assert model["t2i"]["mrr"] == pytest.approx(sum(1 / r for r in ranks) / len(ranks))
        assert model["t2i"]["mean_rank"] == pytest.approx(sum(ranks) / len(ranks))
        # Exact index: the whole-collection rank agrees with the real top-k.
        for q in queries:
            in_top = [i for i, p in enumerate(q["topk"], 1) if p in q["relevant"]]
            assert (in_top[0] if in_top else None) == (q["first_relevant_rank"] if q["first_relevant_rank"] <= 10 else None)
        totals = sorted(q["timing_ms"]["total"] for q in queries)
        assert model["latency_ms"]["total"]["p50"] == pytest.approx((totals[14] + totals[15]) / 2, rel=1e-3)


def test_offline_model_beats_chance_on_real_photos(sample_eval):
    _, paths = sample_eval
    results = json.load(open(paths["results.json"]))
    for model in results["models"]:
        # Chance R@1 is 1/15; the captions name what is in each photo.
        assert model["t2i"]["recall@1"] > 0.3
        assert model["i2t"]["images"] == 15


def test_image_to_text_and_cost_figures_are_reported(sample_eval):
    _, paths = sample_eval
    model = json.load(open(paths["results.json"]))["models"][0]
    assert set(model["i2t"]) >= {"recall@1", "recall@5", "recall@10", "mrr"}
    assert model["cost"]["index_bytes"] > 0 and model["cost"]["indexing"]["images_per_s"] > 0
    assert model["dim"] == 384 and model["batched"]["qps"] > 0
    assert os.path.basename(paths["results.json"]) == "results.json"


def test_an_approximate_index_reports_ann_recall_against_exact_search(tmp_path, tiny_openclip):
    write_samples(str(tmp_path / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    results = evaluate(dataset, [tiny_openclip], str(tmp_path / "indexes"), ks=(1, 5), factory="HNSW8")
    model = results["models"][0]
    assert model["factory"] == "HNSW8"
    # 15 vectors: HNSW finds every true neighbour, so it must agree with exact search.
    assert model["ann_recall@k"] == {"@1": 1.0, "@5": 1.0}


def test_the_models_take_turns_query_by_query(tmp_path, tiny_openclip, tiny_openclip_b, monkeypatch):
    write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png"], captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    calls = []
    original = evaluate.__globals__["Searcher"].text

    def spy(self, query, k=10):
        calls.append(self.model.spec)
        return original(self, query, k)

    monkeypatch.setattr(evaluate.__globals__["Searcher"], "text", spy)
    evaluate(dataset, [tiny_openclip, tiny_openclip_b], str(tmp_path / "indexes"))
    measured = calls[-8:]  # 4 captions, after the warm-up queries
    assert measured == [tiny_openclip, tiny_openclip_b] * 4


def test_each_precision_is_a_run_of_its_own_indexed_at_that_precision(tmp_path, tiny_openclip):
    """What int8 costs in recall is measured on vectors made at int8, not on an fp32 index."""
    write_samples(str(tmp_path / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    results = evaluate(dataset, [tiny_openclip], str(tmp_path / "indexes"), precisions=("fp32", "int8"))
    runs = {m["label"]: m for m in results["models"]}
    spec = results["models"][0]["spec"]
    assert list(runs) == [f"{spec}@fp32", f"{spec}@int8"]
    for precision in ("fp32", "int8"):
        run = runs[f"{spec}@{precision}"]
        assert run["precision"] == run["index_precision"] == precision
        assert os.path.exists(tmp_path / "indexes" / precision / "imgsearch.db")
    paths = write_report(results, str(tmp_path / "report"))
    with open(paths["results.csv"]) as f:
        assert [r["model"] for r in csv.DictReader(f)] == list(runs)
    with open(paths["results.json"]) as f:
        assert set(json.load(f)["recommendation"]["pareto_front"]) <= set(runs)
