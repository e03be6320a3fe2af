"""The command line: output per format, exit codes, one-line errors."""

import csv
import io
import json
import os

import pytest

from imgsearch.samples import write_samples

from conftest import run_imgsearch as run


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


def as_csv_cells(rows):
    """JSON rows as their CSV reads back: every cell a string, null an empty one, lists as JSON."""
    return [{k: "" if v is None else json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)
             for k, v in row.items()} for row in rows]


def test_models_json_lists_presets_and_offline_models(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "models", "--json")
    rows = json.loads(out)
    by_preset = {r["preset"]: r for r in rows}
    assert code == 0
    assert by_preset["fast"]["spec"] == "openclip:ViT-B-32/laion2b_s34b_b79k"
    assert by_preset["fast"]["dim"] == 512 and by_preset["fast"]["offline"] is False
    assert by_preset["offline"]["offline"] is True and by_preset["offline"]["weights_local"] is True
    assert {"fast", "balanced", "quality", "best", "siglip", "blip"} <= set(by_preset)


def test_models_text_says_offline_models_are_weak_baselines(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "models")
    assert code == 0 and "weak offline baselines" in out and "not CLIP" in out


def test_models_rows_are_the_same_in_every_format(capsys, monkeypatch):
    _, out, _ = run(capsys, monkeypatch, "models", "--json")
    rows = json.loads(out)
    code, out, _ = run(capsys, monkeypatch, "models", "--nl")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == rows
    code, out, _ = run(capsys, monkeypatch, "models", "--csv")
    assert code == 0 and read_csv(out) == as_csv_cells(rows)
    assert out.splitlines()[0].split(",") == list(rows[0])
    code, out, _ = run(capsys, monkeypatch, "models")
    table = out.splitlines()[1:len(rows) + 1]
    assert code == 0
    assert [line.split()[:3] for line in table] == [[r["preset"], r["spec"], str(r["dim"] or "?")] for r in rows]


def test_one_output_format_at_a_time_and_csv_only_where_there_are_rows(capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "models", "--json", "--nl")
    assert code == 2 and out == "" and err == "Error: choose one output format, not --json and --nl\n"
    code, out, err = run(capsys, monkeypatch, "index", str(tmp_path), "--model", "offline", "--csv")
    assert code == 2 and out == "" and err.count("\n") == 1 and "No such option" in err and "--csv" in err


def test_index_then_search_json(capsys, monkeypatch, photos, index_dir, tiny_openclip):
    folder = os.path.dirname(photos["cat.png"])
    code, out, _ = run(capsys, monkeypatch, "index", folder, "--model", tiny_openclip, "--index-dir", index_dir, "--json")
    report = json.loads(out)
    assert code == 0 and report["new"] == 7 and report["embedded"] == {tiny_openclip: 7}

    code, out, _ = run(capsys, monkeypatch, "search", "a cat", "--model", tiny_openclip, "-k", "3",
                       "--index-dir", index_dir, "--json")
    result = json.loads(out)
    assert code == 0
    assert set(result) == {"model", "query", "results", "timing_ms"}
    assert [r["rank"] for r in result["results"]] == [1, 2, 3]
    assert all(set(r) == {"rank", "path", "score"} for r in result["results"])
    assert set(result["timing_ms"]) == {"encode", "search", "metadata", "total"}

    code, out, _ = run(capsys, monkeypatch, "search", "--image", photos["cat.png"], "--model", tiny_openclip,
                       "--index-dir", index_dir)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 6 and photos["cat.png"] not in out


