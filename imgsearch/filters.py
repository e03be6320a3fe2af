"""Search filters: folder, date, camera and a minimum score, turned into the ids FAISS may return.

A filter is data (SearchFilter); Facets holds what filters read about every indexed image (its
path, its date, its camera), loaded once per index generation, so that turning a filter into
ids costs a bisection and a few array comparisons rather than a pass over SQLite.

Dates: an image's date is its EXIF capture time, else its file's modification time. Both are
compared on a wall clock with no time zone (EXIF has none; the file time is read on this
machine's local clock), and so are the bounds given: `after` keeps images from that moment on,
`before` keeps images strictly before it; a bound given as a day, month or year means its start.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from .errors import UsageError
from .store import Store, path_from_db

EPOCH = datetime(1970, 1, 1)
DATE_FORMATS = "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?)?)?$")
DATE_SOURCES = ("exif", "file")


def parse_date(text: str, name: str = "date") -> datetime:
    """A wall-clock moment from ISO-like text; a bad one is a one-line UsageError."""
    match = _DATE.match(text.strip())
    if not match:
        raise UsageError(f"bad {name} {text!r}: use {DATE_FORMATS}")
    year, month, day, hour, minute, second = (int(g) if g else None for g in match.groups())
    try:
        return datetime(year, month or 1, day or 1, hour or 0, minute or 0, second or 0)
    except ValueError as e:
        raise UsageError(f"bad {name} {text!r}: {e}") from None


def check_min_score(value: float) -> float:
    """Scores are inner products of unit vectors: a threshold outside [-1, 1] keeps all or nothing."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not -1 <= value <= 1:
        raise UsageError(f"bad minimum score {value!r}: scores are cosine similarities, give a number in [-1, 1]")
    return float(value)


@dataclass(frozen=True)
class SearchFilter:
    folders: tuple[str, ...] = ()  # absolute; an image lies under any one of them
    after: datetime | None = None
    before: datetime | None = None
    camera: str | None = None  # case-insensitive substring of "Make Model"
    min_score: float | None = None

    @classmethod
    def parse(cls, folders=(), after: str | None = None, before: str | None = None,
              camera: str | None = None, min_score: float | None = None) -> "SearchFilter":
        """From user input (CLI options, query parameters); each bad value is a UsageError."""
        start = parse_date(after, "--after date") if after else None
        end = parse_date(before, "--before date") if before else None
        if start is not None and end is not None and start >= end:
            raise UsageError(f"--after {after} is not before --before {before}: no image can match")
        if camera is not None and not camera.strip():
            raise UsageError("empty --camera text")
        for folder in folders:
            if not str(folder).strip():
                raise UsageError("empty --in folder")
        return cls(folders=tuple(dict.fromkeys(os.path.abspath(os.path.expanduser(f)) for f in folders)),
                   after=start, before=end, camera=camera.strip() if camera else None,
                   min_score=None if min_score is None else check_min_score(min_score))

    @property
    def restricts(self) -> bool:
        """True when the filter narrows which images may come back (a min_score alone does not)."""
        return bool(self.folders) or self.after is not None or self.before is not None or self.camera is not None

    @property
    def by_date(self) -> bool:
        return self.after is not None or self.before is not None

    def to_dict(self) -> dict:
        return {"in": list(self.folders), "after": _iso(self.after), "before": _iso(self.before),
                "camera": self.camera, "min_score": self.min_score}


NO_FILTER = SearchFilter()


@dataclass
class Facets:
    """What filters read about every indexed image, as arrays."""

    ids: np.ndarray  # int64, ascending
    seconds: np.ndarray  # int64 wall-clock seconds since 1970 (EXIF, else file time)
    from_exif: np.ndarray  # bool
    camera_codes: np.ndarray  # int32 index into cameras; -1: none recorded
    cameras: list[str]
    paths: list[str]  # sorted
    path_ids: np.ndarray  # int64: the id of paths[i]
    _position: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, store: Store) -> "Facets":
        rows = sorted(store.search_facts())
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        exif = [r[4] for r in rows]
        from_exif = np.fromiter((s is not None for s in exif), dtype=bool, count=n)
        seconds = np.fromiter((s if s is not None else (f if f is not None else 0)
                               for s, f in zip(exif, (r[5] for r in rows))), dtype=np.int64, count=n)
        cameras: dict[str, int] = {}
        codes = np.fromiter((-1 if not r[3] else cameras.setdefault(r[3], len(cameras)) for r in rows),
                            dtype=np.int32, count=n)
        by_path = sorted((path_from_db(r[1], r[2]), r[0]) for r in rows)
        return cls(ids, seconds, from_exif, codes, list(cameras), [p for p, _ in by_path],
                   np.fromiter((i for _, i in by_path), dtype=np.int64, count=n))

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, f: SearchFilter) -> np.ndarray:
        """Ids of the images the filter keeps, ascending."""
        keep = np.ones(len(self.ids), dtype=bool)
        if f.folders:  # every id under a folder is one of self.ids: a bisection finds its place
            inside = np.zeros(len(self.ids), dtype=bool)
            inside[np.searchsorted(self.ids, self._under(f.folders))] = True
            keep &= inside
        if f.after is not None:
            keep &= self.seconds >= _wall_seconds(f.after)
        if f.before is not None:
            keep &= self.seconds < _wall_seconds(f.before)
        if f.camera is not None:
            needle = f.camera.casefold()
            wanted = [i for i, name in enumerate(self.cameras) if needle in name.casefold()]
            keep &= np.isin(self.camera_codes, wanted)
        return self.ids[keep]

    def date(self, image_id: int) -> tuple[str, str] | None:
        """(ISO wall-clock date, "exif" | "file") of one image."""
        i = int(np.searchsorted(self.ids, image_id))
        if i >= len(self.ids) or self.ids[i] != image_id:
            return None
        when = EPOCH + timedelta(seconds=int(self.seconds[i]))
        return when.isoformat(), DATE_SOURCES[0] if self.from_exif[i] else DATE_SOURCES[1]

    def _under(self, folders: tuple[str, ...]) -> np.ndarray:
        # Paths under FOLDER sort between "FOLDER/" and "FOLDER0" ("0" follows "/"): a bisection.
        spans = []
        for folder in folders:
            prefix = folder.rstrip(os.sep) + os.sep
            lo = bisect.bisect_left(self.paths, prefix)
            hi = bisect.bisect_left(self.paths, prefix[:-1] + chr(ord(os.sep) + 1))
            spans.append(self.path_ids[lo:hi])
        return np.concatenate(spans) if spans else np.empty(0, dtype=np.int64)


def _wall_seconds(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
