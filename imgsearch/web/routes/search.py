"""Searches: text, an uploaded image, an indexed image ("more like this"), several models at once.

Every search takes the CLI's filters (`in`, `after`, `before`, `camera`, `min_score`) and text
searches its plus/minus terms, parsed by the same functions (SearchFilter.parse, query_terms)
and run by the same Searcher.terms, so a bad value is the same one-line error (400 here).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ...compose import query_terms
from ...decode import DRAFT_MIN_SIDE
from ...errors import UsageError
from ...files import display_path
from ...filters import SearchFilter
from ...search import SearchResult
from ..access import Refused, indexed_bytes
from ..catalog import SearcherPool
from ..limits import DEFAULT_K, MAX_COMPARE, MAX_K, MAX_OFFSET, too_large_message
from ..results import page
from ..state import State

router = APIRouter()
MAX_TERMS = 8  # plus or minus terms per query
TermText = Annotated[list[str], Query(max_length=MAX_TERMS)]


@dataclass
class Filters:
    """Query parameters of a filter; `in` repeats (under any of these folders)."""

    folders: list[str]
    after: str | None
    before: str | None
    camera: str | None
    min_score: float | None

    def parse(self) -> SearchFilter:
        for folder in self.folders:
            if not os.path.isabs(os.path.expanduser(folder)):  # relative to what, on a server?
                raise UsageError(f"the folder to search in must be an absolute path on the server: {folder!r}")
        return SearchFilter.parse(self.folders, self.after, self.before, self.camera, self.min_score)


def filters(folders: Annotated[list[str], Query(alias="in", max_length=32)] = [],
            after: Annotated[str | None, Query(max_length=40)] = None,
            before: Annotated[str | None, Query(max_length=40)] = None,
            camera: Annotated[str | None, Query(max_length=200)] = None,
            min_score: float | None = None) -> Filters:
    return Filters(folders, after, before, camera, min_score)


FilterParams = Annotated[Filters, Depends(filters)]


@router.get("/api/search")
def search_text(state: State, filter: FilterParams, q: str = Query(min_length=1, max_length=1000),
                model: str | None = None, k: int = Query(DEFAULT_K, ge=1, le=MAX_K),
                offset: int = Query(0, ge=0, le=MAX_OFFSET), plus: TermText = [], minus: TermText = [],
                text_weight: float = 1.0, plus_weight: float = 1.0, minus_weight: float = 1.0):
    """Text -> image, plus and minus terms added and subtracted: the page of hits [offset, offset + k)."""
    terms = query_terms(q, None, plus, minus, text_weight=text_weight, plus_weight=plus_weight,
                        minus_weight=minus_weight)
    search_filter = filter.parse()
    spec = state.catalog.spec(model)
    result = state.searchers.run(spec, lambda s: s.terms(terms, offset + k, search_filter))
    return paged(state, result, offset, result.query)


@router.post("/api/search/image")
async def search_upload(state: State, filter: FilterParams, file: UploadFile = File(description="the query image"),
                        model: str | None = None, k: int = Query(DEFAULT_K, ge=1, le=MAX_K),
                        offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Image -> image with an uploaded query image (multipart field "file")."""
    search_filter = filter.parse()
    data = await file.read(state.max_upload_bytes + 1)
    if len(data) > state.max_upload_bytes:
        raise Refused(413, too_large_message(state.max_upload_bytes))
    # Decoded once, reduced, under the memory budget; not an image: 400 before any model is loaded.
    image = await state.decoder.decode(data, DRAFT_MIN_SIDE)
    spec = await run_in_threadpool(state.catalog.spec, model)
    result = await run_in_threadpool(search_image, state.searchers, spec, image, offset + k, search_filter)
    return await run_in_threadpool(paged, state, result, offset, display_path(file.filename or "uploaded image"))


def search_image(searchers: SearcherPool, spec: str, image: Image.Image, k: int,
                 search_filter: SearchFilter) -> SearchResult:
    # Searcher takes a path: the reduced image goes there as a lossless PNG (a few hundred KB).
    with tempfile.TemporaryDirectory(prefix="imgsearch-upload-") as folder:
        path = os.path.join(folder, "query.png")
        image.save(path, "PNG", compress_level=1)
        return searchers.run(spec, lambda s: s.image(path, k=k, filter=search_filter))


@router.get("/api/similar")
def search_similar(state: State, filter: FilterParams, id: int = Query(ge=0), model: str | None = None,
                   k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Image -> image from an indexed image ("more like this"); the image itself is left out."""
    search_filter = filter.parse()
    row = state.catalog.row(id)
    indexed_bytes(row, id)  # the file-serving rule holds for reading a query image too
    spec = state.catalog.spec(model)
    result = state.searchers.run(spec, lambda s: s.similar(id, k=offset + k, filter=search_filter))
    return {**paged(state, result, offset, display_path(os.path.basename(row["path"]))), "like": id}


@router.get("/api/compare")
def compare(state: State, q: str = Query(min_length=1, max_length=1000), model: list[str] = Query(),
            k: int = Query(12, ge=1, le=MAX_K)):
    """One text query against several models: one column of hits per model."""
    specs = list(dict.fromkeys(state.catalog.spec(m) for m in model))
    if not 2 <= len(specs) <= MAX_COMPARE:
        raise UsageError(f"compare needs 2 to {MAX_COMPARE} different models, got {len(specs)}")
    return {"query": q, "columns": [page(state.catalog, state.searchers.run(spec, lambda s: s.text(q, k=k)), 0, q)
                                    for spec in specs]}


def paged(state, result: SearchResult, offset: int, query: str) -> dict:
    """page(), plus what a filter or composed query adds: each hit's date and where it came from
    (EXIF or file time), how many images matched, the filter and terms as understood."""
    out = page(state.catalog, result, offset, query)
    dates = {r["id"]: (r["date"], r["date_source"]) for r in result.results if "date" in r}
    for hit in out["results"]:
        if hit["id"] in dates:
            hit["date"], hit["date_source"] = dates[hit["id"]]
    return {**out, **{key: result.extra[key] for key in ("filter", "matched", "terms") if key in result.extra}}
