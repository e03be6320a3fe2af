"""Choose, build and tune a FAISS index for inner-product search on L2-normalised vectors.

Like autofaiss (`get_optimal_index_keys_v2`): exact `Flat` for small collections, inverted
lists (`IVF{nlist},Flat`) beyond that, and compressed codes (`SQ8`, then `PQ{m}`) when a
memory budget asks for them. Two departures, both from measurements: the Flat limit is set by
latency rather than a fixed count, so collections stay exact while a scan is fast; and HNSW,
autofaiss's pick when memory allows, is never chosen, because IVF-Flat beat it on this
project's machine and because HNSW cannot remove ids (imgsearch deletes and updates vectors).
Figures: two runs of imgsearch.bench.search.run_search_bench, N = 10k / 100k / 1M, dim 512,
clustered synthetic vectors, 2 shared cores (load average 4-9 from other work), 1 thread per
query, quoted next to each constant; where the runs differ, both are given.
"""

from __future__ import annotations

import math
import re

import faiss
import numpy as np

from .errors import UsageError

# Flat p50 measured 1.0-1.4 / 27-34 / 150-318 ms at N = 10k / 100k / 1M: 0.2-0.27 ns per
# stored component while the matrix fits in cache, 0.3-0.65 ns once it streams from memory.
# 8M components (15.6k vectors at dim 512, 62k at dim 128) keeps an exact query at 1.6-5 ms.
FLAT_MAX_COMPONENTS = 8_000_000

# IVF: nlist = 4·sqrt(N) rounded to a power of two, as autofaiss does below 1M vectors.
# nprobe needed for recall@10 >= 0.95: 16 at 10k (nlist 256), 8 at 100k (1024), 4 at 1M (4096).
# 16 probes gave recall 0.972 / 0.999 / 1.000 at p50 0.12 / 0.31-0.38 / 0.84-1.05 ms, built in
# 0.7 / 4-12 / 201-304 s. HNSW32 at 1M needed efSearch 256 for 0.973 (p50 0.78 ms) and took
# 544 s to build; at 100k efSearch 64 gave 0.979 at 0.29 ms after a 27 s build.
IVF_NPROBE = 16

# For an HNSW factory the caller chose: efSearch 64 gave recall 0.979 at 100k; at 1M
# efSearch 128 gave 0.954 (too close to 0.95), 256 gave 0.973.
HNSW_EF_SEARCH_SMALL = 64
HNSW_EF_SEARCH_LARGE = 256
HNSW_LARGE_N = 300_000

# faiss k-means wants at least 39 training points per centroid (it warns below that), and
# the sample is no bigger: k-means time grows with it, and at 1M vectors (nlist 4096) 39 per
# list is already 160k points. Scalar-quantiser ranges, which have no centroids, and small
# nlists still see at least MIN_TRAIN_SAMPLE vectors.
MIN_TRAIN_POINTS_PER_CENTROID = 39
MIN_TRAIN_SAMPLE = 10_000
# PQ trains 256-entry codebooks on the residuals of the whole sample unless capped: training
# IVF256,PQ64 on 10k vectors took 48 s, and faiss's default cap (256 per entry, 65k points)
# would make it 6x that from 100k vectors up. 64 per entry: 16k points.
PQ_TRAIN_POINTS_PER_CENTROID = 64
PQ_NBITS = 8
PQ_CODEBOOK_SIZE = 2**PQ_NBITS
# Bytes per vector of the PQ codes tried when memory is tight, largest first: at 100k, 16
# probes, recall@10 was 0.715 / 0.505 / 0.365 for PQ128 / 64 / 32 (SQ8: 0.988), so PQ is
# a last resort, and the bench is the place to see what a budget costs.
PQ_CODE_BYTES = (128, 64, 32, 16, 8)

# Bytes per vector that IndexIDMap2 adds in memory: the int64 id array plus the reverse
# hash map (about 40 bytes per entry in libstdc++'s unordered_map).
ID_MAP_BYTES = 8 + 40
IVF_LIST_ID_BYTES = 8

