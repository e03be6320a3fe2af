"""Duplicates: exact copies (the same bytes) and near copies (re-encoded, resized, mirrored,
lightly edited), grouped, largest groups first.

Two ways to find near copies, measured side by side by `imgsearch bench duplicates` (README):
  phash    (default) a 64-bit DCT perceptual hash (`imagehash.phash`) of each image and of its
           mirror image; two images are near copies when their hashes, or one's and the
           other's mirror's, differ in at most `threshold` bits (DEFAULT_PHASH_BITS). Pairs come
           from a FAISS binary range search. Hashes are cached in SQLite by content hash.
  vectors  a model's own image vectors (no model is loaded: they are in its index): near
           copies when their cosine similarity is at least `threshold`, by FAISS range search.
Images with the same content hash are always one group. Groups are the connected components
of the near-copy pairs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import faiss
import imagehash
import numpy as np
from PIL import ImageOps

from .config import default_index_dir
from .decode import read_and_decode
from .errors import DecodeError, IndexLocked, IndexMismatch, UsageError
from .files import display_path
from .lock import WriteLock
from .models import resolve
from .progress import NullProgress, Progress
from .store import DB_NAME, Store, reporting_corruption
from .vectors import load_synced

METHODS = ("phash", "vectors")
PHASH_KIND = "phash64+mirror"  # the cache's name for (hash of the image, hash of its mirror image)
PHASH_BITS = 64
# Chosen by `imgsearch bench duplicates` (README "Duplicates") on one random half of the tuxpaint
# stamps: the loosest threshold that calls no two distinct stamps copies (symbols aside, whose
# mirror-image glyphs b/d, p/q are mirror copies by construction). The closest distinct stamps
# there, two dreidels that differ by one small letter, are 4 bits apart. On the other half,
# 3 bits caught 81% of the copies (92-95% of JPEG q60-90 re-encodes and 50% resizes, all mirror
# images, 87% of +15% brightness edits, 5% of 5% crops); the best pairwise F1 on the first half,
# at 10 bits, caught 92% there but also grouped apple with peach and blackbird with pigeon.
DEFAULT_PHASH_BITS = 3
MAX_PHASH_BITS = 32  # half the bits: unrelated images differ in about that many
QUERY_CHUNK = 4096  # range-search queries per call: bounds the result buffers


@dataclass
class DuplicateReport:
    method: str
    threshold: float
    model: str | None
    images: int  # images compared
    groups: list[dict]  # {"size", "exact", "images": [{"id", "path", "hash", ...}]}, largest first
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: could not be hashed

    def to_dict(self) -> dict:
        return {"method": self.method, "threshold": self.threshold, "model": self.model, "images": self.images,
                "groups": self.groups, "duplicates": sum(g["size"] - 1 for g in self.groups),
                "skipped": self.skipped}


def check_threshold(method: str, threshold: float | None) -> float:
    """The method's default, or the given threshold checked for its unit."""
    if method not in METHODS:
        raise UsageError(f"unknown duplicates method {method!r} (choose from {', '.join(METHODS)})")
    if threshold is None:
        if method == "vectors":
            raise UsageError("with a model's vectors, give --threshold: the cosine similarity from which two "
                             "images count as copies (see `imgsearch bench duplicates` for what separates them)")
        return DEFAULT_PHASH_BITS
    if method == "phash":
        if not (isinstance(threshold, (int, float)) and float(threshold).is_integer()
                and 0 <= threshold <= MAX_PHASH_BITS):
            raise UsageError(f"bad --threshold {threshold!r}: with the perceptual hash it is how many of its "
                             f"{PHASH_BITS} bits may differ, a whole number from 0 to {MAX_PHASH_BITS}")
        return int(threshold)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 < threshold <= 1):
        raise UsageError(f"bad --threshold {threshold!r}: with a model's vectors it is a cosine similarity, "
                         "a number in (0, 1]")
    return float(threshold)


