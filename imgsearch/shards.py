"""The embedding work cut into deterministic shards, and the Parquet file of each shard's results.

A shard is a run of images in path order, each with the models that lack its vector. Where a
run ends is decided by the paths themselves (content-defined cuts: a shard of at least a quarter of
the target size ends after a path whose last two parts' digest is 0 modulo the target size, and
none grows past MAX_FACTOR times the target), so the cuts of
the same folder are the same in every run, whatever Ray's block layout: adding or removing
files changes only the shards that hold them, and shards merged before a driver was killed
leave the others' cuts as they were. A shard is named by a digest of what it holds (image ids,
content hashes, models with their weights and precision), so a file on disk under that name
is the result of exactly that work and is never computed again.

A shard file holds one row per image, in the shard's order: image_id, error (the skip reason,
null when decoded), what decoding found (hash, width, height, taken_at, camera), and one
column of vectors per model of the run (null where the image did not need that model or
failed). It is written to a temporary name, flushed and renamed: a file under a shard's name
is complete.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .store import ModelRow, Store

SHARD_DIR = "shards"  # under the index dir
MAX_FACTOR = 4  # no shard holds more than MAX_FACTOR * target images
MIN_FRACTION = 4  # nor fewer than target // MIN_FRACTION, but for the last one
TEMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"
META_COLUMNS = {
    "image_id": pa.int64(), "error": pa.string(), "hash": pa.string(), "width": pa.int32(),
    "height": pa.int32(), "taken_at": pa.string(), "camera": pa.string(),
}


@dataclass(frozen=True)
class WorkItem:
    image_id: int
    path: str
    hash: str | None  # of the bytes phase A saw
    models: tuple[int, ...]  # model row ids lacking this image's vector


@dataclass(frozen=True)
class ShardModel:
    """What decides a model's vectors: a shard computed with other weights is another shard."""

    id: int  # the model's row id in this index dir
    spec: str
    dim: int
    precision: str
    fingerprint: str | None

    @property
    def column(self) -> str:
        return f"vector_{self.id}"


@dataclass(frozen=True, eq=False)
class Shard:
    """A run of images in path order. Compact (arrays, no object per image): a plan holds every
    shard of a run, about 100 bytes an image plus its path."""

    name: str
    image_ids: np.ndarray  # int64
    paths: tuple[str, ...]
    needs: np.ndarray  # int64 bit masks: bit s set when the image lacks the vector of the plan's s-th model

    def __len__(self) -> int:
        return len(self.image_ids)

    def file(self, folder: str) -> str:
        return os.path.join(folder, self.name + SUFFIX)


