"""Stages 1-5 together: a folder -> vectors for every model -> SQLite + one FAISS file per model.

Incremental, in the manner of rclip: a file whose size and mtime are unchanged is not read.
A changed or new file is hashed first, so that a rename or a copy re-uses vectors instead of
re-embedding; files gone from the folder are swept from every model's index. Work is
committed to SQLite in chunks: a crash or Ctrl-C keeps every committed chunk, and the next
run resumes with what is left ("pending" rows).
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from .decode import Decoded, read_and_decode
from .errors import DecodeError, IndexMismatch
from .files import FileEntry, Unreadable, content_hash, scan
from .lock import WriteLock
from .models import describe_spec, get_model, resolve, slug
from .models.base import EmbeddingModel
from .store import ModelRow, Store
from .vectors import DEFAULT_FACTORY, load_synced, save, sync, validate_factory

CHUNK = 256  # images per SQLite commit: the most a crash can cost
SAVE_EVERY_S = 60.0  # FAISS files are rewritten at most this often during a long run


def default_index_dir() -> str:
    return os.environ.get("IMGSEARCH_INDEX_DIR") or os.path.join(os.getcwd(), "indexes")


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass
class IndexReport:
    root: str
    index_dir: str
    models: list[str]
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    renamed: int = 0
    copied: int = 0
    deleted: int = 0
    embedded: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} found this run
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def images_per_s(self) -> float:
        done = max(self.embedded.values(), default=0)
        return done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 2)}


class NullProgress:
    def __init__(self, total: int = 0, desc: str = ""):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


Progress = Callable[..., NullProgress]


def register_model(store: Store, model: EmbeddingModel, factory: str | None) -> ModelRow:
    """The model's row, created on first use; refuses an index built with other preprocessing."""
    row = store.model(model.spec)
    if row is None:
        with store.atomic():
            return store.add_model(
                model.spec, model.family, model.dim, model.precision, model.preprocess_config(),
                model.versions(), validate_factory(factory or DEFAULT_FACTORY, model.dim),
                slug(model.spec) + ".faiss",
            )
    check_compatible(row, model)
    if factory and factory != row.factory:
        with store.atomic():
            store.update_model(row.id, factory=validate_factory(factory, model.dim))
            store.bump_generation(row.id)
        row = store.model(model.spec)
    return row


def check_compatible(row: ModelRow, model: EmbeddingModel) -> None:
    if row.dim != model.dim:
        raise IndexMismatch(f"index for {row.spec} has dimension {row.dim}, the model gives {model.dim}")
    if row.preprocess != model.preprocess_config():
        raise IndexMismatch(
            f"index for {row.spec} was built with other preprocessing ({_diff(row.preprocess, model.preprocess_config())}); "
            "index into a new --index-dir, or delete this model's index with `imgsearch drop`"
        )


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])


def index_folder(
    root: str,
    model_specs: Iterable[str],
    index_dir: str | None = None,
    *,
    factory: str | None = None,
    precision: str = "fp32",
    device: str | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: Progress = NullProgress,
    include: Callable[[str], bool] | None = None,
) -> IndexReport:
    """Index every image under root (or those include(path) accepts) with every model."""
    specs = list(dict.fromkeys(resolve(s) for s in model_specs))
    index_dir = os.path.abspath(index_dir or default_index_dir())
    root = os.path.abspath(os.path.expanduser(root))
    entries = list(scan(root))  # raises UsageError for a missing folder before anything is written
    if include is not None:
        entries = [e for e in entries if include(e.path)]
    if factory:  # a bad index type fails before minutes of model loading
        for spec in specs:
            validate_factory(factory, describe_spec(spec)["dim"] or 64)
    models = [get_model(s, device=device, precision=precision) for s in specs]
    report = IndexReport(root, index_dir, [m.spec for m in models], embedded={m.spec: 0 for m in models})
    started = time.perf_counter()
    with WriteLock(index_dir):
        store = Store(index_dir)
        try:
            rows = [register_model(store, m, factory) for m in models]
            indexes = {row.id: load_synced(store, row)[0] for row in rows}
            try:
                _apply_folder_changes(store, root, entries, report, workers, progress)
                _embed_pending(store, root, models, rows, indexes, report, batch_size, workers, progress)
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                for row in rows:
                    sync(store, row, indexes[row.id])
                    if indexes[row.id].generation != store.model(row.spec).faiss_generation:
                        save(store, row, indexes[row.id])
        finally:
            store.close()
    report.seconds = time.perf_counter() - started
    return report


