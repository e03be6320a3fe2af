"""Indexing, phase B: decode each image once, embed it with every model that lacks it.

Decoding and preprocessing run in worker threads with a bounded look-ahead (the next chunk
decodes while this one embeds); each chunk of CHUNK images commits in one transaction, so a
crash or Ctrl-C costs at most one chunk and the next run resumes from the "pending" rows.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import default_workers
from .decode import READ_ERROR, Decoded, read_and_decode
from .errors import DecodeError
from .models.base import EmbeddingModel
from .progress import NullProgress, Progress
from .store import ModelRow, Store
from .vectors import save, sync

CHUNK = 256  # images per SQLite commit: the most a crash can cost
SAVE_EVERY_S = 60.0  # FAISS files are rewritten at most this often during a long run


@dataclass
class EmbedTally:
    embedded: dict[str, int] = field(default_factory=dict)  # model spec -> images embedded
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: failed to decode


def _prepare(path: str, models: list[EmbeddingModel]) -> tuple[Decoded | None, dict, str | None]:
    """Runs in a worker thread: decode once, preprocess for each model that needs the image."""
    try:
        decoded = read_and_decode(path, min_side=decode_side(models))
        tensors = {m.spec: m.pixels(decoded.image) for m in models}
        decoded.image = None  # done with: the look-ahead would hold ~1 GB of camera-photo pixels
        return decoded, tensors, None
    except DecodeError as e:
        return None, {}, str(e)
    except Exception as e:  # a transform failing on one odd image must not stop the run
        return None, {}, f"cannot preprocess: {e.__class__.__name__}: {str(e)[:200]}"


def decode_side(models: list[EmbeddingModel]) -> int:
    """The shorter side to decode at: what the most demanding model needs."""
    return max(m.input_side for m in models)


def embed_pending(store: Store, models: list[EmbeddingModel], rows: list[ModelRow], indexes: dict,
                  tally: EmbedTally, *, root: str | None = None, batch_size: int = 32,
                  workers: int | None = None, progress: Progress = NullProgress) -> None:
    """Embed every pending image under root (None: all), and every ok image lacking a vector
    of one of the models. Chunks commit as they go (counts to tally as they commit), and
    indexes (model row id -> VectorIndex) are kept in sync. The caller holds the WriteLock."""
    by_id = {row.id: m for row, m in zip(rows, models)}
    work = store.work_for([row.id for row in rows], root)
    bar = progress(total=len(work), desc="embedding")
    last_save = time.monotonic()
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        ahead: deque = deque()
        chunks = [work[i:i + CHUNK] for i in range(0, len(work), CHUNK)]

        def submit(chunk) -> deque:
            return deque((item, pool.submit(_prepare, item[1], [by_id[m] for m in item[2]])) for item in chunk)

        for chunk in chunks[:2]:  # bounded look-ahead: decode the next chunk while this one embeds
            ahead.append(submit(chunk))
        for n in range(len(chunks)):
            pending = ahead.popleft()
            if n + 2 < len(chunks):
                ahead.append(submit(chunks[n + 2]))
            _embed_and_commit(store, pending, by_id, batch_size, tally)
            bar.update(len(chunks[n]))
            for row in rows:
                sync(store, row, indexes[row.id])
            if time.monotonic() - last_save > SAVE_EVERY_S:
                for row in rows:
                    save(store, row, indexes[row.id])
                last_save = time.monotonic()
    bar.close()


def _embed_and_commit(store, pending: deque, by_id, batch_size, tally: EmbedTally) -> None:
    """Embed a chunk batch by batch as its images come out of the decode workers (compute
    starts on the first batch, not on the whole chunk; tensors go once embedded), then
    commit the chunk in one transaction. pending: (work item, future of _prepare)."""
    vectors: dict[int, tuple[list[int], list[np.ndarray]]] = {m: ([], []) for m in by_id}
    waiting: dict[int, list] = {m: [] for m in by_id}  # (image_id, tensor): decoded, not yet embedded
    prepared = []
    while pending:
        for _ in range(min(batch_size, len(pending))):
            item, future = pending.popleft()
            decoded, tensors, error = future.result()
            prepared.append((item, (decoded, error)))
            for model_id, model in by_id.items():
                if model.spec in tensors:
                    waiting[model_id].append((item[0], tensors[model.spec]))
        for model_id, model in by_id.items():
            while len(waiting[model_id]) >= batch_size or (waiting[model_id] and not pending):
                batch, waiting[model_id] = waiting[model_id][:batch_size], waiting[model_id][batch_size:]
                vectors[model_id][0].extend(image_id for image_id, _ in batch)
                pixels = model.scale_pixels(torch.stack([t for _, t in batch]))
                vectors[model_id][1].append(model.encode_pixels(pixels))
    with store.atomic():
        for (image_id, path, _), (decoded, error) in prepared:
            if error is not None:
                store.delete_embeddings([image_id])
                # A read error (permissions, a file that vanished) is tried again next run;
                # bad bytes are tried again only once the file changes.
                retry = {"size": None, "mtime_ns": None} if error.startswith(READ_ERROR) else {}
                store.update_image(image_id, status="skipped", reason=error, **retry)
                tally.skipped.append({"path": path, "reason": error})
            else:
                store.update_image(image_id, status="ok", reason=None, hash=decoded.hash,
                                   width=decoded.width, height=decoded.height,
                                   taken_at=decoded.exif.get("taken_at"), camera=decoded.exif.get("camera"))
        for model_id, (ids, arrays) in vectors.items():
            if ids:
                store.put_embeddings(model_id, store.bump_generation(model_id), ids, np.concatenate(arrays))
                tally.embedded[by_id[model_id].spec] = tally.embedded.get(by_id[model_id].spec, 0) + len(ids)
