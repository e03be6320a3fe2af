"""Judging on unlabelled photos: blind pools of every model's top results, judgments that
survive re-indexing, go stale when a photo changes and count nowhere once it is deleted."""

import json
import os
import shutil

import pytest
from PIL import Image

from imgsearch.datasets import load_dataset
from imgsearch.errors import UsageError
from imgsearch.indexer import index_folder
from imgsearch.judge import Judging, blind_order, cohen_kappa, load_query_file, phrase
from imgsearch.search import Searcher

QUERIES = ["a cat", "a rocket launch", "a cup of coffee"]
DEPTH = 3


@pytest.fixture
def folder(photos):
    return os.path.dirname(next(iter(photos.values())))


@pytest.fixture
def judging(folder, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir, precision="fp32")
    with Judging(index_dir) as j:
        j.add_queries(QUERIES)
        yield j


def top(index_dir, spec, query, k=DEPTH):
    searcher = Searcher(spec, index_dir, precision="fp32")
    try:
        return [r["id"] for r in searcher.text(query, k).results]
    finally:
        searcher.close()


def test_the_pool_is_the_deduplicated_union_of_every_models_top_results(judging, index_dir, tiny_openclip,
                                                                        tiny_openclip_b):
    for query in QUERIES:
        expected = set(top(index_dir, tiny_openclip, query)) | set(top(index_dir, tiny_openclip_b, query))
        pool = judging.pool(query, depth=DEPTH)
        assert [e["image_id"] for e in pool] == blind_order(query, expected)  # each image once
        assert {e["query"] for e in pool} == {query}


def test_the_pool_names_no_model_and_shows_no_score(judging, tiny_openclip, tiny_openclip_b):
    pool = judging.pool(depth=DEPTH)
    assert pool and all(set(e) == {"query", "image_id", "path", "judged"} for e in pool)
    text = json.dumps(pool)
    for name in (tiny_openclip, tiny_openclip_b, "openclip", "score", "rank"):
        assert name not in text


def test_the_blind_order_is_stable_and_not_a_models_ranking():
    ids = list(range(50))
    assert blind_order("a cat", ids) == blind_order("a cat", list(reversed(ids)))
    assert blind_order("a cat", ids) != ids and blind_order("a cat", ids) != blind_order("a dog", ids)


def test_judgments_leave_the_pool_and_survive_a_restart(judging, index_dir):
    first = judging.pool("a cat", depth=DEPTH)
    judging.mark("a cat", first[0]["path"], True, depth=DEPTH)
    judging.mark("a cat", first[1]["image_id"], False, depth=DEPTH)
    assert [e["image_id"] for e in judging.pool("a cat", depth=DEPTH)] == [e["image_id"] for e in first[2:]]
    judging.close()
    with Judging(index_dir) as again:
        assert again.qrels()["a cat"] == {first[0]["image_id"]: True, first[1]["image_id"]: False}
        assert again.unmark("a cat", first[1]["path"]) is True  # undo
        assert again.qrels()["a cat"] == {first[0]["image_id"]: True}


def test_a_model_indexed_after_judging_began_adds_its_unjudged_results(folder, index_dir, tiny_openclip,
                                                                       tiny_openclip_b):
    index_folder(folder, [tiny_openclip], index_dir, precision="fp32")
    with Judging(index_dir) as judging:
        judging.add_queries(QUERIES)
        for entry in judging.pool(depth=DEPTH):
            judging.mark(entry["query"], entry["image_id"], True, depth=DEPTH)
        assert judging.pool(depth=DEPTH) == []
    index_folder(folder, [tiny_openclip_b], index_dir, precision="fp32")
    with Judging(index_dir) as judging:
        new = {(e["query"], e["image_id"]) for e in judging.pool(depth=DEPTH)}
        expected = {(q, i) for q in QUERIES
                    for i in set(top(index_dir, tiny_openclip_b, q)) - set(top(index_dir, tiny_openclip, q))}
        assert new == expected and new  # the seeds differ: model b finds images a did not
        status = judging.status(depth=DEPTH)
        b = next(m for m in status["models"] if m["model"] == tiny_openclip_b)
        assert b["pooled"] == DEPTH * len(QUERIES) and b["judged"] == b["pooled"] - len(new)


