"""Stage 5: one FAISS index file per model, kept in step with the SQLite truth.

The FAISS id of a vector is the SQLite id of its image (IndexIDMap2), so deletions and
updates remove exactly the right vectors. Files are written atomically (temp + fsync +
rename): a reader or a crash sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import math
import os
import tempfile

import faiss
import numpy as np

from . import autoindex, ondisk
from .autoindex import faiss_reason, new_index
from .errors import IndexCorrupt
from .store import ModelRow, Store

# "auto" picks the type by collection size (autoindex.choose_factory): exact Flat for small
# collections, IVF once exact search gets slow, SQ8 codes past the memory budget
# (ondisk.automatic); any index_factory string overrides it.
AUTO = "auto"
DEFAULT_FACTORY = AUTO
TEMP_PREFIX = ".tmp-"  # a file being written; one left behind by a killed writer is litter
# Filtered HNSW search (search_among): keeping 10% of 100k vectors, the selector walk gave
# recall@10 0.968-0.971 against exact filtered search (bench filter, efSearch 64), 50%: 0.983;
# keeping 1%, 0.50. Below 10%: exact.
FILTER_HNSW_MIN_FRACTION = 0.1
# A bitmap selector costs one bit per possible id (0.2 ms to build for 100k ids, against 11 ms
# for IDSelectorBatch's hash set of 50k); past this many bytes, the hash set.
MAX_BITMAP_BYTES = 64 << 20
EXACT_CHUNK = 32_768  # vectors reconstructed at a time by the exact fallback (64 MiB at dim 512)


def _selector(ids: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """A selector keeping these (sorted, unique) ids, and the array it reads (keep it alive)."""
    top = int(ids[-1]) if len(ids) else 0
    if ids[0] >= 0 and top // 8 + 1 <= MAX_BITMAP_BYTES:
        member = np.zeros(top + 1, dtype=bool)
        member[ids] = True
        # FAISS reads bit (id & 7) of byte id >> 3: little-endian bit order within a byte.
        bits = np.packbits(member, bitorder="little")
        return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits
    ids = np.ascontiguousarray(ids)
    return faiss.IDSelectorBatch(ids), ids


def _hnsw(index: faiss.Index):
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def _count(found: np.ndarray) -> int:
    return int((found[0] >= 0).sum())


def validate_factory(factory: str, dim: int = 64) -> str:
    if factory != AUTO:
        autoindex.validate_factory(factory, dim)
    return factory


def wanted_type(model: ModelRow, n: int) -> str:
    """The concrete index_factory string for n vectors of this model."""
    if model.factory != AUTO:
        return model.factory
    return ondisk.automatic(autoindex.choose_factory(max(n, 1), model.dim), max(n, 1), model.dim)


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
        self._sorted_ids: tuple[tuple, np.ndarray] | None = None  # (what it was read from, ids)

    @classmethod
    def empty(cls, factory: str, dim: int) -> "VectorIndex":
        return cls(new_index(factory, dim), factory)

    @classmethod
    def read(cls, path: str, factory: str) -> "VectorIndex":
        try:
            # An on-disk IVF's data file (ondisk.py) is looked for beside this file, wherever it was built.
            with ondisk.quiet_stdout():
                index = faiss.read_index(path, faiss.IO_FLAG_ONDISK_SAME_DIR)
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
        self._sorted_ids = None

    def remove(self, ids: np.ndarray) -> bool:
        """False when this index type cannot remove (HNSW, IVF): the caller rebuilds instead."""
        if len(ids) == 0:
            return True
        if faiss.try_extract_index_ivf(self.index) is not None:
            # IndexIDMap2 maps positions to ids and renumbers as IndexFlat does; IVF keeps its
            # positions, so after remove_ids every later vector came back under another id.
            return False
        try:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
        except RuntimeError:
            return False
        finally:
            self._sorted_ids = None
        return True

    def search(self, queries: np.ndarray, k: int, params: faiss.SearchParameters | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, max(self.ntotal, 1))
        if len(queries) > 1:
            return self.index.search(queries, k, params=params)
        # One query: OpenMP threads spin-waiting on busy cores cost more than they give
        # (a 10k Flat query measured 36 ms on 2 threads vs 1.2 ms on 1).
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    def search_among(self, query: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top k of one query among the vectors with these ids, filtered inside FAISS.

        A selector (a bitmap of image ids) makes FAISS pass over every other vector while it
        scans, so k results come back whenever k of the ids are indexed, whatever the type:
        - Flat, SQ, PQ scan every vector: the exact top k among the ids (of those codes).
        - IVF: a filter keeping a fraction s of the vectors keeps about s of each probed list,
          so nprobe grows to nprobe / s, capped at nlist (every list: exact among the ids), to
          score as many candidates as an unfiltered query; fewer than k back: every list.
        - HNSW: the graph walk strands a selective filter (1% kept: recall@10 0.50, 16% of
          queries got 10 results), so below FILTER_HNSW_MIN_FRACTION, or when fewer than k come
          back, the kept vectors are reconstructed and searched exactly.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # filters give them sorted: no 5 ms sort of 50k
            ids = np.unique(ids)
        k = min(k, len(ids))
        if k == 0 or self.ntotal == 0:
            return np.empty((1, 0), dtype=np.float32), np.empty((1, 0), dtype=np.int64)
        selector, _keep_alive = _selector(ids)
        fraction = min(1.0, len(ids) / self.ntotal)
        ivf = faiss.try_extract_index_ivf(self.index)
        hnsw = _hnsw(self.index)
        if ivf is not None:
            wide = min(ivf.nlist, math.ceil(ivf.nprobe / fraction))
            scores, found = self.search(query, k, faiss.SearchParametersIVF(sel=selector, nprobe=wide))
            if _count(found) < k and wide < ivf.nlist:
                scores, found = self.search(query, k, faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist))
            return scores, found
        if hnsw is not None and fraction >= FILTER_HNSW_MIN_FRACTION:
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(hnsw.hnsw.efSearch, k))
            scores, found = self.search(query, k, params)
            if _count(found) >= k:
                return scores, found
        if hnsw is None:
            try:
                return self.search(query, k, faiss.SearchParameters(sel=selector))
            except RuntimeError:  # IndexPQ takes no search parameters
                pass
        return self._exact_among(query, k, self._indexed(ids))

    def _indexed(self, ids: np.ndarray) -> np.ndarray:
        """Those of these sorted ids that have a vector here: a bisection each into the index's
        ids, sorted once per state of the index (np.intersect1d sorted all of them per query)."""
        key = (id(self.index), self.generation, self.index.ntotal)
        if self._sorted_ids is None or self._sorted_ids[0] != key:
            self._sorted_ids = key, np.sort(self.ids())
        have = self._sorted_ids[1]
        at = np.minimum(np.searchsorted(have, ids), max(len(have) - 1, 0))
        return ids[have[at] == ids] if len(have) else ids[:0]

    def _exact_among(self, query: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        query = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
        best_scores, best_ids = np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        # One thread, as in search(): FAISS reconstructs more than 1000 ids with OpenMP, and its
        # threads spinning on busy cores took 15 ms for 1035 vectors against 0.4 ms for 954.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            # In chunks, so a wide filter on a big index never copies every kept vector at once.
            for start in range(0, len(ids), EXACT_CHUNK):
                chunk = ids[start:start + EXACT_CHUNK]
                scores, rows = faiss.knn(query, self.index.reconstruct_batch(chunk), min(k, len(chunk)),
                                         metric=faiss.METRIC_INNER_PRODUCT)
                best_scores = np.concatenate([best_scores, scores[0]])
                best_ids = np.concatenate([best_ids, chunk[rows[0]]])
                order = np.argsort(-best_scores, kind="stable")[:k]
                best_scores, best_ids = best_scores[order], best_ids[order]
        finally:
            faiss.omp_set_num_threads(threads)
        return best_scores[None], best_ids[None]

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
    """Apply to vi every change the store committed after vi.generation.

    Never for an index whose lists are (or would now be) on disk: such an index stays as saved
    (a reader searches the last saved file) until a writer's catch_up builds it anew."""
    with store.atomic():  # one read snapshot: a writer committing meanwhile is seen next time
        generation = store.model(model.spec).generation
        if vi.generation == generation:
            return False
        if ondisk.is_ondisk(vi.index) or _goes_on_disk(store, model):
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


