"""Shard files -> the index dir's SQLite rows, one shard per transaction, one shard in memory.

The same commit as the local engine's (embed.py): a decoded image becomes "ok" with what
decoding found, a failed one "skipped" with its reason (a read error is tried again next run),
and each model's vectors are stamped with a new generation, so that every model's FAISS file
catches up from the store as it does after a local run. A shard file is deleted once its
transaction has committed: a driver killed in between finds the file again and re-applies it,
which writes the same rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import pyarrow as pa

from . import shards
from .decode import READ_ERROR
from .shards import Shard, ShardModel
from .store import Store


@dataclass
class MergeTally:
    embedded: dict[str, int] = field(default_factory=dict)  # model spec -> vectors committed
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    shards: int = 0


def merge_shard(store: Store, shard: Shard, models: Sequence[ShardModel], folder: str, tally: MergeTally) -> None:
    """Commit one complete shard file in one transaction, then delete the file."""
    path = shard.file(folder)
    table = shards.read(path)
    commit_table(store, table, models, dict(zip(shard.image_ids.tolist(), shard.paths)), tally)
    os.unlink(path)
    tally.shards += 1


def commit_table(store: Store, table: pa.Table, models: Sequence[ShardModel], paths: dict[int, str],
                 tally: MergeTally) -> None:
    columns = {name: table.column(name).to_pylist() for name in shards.META_COLUMNS}
    decoded, failed = [], []
    for i, image_id in enumerate(columns["image_id"]):
        if columns["error"][i] is None:
            decoded.append((image_id, columns["hash"][i], columns["width"][i], columns["height"][i],
                            columns["taken_at"][i], columns["camera"][i]))
        else:
            failed.append((image_id, columns["error"][i]))
    with store.atomic():
        store.mark_decoded(decoded)
        for image_id, error in failed:
            store.delete_embeddings([image_id])
            # As locally: a read error (permissions, a vanished file) is tried again next run.
            retry = {"size": None, "mtime_ns": None} if error.startswith(READ_ERROR) else {}
            store.update_image(image_id, status="skipped", reason=error, **retry)
            tally.skipped.append({"path": paths.get(image_id, f"image {image_id}"), "reason": error})
        for model in models:
            ids, vectors = shards.vectors_of(table, model)
            if len(ids):
                store.put_embeddings(model.id, store.bump_generation(model.id), ids.tolist(), vectors)
                tally.embedded[model.spec] = tally.embedded.get(model.spec, 0) + len(ids)
