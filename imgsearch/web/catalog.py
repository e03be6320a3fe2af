"""What the server reads from an index dir, safe to share between request threads."""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from ..errors import UsageError
from ..models import PRESETS
from ..search import Searcher
from ..store import DB_NAME, ModelRow, Store

T = TypeVar("T")
MAX_ROWID = 2**63 - 1
PRESET_SPECS = {p.spec for p in PRESETS.values()}


class NotIndexed(UsageError):
    """A model spec that is valid but has no index in this index dir."""


class Catalog:
    """Image rows and model rows; one connection, used by one request at a time."""

    def __init__(self, index_dir: str, create: bool = False):
        if not create and not os.path.exists(os.path.join(index_dir, DB_NAME)):
            raise UsageError(f"no index in {index_dir}; run `imgsearch index DIR --model SPEC` first")
        self.store = Store(index_dir, create=create)
        self._lock = threading.Lock()

    def models(self) -> list[ModelRow]:
        with self._lock:
            return self.store.models()

    def counts(self) -> dict:
        with self._lock:
            return self.store.counts()

    def rows(self, ids: list[int]) -> dict[int, dict]:
        ids = [i for i in ids if 0 <= i <= MAX_ROWID]  # SQLite cannot even compare a bigger int
        with self._lock:
            return self.store.images(ids)

    def row(self, image_id: int) -> dict | None:
        return self.rows([image_id]).get(image_id)

    def spec(self, asked: str | None) -> str:
        """The spec of an indexed model, by its exact spec or a preset name; the first one indexed
        when none is asked. A client names models, never paths: nothing it sends is looked up on
        this server's disk, and the error names nothing of the server."""
        indexed = [m.spec for m in self.models()]
        if not indexed:
            raise NotIndexed("this index has no models yet; run `imgsearch index DIR --model SPEC` first")
        if not asked:
            return indexed[0]
        spec = _named(asked)
        if spec not in indexed:
            raise NotIndexed(f"model {_quoted(asked)} is not indexed here; /api/models lists those that are")
        return spec

    def indexable(self, asked: str) -> str:
        """A model to index with from the web: one indexed here already, or a preset."""
        spec = _named(asked)
        if spec not in PRESET_SPECS and spec not in {m.spec for m in self.models()}:
            raise UsageError(f"model {_quoted(asked)} is neither indexed here nor a preset "
                             f"({', '.join(PRESETS)}); index others with `imgsearch index`")
        return spec

    def close(self) -> None:
        self.store.close()


class SearcherPool:
    """One Searcher per model, loaded on first use (seconds) and kept; one query at a time each.

    A searcher is refreshed before each query, so what an indexer commits meanwhile is found.
    """

    def __init__(self, index_dir: str):
        self.index_dir = index_dir
        self._searchers: dict[str, Searcher] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, spec: str, query: Callable[[Searcher], T]) -> T:
        with self._guard:
            lock = self._locks.setdefault(spec, threading.Lock())
        with lock:
            searcher = self._searchers.get(spec)
            if searcher is None:
                searcher = self._searchers[spec] = Searcher(spec, self.index_dir)
            else:
                searcher.refresh()
            return query(searcher)

    def loaded(self) -> set[str]:
        with self._guard:
            return set(self._searchers)

    def close(self) -> None:
        with self._guard:
            for searcher in self._searchers.values():
                searcher.close()
            self._searchers.clear()


def _named(asked: str) -> str:
    asked = asked.strip()
    return PRESETS[asked].spec if asked in PRESETS else asked


def _quoted(asked: str) -> str:
    return repr(asked if len(asked) <= 120 else asked[:120] + "...")
