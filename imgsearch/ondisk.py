"""IVF indexes whose inverted lists live on disk, for collections past a memory budget.

FAISS's own format, no home-made one: OnDiskInvertedLists, filled by merge_ondisk
(faiss.contrib.ondisk). The model's .faiss file holds the coarse quantiser, each list's offset
and size, and IndexIDMap2's image ids (as for every imgsearch index); a data file beside it,
`<index file>.<token>.ivfdata`, holds the lists' codes, memory-mapped at search time, so RAM
holds the centroids, the id map and the pages that queries touch.

A build streams the vectors of record out of SQLite and never holds them all: it trains on a
seeded random sample drawn across the whole collection (autofaiss trains on the first N
vectors, which is biased when files arrive in folder or date order), then adds the vectors
block by block, each block an IVF index of its own written to a temporary file, and merges the
blocks' lists into the data file. A data file is never modified after it is written: a change
to the collection means a new build and a new data file, written before the .faiss file that
names it is renamed into place, so a reader or a crash sees the old pair or the new one.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import uuid
from contextlib import contextmanager

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from .autoindex import (MIN_TRAIN_POINTS_PER_CENTROID, MIN_TRAIN_SAMPLE, PQ_TRAIN_POINTS_PER_CENTROID,
                        estimated_index_bytes, faiss_reason, new_index)
from .errors import UsageError
from .store import ModelRow, Store

TEMP_PREFIX = ".tmp-"  # as vectors.TEMP_PREFIX: the indexer and check sweep such files

BUDGET_ENV = "IMGSEARCH_FAISS_MEMORY_BYTES"
# Past this estimated in-memory size (autoindex.estimated_index_bytes) an IVF index's lists go
# to disk: 1M vectors at dim 512 stay in RAM (IVF-Flat, estimated 2.1 GB), 5M go to disk
# (10.5 GB). An in-memory build peaks at about 4x its estimate (bench scale: 8.2 GiB of
# anonymous memory for 1M); the streaming build here at a fraction of it.
DEFAULT_BUDGET_BYTES = 2 * 2**30
BLOCK_VECTORS = 100_000  # vectors per block: 200 MB of float32 at dim 512, twice that while added
DATA_SUFFIX = ".ivfdata"
SEED = 0  # the training sample: rebuilds of the same collection train on the same vectors
_LIBC = ctypes.CDLL(None)  # for fflush: FAISS writes through C stdio


def memory_budget() -> int:
    """Bytes an in-memory FAISS index may take: $IMGSEARCH_FAISS_MEMORY_BYTES, else the default."""
    text = os.environ.get(BUDGET_ENV)
    if not text:
        return DEFAULT_BUDGET_BYTES
    try:
        budget = int(float(text))
    except ValueError:
        raise UsageError(f"${BUDGET_ENV} must be a number of bytes, not {text!r}") from None
    if budget < 0:
        raise UsageError(f"${BUDGET_ENV} must be >= 0, not {text!r}")
    return budget


def wanted(factory: str, n: int, dim: int) -> bool:
    """Whether n vectors of this IVF type should have their lists on disk."""
    if faiss.try_extract_index_ivf(new_index(factory, dim)) is None:
        return False
    try:
        return estimated_index_bytes(factory, n, dim) > memory_budget()
    except ValueError:  # a hand-written IVF type with no estimate: sized as IVF-Flat
        return n * (4 * dim + 56) > memory_budget()


def automatic(factory: str, n: int, dim: int) -> str:
    """What `auto` builds once autoindex's IVF-Flat choice would go to disk: the same lists with
    SQ8 codes (1 byte a component instead of 4), in memory if that fits the budget, else on
    disk. Lists on disk are read by the queries that probe them, so their size is the query's
    cost once the data file outgrows the page cache: at 5M vectors, dim 512, inside a 4 GiB
    memory limit (bench scale, 2 loaded cores), IVF8192,Flat on disk (10.3 GB of lists)
    answered at p50 11.8 ms (nprobe 4, recall@10 0.978 against exact search), IVF8192,SQ8
    (2.7 GB) at 2.65 ms (nprobe 4, recall@10 0.956)."""
    if factory.startswith("IVF") and factory.endswith(",Flat") and wanted(factory, n, dim):
        return factory[: -len("Flat")] + "SQ8"
    return factory


def is_ondisk(index: faiss.Index) -> bool:
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)


def data_file(index: faiss.Index) -> str | None:
    """The data file an on-disk index maps (None for an in-memory one)."""
    if not is_ondisk(index):
        return None
    return faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).filename


def build(store: Store, model: ModelRow, factory: str, block: int = BLOCK_VECTORS) -> faiss.Index:
    """An IndexIDMap2 over an IVF index of factory whose lists are on disk, from every stored
    vector of the model, with a new data file beside the model's .faiss file."""
    ids = np.sort(store.embedding_ids(model.id))
    trained = new_index(factory, model.dim)
    _train(trained, factory, store, model, ids)
    token = uuid.uuid4().hex[:12]
    data = os.path.join(store.index_dir, f"{model.index_file}.{token}{DATA_SUFFIX}")
    # Blocks under the writer's temporary prefix: litter of a killed build is swept like any other.
    blocks, id_parts = [], []
    inner = faiss.extract_index_ivf(trained)
    try:
        for n, (block_ids, vectors) in enumerate(store.iter_embeddings(model.id, model.dim, block)):
            part = faiss.clone_index(inner)  # trained and empty: positions 0.., shifted when merged
            part.add(np.ascontiguousarray(vectors, dtype=np.float32))
            blocks.append(os.path.join(store.index_dir, f"{TEMP_PREFIX}block-{token}-{n:06d}.faiss"))
            faiss.write_index(part, blocks[-1])
            id_parts.append(block_ids)
            del part
        with quiet_stdout():
            merge_ondisk(trained, blocks, data, shift_ids=True)
    finally:
        for path in blocks:
            os.unlink(path)
    all_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
    faiss.copy_array_to_vector(all_ids, trained.id_map)
    trained.construct_rev_map()
    with open(data, "rb+") as f:
        os.fsync(f.fileno())  # the data is on disk before any .faiss file names it
    return trained


