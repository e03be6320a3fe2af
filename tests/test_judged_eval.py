"""`imgsearch eval --judged`: every indexed model scored on the judged pools of real photos,
through the real search path and report writer, with nothing indexed again; figures against
hand-computed values; unjudged results counted; bad input gets one line and exit code 2."""

import json
import math
import os

import pytest

from imgsearch.errors import UsageError
from imgsearch.indexer import index_folder
from imgsearch.judge import Judging
from imgsearch.judged_eval import default_ks, evaluate_judged, per_query_values
from imgsearch.report import write_report
from imgsearch.search import Searcher
from imgsearch.store import Store

from conftest import run_imgsearch as run

DEPTH = 3
QUERIES = ["a cat", "a rocket launch", "a cup of coffee"]


@pytest.fixture
def indexed(photos, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(os.path.dirname(photos["cat.png"]), [tiny_openclip, tiny_openclip_b], index_dir, precision="fp32")
    with Judging(index_dir) as judging:
        judging.add_queries(QUERIES)
    return {"index_dir": index_dir, "a": tiny_openclip, "b": tiny_openclip_b}


def top(index_dir, spec, query, k=DEPTH) -> list[int]:
    searcher = Searcher(spec, index_dir, precision="fp32")
    try:
        return [r["id"] for r in searcher.text(query, k).results]
    finally:
        searcher.close()


@pytest.fixture
def judged(indexed):
    """A constructed case, judged through the Judging API on both models' real rankings:
    'a cat': a's first result relevant, a's second not, the rest of the pool unjudged;
    'a rocket launch': b's first result relevant, every other pooled image not;
    'a cup of coffee': every pooled image not relevant (so the query is left out)."""
    d, a, b = indexed["index_dir"], indexed["a"], indexed["b"]
    ranks = {q: {"a": top(d, a, q), "b": top(d, b, q)} for q in QUERIES}
    with Judging(d) as judging:
        cat = ranks["a cat"]["a"]
        judging.mark("a cat", cat[0], True, depth=DEPTH)
        judging.mark("a cat", cat[1], False, depth=DEPTH)
        rocket = ranks["a rocket launch"]
        for image_id in set(rocket["a"]) | set(rocket["b"]):
            judging.mark("a rocket launch", image_id, image_id == rocket["b"][0], judge="ann", depth=DEPTH)
        coffee = ranks["a cup of coffee"]
        for image_id in set(coffee["a"]) | set(coffee["b"]):
            judging.mark("a cup of coffee", image_id, False, judge="ann", depth=DEPTH)
    return {**indexed, "ranks": ranks}


def hand_computed(ranking: list[int], relevant: set[int], judged: set[int], k: int) -> dict:
    """The figures of one query, written out the long way."""
    hits = [i in relevant for i in ranking]
    first = next((n for n, hit in enumerate(hits, start=1) if hit), None)
    dcg = sum(1 / math.log2(n + 1) for n, hit in enumerate(hits[:k], start=1) if hit)
    ideal = sum(1 / math.log2(n + 1) for n in range(1, min(len(relevant), k) + 1))
    return {"precision": sum(hits[:k]) / k, "recall": sum(hits[:k]) / len(relevant), "ndcg": dcg / ideal,
            "rr": 0.0 if first is None else 1 / first, "judged": sum(i in judged for i in ranking[:k]) / k}


def test_the_figures_equal_hand_computed_values(judged):
    d, ranks = judged["index_dir"], judged["ranks"]
    results = evaluate_judged(d, depth=DEPTH, ks=[1, DEPTH], resamples=200)
    cat, rocket = ranks["a cat"], ranks["a rocket launch"]
    relevant = {"a cat": {cat["a"][0]}, "a rocket launch": {rocket["b"][0]}}
    judged_ids = {"a cat": set(cat["a"][:2]), "a rocket launch": set(rocket["a"]) | set(rocket["b"])}
    assert results["judged"]["measured"] == 2 and results["judged"]["left_out_no_relevant"] == 1
    assert results["judged"]["left_out_first"] == ["a cup of coffee"]
    for model in results["models"]:
        name = "a" if model["spec"] == judged["a"] else "b"
        for k in (1, DEPTH):
            per_query = [hand_computed(ranks[q][name], relevant[q], judged_ids[q], k) for q in relevant]
            mean = {key: sum(v[key] for v in per_query) / 2 for key in per_query[0]}
            figures = model["figures"]
            assert figures[f"precision@{k}"] == pytest.approx(mean["precision"])
            assert figures[f"recall@{k}"] == pytest.approx(mean["recall"])
            assert figures[f"judged@{k}"] == pytest.approx(mean["judged"])
        assert figures[f"ndcg@{DEPTH}"] == pytest.approx(mean["ndcg"])  # k = DEPTH: nDCG@min(10, depth)
        assert figures["mrr"] == pytest.approx(mean["rr"])
        assert model["precision"] == "fp32"
    a = next(m for m in results["models"] if m["spec"] == judged["a"])
    # a's own first result is the one relevant image of 'a cat'
    assert a["queries"][0]["results"][0]["judgment"] is True and a["figures"]["precision@1"] >= 0.5


def test_a_small_ranking_by_hand():
    records = [{"query": "q", "results": [{"path": "x", "judgment": True}, {"path": "y", "judgment": None},
                                          {"path": "z", "judgment": False}], "relevant": ["x", "w"]},
               {"query": "r", "results": [{"path": "u", "judgment": False}, {"path": "v", "judgment": True},
                                          {"path": "w", "judgment": True}], "relevant": ["v", "w"]}]
    values = per_query_values(records, [1, 3], 3)
    assert values["precision@1"].tolist() == [1.0, 0.0]
    assert values["precision@3"].tolist() == pytest.approx([1 / 3, 2 / 3])
    assert values["recall@3"].tolist() == pytest.approx([0.5, 1.0])
    assert values["mrr"].tolist() == pytest.approx([1.0, 0.5])
    assert values["judged@3"].tolist() == pytest.approx([2 / 3, 1.0])
    # q: DCG 1, ideal 1 + 1/log2(3); r: DCG 1/log2(3) + 1/2, same ideal
    ideal = 1 + 1 / math.log2(3)
    assert values["ndcg@3"].tolist() == pytest.approx([1 / ideal, (1 / math.log2(3) + 0.5) / ideal])


def test_unjudged_results_are_counted_per_model_with_the_command_that_judges_them(judged):
    d, ranks = judged["index_dir"], judged["ranks"]
    results = evaluate_judged(d, depth=DEPTH, resamples=50)
    judged_cat = set(ranks["a cat"]["a"][:2])
    for model in results["models"]:
        name = "a" if model["spec"] == judged["a"] else "b"
        # only 'a cat' has unjudged images: the others were judged whole
        expected = len([i for i in ranks["a cat"][name] if i not in judged_cat])
        assert model["unjudged"]["pairs"] == expected
        assert model["unjudged"]["queries"] == (1 if expected else 0)
        assert "imgsearch judge pool --depth 3 --index-dir" in model["unjudged"]["command"]
        assert "/judge?depth=3" in model["unjudged"]["command"]
    pool_cat = set(ranks["a cat"]["a"]) | set(ranks["a cat"]["b"])
    assert results["judged"]["unjudged_pairs"] == len(pool_cat) - 2
    assert results["judged"]["judges"] == ["", "ann"]


def index_state(index_dir, specs):
    store = Store(index_dir, create=False)
    try:
        counts = {spec: (store.embedding_count(store.model(spec).id), store.model(spec).generation) for spec in specs}
    finally:
        store.close()
    files = {name: (os.stat(os.path.join(index_dir, name)).st_mtime_ns, os.path.getsize(os.path.join(index_dir, name)))
             for name in os.listdir(index_dir) if name.endswith(".faiss")}
    return counts, files


def test_the_report_holds_every_models_figures_and_nothing_is_indexed_again(capsys, monkeypatch, judged, tmp_path):
    d, specs = judged["index_dir"], [judged["a"], judged["b"]]
    before = index_state(d, specs)
    assert len(before[1]) == 2
    out = tmp_path / "report"
    code, stdout, err = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", d, "--depth", "3", "-k", "1",
                            "-k", "3", "--out", str(out), "--bootstrap", "200", "--json")
    assert code == 0, err
    assert index_state(d, specs) == before  # no vector added, no FAISS file rewritten
    summary = json.loads(stdout)
    assert {row["model"] for row in summary["models"]} == set(specs)
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "judged" and results["judged"]["depth"] == DEPTH
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for text in (md, page):
        assert "Pool depth: 3" in text and "Queries: 2 measured of 3" in text
        assert f"newest judgment {results['judged']['newest_judgment']}" in text
        assert "Judges: (unnamed), ann" in text
    for model in results["models"]:
        row = next(r for r in summary["models"] if r["model"] == model["label"])
        line = next(line for line in md.splitlines() if line.startswith(f"| {model['label']} | fp32 |"))
        for name in ("precision@1", "precision@3", "recall@1", "recall@3", "ndcg@3", "mrr"):
            low, high = model["ci95"][name]
            assert f"{model['figures'][name]:.3f} [{low:.3f}, {high:.3f}]" in line
            assert row[name] == round(model["figures"][name], 4)
        assert f"{model['unjudged']['pairs']} of {model['unjudged']['of_pairs']}" in md
    assert len(results["comparisons"]) == 6 and "Paired comparisons" in md
    assert (out / "results.csv").read_text().startswith("model,precision,queries,")


