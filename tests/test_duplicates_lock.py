"""find_duplicates caches perceptual hashes only under the index dir's WriteLock: with the lock
free it caches them; while another writer holds it, it neither waits nor fails, and still groups."""

import os
import shutil
import sqlite3

import pytest
from PIL import Image, ImageOps

from imgsearch.duplicates import PHASH_KIND, find_duplicates
from imgsearch.indexer import index_folder
from imgsearch.lock import WriteLock
from imgsearch.store import DB_NAME

from conftest import run_imgsearch as run


@pytest.fixture
def library(photos, index_dir, tiny_openclip):
    """The sample photos, a mirror image of the cat and a byte-for-byte copy of the rocket."""
    folder = os.path.dirname(photos["cat.png"])
    with Image.open(photos["cat.png"]) as cat:
        ImageOps.mirror(cat.convert("RGB")).save(os.path.join(folder, "cat-mirror.png"))
    shutil.copy(photos["rocket.png"], os.path.join(folder, "rocket-copy.png"))
    index_folder(folder, [tiny_openclip], index_dir)
    return index_dir


def cached_rows(index_dir) -> int:
    with sqlite3.connect(os.path.join(index_dir, DB_NAME)) as conn:
        return conn.execute("select count(*) from perceptual_hashes where kind = ?", [PHASH_KIND]).fetchone()[0]


def names(report) -> list[list[str]]:
    return sorted(sorted(os.path.basename(m["path"]) for m in g["images"]) for g in report.groups)


EXPECTED = [["cat-mirror.png", "cat.png"], ["rocket-copy.png", "rocket.png"]]


def test_with_the_lock_free_the_hashes_are_cached_and_the_lock_let_go(library):
    report = find_duplicates(library)
    assert names(report) == EXPECTED
    assert report.images == 9
    assert cached_rows(library) == 8  # one per content: the byte-for-byte copy shares the rocket's
    with WriteLock(library):  # released: another writer can take it at once
        pass


def test_while_another_writer_holds_the_lock_the_groups_stand_and_nothing_is_cached(library):
    with WriteLock(library):
        report = find_duplicates(library)
        assert names(report) == EXPECTED
        assert cached_rows(library) == 0
    # the next call, with the lock free, hashes the images again and caches them
    assert names(find_duplicates(library)) == EXPECTED
    assert cached_rows(library) == 8


def test_the_cli_answers_while_an_index_run_holds_the_lock(capsys, monkeypatch, library):
    with WriteLock(library):
        code, out, err = run(capsys, monkeypatch, "duplicates", "--index-dir", library, "--json")
    assert code == 0, err
    assert "Traceback" not in err
    assert "cat-mirror.png" in out and "rocket-copy.png" in out
