"""Crashes, Ctrl-C, a second writer, readers during a write, and damaged files lose no data.

Writers run in forked children so that a test can kill them at any moment; forked rather
than started afresh because a fresh interpreter spends seconds importing torch. A forked
child of torch runs with one thread, as torch's own forked workers do. In the child the
chunk size is 4 and FAISS files are saved after every chunk, so that kills land mid-chunk,
between chunks and mid-save.
"""

import os
import random
import shutil
import signal
import sys
import time
import traceback
from functools import partial

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

import imgsearch.embed
from imgsearch.check import check_index
from imgsearch.cli import main
from imgsearch.errors import IndexCorrupt, IndexLocked
from imgsearch.indexer import index_folder
from imgsearch.search import Searcher
from imgsearch.store import DB_NAME, Store
from imgsearch.vectors import temp_files

N_PHOTOS = 40


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    """Distinct small pictures (seeded noise over colour ramps); the tests only read them."""
    path = tmp_path_factory.mktemp("crash-photos")
    rng = np.random.default_rng(0)
    for n in range(N_PHOTOS):
        ramp = np.linspace(0, 255, 32, dtype=np.float32)[None, :, None] * rng.random(3, dtype=np.float32)
        pixels = np.clip(ramp + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path / f"photo-{n:02d}.png")
    return str(path)


@pytest.fixture(scope="module")
def clean(folder, tiny_openclip, tmp_path_factory) -> dict[str, np.ndarray]:
    """What one uninterrupted run gives: vectors by path."""
    index_dir = str(tmp_path_factory.mktemp("clean-index"))
    index_folder(folder, [tiny_openclip], index_dir)
    return consistent_snapshot(index_dir, tiny_openclip)


def consistent_snapshot(index_dir, spec) -> dict[str, np.ndarray]:
    """Vectors by path, once SQLite and the saved FAISS file are checked to agree exactly."""
    store = Store(index_dir)
    row = store.model(spec)
    statuses = {status for (status,) in store.db.execute("select status from images")}
    ids, vectors = store.embeddings_since(row.id, row.dim, -1)
    paths = {i: r["path"] for i, r in store.images(ids).items()}
    store.close()
    index = faiss.read_index(os.path.join(index_dir, row.index_file))  # the file as saved, not synced
    in_faiss = faiss.vector_to_array(index.id_map)

    assert statuses == {"ok"}
    assert row.faiss_generation == row.generation  # the saved file is up to date
    assert len(set(in_faiss.tolist())) == len(in_faiss)  # no id twice
    assert sorted(in_faiss.tolist()) == sorted(ids.tolist())  # no vector missing or orphaned
    for image_id, vector in zip(ids, vectors):
        np.testing.assert_array_equal(index.reconstruct(int(image_id)), vector)
    assert temp_files(index_dir) == []
    return {paths[i]: v for i, v in zip(ids.tolist(), vectors)}


def assert_same_index(index_dir, spec, clean) -> None:
    got = consistent_snapshot(index_dir, spec)
    assert sorted(got) == sorted(clean)
    for path, vector in clean.items():
        np.testing.assert_allclose(got[path], vector, atol=1e-5)
    report = check_index(index_dir)
    assert report.ok and report.notes() == [], report.problems() + report.notes()


