"""Exclusions at index time, on a real folder tree of photos: defaults, --exclude, .imgsearchignore."""

import json
import os
import shutil

import pytest

from imgsearch.errors import UsageError
from imgsearch.exclude import Exclusions
from imgsearch.files import scan
from imgsearch.indexer import index_folder
from imgsearch.store import Store

from conftest import run_imgsearch as run


@pytest.fixture
def tree(photos, tmp_path):
    """A photo library with the usual junk in it; relative path -> absolute path."""
    root = tmp_path / "library"
    source = list(photos.values())
    layout = {
        "2023/cat.png": source[0],
        "2023/raw/astronaut.png": source[1],
        "2024/coffee.png": source[2],
        "2024/private/rocket.png": source[3],
        "2024/.hidden-album/camera.png": source[4],
        "2024/.dotfile.png": source[5],
        "2024/._coffee.png": source[2],  # AppleDouble beside its file (here a real image, to prove the rule)
        "@eaDir/coffee.png/SYNOPHOTO_THUMB_XL.jpg": source[6],  # Synology thumbnail cache
        "2024/scratch.tmp.png": source[6],
    }
    for rel, src in layout.items():
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        shutil.copy(src, root / rel)
    return str(root)


def indexed(index_dir: str, root: str) -> set[str]:
    store = Store(index_dir)
    rows = store.images_under(root)
    store.close()
    return {os.path.relpath(p, root) for p, r in rows.items() if r["status"] == "ok"}


def scanned(root, **kwargs) -> set[str]:
    return {os.path.relpath(e.path, root) for e in scan(root, Exclusions(root, **kwargs))}


def test_hidden_appledouble_and_cache_folders_are_left_out_by_default(tree):
    assert scanned(tree) == {"2023/cat.png", "2023/raw/astronaut.png", "2024/coffee.png",
                             "2024/private/rocket.png", "2024/scratch.tmp.png"}
    everything = scanned(tree, include_hidden=True)
    assert {"2024/.hidden-album/camera.png", "2024/.dotfile.png", "2024/._coffee.png",
            "@eaDir/coffee.png/SYNOPHOTO_THUMB_XL.jpg"} <= everything and len(everything) == 9


def test_exclude_patterns_use_gitignore_syntax(tree):
    assert scanned(tree, patterns=["raw/", "*.tmp.png"]) == {
        "2023/cat.png", "2024/coffee.png", "2024/private/rocket.png"}
    assert scanned(tree, patterns=["/2024/"]) == {"2023/cat.png", "2023/raw/astronaut.png"}
    assert scanned(tree, patterns=["2024/**/rocket.png"]) == {
        "2023/cat.png", "2023/raw/astronaut.png", "2024/coffee.png", "2024/scratch.tmp.png"}
    # an absolute path inside the folder means that path
    assert "2023/raw/astronaut.png" not in scanned(tree, patterns=[os.path.join(tree, "2023", "raw")])


def test_imgsearchignore_files_apply_below_their_folder_and_can_take_files_back(tree):
    with open(os.path.join(tree, ".imgsearchignore"), "w") as f:
        f.write("# junk\nprivate/\n*.tmp.png\n")
    with open(os.path.join(tree, "2023", ".imgsearchignore"), "w") as f:
        f.write("*.png\n!cat.png\n")
    assert scanned(tree) == {"2023/cat.png", "2024/coffee.png"}
    # a negation in a deeper file takes back what a shallower file left out
    with open(os.path.join(tree, "2024", ".imgsearchignore"), "w") as f:
        f.write("!scratch.tmp.png\n")
    assert scanned(tree) == {"2023/cat.png", "2024/coffee.png", "2024/scratch.tmp.png"}


