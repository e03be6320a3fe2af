"""Deterministic shards of the embedding work, their Parquet files, and merging them into SQLite."""

import os

import numpy as np
import pytest

from imgsearch import shards
from imgsearch.merge import MergeTally, commit_table, merge_shard
from imgsearch.shards import MAX_FACTOR, MIN_FRACTION, ShardModel, WorkItem
from imgsearch.store import Store

MODELS = [ShardModel(1, "openclip:a", 4, "fp32", "sha256:aa"), ShardModel(2, "openclip:b", 3, "bf16", None)]


def items(n: int, start: int = 0) -> list[WorkItem]:
    return [WorkItem(i, f"/photos/{i // 100:03d}/img-{i:06d}.jpg", f"hash{i}", (1, 2)) for i in range(start, start + n)]


def names(cut) -> list[str]:
    return [s.name for s in cut]


def test_the_same_work_is_cut_into_the_same_shards_within_size_bounds():
    work = items(3000)
    first, second = shards.cut(work, MODELS, 64), shards.cut(list(work), MODELS, 64)
    assert names(first) == names(second)
    assert [i for s in first for i in s.image_ids.tolist()] == [w.image_id for w in work]  # each once, in order
    assert [p for s in first for p in s.paths] == [w.path for w in work]
    assert all(s.needs.tolist() == [0b11] * len(s) for s in first)  # both models lack every image
    sizes = [len(s) for s in first]
    assert max(sizes) <= MAX_FACTOR * 64 and min(sizes[:-1]) >= 64 // MIN_FRACTION
    assert 20 < len(first) < 100  # about 3000 / 64


def test_merged_shards_and_new_files_leave_the_other_shards_as_they_were():
    work = items(3000)
    before = shards.cut(work, MODELS, 64)
    merged = set(before[5].image_ids.tolist()) | set(before[20].image_ids.tolist())
    after = shards.cut([item for item in work if item.image_id not in merged], MODELS, 64)
    assert set(names(after)) == set(names(before)) - {before[5].name, before[20].name}

    grown = shards.cut(work[:1500] + items(3, start=10_000) + work[1500:], MODELS, 64)
    assert len(set(names(before)) - set(names(grown))) <= 2  # only the shards around the new files


def test_a_shard_is_another_when_its_bytes_or_its_models_weights_or_precision_differ():
    work = items(50)
    base = names(shards.cut(work, MODELS, 1000))
    changed_bytes = [WorkItem(w.image_id, w.path, "other" if w.image_id == 7 else w.hash, w.models) for w in work]
    assert names(shards.cut(changed_bytes, MODELS, 1000)) != base
    other_weights = [MODELS[0], ShardModel(2, "openclip:b", 3, "bf16", "sha256:bb")]
    assert names(shards.cut(work, other_weights, 1000)) != base
    other_precision = [MODELS[0], ShardModel(2, "openclip:b", 3, "fp32", None)]
    assert names(shards.cut(work, other_precision, 1000)) != base


def result_table(image_ids, failed=()):
    rng = np.random.default_rng(0)
    columns = {name: [] for name in shards.META_COLUMNS}
    vectors = {m.id: [] for m in MODELS}
    for i in map(int, image_ids):
        error = "cannot decode: broken data stream" if i in failed else None
        columns["image_id"].append(i)
        columns["error"].append(error)
        for name, value in (("hash", f"h{i}"), ("width", 640), ("height", 480), ("taken_at", None),
                            ("camera", "Canon EOS 80D")):
            columns[name].append(None if error else value)
        for m in MODELS:
            vector = rng.standard_normal(m.dim).astype(np.float32)
            vectors[m.id].append(None if error or (m.id == 2 and i % 2) else vector / np.linalg.norm(vector))
    return shards.build_table(MODELS, columns, vectors)


def test_a_shard_file_round_trips_and_only_a_whole_file_is_complete(tmp_path):
    work = items(9)
    shard = shards.cut(work, MODELS, 1000)[0]
    folder = str(tmp_path / "shards")
    assert not shards.is_complete(shard, folder)
    table = result_table(shard.image_ids, failed={3})
    shards.write(table, shard.file(folder))
    assert os.listdir(folder) == [shard.name + ".parquet"]  # no temporary file left behind
    assert shards.is_complete(shard, folder)
    back = shards.read(shard.file(folder))
    assert back.equals(table)
    ids, vectors = shards.vectors_of(back, MODELS[1])
    assert ids.tolist() == [0, 2, 4, 6, 8] and vectors.shape == (5, 3)  # failed (3) and odd rows hold none

    shards.write(table.slice(0, 8), shard.file(folder))
    assert not shards.is_complete(shard, folder)  # a row short
    with open(shard.file(folder), "r+b") as f:
        f.truncate(100)
    assert not shards.is_complete(shard, folder)  # damaged