def start_child(work) -> int:
    """Fork; the child runs work() and exits with its return value (or SystemExit's code)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = work() or 0
        except SystemExit as e:
            code = e.code or 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def exit_code(pid) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)  # -9: killed by SIGKILL


def small_steps(pause=0.0, marker=None, stall=False) -> None:
    """In a child: chunks of 4, FAISS saved after each; pause before each commit, note each one."""
    imgsearch.embed.CHUNK = 4
    imgsearch.embed.SAVE_EVERY_S = 0.0
    commit = imgsearch.embed._embed_and_commit

    def paced_commit(*args):
        if marker and stall:
            open(marker, "a").close()
            time.sleep(120)  # holds the write lock until killed
        time.sleep(pause)
        commit(*args)
        if marker:
            with open(marker, "a") as f:
                f.write("committed\n")

    imgsearch.embed._embed_and_commit = paced_commit


def wait_for(condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def wait_for_commits(pid, marker, n) -> int | None:
    """Wait until the child committed n chunks: None, or its exit code if it ended first."""
    while commits(marker) < n:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    return None


def commits(marker) -> int:
    if not os.path.exists(marker):
        return 0
    with open(marker) as f:
        return f.read().count("committed")


def test_sigkill_at_random_moments_then_a_rerun_equals_one_clean_run(folder, clean, index_dir, tiny_openclip,
                                                                     tmp_path):
    rng = random.Random(1234)
    kills = 0
    for attempt in range(8):
        marker = str(tmp_path / f"commits-{attempt}")

        def work():
            small_steps(pause=0.05, marker=marker)
            index_folder(folder, [tiny_openclip], index_dir)

        # After 0 or 1 commits of this run, then at a random moment of the next chunk: while it
        # is hashed or decoded, embedded, committed, or its FAISS file is being saved.
        pid = start_child(work)
        code = wait_for_commits(pid, marker, rng.choice([0, 0, 1]))
        if code is None:
            time.sleep(rng.uniform(0.0, 0.1))
            os.kill(pid, signal.SIGKILL)  # a child that just finished takes this without effect
            code = exit_code(pid)
        assert code in (0, -signal.SIGKILL)
        kills += code == -signal.SIGKILL
    assert kills >= 5

    index_folder(folder, [tiny_openclip], index_dir)
    assert_same_index(index_dir, tiny_openclip, clean)


def test_ctrl_c_exits_130_keeps_the_work_and_a_rerun_embeds_only_the_rest(folder, clean, index_dir,
                                                                           tiny_openclip, tmp_path):
    marker, err = str(tmp_path / "commits"), str(tmp_path / "stderr")

    def work():
        small_steps(pause=0.05, marker=marker)
        sys.stderr = open(err, "w", buffering=1)
        sys.argv = ["imgsearch", "index", folder, "-m", tiny_openclip, "--index-dir", index_dir]
        main()

    pid = start_child(work)
    wait_for(lambda: commits(marker) >= 2)
    os.kill(pid, signal.SIGINT)
    assert exit_code(pid) == 130
    with open(err) as f:
        assert "interrupted: the work done so far is kept; run the same command to continue" in f.read()

    store = Store(index_dir)
    done = len(store.embedding_ids(store.model(tiny_openclip).id))
    store.close()
    assert 8 <= done < N_PHOTOS
    rerun = index_folder(folder, [tiny_openclip], index_dir)
    assert rerun.embedded == {tiny_openclip: N_PHOTOS - done}  # nothing committed is embedded again
    assert_same_index(index_dir, tiny_openclip, clean)


def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(folder, clean, index_dir, tiny_openclip,
                                                                      tmp_path):
    marker = str(tmp_path / "holding")

    def work():
        small_steps(marker=marker, stall=True)
        index_folder(folder, [tiny_openclip], index_dir)

    pid = start_child(work)
    wait_for(lambda: os.path.exists(marker))
    with pytest.raises(IndexLocked) as refused:
        index_folder(folder, [tiny_openclip], index_dir)
    message = str(refused.value)
    assert f"another imgsearch process (pid {pid}) is writing to {index_dir}" in message
    assert "\n" not in message

    os.kill(pid, signal.SIGKILL)
    assert exit_code(pid) == -signal.SIGKILL
    index_folder(folder, [tiny_openclip], index_dir)  # the kernel released the lock
    assert_same_index(index_dir, tiny_openclip, clean)


def test_searches_keep_working_while_an_index_is_written(folder, clean, index_dir, tiny_openclip):
    first = set(sorted(clean)[:8])
    index_folder(folder, [tiny_openclip], index_dir, include=first.__contains__)
    searcher = Searcher(tiny_openclip, index_dir)

    def work():
        small_steps(pause=0.1)
        index_folder(folder, [tiny_openclip], index_dir)

    pid = start_child(work)
    seen = []
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        searcher.refresh()
        found = [r["path"] for r in searcher.text("a photo", k=100).results]
        fresh = Searcher(tiny_openclip, index_dir)  # loads the FAISS file a writer keeps replacing
        found_fresh = [r["path"] for r in fresh.text("a photo", k=100).results]
        fresh.close()
        assert set(found) <= set(clean) and set(found_fresh) <= set(clean)
        assert len(set(found)) == len(found)
        seen.append(len(found))
    assert seen == sorted(seen) and any(8 < n < N_PHOTOS for n in seen)  # saw the index grow

    searcher.refresh()
    assert len(searcher.text("a photo", k=100).results) == N_PHOTOS
    searcher.close()
    assert_same_index(index_dir, tiny_openclip, clean)


def garbage(path):
    with open(path, "wb") as f:
        f.write(random.Random(0).randbytes(1000))


def truncated(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def emptied(path):
    open(path, "wb").close()


def not_keyed_by_image_id(path):
    faiss.write_index(faiss.IndexFlatIP(32), path)


def wrong_dimension(path):
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(8)), path)


@pytest.mark.parametrize("damage", [garbage, truncated, emptied, not_keyed_by_image_id, wrong_dimension])
def test_a_damaged_faiss_file_says_how_to_recover_and_the_recovery_works(folder, clean, index_dir,
                                                                         tiny_openclip, damage):
    index_folder(folder, [tiny_openclip], index_dir)
    store = Store(index_dir)
    path = os.path.join(index_dir, store.model(tiny_openclip).index_file)
    store.close()
    damage(path)

    search, index = partial(Searcher, tiny_openclip, index_dir), partial(index_folder, folder, [tiny_openclip], index_dir)
    for attempt in (search, index):
        with pytest.raises(IndexCorrupt) as error:
            attempt()
        message = str(error.value)
        assert message.startswith(f"FAISS index {path} is unreadable (") and "\n" not in message
        assert message.endswith("run `imgsearch check --repair` to rebuild it from the database")

    assert not check_index(index_dir).ok
    repaired = check_index(index_dir, repair=True)
    assert repaired.ok and repaired.embedded == {}  # rebuilt from the database, nothing re-embedded
    assert_same_index(index_dir, tiny_openclip, clean)


def damage_header(db_path):
    with open(db_path, "r+b") as f:
        f.write(b"\x00" * 100)


def truncate_half(db_path):
    truncated(db_path)


def damage_a_table_page(db_path):
    """Overwrite the first page of the images table: opening works, reading rows fails."""
    store = Store(os.path.dirname(db_path))
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    root = store.db.execute("select rootpage from sqlite_master where name = 'images'").fetchone()[0]
    store.close()
    with open(db_path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


@pytest.mark.parametrize("damage", [damage_header, truncate_half, damage_a_table_page])
def test_a_damaged_database_says_how_to_recover_and_the_recovery_works(folder, clean, index_dir, tiny_openclip,
                                                                       tmp_path, damage):
    index_folder(folder, [tiny_openclip], index_dir)
    db_path = os.path.join(index_dir, DB_NAME)
    assert not os.path.exists(db_path + "-wal")  # the last connection closed: all of it is in the file
    damage(db_path)

    with pytest.raises(IndexCorrupt) as error:
        index_folder(folder, [tiny_openclip], index_dir)
    message = str(error.value)
    assert message.startswith(f"index database {db_path} is unreadable (") and "\n" not in message
    assert message.endswith("move it (with its -wal and -shm files) out of the way and run `imgsearch index` "
                            "again to rebuild it from the photos")
    report = check_index(index_dir)
    assert not report.ok and report.problems()[0].startswith(f"index database {db_path} is unreadable")

    moved = tmp_path / "damaged"  # the recovery the message names
    moved.mkdir()
    for name in os.listdir(index_dir):
        if name.startswith(DB_NAME):
            shutil.move(os.path.join(index_dir, name), moved / name)
    index_folder(folder, [tiny_openclip], index_dir)
    assert_same_index(index_dir, tiny_openclip, clean)