_FAISS_ERROR = re.compile(r"^Error in .*? at \S+:\d+: (.*)$", re.DOTALL)
_IVF_FACTORY = re.compile(r"^IVF(\d+),(Flat|SQ8|PQ\d+(?:x8)?(?:np)?)$")
_HNSW_FACTORY = re.compile(r"^HNSW(\d+)$")
_CODES_FACTORY = re.compile(r"^(Flat|SQ8|PQ\d+(?:x8)?(?:np)?)$")


def choose_factory(n: int, dim: int, memory_budget_bytes: int | None = None) -> str:
    """The index_factory string for n vectors of size dim, within memory_budget_bytes if given.

    Candidates in order of preference, the first that fits the budget wins: exact Flat while
    n·dim <= FLAT_MAX_COMPONENTS (then SQ8 / PQ scans of all vectors when memory is tight),
    otherwise IVF-Flat, IVF-SQ8, IVF-PQ with shrinking codes.
    """
    if n < 1 or dim < 1:
        raise UsageError(f"cannot choose an index for {n} vectors of dimension {dim}")
    candidates = _candidates(n, dim)
    for factory in candidates:
        if memory_budget_bytes is None or estimated_index_bytes(factory, n, dim) <= memory_budget_bytes:
            return factory
    smallest = min(candidates, key=lambda factory: estimated_index_bytes(factory, n, dim))
    raise UsageError(
        f"no index for {n} vectors of dimension {dim} fits in {memory_budget_bytes} bytes; "
        f"the smallest ({smallest}) needs about {estimated_index_bytes(smallest, n, dim)}"
    )


def search_params(factory: str, n: int) -> dict:
    """Search-time parameters for an index of n vectors: efSearch for HNSW, nprobe for IVF."""
    hnsw = _HNSW_FACTORY.match(factory)
    if hnsw:
        return {"efSearch": HNSW_EF_SEARCH_LARGE if n > HNSW_LARGE_N else HNSW_EF_SEARCH_SMALL}
    ivf = _IVF_FACTORY.match(factory)
    if ivf:
        return {"nprobe": min(int(ivf.group(1)), IVF_NPROBE)}
    return {}