def find_duplicates(index_dir: str | None = None, method: str = "phash", threshold: float | None = None,
                    model: str | None = None, progress: Progress = NullProgress) -> DuplicateReport:
    """Groups of copies among the indexed images of index_dir."""
    index_dir = os.path.abspath(index_dir or default_index_dir())
    threshold = check_threshold(method, threshold)
    if method == "vectors" and model is None:
        raise UsageError("the vectors method needs --model SPEC (an indexed model)")
    if not os.path.exists(os.path.join(index_dir, DB_NAME)):
        raise UsageError(f"no index in {index_dir}; run `imgsearch index DIR --model SPEC` first")
    store = Store(index_dir, create=False)
    try:
        with reporting_corruption(store.path):
            hashes = {i: h for i, h in store.image_hashes(("ok",)).items() if h}
            ids = np.array(sorted(hashes), dtype=np.int64)
            skipped: list[dict] = []
            if method == "phash":
                ids, codes, skipped = phash_codes(store, ids, hashes, progress)
                pairs = phash_pairs(codes, int(threshold))
            else:
                ids, pairs = vector_pairs(store, resolve(model), float(threshold))
            rows = store.images(ids.tolist())
    finally:
        store.close()
    groups = _group(ids, pairs, hashes, rows)
    return DuplicateReport(method, threshold, resolve(model) if model else None, len(ids), groups, skipped)


# -- perceptual hashes --------------------------------------------------------------------
def phash_pair_of(image) -> tuple[bytes, bytes]:
    """The 64-bit pHash of an RGB image and of its mirror image, as 8 bytes each."""
    return (_packed(imagehash.phash(image)), _packed(imagehash.phash(ImageOps.mirror(image))))