def test_a_changed_photo_makes_its_judgment_stale_and_puts_it_back_in_the_pool(judging, folder, index_dir,
                                                                            tiny_openclip, tiny_openclip_b):
    entry = judging.pool("a cat", depth=DEPTH)[0]
    judging.mark("a cat", entry["path"], True, depth=DEPTH)
    Image.new("RGB", (64, 48), (200, 10, 10)).save(entry["path"], format="PNG")  # other bytes, same path
    index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir, precision="fp32")
    (judgment,) = judging.judgments()
    assert judgment.state == "stale"
    assert judging.qrels()["a cat"] == {}
    assert judging.status(depth=DEPTH)["stale_judgments"] == 1
    pool = judging.pool("a cat", depth=DEPTH)
    if entry["image_id"] in set(top(index_dir, tiny_openclip, "a cat")) | set(top(index_dir, tiny_openclip_b, "a cat")):
        assert entry["image_id"] in [e["image_id"] for e in pool]


def test_a_deleted_photo_keeps_its_judgment_out_of_every_score(judging, folder, index_dir, tiny_openclip,
                                                              tiny_openclip_b, tmp_path):
    entries = judging.pool("a cat", depth=DEPTH)
    judging.mark("a cat", entries[0]["path"], True, depth=DEPTH)
    judging.mark("a cat", entries[1]["path"], True, depth=DEPTH)
    os.unlink(entries[0]["path"])
    index_folder(folder, [tiny_openclip, tiny_openclip_b], index_dir, precision="fp32")
    states = {j.image_id: j.state for j in judging.judgments()}
    assert states == {entries[0]["image_id"]: "gone", entries[1]["image_id"]: "valid"}
    assert judging.qrels()["a cat"] == {entries[1]["image_id"]: True}
    exported = judging.export(str(tmp_path / "out" / "qrels.jsonl"))
    with open(exported["out"]) as f:
        (record,) = [json.loads(line) for line in f]
    assert record["query"] == "a cat"
    assert [os.path.normpath(os.path.join(tmp_path / "out", p)) for p in record["relevant"]] == [entries[1]["path"]]
    assert exported["queries_without_relevant"] == ["a rocket launch", "a cup of coffee"]


def test_the_export_is_a_qrels_file_eval_reads(judging, folder, tmp_path):
    for entry in judging.pool(depth=DEPTH):
        judging.mark(entry["query"], entry["image_id"], entry["query"] == "a cat", depth=DEPTH)
    shutil.copytree(folder, tmp_path / "copy" / "photos")  # the qrels resolve against their own folder
    out = judging.export(str(tmp_path / "copy" / "qrels.jsonl"))["out"]
    dataset = load_dataset(out)
    assert dataset.format == "qrels-jsonl"
    assert [q.text for q in dataset.queries] == ["a cat"]
    assert len(dataset.queries[0].relevant) == len(judging.pool("a cat", depth=DEPTH, unjudged_only=False))


def test_kappa_matches_a_hand_computed_case():
    # observed 3/4; chance 0.5*0.25 + 0.5*0.75 = 0.5; kappa = (0.75 - 0.5) / (1 - 0.5)
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == pytest.approx(0.5)
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([True, True], [True, True]) is None  # no variation: kappa is undefined
    assert cohen_kappa([], []) is None


