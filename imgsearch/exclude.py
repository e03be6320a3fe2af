"""What the scanner leaves out: junk by default, --exclude patterns, and .imgsearchignore files.

Patterns use gitignore syntax (matched by `pathspec`, not by hand): `raw/` is a folder
anywhere, `/raw/` the one at the top, `*.tmp`, `2019/**/private`, `!keep.jpg` takes a file back.
Which rule decides, first match wins, as git does:
  1. --exclude patterns (the command line: the last one that matches);
  2. .imgsearchignore files, the one in the deepest folder above the file first, each read
     relative to its own folder (the last matching line of that file);
  3. the defaults: hidden files and folders (names starting with "."), which include macOS
     `._*` AppleDouble files, and known cache and trash folders (CACHE_FOLDERS); lifted by
     include_hidden.
A folder that is left out is not entered, so nothing under it can be taken back (as in git).
A folder holding an imgsearch index (its thumbnails are JPEGs) is always left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pathspec

from .errors import UsageError

IGNORE_FILE = ".imgsearchignore"
INDEX_DB = "imgsearch.db"  # a folder holding one is an imgsearch index dir
# Thumbnail caches and trash of NAS boxes, Windows, Linux and tools; hidden ones (.thumbnails,
# .Trash-1000, .Spotlight-V100) fall under the hidden rule already.
CACHE_FOLDERS = frozenset({
    "@eaDir",  # Synology thumbnails
    "#recycle", "#snapshot",  # Synology trash and snapshots
    "@Recycle", "@Recently-Snapshot",  # QNAP
    "$RECYCLE.BIN", "System Volume Information",  # Windows
    "lost+found",
    "__pycache__", "node_modules",
})
CACHE_SUFFIXES = (".lrdata",)  # Lightroom previews


@dataclass
class Exclusions:
    """The rules for one scan of root; `counts` says how many files and folders each rule left out."""

    root: str
    patterns: Sequence[str] = ()
    include_hidden: bool = False
    skip: Sequence[str] = ()  # folders never entered (the index dir being written)
    counts: dict[str, int] = field(default_factory=dict)
    _spec: pathspec.GitIgnoreSpec | None = field(default=None, repr=False)
    _ignore_files: dict[str, pathspec.GitIgnoreSpec | None] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.root = os.path.abspath(self.root)
        self.skip = tuple(os.path.abspath(s) for s in self.skip)
        self._spec = compile_patterns([self._anchored(p) for p in self.patterns], self.patterns) \
            if self.patterns else None

    def excludes(self, path: str, is_dir: bool) -> bool:
        """True when the scanner should leave path out (and, for a folder, not enter it)."""
        reason = self.reason(path, is_dir)
        if reason is not None:
            key = ("folders" if is_dir else "files") + " " + reason
            self.counts[key] = self.counts.get(key, 0) + 1
        return reason is not None

    def reason(self, path: str, is_dir: bool) -> str | None:
        """Which rule leaves path out, or None."""
        path = os.path.abspath(path)
        if path == self.root:
            return None
        if is_dir and (path in self.skip or os.path.isfile(os.path.join(path, INDEX_DB))):
            return "index dir"
        rel = os.path.relpath(path, self.root).replace(os.sep, "/") + ("/" if is_dir else "")
        if self._spec is not None:
            decided = self._spec.check_file(rel).include
            if decided is not None:
                return "--exclude" if decided else None
        folder = os.path.dirname(path)
        while True:  # the deepest .imgsearchignore above path first
            spec = self._ignore_file(folder)
            if spec is not None:
                inner = os.path.relpath(path, folder).replace(os.sep, "/") + ("/" if is_dir else "")
                decided = spec.check_file(inner).include
                if decided is not None:
                    return IGNORE_FILE if decided else None
            if folder == self.root or folder == os.path.dirname(folder):
                break
            folder = os.path.dirname(folder)
        return None if self.include_hidden else default_reason(os.path.basename(path), is_dir)

    def _ignore_file(self, folder: str) -> pathspec.GitIgnoreSpec | None:
        if folder not in self._ignore_files:
            self._ignore_files[folder] = read_ignore_file(os.path.join(folder, IGNORE_FILE))
        return self._ignore_files[folder]

    def _anchored(self, pattern: str) -> str:
        # An absolute path inside root means that path, not "/..." read from root.
        if os.path.isabs(pattern) and pattern.startswith(self.root + os.sep):
            return "/" + os.path.relpath(pattern, self.root).replace(os.sep, "/") + ("/" if pattern.endswith("/") else "")
        return pattern


def default_reason(name: str, is_dir: bool) -> str | None:
    if name.startswith("._") and not is_dir:
        return "AppleDouble"
    if name.startswith("."):
        return "hidden"
    if is_dir and (name in CACHE_FOLDERS or name.endswith(CACHE_SUFFIXES)):
        return "cache folder"
    return None


def compile_patterns(patterns: Sequence[str], shown: Sequence[str] | None = None) -> pathspec.GitIgnoreSpec:
    """--exclude patterns; one that is not valid gitignore syntax, or can never match, is a UsageError."""
    for pattern, original in zip(patterns, shown or patterns):
        try:
            spec = pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError as e:  # pathspec's pattern error
            raise UsageError(f"bad --exclude pattern {original!r}: {e}") from None
        if not spec.patterns or spec.patterns[0].include is None:
            raise UsageError(f"bad --exclude pattern {original!r}: it can never match a path "
                             "(empty, a comment, or an unclosed '[')")
    return pathspec.GitIgnoreSpec.from_lines(list(patterns))


def read_ignore_file(path: str) -> pathspec.GitIgnoreSpec | None:
    """A folder's .imgsearchignore, or None when it has none; a bad line is a UsageError naming it."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e.__class__.__name__}") from None
    for number, line in enumerate(lines, start=1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except ValueError as e:  # pathspec's pattern error
            raise UsageError(f"bad pattern in {path} line {number}: {e}") from None
    return pathspec.GitIgnoreSpec.from_lines(lines)