def test_temporary_and_stale_shard_files_are_found(tmp_path):
    folder = str(tmp_path)
    old, new = shards.cut(items(5), MODELS, 1000)[0], shards.cut(items(6), MODELS, 1000)[0]
    shards.write(result_table(old.image_ids), old.file(folder))
    shards.write(result_table(new.image_ids), new.file(folder))
    open(os.path.join(folder, shards.TEMP_PREFIX + "x.parquet"), "w").close()
    shards.remove_temp_files(folder)
    assert sorted(os.listdir(folder)) == sorted([old.name + ".parquet", new.name + ".parquet"])
    assert shards.stale_files(folder, [new]) == [old.file(folder)]


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "index"))
    with store.atomic():
        for m in MODELS:
            store.add_model(m.spec, "openclip", m.dim, m.precision, {}, {}, "Flat", f"{m.id}.faiss", m.fingerprint)
        for i in range(1, 10):
            store.add_image(f"/photos/{i}.jpg", status="pending", size=10, mtime_ns=1, hash=f"h{i}")
    yield store
    store.close()


def stored(store):
    images = [tuple(r) for r in store.db.execute("select id, status, reason, hash, width, camera, size from images")]
    vectors = [tuple(r) for r in store.db.execute("select model_id, image_id, vector from embeddings order by 1, 2")]
    return images, vectors


def test_merging_a_shard_commits_its_images_and_vectors_once_however_often_it_is_applied(store, tmp_path):
    work = [WorkItem(i, f"/photos/{i}.jpg", f"h{i}", (1, 2)) for i in range(1, 10)]
    shard = shards.cut(work, MODELS, 1000)[0]
    folder = str(tmp_path / "shards")
    table = result_table(shard.image_ids, failed={4})
    shards.write(table, shard.file(folder))
    generations = [store.model(m.spec).generation for m in MODELS]

    tally = MergeTally()
    merge_shard(store, shard, MODELS, folder, tally)
    assert not os.path.exists(shard.file(folder))  # deleted once committed
    assert tally.embedded == {"openclip:a": 8, "openclip:b": 3} and tally.shards == 1  # b: even ids but 4
    assert tally.skipped == [{"path": "/photos/4.jpg", "reason": "cannot decode: broken data stream"}]
    assert store.counts() == {"ok": 8, "skipped": 1}
    assert [store.model(m.spec).generation for m in MODELS] == [g + 1 for g in generations]
    first_id, first_vectors = shards.vectors_of(table, MODELS[0])
    np.testing.assert_array_equal(store.embedding(1, int(first_id[0])), first_vectors[0])
    once = stored(store)

    commit_table(store, table, MODELS, {}, MergeTally())  # a driver killed before the file was deleted
    assert stored(store) == once
    assert store.db.execute("select size from images where id = 4").fetchone()[0] == 10  # bad bytes: kept


def test_the_store_streams_the_same_work_as_work_for_in_batches(store):
    with store.atomic():
        store.add_image("/elsewhere/x.jpg", status="pending", hash="hx")
        store.update_image(2, status="ok")
        store.put_embeddings(1, store.bump_generation(1), [2], np.ones((1, 4), dtype=np.float32))
        store.update_image(3, status="skipped", reason="not an image")
    for root in (None, "/photos"):
        streamed = [row for batch in store.iter_work([1, 2], root, batch=3) for row in batch]
        hashes = {r[0]: r[3] for r in store.db.execute("select id, path, status, hash from images")}
        assert streamed == [(i, path, hashes[i], lacking) for i, path, lacking in store.work_for([1, 2], root)]
        assert (2, "/photos/2.jpg", "h2", [2]) in streamed  # model 1 has its vector
        assert 3 not in [row[0] for row in streamed]  # skipped
    assert "/elsewhere/x.jpg" not in [row[1] for batch in store.iter_work([1, 2], "/photos") for row in batch]
