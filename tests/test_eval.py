"""`imgsearch eval`: real images through the real search path; a report that recomputes."""

import csv
import json
import os
import shutil
import sys

import numpy as np
import pytest

from imgsearch.cli import main
from imgsearch.datasets import load_dataset
from imgsearch.evaluate import evaluate
from imgsearch.indexer import index_folder
from imgsearch.models import get_model
from imgsearch.report import pareto_front, recommend, write_report
from imgsearch.samples import write_samples
from imgsearch.search import Searcher
from imgsearch.stats import bootstrap_interval, paired_comparison
from imgsearch.store import Store


def fake_model(spec, recall, p50):
    return {"label": spec, "spec": spec, "t2i": {"recall@1": recall, "recall@10": recall}, "latency_ms": {"total": {"p50": p50}}}


def fake_comparison(a, b, p):
    return {"a": a, "b": b, "metric": "mean_recall@k", "difference": 0.0, "ci95": [-0.1, 0.1], "p_value": p}


def test_pareto_front_drops_models_beaten_on_both_axes():
    models = [fake_model("fast", 0.5, 10), fake_model("slow-good", 0.9, 100),
              fake_model("dominated", 0.4, 50), fake_model("mid", 0.85, 30)]
    assert pareto_front(models) == ["fast", "slow-good", "mid"]


def test_recommendation_per_priority():
    models = [fake_model("fast", 0.5, 10), fake_model("slow-good", 0.9, 100), fake_model("mid", 0.85, 30)]
    comparisons = [fake_comparison("slow-good", "fast", 0.001), fake_comparison("mid", "slow-good", 0.01)]
    rec = recommend(models, comparisons)
    assert (rec["speed"]["model"], rec["balance"]["model"], rec["quality"]["model"]) == ("fast", "mid", "slow-good")
    assert rec["indistinguishable_from_best"] == ["slow-good"]
    assert rec["statement"].startswith("`slow-good` has the best mean recall@k and every other model is worse")


def test_recommendation_prefers_the_cheaper_of_models_that_cannot_be_told_apart():
    models = [fake_model("slow-good", 0.52, 100), fake_model("fast", 0.50, 10), fake_model("bad", 0.2, 5)]
    comparisons = [fake_comparison("slow-good", "fast", 0.3), fake_comparison("slow-good", "bad", 0.0001),
                   fake_comparison("fast", "bad", 0.0001)]
    rec = recommend(models, comparisons)
    assert rec["best_point_estimate"] == "slow-good"
    assert rec["indistinguishable_from_best"] == ["slow-good", "fast"]
    assert rec["quality"]["model"] == "fast"
    assert "statistically indistinguishable" in rec["statement"] and "`fast` (p = 0.3)" in rec["statement"]
    assert rec["statement"].endswith("so the cheapest of them, `fast`, is recommended for quality")
    # When the best is also the cheapest of the tied models, it stays the pick.
    models[0]["latency_ms"]["total"]["p50"] = 1
    rec = recommend(models, comparisons)
    assert rec["quality"]["model"] == "slow-good"
    assert rec["statement"].endswith("statistically indistinguishable; it is also the cheapest of them")


def test_without_paired_tests_the_recommendation_says_so():
    rec = recommend([fake_model("a", 0.5, 10), fake_model("b", 0.6, 20)])
    assert rec["quality"]["model"] == "b"
    assert rec["statement"] == "no paired test was run: differences may be noise"


