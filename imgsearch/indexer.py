"""Indexing: a folder -> vectors for every model -> SQLite + one FAISS file per model.

Phase A (changes.py) writes what changed on disk; phase B (embed.py) embeds what lacks a
vector; this module runs both under the writer lock and saves each model's FAISS file.
Phase B runs here (engine "local") or on a Ray cluster (engine "ray": ray_engine.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

from .changes import FolderChanges, apply_folder_changes
from .config import default_index_dir
from .embed import EmbedTally, embed_pending
from .errors import IndexMismatch, UsageError
from .exclude import Exclusions
from .files import display_path, scan
from .lock import WriteLock
from .model_rows import register_model
from .models import describe_spec, get_model, resolve
from .progress import NullProgress, Progress
from .ray_options import ENGINES, RayOptions, import_with_ray
from .store import DB_NAME, Store, reporting_corruption
from .vectors import catch_up, load_synced, remove_temp_files, save, validate_factory


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
    skipped_total: int = 0  # files skipped in the index dir, this run's and earlier runs'
    excluded: dict[str, int] = field(default_factory=dict)  # "files hidden": n, ... (exclude.py rules)
    seconds: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        done = max(self.embedded.values(), default=0)
        return done / self.seconds if self.seconds else 0.0

    def take(self, changes: FolderChanges, tally: EmbedTally) -> None:
        for name in ("scanned", "unchanged", "new", "changed", "renamed", "copied", "deleted"):
            setattr(self, name, getattr(changes, name))
        self.embedded.update(tally.embedded)
        self.skipped = changes.skipped + tally.skipped

    def to_dict(self) -> dict:
        # JSON holds text: a file name that is not UTF-8 is given as a terminal would show it.
        skipped = [{**s, "path": display_path(s["path"])} for s in self.skipped]
        return {**asdict(self), "root": display_path(self.root), "skipped": skipped,
                "images_per_s": round(self.images_per_s, 2)}


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
    engine: str = "local",
    ray_options: RayOptions | None = None,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
) -> IndexReport:
    """Index every image under root (or those include(path) accepts) with every model.

    Left out (exclude.py): hidden files and folders, AppleDouble files and cache folders unless
    include_hidden, paths matching the gitignore-style `exclude` patterns or an .imgsearchignore,
    and the index dir itself. What is left out and was indexed before is swept like a deleted file.
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    embed_on_ray = _ray_engine(ray_options or RayOptions()) if engine == "ray" else None
    specs = list(dict.fromkeys(resolve(s) for s in model_specs))
    index_dir = os.path.abspath(index_dir or default_index_dir())
    root = os.path.abspath(os.path.expanduser(root))
    exclusions = Exclusions(root, exclude, include_hidden, skip=(index_dir,))  # bad patterns fail here
    entries = list(scan(root, exclusions))  # raises UsageError for a missing folder before anything is written
    if include is not None:
        entries = [e for e in entries if include(e.path)]
    if factory:  # a bad index type fails before minutes of model loading
        for spec in specs:
            validate_factory(factory, describe_spec(spec)["dim"] or 64)
    models = [get_model(s, device=device, precision=precision) for s in specs]
    report = IndexReport(root, index_dir, [m.spec for m in models], embedded={m.spec: 0 for m in models})
    changes, tally = FolderChanges(), EmbedTally()
    started = time.perf_counter()
    with WriteLock(index_dir), reporting_corruption(os.path.join(index_dir, DB_NAME)):
        store = Store(index_dir)
        remove_temp_files(index_dir)  # a killed writer's half-written FAISS files
        try:
            rows = [register_model(store, m, factory, report.notes) for m in models]
            report.notes += [f"{m.spec}: this index was built at {row.precision}; images embedded now are "
                             f"{m.precision} (to compare precisions, index each into its own --index-dir)"
                             for m, row in zip(models, rows) if row.precision != m.precision]
            indexes = {row.id: load_synced(store, row)[0] for row in rows}
            try:
                apply_folder_changes(store, root, entries, changes, workers, progress)
                if embed_on_ray is None:
                    embed_pending(store, models, rows, indexes, tally, root=root, batch_size=batch_size,
                                  workers=workers, progress=progress)
                else:
                    done = embed_on_ray(store, models, rows, tally, ray_options or RayOptions(), root=root,
                                        batch_size=batch_size, progress=progress)
                    report.notes.append(f"ray: {done.planned} shards ({done.from_disk} merged from files a "
                                        f"killed run left, holding {done.from_disk_vectors} vectors; "
                                        f"{done.computed} computed)")
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                for row in rows:
                    catch_up(store, row, indexes[row.id])  # an index on disk is built anew here
                    if indexes[row.id].generation != store.model(row.spec).faiss_generation:
                        save(store, row, indexes[row.id])
            report.skipped_total = store.counts().get("skipped", 0)
        finally:
            store.close()
    report.take(changes, tally)
    report.excluded = dict(exclusions.counts)
    report.seconds = time.perf_counter() - started
    return report


def _ray_engine(options: RayOptions):
    """ray_engine.embed_with_ray: Ray is an optional extra, imported only for this engine."""
    options.check()
    return import_with_ray("imgsearch.ray_engine").embed_with_ray


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
