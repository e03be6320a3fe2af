"""Stage 6: text -> image and image -> image search against one model's index.

Every query takes a SearchFilter (filters.py): folders, dates and cameras become a set of
image ids that FAISS searches among (VectorIndex.search_among), so k results come back
whenever k images match; a minimum score then drops the weaker ones. Composed queries
(compose.py) add and subtract texts and images as one vector.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from .compose import Term, combine, describe, terms_to_dict
from .config import default_index_dir
from .errors import IndexMismatch, UsageError
from .files import display_path
from .filters import NO_FILTER, Facets, SearchFilter
from .metrics import check_k
from .model_rows import check_same_weights
from .models import get_model, resolve
from .store import DB_NAME, Store, reporting_corruption
from .vectors import load_synced, sync


@dataclass
class SearchResult:
    model: str
    query: str
    results: list[dict]  # {"rank", "path", "score", "id"} (+ "date", "date_source" with a date filter)
    timing_ms: dict = field(default_factory=dict)  # encode, search, metadata, total (+ filter)
    extra: dict = field(default_factory=dict)  # "filter", "matched", "terms": only when used

    def to_dict(self) -> dict:
        keys = ("rank", "path", "score", "date", "date_source")
        return {
            "model": self.model,
            "query": self.query,
            "results": [{k: r[k] for k in keys if k in r} for r in self.results],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
            **self.extra,
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
        self._facets: Facets | None = None
        self._facets_generation = -1

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

    def facets(self) -> Facets:
        """Paths, dates and cameras of the indexed images, reloaded when the index changed
        (every committed change of the images bumps the generation the FAISS index follows)."""
        if self._facets is None or self._facets_generation != self.vi.generation:
            with reporting_corruption(self.store.path):
                self._facets = Facets.load(self.store)
            self._facets_generation = self.vi.generation
        return self._facets

    def text(self, query: str, k: int = 10, filter: SearchFilter = NO_FILTER) -> SearchResult:
        if not query.strip():
            raise UsageError("empty query")
        t0 = time.perf_counter()
        vector = self.encode_text(query)
        return self._search(query, vector, k, exclude=(), t0=t0, filter=filter)

    def image(self, path: str, k: int = 10, filter: SearchFilter = NO_FILTER) -> SearchResult:
        _check_image(path)
        t0 = time.perf_counter()
        vector = self.model.embed_image([path])[0]
        return self._search(path, vector, k, exclude=self._own_ids([path]), t0=t0, filter=filter)

    def similar(self, image_id: int, k: int = 10, filter: SearchFilter = NO_FILTER) -> SearchResult:
        """More like an indexed image, from its stored vector (no decoding, no model run)."""
        t0 = time.perf_counter()
        vector = self.store.embedding(self.row.id, image_id)
        if vector is None:
            raise UsageError(f"image {image_id} has no vector for {self.model.spec}")
        return self._search(f"image {image_id}", vector, k, exclude=(image_id,), t0=t0, filter=filter)

    def composed(self, terms: list[Term], k: int = 10, filter: SearchFilter = NO_FILTER) -> SearchResult:
        """Texts and images added and subtracted (compose.py); query images are left out of the results."""
        images = [t.value for t in terms if t.kind == "image"]
        t0 = time.perf_counter()
        vector = self.query_vector(terms)
        shown = [Term(t.kind, display_path(t.value), t.weight) for t in terms]
        result = self._search(describe(shown), vector, k, exclude=self._own_ids(images), t0=t0, filter=filter)
        result.extra["terms"] = terms_to_dict(shown)
        return result

    def query_vector(self, terms: list[Term]) -> np.ndarray:
        """The one vector a composed query searches with: normalise(sum_i w_i * normalise(v_i))."""
        for term in terms:
            if term.kind == "image":
                _check_image(term.value)
        vectors = [self.encode_text(t.value) if t.kind == "text" else self.model.embed_image([t.value])[0]
                   for t in terms]
        return combine(vectors, [t.weight for t in terms])

    def terms(self, terms: list[Term], k: int = 10, filter: SearchFilter = NO_FILTER) -> SearchResult:
        """One text or one image as a plain query, anything more as a composed one."""
        if len(terms) == 1 and terms[0].weight == 1:
            term = terms[0]
            return self.text(term.value, k, filter) if term.kind == "text" else self.image(term.value, k, filter)
        return self.composed(terms, k, filter)

    def vector(self, vector: np.ndarray, k: int = 10, filter: SearchFilter = NO_FILTER,
               label: str = "vector") -> SearchResult:
        """A query vector made elsewhere (benchmarks, composed queries of one's own)."""
        return self._search(label, np.asarray(vector, dtype=np.float32), k, exclude=(), t0=time.perf_counter(),
                            filter=filter)

    def _own_ids(self, paths: list[str]) -> tuple[int, ...]:
        ids = (self.store.image_id(os.path.abspath(p)) for p in paths)
        return tuple(i for i in ids if i is not None)

    def _search(self, query: str, vector: np.ndarray, k: int, exclude, t0: float,
                filter: SearchFilter = NO_FILTER) -> SearchResult:
        with reporting_corruption(self.store.path):  # a damaged page can surface on any query
            return self._search_unguarded(query, vector, k, exclude, t0, filter)

    def _search_unguarded(self, query: str, vector: np.ndarray, k: int, exclude, t0: float,
                          filter: SearchFilter) -> SearchResult:
        check_k(k)
        t1 = time.perf_counter()
        t_filter, timing, extra = t1, {}, {}
        if filter.restricts:
            facets = self.facets()
            kept = facets.select(filter)
            if exclude:
                kept = kept[~np.isin(kept, np.asarray(exclude, dtype=np.int64))]
            t_filter = time.perf_counter()
            timing["filter"] = (t_filter - t1) * 1e3
            scores, ids = self.vi.search_among(vector, k, kept)
            hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0]
            extra["matched"] = int(len(kept))
        else:
            scores, ids = self.vi.search(vector, k + len(exclude))
            hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in exclude][:k]
        if filter.min_score is not None:
            hits = [(s, i) for s, i in hits if s >= filter.min_score]
        if filter != NO_FILTER:
            extra = {"filter": filter.to_dict(), **extra}
        t2 = time.perf_counter()
        rows = self.store.images([i for _, i in hits])
        results = [
            {"rank": rank, "path": rows[i]["path"], "score": score, "id": i}
            for rank, (score, i) in enumerate(((s, i) for s, i in hits if i in rows), start=1)
        ]
        if filter.by_date:
            for r in results:
                r["date"], r["date_source"] = self.facets().date(r["id"]) or (None, None)
        t3 = time.perf_counter()
        timing = {"encode": (t1 - t0) * 1e3, **timing, "search": (t2 - t_filter) * 1e3,
                  "metadata": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}
        return SearchResult(self.model.spec, query, results, timing, extra)

    def close(self) -> None:
        self.store.close()


def _check_image(path: str) -> None:
    if not os.path.isfile(path):
        raise UsageError(f"query image not found: {path}")
