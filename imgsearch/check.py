"""Is every model's FAISS file in step with the SQLite truth? With repair, make it so.

What is checked, per model: the FAISS file reads; once caught up with the database (as any
load does) it holds exactly the database's ids, once each, with the database's vectors (for
index types that can give vectors back); stored vectors have the right length and are
finite unit vectors; no vector belongs to an image that is gone or skipped; every image with
status ok has a vector. For the index dir: SQLite's own quick_check, images left pending by
an interrupted run, and temporary files left by a killed writer.

Repair deletes damaged and orphaned vectors, rebuilds a FAISS file that disagrees with the
database (vectors.rebuild), embeds what is missing through the indexer's own embed phase,
saves the files and removes the litter; then it checks again. A damaged database is not
repaired here: the message says how to rebuild it from the photos.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from .errors import ImgsearchError, IndexCorrupt, IndexLocked, UsageError
from .files import display_path
from .config import default_index_dir
from .embed import EmbedTally, embed_pending
from .model_rows import check_same_weights
from .lock import WriteLock
from .models import get_model, resolve
from .progress import NullProgress, Progress
from .store import DB_NAME, ModelRow, Store, corrupt_database, reporting_corruption
from .vectors import (VectorIndex, catch_up, current_type, index_path, rebuild, remove_temp_files, save, sync,
                      temp_files, wanted_type)

NORM_TOLERANCE = 1e-2  # every model adapter L2-normalises; bf16 models land within 1e-3
VECTOR_TOLERANCE = 1e-5  # FAISS keeps float32 copies: they match exactly unless damaged
BATCH = 10_000


@dataclass
class ModelCheck:
    spec: str
    index_file: str
    vectors: int = 0  # rows in SQLite
    faiss_vectors: int | None = None  # in the FAISS file as saved; None when absent or unreadable
    faiss_error: str | None = None
    behind: bool = False  # the file predates the last commit: normal after a crash, caught up on load
    missing_in_faiss: int = 0  # counted after catching up, as a search would see it
    extra_in_faiss: int = 0
    duplicated_in_faiss: int = 0
    differing_vectors: int | None = None  # None: this index type cannot give its vectors back
    damaged_vectors: int = 0  # wrong length, not finite, or not unit length
    orphan_vectors: int = 0  # of images that are gone or skipped
    images_without_vector: int = 0  # status ok, no vector from this model
    repair_error: str | None = None  # why repair could not embed for this model

    def problems(self) -> list[str]:
        lines = []
        if self.faiss_error:
            lines.append(self.faiss_error)
        counts = [
            (self.missing_in_faiss, "vectors in the database are missing from the FAISS index"),
            (self.extra_in_faiss, "ids in the FAISS index are not in the database"),
            (self.duplicated_in_faiss, "ids appear more than once in the FAISS index"),
            (self.differing_vectors or 0, "FAISS vectors differ from the database's"),
            (self.damaged_vectors, "stored vectors are damaged (wrong length, not finite or not unit)"),
            (self.orphan_vectors, "vectors belong to images that are gone or skipped"),
            (self.images_without_vector, "indexed images have no vector"),
        ]
        lines += [f"{self.spec}: {n} {what}" for n, what in counts if n]
        if self.repair_error:
            lines.append(f"{self.spec}: cannot embed the missing images: {self.repair_error}")
        return lines


@dataclass
class CheckReport:
    index_dir: str
    database_error: str | None = None
    images: dict[str, int] = field(default_factory=dict)  # count per status
    models: list[ModelCheck] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    writer_active: bool = False  # an indexer held the write lock: counts may be mid-update
    repaired: list[str] = field(default_factory=list)  # what repair did, one line each
    embedded: dict[str, int] = field(default_factory=dict)  # by repair
    skipped: list[dict] = field(default_factory=list)  # files repair could not embed

    @property
    def pending(self) -> int:
        return self.images.get("pending", 0)

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        if self.database_error:
            return [self.database_error]
        lines = [line for m in self.models for line in m.problems()]
        if self.pending:
            lines.append(f"{self.pending} images are pending (an interrupted run): run `imgsearch index` "
                         "again or `imgsearch check --repair`")
        return lines

    def notes(self) -> list[str]:
        lines = [f"{m.spec}: FAISS file is older than the database; it is caught up when loaded"
                 for m in self.models if m.behind and not m.faiss_error]
        if self.temp_files:
            lines.append(f"{len(self.temp_files)} temporary files left by an interrupted writer")
        if self.writer_active:
            lines.append("an indexer is writing to this index now: counts may change meanwhile")
        return lines

    def to_dict(self) -> dict:
        skipped = [{**s, "path": display_path(s["path"])} for s in self.skipped]  # JSON holds text
        return {**asdict(self), "skipped": skipped, "ok": self.ok, "pending": self.pending,
                "problems": self.problems(), "notes": self.notes()}


def check_index(index_dir: str | None = None, repair: bool = False, models: list[str] | None = None,
                progress: Progress = NullProgress, *, device: str | None = None,
                batch_size: int = 32, workers: int | None = None) -> CheckReport:
    """Check one index dir (models: specs to check, default all); with repair, fix what is found.

    Repair takes the write lock (IndexLocked while an indexer runs); a plain check does not
    need it and says so in its notes when a writer is active.
    """
    index_dir = os.path.abspath(index_dir or default_index_dir())
    db_path = os.path.join(index_dir, DB_NAME)
    if not os.path.exists(db_path):
        raise UsageError(f"no index in {index_dir}")
    report = CheckReport(index_dir)
    with ExitStack() as stack:
        try:
            stack.enter_context(WriteLock(index_dir))
        except IndexLocked:
            if repair:
                raise
            report.writer_active = True
        try:
            store = Store(index_dir, create=False)
            stack.callback(store.close)
            with reporting_corruption(db_path):
                integrity = store.quick_check()
                if integrity != ["ok"]:
                    raise corrupt_database(db_path, "; ".join(integrity[:3]))
                rows = _selected_models(store, models)
                _inspect(store, rows, report)
        except IndexCorrupt as e:  # reported, not repaired: the message says how to rebuild it
            report.database_error = str(e)
            return report
        stack.enter_context(reporting_corruption(db_path))
        if repair and (report.problems() or report.notes()):
            _repair(store, rows, report, progress, device, batch_size, workers)
            repaired, embedded, skipped = report.repaired, report.embedded, report.skipped
            errors = {m.spec: m.repair_error for m in report.models}
            report = CheckReport(index_dir, repaired=repaired, embedded=embedded, skipped=skipped)
            _inspect(store, rows, report)
            for m in report.models:
                m.repair_error = errors.get(m.spec)
    return report


def _selected_models(store: Store, specs: list[str] | None) -> list[ModelRow]:
    if not specs:
        return store.models()
    rows = []
    for spec in specs:
        row = store.model(resolve(spec))
        if row is None:
            have = ", ".join(m.spec for m in store.models()) or "none"
            raise UsageError(f"no index for {resolve(spec)} in {store.index_dir} (indexed models: {have})")
        rows.append(row)
    return rows


# -- inspection (reads only) ------------------------------------------------------------------

def _inspect(store: Store, rows: list[ModelRow], report: CheckReport) -> None:
    report.temp_files = temp_files(store.index_dir)
    with store.atomic():  # one snapshot: a writer committing meanwhile is not half seen
        report.images = store.counts()
        report.models = [_inspect_model(store, store.model(row.spec)) for row in rows]


def _inspect_model(store: Store, row: ModelRow) -> ModelCheck:
    check = ModelCheck(row.spec, row.index_file)
    check.vectors = store.embedding_count(row.id)
    check.damaged_vectors = len(_damaged_vector_ids(store, row))
    check.orphan_vectors = len(store.orphan_embedding_ids(row.id))
    check.images_without_vector = store.count_images_without_vector(row.id)
    check.behind = row.faiss_generation != row.generation
    vi = _read_faiss(store, row, check)
    if vi is None or check.damaged_vectors:  # damaged rows cannot be loaded to compare with
        return check
    sync(store, row, vi)  # in memory only: what a search would see
    present = vi.ids()
    unique = np.unique(present)
    stored = store.embedding_ids(row.id)
    check.duplicated_in_faiss = len(present) - len(unique)
    check.missing_in_faiss = len(np.setdiff1d(stored, unique))
    check.extra_in_faiss = len(np.setdiff1d(unique, stored))
    check.differing_vectors = _differing_vectors(store, row, vi)
    return check


def _read_faiss(store: Store, row: ModelRow, check: ModelCheck) -> VectorIndex | None:
    path = index_path(store, row)
    if not os.path.exists(path):  # never saved yet: a load builds it from the database
        check.behind = True
        return VectorIndex.empty(wanted_type(row, 0), row.dim)
    try:
        vi = VectorIndex.read(path, current_type(row))
    except IndexCorrupt as e:
        check.faiss_error = str(e)
        return None
    if vi.dim != row.dim:
        check.faiss_error = f"FAISS index {path} has dimension {vi.dim}, expected {row.dim}"
        return None
    check.faiss_vectors = vi.ntotal
    vi.generation = row.faiss_generation
    return vi


def _damaged_vector_ids(store: Store, row: ModelRow) -> list[int]:
    damaged = store.wrong_length_embedding_ids(row.id, row.dim)
    for ids, vectors in store.iter_embeddings(row.id, row.dim, BATCH):
        norms = np.linalg.norm(vectors, axis=1)
        bad = ~np.isfinite(vectors).all(axis=1) | (np.abs(norms - 1) > NORM_TOLERANCE)
        damaged += ids[bad].tolist()
    return damaged


def _differing_vectors(store: Store, row: ModelRow, vi: VectorIndex) -> int | None:
    inner = faiss.downcast_index(vi.index.index)
    if not isinstance(inner, faiss.IndexFlat):  # approximate indexes keep no exact copy
        return None
    held = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * inner.d).reshape(inner.ntotal, inner.d)
    position = {int(i): n for n, i in enumerate(vi.ids())}
    differing = 0
    for ids, vectors in store.iter_embeddings(row.id, row.dim, BATCH):
        found = np.array([position.get(int(i), -1) for i in ids])
        has = found >= 0
        gap = np.abs(held[found[has]] - vectors[has]).max(axis=1) if has.any() else np.zeros(0)
        differing += int((gap > VECTOR_TOLERANCE).sum())
    return differing


# -- repair ----------------------------------------------------------------------------------

def _repair(store: Store, rows: list[ModelRow], report: CheckReport, progress, device, batch_size,
            workers) -> None:
    for name in remove_temp_files(store.index_dir):  # the write lock is held: no writer is mid-write
        report.repaired.append(f"removed {name}")
    by_spec = {m.spec: m for m in report.models}
    for row in rows:
        _drop_bad_rows(store, row, by_spec[row.spec], report)
    indexes, rebuilt = {}, set()
    for row in rows:
        row = store.model(row.spec)
        path = index_path(store, row)
        if _trusted(by_spec[row.spec]) and os.path.exists(path):
            vi = VectorIndex.read(path, current_type(row))
            vi.generation = row.faiss_generation
            sync(store, row, vi)
        else:
            vi = VectorIndex.empty(wanted_type(row, 0), row.dim)
            rebuild(store, row, vi)
            rebuilt.add(row.id)
            report.repaired.append(f"{row.spec}: rebuilt the FAISS index from {vi.ntotal} stored vectors")
        indexes[row.id] = vi
    _embed_what_is_missing(store, rows, indexes, report, progress, device, batch_size, workers)
    for row in rows:
        row = store.model(row.spec)
        catch_up(store, row, indexes[row.id])  # an on-disk index is never synced in place: built anew
        if row.id in rebuilt or indexes[row.id].generation != row.faiss_generation:
            save(store, row, indexes[row.id])
            report.repaired.append(f"{row.spec}: saved {row.index_file}")


def _trusted(check: ModelCheck) -> bool:
    """The FAISS file agrees with the database once caught up: no rebuild needed."""
    return not (check.faiss_error or check.missing_in_faiss or check.extra_in_faiss or check.duplicated_in_faiss
                or check.differing_vectors or check.damaged_vectors)


def _drop_bad_rows(store: Store, row: ModelRow, check: ModelCheck, report: CheckReport) -> None:
    damaged = _damaged_vector_ids(store, row) if check.damaged_vectors else []
    with store.atomic():
        orphans = store.orphan_embedding_ids(row.id)
        doomed = sorted(set(damaged) | set(orphans))
        if not doomed:
            return
        store.delete_embeddings(doomed, model_id=row.id)
        store.bump_generation(row.id)
    if damaged:
        report.repaired.append(f"{row.spec}: deleted {len(damaged)} damaged vectors (to embed again)")
    if orphans:
        report.repaired.append(f"{row.spec}: deleted {len(orphans)} vectors of images gone or skipped")


def _embed_what_is_missing(store, rows, indexes, report, progress, device, batch_size, workers) -> None:
    needing = [r for r in rows if store.work_for([r.id])]
    if not needing:
        return
    models, loaded = [], []
    by_spec = {m.spec: m for m in report.models}
    for row in needing:
        try:
            model = get_model(row.spec, device=device, precision=row.precision)
            check_same_weights(row, model)
        except ImgsearchError as e:  # weights unavailable here: the other models still get repaired
            by_spec[row.spec].repair_error = str(e)
            continue
        models.append(model)
        loaded.append(row)
    if not loaded:
        return
    tally = EmbedTally(embedded={m.spec: 0 for m in models})
    embed_pending(store, models, loaded, indexes, tally, batch_size=batch_size, workers=workers, progress=progress)
    report.embedded = tally.embedded
    report.skipped = tally.skipped
    for spec, n in tally.embedded.items():
        report.repaired.append(f"{spec}: embedded {n} missing images")