def test_two_judges_agreement_is_reported(judging):
    pool = judging.pool("a cat", depth=DEPTH, unjudged_only=False)
    for entry, (ann, bob) in zip(pool, [(True, True), (True, False), (False, False), (False, False)]):
        judging.mark("a cat", entry["image_id"], ann, judge="ann", depth=DEPTH)
        judging.mark("a cat", entry["image_id"], bob, judge="bob", depth=DEPTH)
    (pair,) = judging.status(depth=DEPTH)["agreement"]
    n = min(4, len(pool))
    labels = [(True, True), (True, False), (False, False), (False, False)][:n]
    assert pair["judges"] == ["ann", "bob"] and pair["pairs"] == n
    assert pair["kappa"] == cohen_kappa([a for a, _ in labels], [b for _, b in labels])
    assert judging.pool("a cat", depth=DEPTH, judge="carol") == pool  # carol has judged nothing yet


def test_bad_marks_get_one_line_and_write_nothing(judging, photos, tmp_path):
    entry = judging.pool("a cat", depth=DEPTH)[0]
    outside = [p for p in photos.values() if p not in {e["path"] for e in judging.pool("a cat", depth=DEPTH)}][0]
    cases = [
        (lambda: judging.mark("a dog", entry["path"], True, depth=DEPTH), "unknown query 'a dog'"),
        (lambda: judging.mark("a cat", str(tmp_path / "nope.png"), True, depth=DEPTH), "not an indexed image"),
        (lambda: judging.mark("a cat", outside, True, depth=DEPTH), "is not in the pool of 'a cat'"),
        (lambda: judging.pool("a cat", depth=0), "--depth must be a positive integer"),
    ]
    marks = tmp_path / "marks.jsonl"
    for content, message in [
        ('{"query": "a cat", "image": "%s", "relevant": true}\nnot json\n' % entry["path"], "line 2: not JSON"),
        ('{"query": "a cat", "image": "%s", "relevant": "yes"}\n' % entry["path"], "line 1: want"),
        ('{"query": "a cat", "image": "%s", "relevant": true}\n{"query": "a dog", "image": "%s", "relevant": true}\n'
         % (entry["path"], entry["path"]), "line 2: unknown query"),
    ]:
        cases.append((lambda content=content: (marks.write_text(content), judging.import_marks(str(marks))),
                      message))
    for call, message in cases:
        with pytest.raises(UsageError, match=message) as raised:
            call()
        assert "\n" not in str(raised.value)
    assert judging.judgments() == []  # the good first line of a bad file was not written either


def test_marks_import_resolves_paths_against_the_files_folder(judging, folder, tmp_path):
    entry = judging.pool("a cat", depth=DEPTH)[0]
    marks = os.path.join(folder, "marks.jsonl")
    with open(marks, "w") as f:
        f.write(json.dumps({"query": "a cat", "image": os.path.basename(entry["path"]), "relevant": True,
                            "judge": "ann"}) + "\n")
    (written,) = judging.import_marks(marks, depth=DEPTH)
    assert written["image_id"] == entry["image_id"] and written["judge"] == "ann"


def test_query_files_take_lines_or_jsonl(tmp_path):
    plain = tmp_path / "q.txt"
    plain.write_text("a cat\n\n  a   dog \n")
    assert load_query_file(str(plain)) == ["a cat", "a   dog"]  # add_queries collapses the rest
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"query": "a cat", "relevant": ["x.png"]}\n')
    assert load_query_file(str(jsonl)) == ["a cat"]
    jsonl.write_text('{"text": "a cat"}\n')
    with pytest.raises(UsageError, match="line 1"):
        load_query_file(str(jsonl))


def test_suggested_queries_come_from_what_the_photos_show(tmp_path, photos, index_dir, tiny_openclip):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("cat.png", "coffee.png"):
        shutil.copy(photos[name], folder / name)
    index_folder(str(folder), [tiny_openclip], index_dir, precision="fp32")
    with Judging(index_dir) as judging:
        suggestions = judging.suggest(n=5)
    assert len(suggestions) == 2 and sum(s["images"] for s in suggestions) == 2
    words = " ".join(s["query"] for s in suggestions)
    assert "cat" in words and any(w in words for w in ("espresso", "cup", "coffee"))
    assert phrase("tabby, tabby cat") == "a tabby" and phrase("ice cream, icecream") == "an ice cream"
