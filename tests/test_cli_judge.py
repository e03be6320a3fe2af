"""`imgsearch judge ...` and `imgsearch doctor` from the command line: every step a script
needs, JSON out, one-line errors with exit code 2 that write nothing."""

import json
import os

import pytest

from imgsearch.indexer import index_folder

from conftest import run_imgsearch as run


@pytest.fixture
def indexed(photos, index_dir, tiny_openclip, tiny_openclip_b):
    index_folder(os.path.dirname(next(iter(photos.values()))), [tiny_openclip, tiny_openclip_b], index_dir,
                 precision="fp32")
    return index_dir


def test_a_pool_judged_from_the_command_line_exports_qrels(capsys, monkeypatch, indexed, tmp_path):
    d = ["--index-dir", indexed]
    queries = tmp_path / "queries.txt"
    queries.write_text("a cat\na rocket\n")
    code, out, _ = run(capsys, monkeypatch, "judge", "add", str(queries), "--query", "a cup", *d, "--json")
    assert code == 0 and [r["query"] for r in json.loads(out)] == ["a cup", "a cat", "a rocket"]

    code, out, _ = run(capsys, monkeypatch, "judge", "pool", "--query", "a cat", "--depth", "2", *d, "--json")
    pool = json.loads(out)
    assert code == 0 and 2 <= len(pool) <= 4 and all(set(p) == {"query", "image_id", "path", "judged"} for p in pool)

    code, out, _ = run(capsys, monkeypatch, "judge", "mark", "--query", "a cat", "--image", pool[0]["path"],
                       "--relevant", "--depth", "2", *d, "--json")
    assert code == 0 and json.loads(out)["relevant"] is True
    marks = tmp_path / "marks.jsonl"
    marks.write_text("".join(json.dumps({"query": "a cat", "image": p["path"], "relevant": False}) + "\n"
                             for p in pool[1:]))
    code, out, _ = run(capsys, monkeypatch, "judge", "import", str(marks), "--depth", "2", *d, "--json")
    assert code == 0 and len(json.loads(out)) == len(pool) - 1

    code, out, _ = run(capsys, monkeypatch, "judge", "status", "--depth", "2", *d, "--json")
    status = json.loads(out)
    cat = next(q for q in status["queries"] if q["query"] == "a cat")
    assert (cat["pooled"], cat["judged"], cat["relevant"], cat["unjudged"]) == (len(pool), len(pool), 1, 0)
    assert all(m["judged@2"] is not None for m in status["models"])

    code, out, _ = run(capsys, monkeypatch, "judge", "export", "--out", str(tmp_path / "qrels.jsonl"), *d, "--json")
    assert code == 0
    lines = (tmp_path / "qrels.jsonl").read_text().splitlines()
    assert [json.loads(line)["query"] for line in lines] == ["a cat"]

    code, out, _ = run(capsys, monkeypatch, "judge", "status", "--depth", "2", *d)
    assert code == 0 and f"'a cat': {len(pool)} of {len(pool)} judged, 1 relevant" in out


@pytest.mark.parametrize("args, message", [
    (["judge", "mark", "--query", "nothing like it", "--image", "x.png", "--relevant"], "unknown query"),
    (["judge", "mark", "--query", "a cat", "--image", "/nonexistent.png", "--relevant"], "not an indexed image"),
    (["judge", "mark", "--query", "a cat", "--image", "/nonexistent.png"], "--relevant or --not-relevant"),
    (["judge", "pool", "--depth", "0"], "--depth must be a positive integer"),
    (["judge", "add"], "no query given"),
    (["judge", "import", "/nonexistent.jsonl"], "cannot read /nonexistent.jsonl"),
])
def test_bad_input_gets_one_line_and_exit_2(capsys, monkeypatch, indexed, args, message):
    run(capsys, monkeypatch, "judge", "add", "--query", "a cat", "--index-dir", indexed)
    code, out, err = run(capsys, monkeypatch, *args, "--index-dir", indexed)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""
    code, out, _ = run(capsys, monkeypatch, "judge", "status", "--index-dir", indexed, "--json")
    assert json.loads(out)["judged_pairs"] == 0


def test_judging_needs_an_index(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "judge", "status", "--index-dir", str(tmp_path / "none"))
    assert code == 2 and "no index in" in err


def test_doctor_shows_what_auto_measured_for_a_model(capsys, monkeypatch, tiny_openclip, tmp_path):
    monkeypatch.setenv("IMGSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    code, out, _ = run(capsys, monkeypatch, "doctor", "--json")
    assert code == 0 and json.loads(out)["measured"] == []
    code, out, _ = run(capsys, monkeypatch, "doctor", "--model", tiny_openclip, "--json")
    (result,) = json.loads(out)["measured"]
    assert result["spec"] == tiny_openclip and result["chosen"] in result["candidates"]
    assert set(result["candidates"]) == {"fp32", "bf16"}
    code, out, _ = run(capsys, monkeypatch, "doctor")
    assert f"{tiny_openclip}: auto = {result['chosen']}" in out