def ivf_nlist(n: int) -> int:
    """Inverted lists for n vectors: 4·sqrt(n) to the nearest power of two (autofaiss, faiss
    wiki), lowered until n gives every list MIN_TRAIN_POINTS_PER_CENTROID training points."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and n < MIN_TRAIN_POINTS_PER_CENTROID * nlist:
        nlist //= 2
    return nlist


def estimated_index_bytes(factory: str, n: int, dim: int) -> int:
    """Memory of the index build_index makes, for the factory families choose_factory emits.

    Includes IndexIDMap2's id maps; a serialised index is smaller by the reverse map.
    """
    ivf = _IVF_FACTORY.match(factory)
    if ivf:
        nlist = int(ivf.group(1))
        per_vector = _code_bytes(ivf.group(2), dim) + IVF_LIST_ID_BYTES
        return n * (per_vector + ID_MAP_BYTES) + nlist * dim * 4
    hnsw = _HNSW_FACTORY.match(factory)
    if hnsw:
        m = int(hnsw.group(1))
        # level 0 keeps 2·M neighbours, upper levels about M/(M-1) more; plus the level
        # and offset tables
        links = 4 * (2 * m + m / (m - 1)) + 4 + 8
        return round(n * (4 * dim + links + ID_MAP_BYTES))
    codes = _CODES_FACTORY.match(factory)
    if codes:
        return n * (_code_bytes(factory, dim) + ID_MAP_BYTES)
    raise ValueError(f"no memory estimate for factory {factory!r}")


def validate_factory(factory: str, dim: int) -> None:
    """Raise UsageError (one line, with faiss's reason) unless faiss can build factory at dim."""
    new_index(factory, dim)


def build_index(factory: str, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """A trained, filled inner-product index whose search returns the given int64 ids.

    Trainable indexes (IVF, SQ, PQ) train on all vectors or a seeded sample of
    MIN_TRAIN_POINTS_PER_CENTROID per centroid (at least MIN_TRAIN_SAMPLE); fewer vectors
    than that many per centroid is a UsageError.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or ids.shape != (len(vectors),):
        raise ValueError(f"need an (n, dim) matrix and n ids, got {vectors.shape} and {ids.shape}")
    index = new_index(factory, vectors.shape[1])
    pq = _product_quantizer(index)
    if pq is not None:
        pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS_PER_CENTROID
    if not index.is_trained:
        _train(index, factory, vectors)
    index.add_with_ids(vectors, ids)
    return index


def apply_search_params(index: faiss.Index, params: dict) -> None:
    """Set search-time parameters (efSearch, nprobe, ...) through the IndexIDMap2 wrapper."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as e:
            raise UsageError(f"cannot set {name}={value} on this index: {faiss_reason(e)}") from None


def _candidates(n: int, dim: int) -> list[str]:
    nlist = ivf_nlist(n)
    # PQ codebooks need MIN_TRAIN_POINTS_PER_CENTROID points per codebook entry
    pq_trainable = n >= MIN_TRAIN_POINTS_PER_CENTROID * PQ_CODEBOOK_SIZE
    # "np": no polysemous training, which adds training time and only serves a Hamming
    # pre-filter that imgsearch does not use
    pq_codes = [f"PQ{m}np" for m in PQ_CODE_BYTES if m < dim and dim % m == 0] if pq_trainable else []
    if n * dim <= FLAT_MAX_COMPONENTS or nlist < 2:
        return ["Flat", "SQ8", *pq_codes]
    ivf = f"IVF{nlist},"
    return [ivf + "Flat", ivf + "SQ8", *(ivf + codes for codes in pq_codes)]


def _code_bytes(codes: str, dim: int) -> int:
    if codes == "Flat":
        return 4 * dim
    if codes == "SQ8":
        return dim
    return int(re.match(r"PQ(\d+)", codes).group(1)) * PQ_NBITS // 8


def new_index(factory: str, dim: int) -> faiss.Index:
    if factory.startswith("IDMap"):
        raise UsageError(f"bad FAISS index factory string {factory!r}: imgsearch adds the IDMap2 itself")
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise UsageError(f"bad FAISS index factory string {factory!r}: {faiss_reason(e)}") from None
    return faiss.IndexIDMap2(inner)  # the wrapper keeps a Python reference to inner


def _train(index: faiss.Index, factory: str, vectors: np.ndarray) -> None:
    n = len(vectors)
    needed = _min_training_points(index)
    if n < needed:
        raise UsageError(
            f"index {factory!r} needs at least {needed} vectors to train, got {n}; "
            "use a smaller nlist or a Flat index"
        )
    sample_size = min(n, max(needed, MIN_TRAIN_SAMPLE))
    if sample_size < n:
        # a seeded sample keeps rebuilds of the same collection identical
        rows = np.sort(np.random.default_rng(0).choice(n, size=sample_size, replace=False))
        vectors = vectors[rows]
    try:
        index.train(vectors)
    except RuntimeError as e:
        raise UsageError(f"cannot train index {factory!r} on {n} vectors: {faiss_reason(e)}") from None


def _min_training_points(index: faiss.Index) -> int:
    ivf = faiss.try_extract_index_ivf(index)
    lists = ivf.nlist if ivf is not None else 0
    pq = _product_quantizer(index)
    entries = pq.ksub if pq is not None else 0
    return max(1, MIN_TRAIN_POINTS_PER_CENTROID * max(lists, entries))


def _product_quantizer(index: faiss.Index) -> faiss.ProductQuantizer | None:
    ivf = faiss.try_extract_index_ivf(index)
    return getattr(faiss.downcast_index(ivf if ivf is not None else index.index), "pq", None)


def faiss_reason(e: Exception) -> str:
    """faiss prefixes its message with the C++ function and source line; keep the message."""
    text = str(e).strip()
    match = _FAISS_ERROR.match(text)
    reason = match.group(1) if match else text
    return " ".join(reason.split()) or e.__class__.__name__