def catch_up(store: Store, model: ModelRow, vi: VectorIndex) -> bool:
    """sync, and for an index on disk (or now due to go there) a new build. Writers only."""
    with store.atomic():
        behind = vi.generation != store.model(model.spec).generation
    if behind and (ondisk.is_ondisk(vi.index) or _goes_on_disk(store, model)):
        rebuild(store, model, vi)
        return True
    return sync(store, model, vi)


def _goes_on_disk(store: Store, model: ModelRow) -> bool:
    n = store.embedding_count(model.id)
    return ondisk.wanted(wanted_type(model, n), n, model.dim)


def rebuild(store: Store, model: ModelRow, vi: VectorIndex) -> None:
    """From scratch out of the store: for index types that cannot remove or need training.
    Past the memory budget an IVF type is built streaming, with its lists on disk."""
    with store.atomic():
        generation = store.model(model.spec).generation
        n = store.embedding_count(model.id)
    factory = wanted_type(model, n)
    if ondisk.wanted(factory, n, model.dim):  # the caller holds the WriteLock: nothing changes meanwhile
        vi.factory, vi.index, vi.generation = factory, ondisk.build(store, model, factory), generation
        _tune(vi)
        return
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
    ondisk.remove_unused_data_files(store.index_dir, model.index_file, ondisk.data_file(vi.index))
