"""What the server reads from an index dir, safe to share between request threads."""

from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from ..errors import UsageError
from ..models import resolve
from ..search import Searcher
from ..store import DB_NAME, ModelRow, Store

T = TypeVar("T")
MAX_ROWID = 2**63 - 1


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
        """The canonical spec of an indexed model; the first one indexed when none is asked."""
        indexed = [m.spec for m in self.models()]
        if not indexed:
            raise NotIndexed("this index has no models yet; run `imgsearch index DIR --model SPEC` first")
        if not asked:
            return indexed[0]
        spec = resolve(asked)
        if spec not in indexed:
            raise NotIndexed(f"model {spec} is not indexed here (indexed: {', '.join(indexed)})")
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
