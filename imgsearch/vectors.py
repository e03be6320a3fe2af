"""Stage 5: one FAISS index file per model, kept in step with the SQLite truth.

The FAISS id of a vector is the SQLite id of its image (IndexIDMap2), so deletions and
updates remove exactly the right vectors. Files are written atomically (temp + fsync +
rename): a reader or a crash sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile

import faiss
import numpy as np

from . import autoindex
from .autoindex import faiss_reason, new_index
from .errors import IndexCorrupt
from .store import ModelRow, Store

# "auto" picks the type by collection size (autoindex.choose_factory): exact Flat for small
# collections, IVF once exact search gets slow; any index_factory string overrides it.
AUTO = "auto"
DEFAULT_FACTORY = AUTO
TEMP_PREFIX = ".tmp-"  # a file being written; one left behind by a killed writer is litter


def validate_factory(factory: str, dim: int = 64) -> str:
    if factory != AUTO:
        autoindex.validate_factory(factory, dim)
    return factory


def wanted_type(model: ModelRow, n: int) -> str:
    """The concrete index_factory string for n vectors of this model."""
    return autoindex.choose_factory(max(n, 1), model.dim) if model.factory == AUTO else model.factory


def current_type(model: ModelRow) -> str:
    """The type of the model's saved FAISS file (schema v1 files were Flat or explicit)."""
    return model.index_type or (model.factory if model.factory != AUTO else "Flat")


def corrupt_index(path: str, reason: str) -> IndexCorrupt:
    return IndexCorrupt(
        f"FAISS index {path} is unreadable ({reason}); run `imgsearch check --repair` "
        "to rebuild it from the database"
    )


class VectorIndex:
    """A FAISS index whose ids are image ids, and the generation of the store it reflects."""

    def __init__(self, index: faiss.Index, factory: str, generation: int = -1):
        self.index = index
        self.factory = factory
        self.generation = generation

    @classmethod
    def empty(cls, factory: str, dim: int) -> "VectorIndex":
        return cls(new_index(factory, dim), factory)

    @classmethod
    def read(cls, path: str, factory: str) -> "VectorIndex":
        try:
            index = faiss.read_index(path)
        except (RuntimeError, MemoryError) as e:  # a damaged header can claim any size
            empty = os.path.isfile(path) and os.path.getsize(path) == 0
            raise corrupt_index(path, "empty file" if empty else faiss_reason(e)) from None
        if not isinstance(index, faiss.IndexIDMap2):
            raise corrupt_index(path, f"a {type(index).__name__}, not an index keyed by image id")
        return cls(index, factory)

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> bool:
        """False when this index type cannot remove (HNSW): the caller rebuilds instead."""
        if len(ids) == 0:
            return True
        try:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
        except RuntimeError:
            return False
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, max(self.ntotal, 1))
        if len(queries) > 1:
            return self.index.search(queries, k)
        # One query: OpenMP threads spin-waiting on busy cores cost more than they give
        # (a 10k Flat query measured 36 ms on 2 threads vs 1.2 ms on 1).
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def write(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".faiss", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                # Streamed in pieces: serialize_index builds copies of the whole index in memory
                # (peak +1.1 GB for 782 MB of vectors; streamed: no growth, 7x faster).
                writer = faiss.PyCallbackIOWriter(f.write)
                faiss.write_index(self.index, writer)
                del writer  # flushes its buffer into f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_folder(folder)  # the rename itself survives a power cut


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_files(index_dir: str) -> list[str]:
    return sorted(name for name in os.listdir(index_dir) if name.startswith(TEMP_PREFIX))


def remove_temp_files(index_dir: str) -> list[str]:
    """Delete what a killed writer left half-written. Only while holding the WriteLock."""
    names = temp_files(index_dir)
    for name in names:
        os.unlink(os.path.join(index_dir, name))
    return names


def index_path(store: Store, model: ModelRow) -> str:
    return os.path.join(store.index_dir, model.index_file)


def load_synced(store: Store, model: ModelRow) -> tuple[VectorIndex, bool]:
    """The model's FAISS index, brought up to date with the store; True if it changed."""
    path = index_path(store, model)
    if os.path.exists(path):
        vi = VectorIndex.read(path, current_type(model))
        if vi.dim != model.dim:
            raise corrupt_index(path, f"dimension {vi.dim}, expected {model.dim}")
        vi.generation = model.faiss_generation
        _tune(vi)
    else:
        vi = VectorIndex.empty(wanted_type(model, 0), model.dim)
    return vi, sync(store, model, vi)


def sync(store: Store, model: ModelRow, vi: VectorIndex) -> bool:
    """Apply to vi every change the store committed after vi.generation."""
    with store.atomic():  # one read snapshot: a writer committing meanwhile is seen next time
        generation = store.model(model.spec).generation
        if vi.generation == generation:
            return False
        if not vi.index.is_trained:
            rebuild(store, model, vi)
            return True
        present = vi.ids()
        fresh_ids, fresh_vectors = store.embeddings_since(model.id, model.dim, vi.generation)
        rewritten = np.intersect1d(present, fresh_ids)  # an update keeps its id, has a new vector
        stored_count = store.embedding_count(model.id)
        # Every stored row not written since vi's generation is in vi, so the counts tell
        # whether any id was deleted; only then is the whole id list read (not per chunk).
        deleted = len(present) + len(fresh_ids) - len(rewritten) - stored_count
        gone = np.setdiff1d(present, store.embedding_ids(model.id)) if deleted else present[:0]
    stale = np.union1d(gone, rewritten)
    if wanted_type(model, stored_count) != vi.factory or not vi.remove(stale):
        rebuild(store, model, vi)  # grown past its type (auto), or a type that cannot remove
    else:
        vi.add(fresh_ids, fresh_vectors)
    vi.generation = generation
    return True


def rebuild(store: Store, model: ModelRow, vi: VectorIndex) -> None:
    """From scratch out of the store: for index types that cannot remove or need training."""
    with store.atomic():
        generation = store.model(model.spec).generation
        ids, vectors = store.embeddings_since(model.id, model.dim, -1)
    vi.factory = wanted_type(model, len(ids))
    vi.index = autoindex.build_index(vi.factory, vectors, ids)
    vi.generation = generation
    _tune(vi)


def _tune(vi: VectorIndex) -> None:
    """Search-time settings (nprobe, efSearch) for this type at this size."""
    params = autoindex.search_params(vi.factory, vi.ntotal)
    if params:
        autoindex.apply_search_params(vi.index, params)


def save(store: Store, model: ModelRow, vi: VectorIndex) -> None:
    vi.write(index_path(store, model))
    store.set_faiss_generation(model.id, vi.generation, vi.factory)
