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

from .decode import READ_ERROR, Decoded, read_and_decode, read_error
from .errors import DecodeError, IndexMismatch
from .files import FileEntry, Unreadable, content_hash, display_path, scan
from .lock import WriteLock
from .models import describe_spec, get_model, resolve, slug
from .models.base import EmbeddingModel
from .store import DB_NAME, ModelRow, Store, reporting_corruption
from .vectors import DEFAULT_FACTORY, load_synced, remove_temp_files, save, sync, validate_factory

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
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        done = max(self.embedded.values(), default=0)
        return done / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        # JSON holds text: a file name that is not UTF-8 is given as a terminal would show it.
        skipped = [{**s, "path": display_path(s["path"])} for s in self.skipped]
        return {**asdict(self), "root": display_path(self.root), "skipped": skipped,
                "images_per_s": round(self.images_per_s, 2)}


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
        validate_factory(factory, model.dim)
        old_file = os.path.join(store.index_dir, row.index_file)
        if os.path.exists(old_file):
            os.unlink(old_file)  # of the old type: rebuilt from SQLite in the new one on load
        with store.atomic():
            store.update_model(row.id, factory=factory, faiss_generation=-1)
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
    precision: str = "auto",
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
    with WriteLock(index_dir), reporting_corruption(os.path.join(index_dir, DB_NAME)):
        store = Store(index_dir)
        remove_temp_files(index_dir)  # a killed writer's half-written FAISS files
        try:
            rows = [register_model(store, m, factory) for m in models]
            report.notes += [f"{m.spec}: this index was built at {row.precision}; images embedded now are "
                             f"{m.precision} (to compare precisions, index each into its own --index-dir)"
                             for m, row in zip(models, rows) if row.precision != m.precision]
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
        return entry, None, read_error(e)


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
    pool = ThreadPoolExecutor(workers or default_workers())
    try:
        for result in pool.map(_hash_file, to_hash):
            hashed.append(result)
            bar.update(1)
    finally:
        pool.shutdown(cancel_futures=True)  # on Ctrl-C, stop now rather than hash the whole folder
    bar.close()

    vanished = {p: r for p, r in known.items() if p not in present}
    _keep_unreachable(vanished, entries, root, report)
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
            if error:  # a read error: no size and mtime, so that the next run tries again
                _record_skip(store, row, entry.path, error, None, report)
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


def _keep_unreachable(vanished: dict[str, dict], entries, root: str, report) -> None:
    """Take out of vanished the rows under a folder that cannot be entered now.

    Such a folder is unreadable, or a symlink whose target is gone (an unmounted drive):
    its photos are most likely still there, and sweeping them would cost a re-embedding.
    """
    unlisted = {e.path for e in entries if isinstance(e, Unreadable) and e.folder}
    blocked_by: dict[str, str | None] = {root: None}  # folder -> the unreachable folder above it
    kept: dict[str, int] = {}
    for path in list(vanished):
        chain, folder = [], os.path.dirname(path)
        while folder not in blocked_by and folder != os.path.dirname(folder):
            chain.append(folder)
            folder = os.path.dirname(folder)
        blocker = blocked_by.get(folder)
        for folder in reversed(chain):  # top down: the highest unreachable folder is the cause
            if blocker is None and (folder in unlisted or _is_broken_link(folder)):
                blocker = folder
            blocked_by[folder] = blocker
        if blocker is not None:
            del vanished[path]
            kept[blocker] = kept.get(blocker, 0) + 1
    for folder, n in kept.items():
        if folder not in unlisted:  # an unreadable folder has its own skip row and reason
            report.skipped.append({"path": folder, "reason": f"broken symlink; its {n} indexed images are kept"})


def _is_broken_link(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


# -- phase B: decode once, embed with every model that lacks the image ------------------------

def _prepare(path: str, models: list[EmbeddingModel]) -> tuple[Decoded | None, dict, str | None]:
    """Runs in a worker thread: decode once, preprocess for each model that needs the image."""
    try:
        decoded = read_and_decode(path)
        tensors = {m.spec: m.preprocess(decoded.image) for m in models}
        decoded.image = None  # done with: the look-ahead would hold ~1 GB of camera-photo pixels
        return decoded, tensors, None
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

        def submit(chunk) -> deque:
            return deque((item, pool.submit(_prepare, item[1], [by_id[m] for m in item[2]])) for item in chunk)

        for chunk in chunks[:2]:  # bounded look-ahead: decode the next chunk while this one embeds
            ahead.append(submit(chunk))
        for n in range(len(chunks)):
            pending = ahead.popleft()
            if n + 2 < len(chunks):
                ahead.append(submit(chunks[n + 2]))
            _embed_and_commit(store, pending, by_id, batch_size, report)
            bar.update(len(chunks[n]))
            for row in rows:
                sync(store, row, indexes[row.id])
            if time.monotonic() - last_save > SAVE_EVERY_S:
                for row in rows:
                    save(store, row, indexes[row.id])
                last_save = time.monotonic()
    bar.close()


def _embed_and_commit(store, pending: deque, by_id, batch_size, report) -> None:
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
                vectors[model_id][1].append(model.encode_pixels(torch.stack([t for _, t in batch])))
    with store.atomic():
        for (image_id, path, _), (decoded, error) in prepared:
            if error is not None:
                store.delete_embeddings([image_id])
                # A read error (permissions, a file that vanished) is tried again next run;
                # bad bytes are tried again only once the file changes.
                retry = {"size": None, "mtime_ns": None} if error.startswith(READ_ERROR) else {}
                store.update_image(image_id, status="skipped", reason=error, **retry)
                report.skipped.append({"path": path, "reason": error})
            else:
                store.update_image(image_id, status="ok", reason=None, hash=decoded.hash,
                                   width=decoded.width, height=decoded.height,
                                   taken_at=decoded.exif.get("taken_at"), camera=decoded.exif.get("camera"))
        for model_id, (ids, arrays) in vectors.items():
            if ids:
                store.put_embeddings(model_id, store.bump_generation(model_id), ids, np.concatenate(arrays))
                report.embedded[by_id[model_id].spec] += len(ids)


def embed_missing(store: Store, models: list[EmbeddingModel], rows: list[ModelRow], indexes: dict,
                  report: IndexReport, *, root: str | None = None, batch_size: int = 32,
                  workers: int | None = None, progress: Progress = NullProgress) -> None:
    """Phase B alone: embed every pending image under root (None: all), and every ok image
    lacking a vector of one of the models; chunks commit as they go and indexes (model row
    id -> VectorIndex) are kept in sync. The caller holds the WriteLock."""
    _embed_pending(store, root, models, rows, indexes, report, batch_size, workers, progress)


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
