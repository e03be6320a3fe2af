"""Stage 1: find image files under a folder, with the facts that decide whether to re-embed them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UsageError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .webp .gif .bmp .tif .tiff .jfif .ppm .pgm".split()
)


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, symlinks in folders kept as walked (what the user sees)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str


def scan(root: str | os.PathLike) -> Iterator[FileEntry | Unreadable]:
    """Yield every image file under root, sorted per folder.

    Symlinked folders are followed once each: a folder whose real identity (device, inode)
    was already visited is not entered again, so symlink loops end.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise UsageError(f"folder not found: {root}")
    if not root_path.is_dir():
        raise UsageError(f"not a folder: {root}")
    root_abs = os.path.abspath(root_path)
    seen: set[tuple[int, int]] = set()
    yield from _walk(root_abs, seen)


def _walk(folder: str, seen: set[tuple[int, int]]) -> Iterator[FileEntry | Unreadable]:
    try:
        st = os.stat(folder)
    except OSError as e:
        yield Unreadable(folder, _reason(e))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield Unreadable(folder, _reason(e))
        return
    for entry in entries:
        path = os.path.join(folder, entry.name)
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(path, seen)
            continue
        if os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        try:
            st = entry.stat()  # follows symlinks: a broken one raises here
        except OSError as e:
            yield Unreadable(path, "broken symlink" if entry.is_symlink() else _reason(e))
            continue
        yield FileEntry(path, st.st_size, st.st_mtime_ns)


def _reason(e: OSError) -> str:
    return e.strerror or e.__class__.__name__


def content_hash(data: bytes) -> str:
    """Identity of a file's bytes: recognises renames and copies without re-embedding."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def display_path(path: str) -> str:
    """A path printable on any terminal (file names need not be UTF-8)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