def test_search_ranking_is_the_same_in_every_format(capsys, monkeypatch, photos, index_dir, tiny_openclip):
    run(capsys, monkeypatch, "index", os.path.dirname(photos["cat.png"]), "-m", tiny_openclip, "--index-dir", index_dir)
    query = ["search", "a cat", "-m", tiny_openclip, "-k", "4", "--index-dir", index_dir]
    _, out, _ = run(capsys, monkeypatch, *query, "--json")
    results = json.loads(out)["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    code, out, _ = run(capsys, monkeypatch, *query, "--nl")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == results
    code, out, _ = run(capsys, monkeypatch, *query, "--csv")
    assert code == 0 and read_csv(out) == as_csv_cells(results)
    code, out, _ = run(capsys, monkeypatch, *query)
    shown = [line.split(None, 2) for line in out.splitlines()]
    assert code == 0
    assert shown == [[str(r["rank"]), f"{r['score']:.4f}", r["path"]] for r in results]


def test_eval_summary_rows_as_csv_match_the_json(capsys, monkeypatch, tmp_path, tiny_openclip):
    paths = write_samples(str(tmp_path / "photos"), ["cat.png", "coffee.png", "rocket.png"],
                          captions_file="captions.jsonl")
    dataset = os.path.join(os.path.dirname(paths["cat.png"]), "captions.jsonl")
    args = ["eval", "--dataset", dataset, "-m", tiny_openclip, "-k", "1", "-k", "2",
            "--index-dir", str(tmp_path / "indexes")]
    code, out, _ = run(capsys, monkeypatch, *args, "--out", str(tmp_path / "a"), "--json")
    summary = json.loads(out)
    assert code == 0 and [r["model"] for r in summary["models"]] == [tiny_openclip]
    code, out, _ = run(capsys, monkeypatch, *args, "--out", str(tmp_path / "b"), "--csv")
    rows = read_csv(out)
    assert code == 0 and len(rows) == 1 and list(rows[0]) == list(summary["models"][0])
    # a second run re-uses the index: the same recall, other timings
    for key in ("model", "dim", "t2i_recall@1", "t2i_recall@2"):
        assert rows[0][key] == as_csv_cells(summary["models"])[0][key]
    code, out, _ = run(capsys, monkeypatch, *args, "--out", str(tmp_path / "c"))
    recall = summary["models"][0]["t2i_recall@1"]
    assert code == 0 and out.splitlines()[0].startswith(f"{tiny_openclip}: recall@1 {recall:.3f}  recall@2 ")
    assert out.splitlines()[-1] == f"report: {tmp_path / 'c' / 'report.html'}"


@pytest.mark.parametrize("args, message", [
    (["search", "x", "--model", "no-such-model"], "unknown model spec 'no-such-model'"),
    (["search", "x", "--model", "fast", "-k", "0"], "-k must be a positive integer"),
    (["search", "x", "--model", "fast", "-k", "many"], "'many' is not a valid integer"),
    (["index", "/no/such/folder", "--model", "fast"], "folder not found: /no/such/folder"),
    (["index", ".", "--model", "fast", "--index-type", "IVF-bogus"], "bad FAISS index factory string"),
    (["index", "."], "name at least one model"),
    (["search", "--model", "fast"], "give either a text QUERY or --image PATH"),
    (["eval", "--dataset", "/no/such.jsonl", "--model", "fast"], "dataset not found"),
    (["search", "x", "--model", "openclip:ViT-B-32/nope"], "unknown pretrained tag 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, monkeypatch, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("Error: ") and message in err
    assert out == ""


def test_search_without_an_index_for_that_model(capsys, monkeypatch, photos, index_dir, tiny_openclip, tiny_openclip_b):
    run(capsys, monkeypatch, "index", os.path.dirname(photos["cat.png"]), "-m", tiny_openclip, "--index-dir", index_dir)
    code, _, err = run(capsys, monkeypatch, "search", "x", "-m", tiny_openclip_b, "--index-dir", index_dir)
    assert code == 2 and f"no index for {tiny_openclip_b}" in err and err.count("\n") == 1


def test_model_without_weights_says_so_in_one_line(capsys, monkeypatch, photos, index_dir):
    code, _, err = run(capsys, monkeypatch, "index", os.path.dirname(photos["cat.png"]), "-m", "fast",
                       "--index-dir", index_dir)
    assert code == 2 and err.count("\n") == 1
    assert "cannot load weights for openclip:ViT-B-32/laion2b_s34b_b79k" in err and "local checkpoint" in err


def test_check_reports_ok_then_repairs_a_corrupt_faiss_file(capsys, monkeypatch, photos, index_dir, tiny_openclip):
    run(capsys, monkeypatch, "index", os.path.dirname(photos["cat.png"]), "-m", tiny_openclip, "--index-dir", index_dir)
    code, out, _ = run(capsys, monkeypatch, "check", "--index-dir", index_dir, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    for name in os.listdir(index_dir):
        if name.endswith(".faiss"):
            with open(os.path.join(index_dir, name), "wb") as f:
                f.write(b"not a FAISS index")
    code, out, _ = run(capsys, monkeypatch, "check", "--index-dir", index_dir)
    assert code == 1 and "problem:" in out
    code, out, _ = run(capsys, monkeypatch, "check", "--repair", "--index-dir", index_dir)
    assert code == 0 and out.strip().endswith("ok")


def test_local_dir_without_weights_is_refused_not_randomly_initialised(capsys, monkeypatch, tmp_path, photos, index_dir):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text('{"model_cfg": {}}')
    code, _, err = run(capsys, monkeypatch, "index", os.path.dirname(photos["cat.png"]),
                       "-m", f"openclip:local-dir:{folder}", "--index-dir", index_dir)
    assert code == 2 and "no weights file" in err and err.count("\n") == 1