def test_the_text_output_names_the_figures_and_how_to_judge_the_rest(capsys, monkeypatch, judged, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", judged["index_dir"], "--depth", "3",
                       "--out", str(tmp_path / "r"), "--bootstrap", "50")
    assert code == 0
    assert "2 of 3 queries, pool depth 3" in out
    assert f"{judged['a']}: P@3 " in out and "pooled R@3" in out
    assert "judge them: imgsearch serve --index-dir" in out
    assert f"report: {tmp_path / 'r' / 'report.html'}" in out


def test_default_cut_offs_fit_in_the_pool():
    assert default_ks(10) == (1, 5, 10)
    assert default_ks(3) == (1, 3)
    assert default_ks(20) == (1, 5, 10, 20)


def test_only_the_models_asked_for_are_scored_on_every_models_pool(judged):
    results = evaluate_judged(judged["index_dir"], [judged["b"]], depth=DEPTH, resamples=50)
    assert [m["spec"] for m in results["models"]] == [judged["b"]]
    assert results["judged"]["pooled_models"] == [judged["a"], judged["b"]]
    assert results["comparisons"] == []
    paths = write_report(results, judged["index_dir"] + "-report")
    assert "One model: nothing to compare." in open(paths["report.md"]).read()


@pytest.mark.parametrize("args, message", [
    (["--depth", "3", "-k", "5"], "-k 5 is deeper than the pool (--depth 3)"),
    (["--model", "openclip:local-dir:/nowhere"], "is not indexed in"),
    (["--dataset", "tuxpaint"], "drop --dataset"),
    (["--depth", "0"], "--depth must be a positive integer"),
])
def test_bad_input_gets_one_line_and_exit_code_2(capsys, monkeypatch, judged, tmp_path, args, message):
    code, out, err = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", judged["index_dir"], *args,
                         "--out", str(tmp_path / "r"))
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_no_judgments_gets_one_line_and_exit_code_2(capsys, monkeypatch, indexed, tmp_path):
    code, out, err = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", indexed["index_dir"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no judgments in" in err and "imgsearch judge pool" in err


def test_no_index_and_no_dataset_get_one_line(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "eval", "--judged", "--index-dir", str(tmp_path / "none"))
    assert code == 2 and "no index in" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, monkeypatch, "eval", "--model", "offline")
    assert code == 2 and "--dataset SPEC" in err and "--judged" in err


def test_judgments_without_a_relevant_image_leave_nothing_to_score(indexed):
    d = indexed["index_dir"]
    with Judging(d) as judging:
        first = judging.pool("a cat", depth=DEPTH)[0]
        judging.mark("a cat", first["image_id"], False, depth=DEPTH)
    with pytest.raises(UsageError, match="no query has an image judged relevant"):
        evaluate_judged(d, depth=DEPTH)