def phash_codes(store: Store, ids: np.ndarray, hashes: dict[int, str],
                progress: Progress = NullProgress) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(ids that have codes, (n, 2, 8) uint8 codes, skipped): cached by content hash, else decoded."""
    cached = store.perceptual_hashes(PHASH_KIND, {hashes[int(i)] for i in ids})
    missing = [int(i) for i in ids if hashes[int(i)] not in cached]
    rows = store.images(missing)
    fresh: dict[str, str] = {}
    skipped = []
    bar = progress(total=len(missing), desc="hashing")
    for image_id in missing:
        path = rows[image_id]["path"]
        try:
            decoded = read_and_decode(path)
        except DecodeError as e:
            skipped.append({"path": display_path(path), "reason": str(e)})
            bar.update(1)
            continue
        if decoded.hash != hashes[image_id]:
            skipped.append({"path": display_path(path), "reason": "changed since it was indexed; run imgsearch index"})
        else:
            plain, mirrored = phash_pair_of(decoded.image)
            fresh[decoded.hash] = (plain + mirrored).hex()
        bar.update(1)
    bar.close()
    if fresh:
        save_hashes(store, fresh)
    cached.update(fresh)
    kept = np.array([i for i in ids if hashes[int(i)] in cached], dtype=np.int64)
    codes = np.frombuffer(b"".join(bytes.fromhex(cached[hashes[int(i)]]) for i in kept), dtype=np.uint8)
    return kept, codes.reshape(len(kept), 2, 8), skipped


def save_hashes(store: Store, fresh: dict[str, str]) -> bool:
    """Cache fresh hashes under the index dir's WriteLock, as every writer writes. The lock is
    never waited for: while another writer (an index run) holds it the cache write is skipped,
    the groups stand and the next call hashes those images again. True when cached."""
    try:
        with WriteLock(store.index_dir), store.atomic():
            store.put_perceptual_hashes(PHASH_KIND, fresh)
    except (IndexLocked, PermissionError):  # PermissionError: a read-only index dir, nowhere to cache
        return False
    return True


def phash_pairs(codes: np.ndarray, max_bits: int) -> np.ndarray:
    """(m, 2) row pairs (i < j) whose hashes differ in at most max_bits, mirror images included."""
    if len(codes) < 2:
        return np.empty((0, 2), dtype=np.int64)
    plain = np.ascontiguousarray(codes[:, 0])
    index = faiss.IndexBinaryFlat(PHASH_BITS)
    index.add(plain)
    found = []
    for queries in (plain, np.ascontiguousarray(codes[:, 1])):  # j near i, or near i's mirror image
        for start in range(0, len(queries), QUERY_CHUNK):
            lims, _, hits = index.range_search(queries[start:start + QUERY_CHUNK], max_bits + 1)  # radius is strict
            rows = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
            found.append(np.stack([rows, hits], axis=1))
    return _unique_pairs(np.concatenate(found))


# -- model vectors ------------------------------------------------------------------------
def vector_pairs(store: Store, spec: str, min_cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (m, 2) pairs of positions into ids) with cosine >= min_cosine, from the model's index."""
    row = store.model(spec)
    if row is None:
        have = ", ".join(m.spec for m in store.models()) or "none"
        raise IndexMismatch(f"no index for {spec} here (indexed models: {have})")
    vi, _ = load_synced(store, row)
    ids, vectors = store.embeddings_since(row.id, row.dim, -1)
    position = {int(i): p for p, i in enumerate(ids)}
    found = []
    for start in range(0, len(ids), QUERY_CHUNK):
        chunk = np.ascontiguousarray(vectors[start:start + QUERY_CHUNK])
        try:
            lims, _, hits = vi.index.range_search(chunk, float(np.nextafter(np.float32(min_cosine), np.float32(-1))))
            rows = np.repeat(np.arange(start, start + len(chunk)), np.diff(lims).astype(np.int64))
        except RuntimeError:  # an index type without range search (HNSW): its 64 nearest, thresholded
            scores, hits = vi.search(chunk, min(64, len(ids)))
            keep = (hits >= 0) & (scores >= min_cosine)
            rows = np.broadcast_to(np.arange(start, start + len(chunk))[:, None], hits.shape)[keep]
            hits = hits[keep]
        found.append(np.stack([rows, np.array([position.get(int(h), -1) for h in hits], dtype=np.int64)], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return ids, _unique_pairs(pairs[pairs[:, 1] >= 0])


# -- groups -------------------------------------------------------------------------------
def _group(ids: np.ndarray, pairs: np.ndarray, hashes: dict[int, str], rows: dict[int, dict]) -> list[dict]:
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    for p, image_id in enumerate(ids):  # the same bytes: one group, whatever the method says
        q = first_with.setdefault(hashes[int(image_id)], p)
        parent[root(p)] = root(q)
    for a, b in pairs:
        parent[root(int(a))] = root(int(b))
    members: dict[int, list[int]] = {}
    for p in range(len(ids)):
        members.setdefault(root(p), []).append(p)
    groups = []
    for group in members.values():
        if len(group) < 2:
            continue
        images = [_member(int(ids[p]), rows.get(int(ids[p]), {}), hashes[int(ids[p])]) for p in group]
        # the likeliest original first: most pixels, then most bytes (the least compressed)
        images.sort(key=lambda m: (-(m["width"] or 0) * (m["height"] or 0), -(m["size"] or 0), m["path"]))
        groups.append({"size": len(images), "exact": len({m["hash"] for m in images}) == 1, "images": images})
    groups.sort(key=lambda g: (-g["size"], g["images"][0]["path"]))
    return groups


def _member(image_id: int, row: dict, hash_: str) -> dict:
    return {"id": image_id, "path": display_path(row.get("path", "")), "hash": hash_, "size": row.get("size"),
            "width": row.get("width"), "height": row.get("height")}


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(pairs.astype(np.int64), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _packed(h: imagehash.ImageHash) -> bytes:
    return np.packbits(np.asarray(h.hash, dtype=bool).reshape(-1)).tobytes()

