"""FAISS files kept in step with SQLite, and the automatic index type."""

import faiss
import numpy as np

from imgsearch import autoindex
from imgsearch.store import Store
from imgsearch.vectors import load_synced, save


def store_with_vectors(index_dir, n, dim=32, factory="auto"):
    store = Store(index_dir)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.atomic():
        model = store.add_model("test:model", "test", dim, "fp32", {}, {}, factory, "test.faiss")
        ids = [store.add_image(f"/photos/{i}.jpg", status="ok") for i in range(n)]
        store.put_embeddings(model.id, store.bump_generation(model.id), ids, vectors)
    return store, store.model("test:model"), np.asarray(ids), vectors


def test_auto_is_exact_for_a_small_collection(tmp_path):
    store, model, ids, vectors = store_with_vectors(str(tmp_path), 300)
    vi, changed = load_synced(store, model)
    assert changed and vi.factory == "Flat" and vi.ntotal == 300
    scores, found = vi.search(vectors[7], 1)
    assert found[0][0] == ids[7] and scores[0][0] > 0.999


def test_auto_moves_to_ivf_once_exact_search_would_be_slow(tmp_path, monkeypatch):
    monkeypatch.setattr(autoindex, "FLAT_MAX_COMPONENTS", 32 * 1000)
    store, model, ids, vectors = store_with_vectors(str(tmp_path), 4000)
    vi, _ = load_synced(store, model)
    assert vi.factory.startswith("IVF") and vi.ntotal == 4000
    save(store, model, vi)
    saved = store.model("test:model")
    assert saved.index_type == vi.factory and saved.faiss_generation == saved.generation
    reread, changed = load_synced(store, saved)
    assert not changed and reread.factory == vi.factory
    ivf = faiss.extract_index_ivf(reread.index.index)
    assert ivf.nprobe == autoindex.search_params(vi.factory, 4000)["nprobe"]
    _, found = reread.search(vectors[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() > 0.9


def test_an_explicit_type_is_kept(tmp_path):
    store, model, ids, vectors = store_with_vectors(str(tmp_path), 300, factory="HNSW16")
    vi, _ = load_synced(store, model)
    assert vi.factory == "HNSW16"
    assert isinstance(faiss.downcast_index(vi.index.index), faiss.IndexHNSWFlat)