@contextmanager
def quiet_stdout():
    """FAISS's on-disk lists printf to stdout as they grow and when a data file is found beside
    its index ("resizing ...", "IO_FLAG_ONDISK_SAME_DIR: updating ..."): lines that would
    land in the middle of `--json` output. They go to /dev/null instead."""
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _LIBC.fflush(None)  # C stdio's buffer still holds them when stdout is a pipe
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def remove_unused_data_files(index_dir: str, index_file: str, current: str | None) -> list[str]:
    """Delete this index's data files but the current one and the newest other (a reader may
    have read the previous .faiss file and not yet opened its data). Only under the WriteLock."""
    others = [p for p in glob.glob(os.path.join(glob.escape(index_dir), glob.escape(index_file) + ".*" + DATA_SUFFIX))
              if current is None or os.path.basename(p) != os.path.basename(current)]
    others.sort(key=os.path.getmtime)
    doomed = others[:-1] if current is not None else others
    for path in doomed:
        os.unlink(path)
    return doomed


def _train(index: faiss.Index, factory: str, store: Store, model: ModelRow, ids: np.ndarray) -> None:
    ivf = faiss.extract_index_ivf(index)
    pq = getattr(faiss.downcast_index(ivf), "pq", None)
    if pq is not None:
        pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS_PER_CENTROID
    needed = MIN_TRAIN_POINTS_PER_CENTROID * max(ivf.nlist, pq.ksub if pq is not None else 0)
    if len(ids) < needed:
        raise UsageError(f"index {factory!r} needs at least {needed} vectors to train, got {len(ids)}; "
                         "use a smaller nlist or a Flat index")
    size = min(len(ids), max(needed, MIN_TRAIN_SAMPLE))
    sample_ids = np.random.default_rng(SEED).choice(ids, size=size, replace=False)
    _, sample = store.embeddings_for(model.id, model.dim, sample_ids)
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as e:
        raise UsageError(f"cannot train index {factory!r} on {len(sample)} vectors: {faiss_reason(e)}") from None