def test_excluding_what_is_indexed_removes_it_at_the_next_run(capsys, monkeypatch, tree, index_dir, tiny_openclip):
    first = index_folder(tree, [tiny_openclip], index_dir, include_hidden=True)
    assert first.new == 9 and len(indexed(index_dir, tree)) == 9

    with open(os.path.join(tree, ".imgsearchignore"), "w") as f:
        f.write("raw/\n")
    second = index_folder(tree, [tiny_openclip], index_dir, exclude=["private/"])
    kept = {"2023/cat.png", "2024/coffee.png", "2024/scratch.tmp.png"}
    assert indexed(index_dir, tree) == kept
    assert second.deleted == 6 and second.embedded == {tiny_openclip: 0}
    assert second.excluded["folders --exclude"] == 1 and second.excluded["folders .imgsearchignore"] == 1
    assert second.excluded["files AppleDouble"] == 1 and second.excluded["folders cache folder"] == 1

    # gone from FAISS too: no search returns them
    code, out, _ = run(capsys, monkeypatch, "search", "a photo", "--model", tiny_openclip, "-k", "20",
                       "--index-dir", index_dir, "--json")
    assert code == 0 and {os.path.relpath(r["path"], tree) for r in json.loads(out)["results"]} == kept


def test_the_index_dir_inside_the_folder_is_never_indexed(tree, tiny_openclip):
    inside = os.path.join(tree, "indexes")
    index_folder(tree, [tiny_openclip], inside)
    os.makedirs(os.path.join(inside, "thumbs"), exist_ok=True)
    shutil.copy(os.path.join(tree, "2023", "cat.png"), os.path.join(inside, "thumbs", "1.jpg"))
    again = index_folder(tree, [tiny_openclip], inside)
    assert again.new == 0 and not any(p.startswith("indexes") for p in indexed(inside, tree))
    # and another index dir in there is recognised by its database
    assert "indexes" not in {p.split(os.sep)[0] for p in scanned(tree)}


@pytest.mark.parametrize("pattern, message", [
    ("[", "can never match"),
    ("", "can never match"),
    ("# a comment", "can never match"),
    ("!", "bad --exclude pattern '!'"),
    ("\\", "bad --exclude pattern"),
])
def test_bad_exclude_patterns_are_one_line_and_exit_2(capsys, monkeypatch, tree, index_dir, tiny_openclip,
                                                       pattern, message):
    code, out, err = run(capsys, monkeypatch, "index", tree, "--model", tiny_openclip, "--index-dir", index_dir,
                         "--exclude", pattern)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(index_dir, "imgsearch.db"))  # refused before anything was written


def test_a_bad_line_in_an_ignore_file_names_the_file_and_line(capsys, monkeypatch, tree, index_dir, tiny_openclip):
    ignore = os.path.join(tree, "2024", ".imgsearchignore")
    with open(ignore, "w") as f:
        f.write("*.tmp.png\n!\n")
    code, out, err = run(capsys, monkeypatch, "index", tree, "--model", tiny_openclip, "--index-dir", index_dir)
    assert code == 2 and f"{ignore} line 2" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UsageError):
        list(scan(tree, Exclusions(tree)))


def test_index_text_output_says_what_was_left_out(capsys, monkeypatch, tree, index_dir, tiny_openclip):
    code, out, _ = run(capsys, monkeypatch, "index", tree, "--model", tiny_openclip, "--index-dir", index_dir,
                       "--exclude", "*.tmp.png")
    assert code == 0
    left_out = next(line for line in out.splitlines() if line.startswith("left out:"))
    assert "1 files --exclude" in left_out and "1 files AppleDouble" in left_out and "1 folders hidden" in left_out


def test_cli_exclude_is_repeatable_and_what_comes_back_is_indexed_again(capsys, monkeypatch, tree, index_dir,
                                                                         tiny_openclip):
    code, out, err = run(capsys, monkeypatch, "index", tree, "--model", tiny_openclip, "--index-dir", index_dir,
                         "--exclude", "raw/", "--exclude", "*.tmp.png", "--json")
    assert code == 0, err
    assert indexed(index_dir, tree) == {"2023/cat.png", "2024/coffee.png", "2024/private/rocket.png"}
    assert json.loads(out)["excluded"]["folders --exclude"] == 1

    # dropping the patterns and keeping hidden files brings everything in, the rest untouched
    code, out, err = run(capsys, monkeypatch, "index", tree, "--model", tiny_openclip, "--index-dir", index_dir,
                         "--include-hidden", "--json")
    assert code == 0, err
    report = json.loads(out)
    # (files with the bytes of an indexed file count as copied and reuse its vectors)
    assert report["new"] + report["copied"] == 6 and report["unchanged"] == 3 and report["deleted"] == 0
    assert len(indexed(index_dir, tree)) == 9 and report["embedded"] == {tiny_openclip: report["new"]}
