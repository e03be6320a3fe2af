"""Indexing, phase A: what changed on disk since the last run, written to SQLite.

Incremental, in the manner of rclip: a file whose size and mtime are unchanged is not read.
A changed or new file is hashed first, so that a rename or a copy re-uses vectors instead of
re-embedding (a changed file's vectors are dropped and it is marked pending); files gone from
the folder are swept from every model's index, unless their folder cannot be entered now.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .config import default_workers
from .decode import read_error
from .files import FileEntry, Unreadable, content_hash
from .progress import NullProgress, Progress
from .store import Store


@dataclass
class FolderChanges:
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    renamed: int = 0
    copied: int = 0
    deleted: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} found this run


def apply_folder_changes(store: Store, root: str, entries: list, changes: FolderChanges,
                         workers: int | None = None, progress: Progress = NullProgress) -> None:
    """Bring the images table in step with entries (a scan of root); counts go to changes."""
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
            changes.unchanged += 1
        else:
            to_hash.append(e)
    changes.scanned = len(entries)

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
    _keep_unreachable(vanished, entries, root, changes)
    vanished_by_hash: dict[str, list[dict]] = {}
    for path, row in vanished.items():
        if row["status"] == "ok" and row["hash"]:
            vanished_by_hash.setdefault(row["hash"], []).append({**row, "path": path})

    if not (hashed or vanished or unreadable):
        return
    with store.atomic():
        gens = {m.id: store.bump_generation(m.id) for m in store.models()}
        for u in unreadable:
            _record_skip(store, known.get(u.path), u.path, u.reason, changes)
        for entry, hash_, error in hashed:
            row = known.get(entry.path)
            facts = {"size": entry.size, "mtime_ns": entry.mtime_ns, "hash": hash_}
            if error:  # a read error: no size and mtime, so that the next run tries again
                _record_skip(store, row, entry.path, error, changes)
            elif row is not None:
                if hash_ == row["hash"] and row["status"] == "ok":
                    store.update_image(row["id"], **facts)  # touched, same bytes
                    changes.unchanged += 1
                else:
                    store.delete_embeddings([row["id"]])
                    store.update_image(row["id"], status="pending", reason=None, **facts)
                    changes.changed += 1
            elif vanished_by_hash.get(hash_):
                moved = vanished_by_hash[hash_].pop()
                del vanished[moved["path"]]
                store.move_image(moved["id"], entry.path, **facts)
                changes.renamed += 1
            elif (twin := store.image_by_hash(hash_)) is not None:
                new_id = store.add_image(entry.path, status="ok", width=twin["width"], height=twin["height"],
                                         taken_at=twin["taken_at"], camera=twin["camera"], **facts)
                store.copy_embeddings(twin["id"], new_id, gens)
                changes.copied += 1
            else:
                store.add_image(entry.path, status="pending", **facts)
                changes.new += 1
        store.delete_images(r["id"] for r in vanished.values())
        changes.deleted = len(vanished)


def _hash_file(entry: FileEntry) -> tuple[FileEntry, str | None, str | None]:
    try:
        with open(entry.path, "rb") as f:
            return entry, content_hash(f.read()), None
    except OSError as e:
        return entry, None, read_error(e)


def _record_skip(store: Store, row: dict | None, path: str, reason: str, changes: FolderChanges) -> None:
    # No size and mtime: a file skipped for a read error is tried again next run.
    facts = {"size": None, "mtime_ns": None}
    if row is None:
        store.add_image(path, status="skipped", reason=reason, **facts)
    else:
        store.delete_embeddings([row["id"]])
        store.update_image(row["id"], status="skipped", reason=reason, hash=None, **facts)
    changes.skipped.append({"path": path, "reason": reason})


def _keep_unreachable(vanished: dict[str, dict], entries, root: str, changes: FolderChanges) -> None:
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
            changes.skipped.append({"path": folder, "reason": f"broken symlink; its {n} indexed images are kept"})


def _is_broken_link(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)
