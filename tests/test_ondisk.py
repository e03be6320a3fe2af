"""IVF indexes with their inverted lists on disk past a memory budget: built streaming from the
vectors of record, trained on a sample drawn across the whole collection, never modified once
written, and rebuilt by `check --repair`."""

import glob
import os
import shutil

import faiss
import numpy as np
import pytest

from imgsearch import ondisk
from imgsearch.check import check_index
from imgsearch.store import Store
from imgsearch.vectors import VectorIndex, catch_up, load_synced, rebuild, save, sync

DIM = 16
NLIST = 16
FACTORY = f"IVF{NLIST},Flat"


def clustered(n: int, centre: np.ndarray, rng) -> np.ndarray:
    points = centre + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def fill(store: Store, model_id: int, vectors: np.ndarray, start: int) -> list[int]:
    with store.atomic():
        store.add_images({"path": f"/photos/{start + i:06d}.jpg", "status": "ok", "hash": f"h{start + i}"}
                         for i in range(len(vectors)))
        ids = store.image_ids()[-len(vectors):]
        store.put_embeddings(model_id, store.bump_generation(model_id), ids, vectors)
    return ids


@pytest.fixture
def on_disk(monkeypatch):
    monkeypatch.setenv(ondisk.BUDGET_ENV, "1000")  # any IVF index of these tests goes to disk


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "index"))
    with store.atomic():
        store.add_model("fake:vectors", "fake", DIM, "fp32", {}, {}, FACTORY, "fake.faiss")
    yield store
    store.close()


def exact_top(vectors: np.ndarray, ids: list[int], queries: np.ndarray, k: int) -> np.ndarray:
    _, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return np.asarray(ids)[rows]


def searched(vi: VectorIndex, queries: np.ndarray, k: int) -> np.ndarray:
    faiss.extract_index_ivf(vi.index).nprobe = NLIST  # every list: IVF-Flat is then exact
    return vi.search(queries, k)[1]


def test_past_the_budget_an_ivf_index_is_built_on_disk_and_searches_like_exact(store, on_disk, capfd):
    rng = np.random.default_rng(1)
    vectors = np.concatenate([clustered(700, rng.standard_normal(DIM), rng) for _ in range(3)])
    ids = fill(store, store.model("fake:vectors").id, vectors, 0)
    row = store.model("fake:vectors")
    vi = VectorIndex.empty(FACTORY, DIM)
    rebuild(store, row, vi)

    assert ondisk.is_ondisk(vi.index)
    assert os.path.dirname(ondisk.data_file(vi.index)) == store.index_dir
    assert sorted(vi.ids().tolist()) == ids
    queries = clustered(20, vectors[0], rng)
    np.testing.assert_array_equal(searched(vi, queries, 10), exact_top(vectors, ids, queries, 10))

    save(store, row, vi)
    assert os.path.getsize(os.path.join(store.index_dir, row.index_file)) < vectors.nbytes  # the lists are not in it
    moved = store.index_dir + "-moved"
    shutil.copytree(store.index_dir, moved)
    copy = Store(moved)
    reader, changed = load_synced(copy, copy.model("fake:vectors"))
    assert ondisk.is_ondisk(reader.index) and not changed
    assert os.path.dirname(ondisk.data_file(reader.index)) == moved  # found beside the moved .faiss file
    np.testing.assert_array_equal(searched(reader, queries, 10), exact_top(vectors, ids, queries, 10))
    copy.close()
    assert capfd.readouterr().out == ""  # FAISS's printf lines would break `--json` output


def test_training_samples_the_whole_collection_not_its_first_vectors(store, on_disk):
    """Files in folder order: the first 2000 vectors are all of one kind, the last 700 another."""
    rng = np.random.default_rng(2)
    first, last = rng.standard_normal(DIM), rng.standard_normal(DIM)
    model_id = store.model("fake:vectors").id
    fill(store, model_id, clustered(2000, first, rng), 0)
    fill(store, model_id, clustered(700, last, rng), 2000)
    vi = VectorIndex.empty(FACTORY, DIM)
    rebuild(store, store.model("fake:vectors"), vi)
    centroids = faiss.vector_to_array(faiss.downcast_index(faiss.extract_index_ivf(vi.index).quantizer).codes)
    centroids = centroids.view(np.float32).reshape(NLIST, DIM)
    unit = last / np.linalg.norm(last)
    near_last = (centroids @ unit) / np.linalg.norm(centroids, axis=1) > 0.8
    assert 2 <= near_last.sum() <= 10  # about its share (700 of 2700) of the 16 lists