# -- phase A: what changed on disk -----------------------------------------------------------

def _hash_file(entry: FileEntry) -> tuple[FileEntry, str | None, str | None]:
    try:
        with open(entry.path, "rb") as f:
            return entry, content_hash(f.read()), None
    except OSError as e:
        return entry, None, e.strerror or e.__class__.__name__


def _apply_folder_changes(store, root, entries, report, workers, progress) -> None:
    known = store.images_under(root)
    present: set[str] = set()
    to_hash: list[FileEntry] = []
    unreadable: list[Unreadable] = []
    for e in entries:
        present.add(e.path)
        if isinstance(e, Unreadable):
            row = known.get(e.path)
            if row is None or row["status"] != "skipped":
                unreadable.append(e)
            continue
        row = known.get(e.path)
        if row and row["size"] == e.size and row["mtime_ns"] == e.mtime_ns:
            report.unchanged += 1
        else:
            to_hash.append(e)
    report.scanned = len(entries)

    hashed = []
    bar = progress(total=len(to_hash), desc="hashing")
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        for result in pool.map(_hash_file, to_hash):
            hashed.append(result)
            bar.update(1)
    bar.close()

    vanished = {p: r for p, r in known.items() if p not in present}
    vanished_by_hash: dict[str, list[dict]] = {}
    for path, row in vanished.items():
        if row["status"] == "ok" and row["hash"]:
            vanished_by_hash.setdefault(row["hash"], []).append({**row, "path": path})

    if not (hashed or vanished or unreadable):
        return
    with store.atomic():
        gens = {m.id: store.bump_generation(m.id) for m in store.models()}
        for u in unreadable:
            _record_skip(store, known.get(u.path), u.path, u.reason, None, report)
        for entry, hash_, error in hashed:
            row = known.get(entry.path)
            facts = {"size": entry.size, "mtime_ns": entry.mtime_ns, "hash": hash_}
            if error:
                _record_skip(store, row, entry.path, error, entry, report)
            elif row is not None:
                if hash_ == row["hash"] and row["status"] == "ok":
                    store.update_image(row["id"], **facts)  # touched, same bytes
                    report.unchanged += 1
                else:
                    store.delete_embeddings([row["id"]])
                    store.update_image(row["id"], status="pending", reason=None, **facts)
                    report.changed += 1
            elif vanished_by_hash.get(hash_):
                moved = vanished_by_hash[hash_].pop()
                del vanished[moved["path"]]
                store.move_image(moved["id"], entry.path, **facts)
                report.renamed += 1
            elif (twin := store.image_by_hash(hash_)) is not None:
                new_id = store.add_image(entry.path, status="ok", width=twin["width"], height=twin["height"],
                                         taken_at=twin["taken_at"], camera=twin["camera"], **facts)
                store.copy_embeddings(twin["id"], new_id, gens)
                report.copied += 1
            else:
                store.add_image(entry.path, status="pending", **facts)
                report.new += 1
        store.delete_images(r["id"] for r in vanished.values())
        report.deleted = len(vanished)


def _record_skip(store, row, path, reason, entry, report) -> None:
    facts = {"size": entry.size, "mtime_ns": entry.mtime_ns} if entry else {"size": None, "mtime_ns": None}
    if row is None:
        store.add_image(path, status="skipped", reason=reason, **facts)
    else:
        store.delete_embeddings([row["id"]])
        store.update_image(row["id"], status="skipped", reason=reason, hash=None, **facts)
    report.skipped.append({"path": path, "reason": reason})


