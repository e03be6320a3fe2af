"""Stage 1: find image files under a folder, with the facts that decide whether to re-embed them."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UsageError
from .exclude import Exclusions

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .webp .gif .bmp .tif .tiff .jfif .ppm .pgm".split()
)
LEAVES_FOLDER = "symlink leading outside its folder"


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, symlinks in folders kept as walked (what the user sees)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str
    folder: bool = False  # a folder that could not be listed: rows under it are kept, not swept


def scan(root: str | os.PathLike, exclusions: Exclusions | None = None) -> Iterator[FileEntry | Unreadable]:
    """Yield every image file under root, depth first, each folder in name order.

    Symlinked folders are followed once each: a folder whose real identity (device, inode)
    was already visited is not entered again, so symlink loops end. Only regular files are
    yielded: a FIFO or device named photo.jpg would block or never end when read.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise UsageError(f"folder not found: {root}")
    if not root_path.is_dir():
        raise UsageError(f"not a folder: {root}")
    yield from _walk(os.path.abspath(root_path), exclusions)


def _walk(root: str, exclusions: Exclusions | None = None) -> Iterator[FileEntry | Unreadable]:
    # exclusions (exclude.py) are asked before a folder is entered: a left-out folder is not listed.
    # An explicit stack of folder listings, not recursion: no tree is too deep to walk.
    seen: set[tuple[int, int]] = set()
    stack: list[Iterator[os.DirEntry]] = []
    folder: str | None = root
    while True:
        if folder is not None:
            listing = _list_folder(folder, seen)
            if isinstance(listing, Unreadable):
                yield listing
            elif listing is not None:
                stack.append(iter(listing))
            folder = None
        if not stack:
            return
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if exclusions is None or not exclusions.excludes(entry.path, is_dir=True):
                folder = entry.path
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            if exclusions is None or not exclusions.excludes(entry.path, is_dir=False):
                yield _file_entry(entry)


def _list_folder(folder: str, seen: set[tuple[int, int]]) -> list[os.DirEntry] | Unreadable | None:
    """The folder's entries in name order; None when it was already walked."""
    try:
        st = os.stat(folder)
    except OSError as e:
        return Unreadable(folder, _reason(e), folder=True)
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return None
    seen.add(key)
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        return Unreadable(folder, _reason(e), folder=True)


def _file_entry(entry: os.DirEntry) -> FileEntry | Unreadable:
    try:
        st = entry.stat()  # follows symlinks: a broken one raises here
    except OSError as e:
        return Unreadable(entry.path, "broken symlink" if entry.is_symlink() else _reason(e))
    if not stat.S_ISREG(st.st_mode):
        return Unreadable(entry.path, "not a regular file")
    if entry.is_symlink() and escapes_its_folder(entry.path):
        return Unreadable(entry.path, LEAVES_FOLDER)
    return FileEntry(entry.path, st.st_size, st.st_mtime_ns)


def escapes_its_folder(path: str) -> bool:
    """A file symlink leading out of its own folder: not indexed, and not served (web/access.py).

    realpath(path) must lie inside realpath(dirname(path)). Symlinked *folders* stay allowed
    (a photo library spread over disks): they resolve the same for the folder and the file.
    """
    folder = os.path.realpath(os.path.dirname(path))
    return os.path.commonpath([folder, os.path.realpath(path)]) != folder


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__


def content_hash(data: bytes) -> str:
    """Identity of a file's bytes: recognises renames and copies without re-embedding."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def display_path(path: str) -> str:
    """A path printable on any terminal (file names need not be UTF-8)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