def test_an_on_disk_index_is_never_modified_a_writer_builds_a_new_one(store, on_disk):
    rng = np.random.default_rng(3)
    model_id = store.model("fake:vectors").id
    ids = fill(store, model_id, clustered(1000, rng.standard_normal(DIM), rng), 0)
    row = store.model("fake:vectors")
    vi = VectorIndex.empty(FACTORY, DIM)
    rebuild(store, row, vi)
    save(store, row, vi)
    first_data = ondisk.data_file(vi.index)
    first_bytes = open(first_data, "rb").read()

    more = fill(store, model_id, clustered(300, rng.standard_normal(DIM), rng), 1000)
    with store.atomic():
        store.delete_images(ids[:50])
    reader = load_synced(store, store.model("fake:vectors"))[0]
    assert not sync(store, store.model("fake:vectors"), reader)  # a reader searches the file as saved
    assert sorted(reader.ids().tolist()) == ids

    assert catch_up(store, store.model("fake:vectors"), vi)
    assert sorted(vi.ids().tolist()) == ids[50:] + more
    second_data = ondisk.data_file(vi.index)
    assert second_data != first_data and open(first_data, "rb").read() == first_bytes
    save(store, store.model("fake:vectors"), vi)
    assert os.path.exists(first_data)  # kept: a reader may have read the previous .faiss file
    fill(store, model_id, clustered(10, rng.standard_normal(DIM), rng), 2000)
    catch_up(store, store.model("fake:vectors"), vi)
    save(store, store.model("fake:vectors"), vi)
    data_files = sorted(glob.glob(os.path.join(store.index_dir, "*" + ondisk.DATA_SUFFIX)))
    assert data_files == sorted([second_data, ondisk.data_file(vi.index)])
    assert not [name for name in os.listdir(store.index_dir) if name.startswith(".tmp-")]


def test_check_repair_rebuilds_an_on_disk_index_whose_data_file_is_lost(store, on_disk):
    rng = np.random.default_rng(4)
    fill(store, store.model("fake:vectors").id, clustered(1000, rng.standard_normal(DIM), rng), 0)
    row = store.model("fake:vectors")
    vi = VectorIndex.empty(FACTORY, DIM)
    rebuild(store, row, vi)
    save(store, row, vi)
    assert check_index(store.index_dir).ok
    os.unlink(ondisk.data_file(vi.index))

    broken = check_index(store.index_dir)
    assert not broken.ok and "unreadable" in broken.problems()[0]
    repaired = check_index(store.index_dir, repair=True)
    assert repaired.ok, repaired.problems()
    again = load_synced(store, store.model("fake:vectors"))[0]
    assert ondisk.is_ondisk(again.index) and again.ntotal == 1000


def test_an_ivf_index_in_memory_that_loses_vectors_still_returns_the_right_ids(store):
    rng = np.random.default_rng(5)
    vectors = clustered(1000, rng.standard_normal(DIM), rng)
    ids = fill(store, store.model("fake:vectors").id, vectors, 0)
    vi = load_synced(store, store.model("fake:vectors"))[0]
    assert not ondisk.is_ondisk(vi.index)
    with store.atomic():
        store.delete_images(ids[::3])
    sync(store, store.model("fake:vectors"), vi)
    kept = [i for i in ids if i not in set(ids[::3])]
    rows = np.searchsorted(ids, kept[:30])
    assert searched(vi, vectors[rows], 1)[:, 0].tolist() == kept[:30]


def test_auto_past_the_budget_keeps_the_lists_but_stores_sq8_codes(monkeypatch):
    monkeypatch.delenv(ondisk.BUDGET_ENV, raising=False)  # the default budget, 2 GiB
    assert ondisk.automatic("IVF1024,Flat", 100_000, 512) == "IVF1024,Flat"  # fits: exact codes in RAM
    assert ondisk.automatic("IVF4096,Flat", 2_000_000, 512) == "IVF4096,SQ8"  # SQ8 fits in RAM
    assert not ondisk.wanted("IVF4096,SQ8", 2_000_000, 512)
    assert ondisk.automatic("IVF8192,Flat", 5_000_000, 512) == "IVF8192,SQ8"  # and goes to disk
    assert ondisk.wanted("IVF8192,SQ8", 5_000_000, 512)
    assert ondisk.automatic("Flat", 5_000_000, 512) == "Flat"  # only IVF-Flat is auto's to change
    monkeypatch.setenv(ondisk.BUDGET_ENV, str(10**12))
    assert ondisk.automatic("IVF8192,Flat", 5_000_000, 512) == "IVF8192,Flat"