# -- phase B: decode once, embed with every model that lacks the image ------------------------

def _prepare(path: str, models: list[EmbeddingModel]) -> tuple[Decoded | None, dict, str | None]:
    """Runs in a worker thread: decode once, preprocess for each model that needs the image."""
    try:
        decoded = read_and_decode(path)
        return decoded, {m.spec: m.preprocess(decoded.image) for m in models}, None
    except DecodeError as e:
        return None, {}, str(e)
    except Exception as e:  # a transform failing on one odd image must not stop the run
        return None, {}, f"cannot preprocess: {e.__class__.__name__}: {str(e)[:200]}"


def _embed_pending(store, root, models, rows, indexes, report, batch_size, workers, progress) -> None:
    by_id = {row.id: m for row, m in zip(rows, models)}
    work = store.work_for([row.id for row in rows], root)
    bar = progress(total=len(work), desc="embedding")
    last_save = time.monotonic()
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        ahead: deque = deque()
        chunks = [work[i:i + CHUNK] for i in range(0, len(work), CHUNK)]

        def submit(chunk):
            return [(item, pool.submit(_prepare, item[1], [by_id[m] for m in item[2]])) for item in chunk]

        for chunk in chunks[:2]:  # bounded look-ahead: decode the next chunk while this one embeds
            ahead.append(submit(chunk))
        for n in range(len(chunks)):
            prepared = [(item, f.result()) for item, f in ahead.popleft()]
            if n + 2 < len(chunks):
                ahead.append(submit(chunks[n + 2]))
            _embed_and_commit(store, prepared, by_id, batch_size, report)
            bar.update(len(prepared))
            for row in rows:
                sync(store, row, indexes[row.id])
            if time.monotonic() - last_save > SAVE_EVERY_S:
                for row in rows:
                    save(store, row, indexes[row.id])
                last_save = time.monotonic()
    bar.close()


def _embed_and_commit(store, prepared, by_id, batch_size, report) -> None:
    vectors: dict[int, tuple[list[int], list[np.ndarray]]] = {m: ([], []) for m in by_id}
    for model_id, model in by_id.items():
        todo = [(item[0], tensors[model.spec]) for item, (_, tensors, _) in prepared if model.spec in tensors]
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            vectors[model_id][0].extend(image_id for image_id, _ in batch)
            vectors[model_id][1].append(model.encode_pixels(torch.stack([t for _, t in batch])))
    with store.atomic():
        for (image_id, path, _), (decoded, _, error) in prepared:
            if error is not None:
                store.delete_embeddings([image_id])
                store.update_image(image_id, status="skipped", reason=error)
                report.skipped.append({"path": path, "reason": error})
            else:
                store.update_image(image_id, status="ok", reason=None, hash=decoded.hash,
                                   width=decoded.width, height=decoded.height,
                                   taken_at=decoded.exif.get("taken_at"), camera=decoded.exif.get("camera"))
        for model_id, (ids, arrays) in vectors.items():
            if ids:
                store.put_embeddings(model_id, store.bump_generation(model_id), ids, np.concatenate(arrays))
                report.embedded[by_id[model_id].spec] += len(ids)


def drop_model(spec: str, index_dir: str | None = None) -> dict:
    """Forget one model's vectors and FAISS file; the images and other models stay."""
    index_dir = os.path.abspath(index_dir or default_index_dir())
    canonical = resolve(spec)
    with WriteLock(index_dir):
        store = Store(index_dir)
        try:
            row = store.model(canonical)
            if row is None:
                raise IndexMismatch(f"no index for {canonical} in {index_dir}")
            n = len(store.embedding_ids(row.id))
            with store.atomic():
                store.drop_model(row.id)
            path = os.path.join(index_dir, row.index_file)
            if os.path.exists(path):
                os.unlink(path)
        finally:
            store.close()
    return {"model": canonical, "index_dir": index_dir, "vectors_removed": n}