def cut(items: Iterable[WorkItem], models: Sequence[ShardModel], target: int) -> list[Shard]:
    """items (in path order, streamed) -> shards, the same for the same items in every run."""
    if target < 1:
        raise ValueError(f"shard target must be >= 1, got {target}")
    key = _models_key(models)
    slots = {m.id: slot for slot, m in enumerate(models)}
    shortest = max(1, target // MIN_FRACTION)
    shards, current = [], _Growing(key)
    for item in items:
        current.add(item, sum(1 << slots[m] for m in item.models))
        if len(current.ids) >= MAX_FACTOR * target or (len(current.ids) >= shortest and _ends_shard(item.path, target)):
            shards.append(current.done())
            current = _Growing(key)
    if current.ids:
        shards.append(current.done())
    return shards


class _Growing:
    """The shard being cut: its digest grows with it, so that no hash is kept."""

    def __init__(self, key: bytes):
        self.digest = hashlib.blake2b(key, digest_size=16)
        self.ids, self.paths, self.needs = [], [], []

    def add(self, item: WorkItem, needs: int) -> None:
        self.digest.update(f"\n{item.image_id}\t{item.hash}\t{','.join(map(str, item.models))}".encode())
        self.ids.append(item.image_id)
        self.paths.append(item.path)
        self.needs.append(needs)

    def done(self) -> Shard:
        return Shard(self.digest.hexdigest(), np.asarray(self.ids, dtype=np.int64), tuple(self.paths),
                     np.asarray(self.needs, dtype=np.int64))


def shard_models(models: Sequence, rows: Sequence[ModelRow]) -> list[ShardModel]:
    """The ShardModel of each loaded model and its row in the index dir."""
    return [ShardModel(row.id, m.spec, m.dim, m.precision, m.fingerprint()) for m, row in zip(models, rows)]


def plan(store: Store, targets: Sequence[ShardModel], root: str | None, target: int) -> list[Shard]:
    """The shards of what lacks a vector of one of targets under root (None: everywhere),
    read from the store in batches."""
    items = (WorkItem(image_id, path, hash_, tuple(lacking))
             for batch in store.iter_work([m.id for m in targets], root)
             for image_id, path, hash_, lacking in batch)
    return cut(items, targets, target)


def schema(models: Sequence[ShardModel]) -> pa.Schema:
    fields = [pa.field(name, kind) for name, kind in META_COLUMNS.items()]
    fields += [pa.field(m.column, pa.list_(pa.float32(), m.dim)) for m in models]
    return pa.schema(fields)


def build_table(models: Sequence[ShardModel], columns: dict[str, list], vectors: dict[int, list]) -> pa.Table:
    """columns: META_COLUMNS name -> one value per row; vectors: model id -> per row a float32
    vector or None."""
    arrays = [pa.array(columns[name], type=kind) for name, kind in META_COLUMNS.items()]
    for m in models:
        arrays.append(_vector_array(vectors[m.id], m.dim))
    return pa.Table.from_arrays(arrays, schema=schema(models))


def write(table: pa.Table, path: str) -> None:
    """Write to a temporary name in the same folder, flush, rename: readers see all or nothing."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, TEMP_PREFIX + os.path.basename(path))
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rows_in(path: str) -> int | None:
    """Rows of a shard file from its footer; None when it is absent or unreadable."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def is_complete(shard: Shard, folder: str) -> bool:
    return rows_in(shard.file(folder)) == len(shard)


def read(path: str) -> pa.Table:
    return pq.read_table(path)


def vectors_of(table: pa.Table, model: ShardModel) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, float32 matrix) of the rows that hold a vector of this model."""
    column = table.column(model.column).combine_chunks()
    present = column.is_valid()
    ids = table.column("image_id").combine_chunks().filter(present).to_numpy()
    kept = column.filter(present)
    values = kept.flatten().to_numpy(zero_copy_only=False)
    return ids.astype(np.int64), np.ascontiguousarray(values.reshape(len(kept), model.dim), dtype=np.float32)


def remove_temp_files(folder: str) -> None:
    """What a killed writer left half-written."""
    for name in _names(folder):
        if name.startswith(TEMP_PREFIX):
            os.unlink(os.path.join(folder, name))


def stale_files(folder: str, keep: Iterable[Shard]) -> list[str]:
    """Shard files that no shard of this plan has: left by a run whose work has since changed."""
    wanted = {shard.name + SUFFIX for shard in keep}
    return [os.path.join(folder, name) for name in _names(folder)
            if name.endswith(SUFFIX) and not name.startswith(TEMP_PREFIX) and name not in wanted]


def _names(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []


def _ends_shard(path: str, target: int) -> bool:
    # The file's name and its folder's, not the whole path: the same cuts wherever the library
    # is mounted (and in every test's temporary folder), still varied where names repeat per folder.
    folder, name = os.path.split(path)
    digest = hashlib.blake2b(os.fsencode(os.path.join(os.path.basename(folder), name)), digest_size=8).digest()
    return int.from_bytes(digest, "big") % target == 0


def _models_key(models: Sequence[ShardModel]) -> bytes:
    text = "\n".join(f"{m.id}\t{m.spec}\t{m.dim}\t{m.precision}\t{m.fingerprint}" for m in sorted(models, key=lambda m: m.id))
    return text.encode()


def _vector_array(rows: list, dim: int) -> pa.Array:
    valid = np.array([row is not None for row in rows], dtype=bool)
    values = np.zeros((len(rows), dim), dtype=np.float32)
    for i, row in enumerate(rows):
        if row is not None:
            values[i] = row
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), dim, mask=pa.array(~valid))