@pytest.fixture(scope="module")
def sample_eval(tmp_path_factory):
    """bridge:lite0 and bridge:lite2 on the sample photos with their captions, report written."""
    root = tmp_path_factory.mktemp("eval")
    write_samples(str(root / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(root / "photos" / "captions.jsonl"))
    results = evaluate(dataset, ["bridge:lite0", "bridge:lite2"], str(root / "indexes"), ks=(1, 5, 10))
    paths = write_report(results, str(root / "report"))
    return dataset, paths, json.load(open(paths["results.json"]))


def test_report_files_are_written_with_intervals_and_the_paired_comparison(sample_eval):
    _, paths, results = sample_eval
    assert sorted(paths) == ["report.html", "report.md", "results.csv", "results.json"]
    page = open(paths["report.html"]).read()
    assert page.count("<svg") == 3 and "Pareto front" in page and "95% CI" in page
    md = open(paths["report.md"]).read()
    lite0 = results["models"][0]
    low, high = lite0["t2i_ci95"]["recall@10"]
    assert f"{lite0['t2i']['recall@10']:.3f} [{low:.3f}, {high:.3f}]" in md
    [quality] = [c for c in results["comparisons"] if c["metric"] == "mean_recall@k"]
    assert f"{quality['difference']:+.3f} [{quality['ci95'][0]:+.3f}, {quality['ci95'][1]:+.3f}]" in md
    assert "Relevance: own-image (CLIP_benchmark's rule)" in md
    assert "2000 resamples, seed 0" in md and "no cache hit is timed" in md
    with open(paths["results.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["bridge:lite0", "bridge:lite2"]
    assert float(rows[0]["t2i_recall@10_ci_low"]) == pytest.approx(low, abs=1e-4)


def test_every_caption_is_a_query_through_the_real_index(sample_eval):
    _, _, results = sample_eval
    assert results["dataset"]["images"] == 15 and results["dataset"]["queries"] == 30
    assert results["query_set"] == {"measured": 30, "left_out": 0, "left_out_first": [],
                                    "images_indexed_by_every_model": 15,
                                    "rule": results["query_set"]["rule"]}
    for model in results["models"]:
        assert len(model["queries"]) == 30
        assert model["latency_ms"]["total"]["n"] == 30
        assert all(len(q["topk"]) == 10 for q in model["queries"])
        assert all(set(q["timing_ms"]) == {"encode", "search", "metadata", "total"} for q in model["queries"])


def recomputed_values(records, ks):
    """Per-query figures straight from the records, independently of imgsearch's code."""
    values = {}
    for k in ks:
        values[f"recall@{k}"] = [float(any(p in r["relevant"] for p in r["topk"][:k])) for r in records]
    values["mean_recall@k"] = list(np.mean([values[f"recall@{k}"] for k in ks], axis=0))
    values["mrr"] = [1 / r["first_relevant_rank"] for r in records]
    values["ndcg@10"] = []
    for r in records:
        dcg = sum(1 / np.log2(i + 2) for i, p in enumerate(r["topk"][:10]) if p in r["relevant"])
        ideal = sum(1 / np.log2(i + 2) for i in range(min(len(r["relevant"]), 10)))
        values["ndcg@10"].append(dcg / ideal)
    return values


def test_aggregates_and_intervals_recompute_from_the_per_query_records(sample_eval):
    _, _, results = sample_eval
    ks, u = results["ks"], results["uncertainty"]
    per_model = []
    for model in results["models"]:
        values = recomputed_values(model["queries"], ks)
        per_model.append(values)
        for name, column in values.items():
            assert model["t2i"][name] == pytest.approx(np.mean(column))
            assert model["t2i_ci95"][name] == pytest.approx(
                bootstrap_interval(column, u["resamples"], u["seed"]).tolist())
        ranks = [q["first_relevant_rank"] for q in model["queries"]]
        assert model["t2i"]["mean_rank"] == pytest.approx(np.mean(ranks))
        totals = sorted(q["timing_ms"]["total"] for q in model["queries"])
        assert model["latency_ms"]["total"]["p50"] == pytest.approx((totals[14] + totals[15]) / 2, rel=1e-3)
    assert len(results["comparisons"]) == 6  # one pair, six figures
    for c in results["comparisons"]:
        assert (c["a"], c["b"]) == ("bridge:lite0", "bridge:lite2")
        expected = paired_comparison(per_model[0][c["metric"]], per_model[1][c["metric"]], u["resamples"], u["seed"])
        assert c["difference"] == pytest.approx(expected["difference"])
        assert c["ci95"] == pytest.approx(expected["ci95"])
        assert c["p_value"] == pytest.approx(expected["p_value"])


def test_a_record_never_contradicts_itself(sample_eval):
    _, _, results = sample_eval
    for model in results["models"]:
        for q in model["queries"]:
            in_top = [i for i, p in enumerate(q["topk"], 1) if p in q["relevant"]]
            rank = q["first_relevant_rank"]
            assert (in_top[0] if in_top else None) == (rank if rank <= len(q["topk"]) else None)


def test_offline_model_beats_chance_on_real_photos(sample_eval):
    _, _, results = sample_eval
    for model in results["models"]:
        # Chance R@1 is 1/15; the captions name what is in each photo.
        assert model["t2i"]["recall@1"] > 0.3
        assert model["t2i_ci95"]["recall@1"][0] > 1 / 15
        assert model["i2t"]["images"] == 15
        assert model["i2t"]["recall@1"] <= model["i2t"]["recall@5"] <= model["i2t"]["recall@10"]


def test_each_models_cost_is_measured_in_a_process_of_its_own(sample_eval):
    _, _, results = sample_eval
    costs = [m["cost"] for m in results["models"]]
    pids = {c["cost_pid"] for c in costs}
    assert len(pids) == 2 and os.getpid() not in pids
    for cost in costs:
        assert 0 < cost["rss_mb_before_load"] < cost["rss_mb_after_load"] <= cost["peak_rss_mb"]
        assert cost["model_rss_mb"] == pytest.approx(cost["rss_mb_after_load"] - cost["rss_mb_before_load"])
        assert cost["load_s"] > 0 and cost["cost_queries"] == 30
        assert cost["index_bytes"] > 0 and cost["indexing"]["images_per_s"] > 0
    # The bridge models share MiniLM; their own memory differs by the size of their classifiers,
    # not by a whole model, as it would if the second were measured beside the first.
    assert abs(costs[1]["rss_mb_after_load"] - costs[0]["rss_mb_after_load"]) < costs[0]["model_rss_mb"] / 2


def test_the_isolated_peak_is_the_cost_process_own_not_its_callers(tmp_path, tiny_openclip):
    photos = tmp_path / "photos"
    write_samples(str(photos), ["cat.png", "coffee.png"])
    dataset_file = write_captions(str(photos), {"cat.png": ["A cat."], "coffee.png": ["A cup of coffee."]})
    ballast = np.ones(2 * 2**30 // 8)  # 2 GiB held (and touched) by the caller during the evaluation
    results = evaluate(load_dataset(dataset_file), [tiny_openclip], str(tmp_path / "indexes"))
    cost = results["models"][0]["cost"]
    # getrusage's ru_maxrss would report the caller's RSS at the fork, ballast included.
    assert cost["rss_mb_after_load"] <= cost["peak_rss_mb"] < ballast.nbytes / 2**20
    del ballast


REPEATED = {  # "A photo." is asked four times, each time of another image
    "cat.png": ["A photo.", "A cat."],
    "coffee.png": ["A photo.", "A cup of coffee."],
    "rocket.png": ["A photo.", "A rocket."],
    "astronaut.png": ["An astronaut."],
    "camera.png": ["A photo."],
}


def write_captions(folder, captions: dict, name="captions.jsonl"):
    with open(os.path.join(folder, name), "w") as f:
        for image, texts in captions.items():
            f.write(json.dumps({"image": image, "captions": texts}) + "\n")
    return os.path.join(folder, name)


@pytest.fixture
def repeated_captions(tmp_path):
    photos = tmp_path / "photos"
    write_samples(str(photos), list(REPEATED))
    return write_captions(str(photos), REPEATED)


def test_no_measured_query_is_a_cache_hit_even_when_its_text_repeats(repeated_captions, tmp_path, tiny_openclip,
                                                                     monkeypatch):
    model_class = type(get_model(tiny_openclip))
    encoded, encodes_per_search = [], []
    embed_query, text = model_class.embed_query, Searcher.text

    def counting_embed_query(self, query):
        encoded.append(query)
        return embed_query(self, query)

    def counting_text(self, query, k=10):
        before = len(encoded)
        result = text(self, query, k)
        encodes_per_search.append(len(encoded) - before)
        return result

    monkeypatch.setattr(model_class, "embed_query", counting_embed_query)
    monkeypatch.setattr(Searcher, "text", counting_text)
    results = evaluate(load_dataset(repeated_captions), [tiny_openclip], str(tmp_path / "indexes"),
                       isolated_cost=False)
    records = results["models"][0]["queries"]
    assert len(records) == 8 and [r["query"] for r in records].count("A photo.") == 4
    # 5 warm-up searches, then one per query; every one of them encoded its text.
    assert encodes_per_search == [1] * (5 + 8)
    assert results["models"][0]["latency_ms"]["encode"]["n"] == 8


def test_own_image_and_shared_caption_relevance_on_the_same_queries(repeated_captions, tmp_path, tiny_openclip):
    folder = os.path.dirname(repeated_captions)
    photo_paths = [os.path.join(folder, name) for name in REPEATED if "A photo." in REPEATED[name]]
    runs = {}
    for rule in ("own-image", "shared-caption"):
        results = evaluate(load_dataset(repeated_captions, relevance=rule), [tiny_openclip],
                           str(tmp_path / "indexes"), isolated_cost=False)
        assert results["dataset"]["relevance"] == rule
        runs[rule] = [r for r in results["models"][0]["queries"] if r["query"] == "A photo."]
    own, shared = runs["own-image"], runs["shared-caption"]
    # Own image: each "A photo." query is relevant to the image it was written for only.
    assert [r["relevant"] for r in own] == [[p] for p in photo_paths]
    assert all(r["relevant"] == sorted(photo_paths) for r in shared)
    # One text, one vector, one ranking: its four images sit at four different places in it...
    assert all(r["topk"] == own[0]["topk"] for r in own + shared)
    own_ranks = [r["first_relevant_rank"] for r in own]
    assert own_ranks == [own[0]["topk"].index(p) + 1 for p in photo_paths]
    assert len(set(own_ranks)) == 4
    # ...and under the shared rule each query is answered by the best placed of the four.
    assert [r["first_relevant_rank"] for r in shared] == [min(own_ranks)] * 4


def test_identical_images_tie_against_the_model_in_both_rank_and_top_k(tmp_path, tiny_openclip):
    photos = write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png", "rocket.png"])
    index_dir = str(tmp_path / "indexes")
    index_folder(str(tmp_path / "photos"), [tiny_openclip], index_dir)
    # A byte-identical copy added later re-uses the stored vector: the two score exactly alike.
    copy = str(tmp_path / "photos" / "cat_copy.png")
    shutil.copy(photos["cat.png"], copy)
    dataset_file = write_captions(str(tmp_path / "photos"), {
        "cat.png": ["A cat."], "cat_copy.png": ["A kitten."], "coffee.png": ["A cup of coffee."],
        "rocket.png": ["A rocket."]})
    results = evaluate(load_dataset(dataset_file), [tiny_openclip], index_dir, isolated_cost=False)
    store = Store(index_dir)
    row = store.model(results["models"][0]["spec"])
    assert np.array_equal(store.embedding(row.id, store.image_id(photos["cat.png"])),
                          store.embedding(row.id, store.image_id(copy)))
    store.close()
    records = {r["query"]: r for r in results["models"][0]["queries"]}
    for query, own, twin in (("A cat.", photos["cat.png"], copy), ("A kitten.", copy, photos["cat.png"])):
        record = records[query]
        position = record["topk"].index(own) + 1
        # The non-relevant twin ranks just ahead of the relevant image, in the list and in the rank.
        assert record["topk"].index(twin) + 1 == position - 1
        assert record["first_relevant_rank"] == position >= 2


def test_queries_without_an_indexed_relevant_image_are_counted_and_left_out_for_every_model(
        tmp_path, tiny_openclip, tiny_openclip_b):
    photos = tmp_path / "photos"
    write_samples(str(photos), ["cat.png", "coffee.png", "rocket.png"])
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dataset_file = write_captions(str(photos), {
        "cat.png": ["A cat."], "coffee.png": ["A cup of coffee."], "rocket.png": ["A rocket."],
        "broken.png": ["A broken picture.", "Nothing to see."]})
    results = evaluate(load_dataset(dataset_file), [tiny_openclip, tiny_openclip_b], str(tmp_path / "indexes"),
                       isolated_cost=False)
    q = results["query_set"]
    assert (q["measured"], q["left_out"], q["left_out_first"]) == (3, 2, ["A broken picture.", "Nothing to see."])
    assert q["images_indexed_by_every_model"] == 3
    for model in results["models"]:
        assert [r["query"] for r in model["queries"]] == ["A cat.", "A cup of coffee.", "A rocket."]
        assert model["i2t"]["images"] == 3
    paths = write_report(results, str(tmp_path / "report"))
    assert "3 measured, the same for every model; 2 left out" in open(paths["report.md"]).read()


def test_an_approximate_index_reports_ann_recall_against_exact_search(tmp_path, tiny_openclip):
    write_samples(str(tmp_path / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    results = evaluate(dataset, [tiny_openclip], str(tmp_path / "indexes"), ks=(1, 5), factory="HNSW8",
                       isolated_cost=False)
    model = results["models"][0]
    assert model["factory"] == "HNSW8"
    # 15 vectors: HNSW finds every true neighbour, so it must agree with exact search.
    assert model["ann_recall@k"] == {"@1": 1.0, "@5": 1.0}


def test_the_models_take_turns_query_by_query(tmp_path, tiny_openclip, tiny_openclip_b, monkeypatch):
    write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png"], captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    calls = []
    original = Searcher.text

    def spy(self, query, k=10):
        calls.append(self.model.spec)
        return original(self, query, k)

    monkeypatch.setattr(Searcher, "text", spy)
    evaluate(dataset, [tiny_openclip, tiny_openclip_b], str(tmp_path / "indexes"), isolated_cost=False)
    measured = calls[-8:]  # 4 captions, after the warm-up queries
    assert measured == [tiny_openclip, tiny_openclip_b] * 4


def test_each_precision_is_a_run_of_its_own_indexed_at_that_precision(tmp_path, tiny_openclip):
    """What int8 costs in recall is measured on vectors made at int8, not on an fp32 index."""
    write_samples(str(tmp_path / "photos"), captions_file="captions.jsonl")
    dataset = load_dataset(str(tmp_path / "photos" / "captions.jsonl"))
    results = evaluate(dataset, [tiny_openclip], str(tmp_path / "indexes"), precisions=("fp32", "int8"),
                       isolated_cost=False)
    runs = {m["label"]: m for m in results["models"]}
    spec = results["models"][0]["spec"]
    assert list(runs) == [f"{spec}@fp32", f"{spec}@int8"]
    for precision in ("fp32", "int8"):
        run = runs[f"{spec}@{precision}"]
        assert run["precision"] == run["index_precision"] == precision
        assert os.path.exists(tmp_path / "indexes" / precision / "imgsearch.db")
    # Both precisions answered the same queries, so they are compared query by query.
    assert {(c["a"], c["b"]) for c in results["comparisons"]} == {(f"{spec}@fp32", f"{spec}@int8")}
    paths = write_report(results, str(tmp_path / "report"))
    with open(paths["results.csv"]) as f:
        assert [r["model"] for r in csv.DictReader(f)] == list(runs)
    with open(paths["results.json"]) as f:
        assert set(json.load(f)["recommendation"]["pareto_front"]) <= set(runs)


def run_cli(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["imgsearch", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_eval_with_an_images_folder_prints_intervals_and_comparisons_as_json(
        tmp_path, tiny_openclip, tiny_openclip_b, capsys, monkeypatch):
    write_samples(str(tmp_path / "pictures"), ["cat.png", "coffee.png", "rocket.png"])
    (tmp_path / "meta").mkdir()
    dataset_file = write_captions(str(tmp_path / "meta"), {
        "cat.png": ["A cat."], "coffee.png": ["A cup of coffee."], "rocket.png": ["A rocket."]})
    code, out, err = run_cli(capsys, monkeypatch, "eval", "--dataset", dataset_file, "--model", tiny_openclip,
                             "--model", tiny_openclip_b, "--index-dir", str(tmp_path / "indexes"))
    assert code == 2 and err.startswith("Error: ") and "--images DIR" in err and "\n" not in err.strip()
    code, out, err = run_cli(capsys, monkeypatch, "eval", "--dataset", dataset_file, "--images",
                             str(tmp_path / "pictures"), "--model", tiny_openclip, "--model", tiny_openclip_b,
                             "--index-dir", str(tmp_path / "indexes"), "--bootstrap", "300", "--seed", "7",
                             "--out", str(tmp_path / "report"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["uncertainty"]["resamples"] == 300 and summary["uncertainty"]["seed"] == 7
    assert summary["dataset"]["relevance"] == "own-image" and summary["query_set"]["measured"] == 3
    for row in summary["models"]:
        assert row["t2i_recall@1_ci_low"] <= row["t2i_recall@1"] <= row["t2i_recall@1_ci_high"]
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 0
    assert {c["metric"] for c in summary["comparisons"]} == {
        "recall@1", "recall@5", "recall@10", "mean_recall@k", "mrr", "ndcg@10"}
    assert all(0 < c["p_value"] <= 1 for c in summary["comparisons"])
    assert summary["recommendation"]["quality"]["model"] in {tiny_openclip, tiny_openclip_b}


def test_cli_eval_refuses_a_relevance_rule_for_qrels_and_a_bad_resample_count(tmp_path, capsys, monkeypatch):
    write_samples(str(tmp_path), ["cat.png"])
    (tmp_path / "q.jsonl").write_text('{"query": "a cat", "relevant": ["cat.png"]}\n')
    code, _, err = run_cli(capsys, monkeypatch, "eval", "--dataset", str(tmp_path / "q.jsonl"), "--model",
                           "bridge:lite0", "--relevance", "shared-caption")
    assert (code, err.strip()) == (2, "Error: --relevance applies to captioned datasets; qrels-jsonl lists each "
                                      "query's relevant images itself")
    code, _, err = run_cli(capsys, monkeypatch, "eval", "--dataset", str(tmp_path / "q.jsonl"), "--model",
                           "bridge:lite0", "--bootstrap", "0")
    assert (code, err.strip()) == (2, "Error: --bootstrap must be a positive integer, got 0")
