"""Stage 6: text -> image and image -> image search against one model's index."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import IndexMismatch, UsageError
from .metrics import check_k
from .config import default_index_dir
from .model_rows import check_same_weights
from .models import get_model, resolve
from .store import DB_NAME, Store, reporting_corruption
from .vectors import load_synced, sync


@dataclass
class SearchResult:
    model: str
    query: str
    results: list[dict]  # {"rank", "path", "score", "id"}
    timing_ms: dict = field(default_factory=dict)  # encode, search, metadata, total

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "query": self.query,
            "results": [{k: r[k] for k in ("rank", "path", "score")} for r in self.results],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }


class Searcher:
    """A loaded model plus its FAISS index; reuse one for many queries."""

    def __init__(self, spec: str, index_dir: str | None = None, *, device: str | None = None,
                 precision: str = "auto"):
        self.index_dir = os.path.abspath(index_dir or default_index_dir())
        canonical = resolve(spec)
        if not os.path.exists(os.path.join(self.index_dir, DB_NAME)):
            raise UsageError(f"no index in {self.index_dir}; run `imgsearch index DIR --model {spec}` first")
        self.store = Store(self.index_dir, create=False)
        with reporting_corruption(self.store.path):
            row = self.store.model(canonical)
            if row is None:
                have = ", ".join(m.spec for m in self.store.models()) or "none"
                raise IndexMismatch(f"no index for {canonical} in {self.index_dir} (indexed models: {have})")
            self.model = get_model(canonical, device=device, precision=precision)
            check_same_weights(row, self.model)
            self.row = row
            self.vi, _ = load_synced(self.store, row)
        self._query_cache: dict[str, np.ndarray] = {}

    def refresh(self) -> None:
        """Pick up what an indexer committed since this searcher loaded."""
        sync(self.store, self.row, self.vi)

    def encode_text(self, text: str) -> np.ndarray:
        vector = self._query_cache.get(text)
        if vector is None:
            vector = self.model.embed_query(text)
            if len(self._query_cache) > 1024:
                self._query_cache.clear()
            self._query_cache[text] = vector
        return vector

    def clear_cache(self) -> None:
        self._query_cache.clear()

    def text(self, query: str, k: int = 10) -> SearchResult:
        if not query.strip():
            raise UsageError("empty query")
        t0 = time.perf_counter()
        vector = self.encode_text(query)
        return self._search(query, vector, k, exclude=(), t0=t0)

    def image(self, path: str, k: int = 10) -> SearchResult:
        if not os.path.isfile(path):
            raise UsageError(f"query image not found: {path}")
        t0 = time.perf_counter()
        vector = self.model.embed_image([path])[0]
        own = self.store.image_id(os.path.abspath(path))
        return self._search(path, vector, k, exclude=() if own is None else (own,), t0=t0)

    def similar(self, image_id: int, k: int = 10) -> SearchResult:
        """More like an indexed image, from its stored vector (no decoding, no model run)."""
        t0 = time.perf_counter()
        vector = self.store.embedding(self.row.id, image_id)
        if vector is None:
            raise UsageError(f"image {image_id} has no vector for {self.model.spec}")
        return self._search(f"image {image_id}", vector, k, exclude=(image_id,), t0=t0)

    def _search(self, query: str, vector: np.ndarray, k: int, exclude, t0: float) -> SearchResult:
        with reporting_corruption(self.store.path):  # a damaged page can surface on any query
            return self._search_unguarded(query, vector, k, exclude, t0)

    def _search_unguarded(self, query: str, vector: np.ndarray, k: int, exclude, t0: float) -> SearchResult:
        check_k(k)
        t1 = time.perf_counter()
        scores, ids = self.vi.search(vector, k + len(exclude))
        hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in exclude][:k]
        t2 = time.perf_counter()
        rows = self.store.images([i for _, i in hits])
        results = [
            {"rank": rank, "path": rows[i]["path"], "score": score, "id": i}
            for rank, (score, i) in enumerate(((s, i) for s, i in hits if i in rows), start=1)
        ]
        t3 = time.perf_counter()
        timing = {"encode": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3, "metadata": (t3 - t2) * 1e3,
                  "total": (t3 - t0) * 1e3}
        return SearchResult(self.model.spec, query, results, timing)

    def close(self) -> None:
        self.store.close()
