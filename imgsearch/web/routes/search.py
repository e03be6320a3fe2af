"""Searches: text, an uploaded image, an indexed image ("more like this"), several models at once."""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, File, Query, UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ...decode import DRAFT_MIN_SIDE
from ...errors import UsageError
from ...files import display_path
from ...search import SearchResult
from ..access import Refused, indexed_bytes
from ..catalog import SearcherPool
from ..limits import DEFAULT_K, MAX_COMPARE, MAX_K, MAX_OFFSET, too_large_message
from ..results import page
from ..state import State

router = APIRouter()


@router.get("/api/search")
def search_text(state: State, q: str = Query(min_length=1, max_length=1000), model: str | None = None,
                k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Text -> image: the page of hits [offset, offset + k)."""
    spec = state.catalog.spec(model)
    return page(state.catalog, state.searchers.run(spec, lambda s: s.text(q, k=offset + k)), offset, q)


@router.post("/api/search/image")
async def search_upload(state: State, file: UploadFile = File(description="the query image"),
                        model: str | None = None, k: int = Query(DEFAULT_K, ge=1, le=MAX_K),
                        offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Image -> image with an uploaded query image (multipart field "file")."""
    data = await file.read(state.max_upload_bytes + 1)
    if len(data) > state.max_upload_bytes:
        raise Refused(413, too_large_message(state.max_upload_bytes))
    # Decoded once, reduced, under the memory budget; not an image: 400 before any model is loaded.
    image = await state.decoder.decode(data, DRAFT_MIN_SIDE)
    spec = await run_in_threadpool(state.catalog.spec, model)
    result = await run_in_threadpool(search_image, state.searchers, spec, image, offset + k)
    return await run_in_threadpool(page, state.catalog, result, offset, display_path(file.filename or "uploaded image"))


def search_image(searchers: SearcherPool, spec: str, image: Image.Image, k: int) -> SearchResult:
    # Searcher takes a path: the reduced image goes there as a lossless PNG (a few hundred KB).
    with tempfile.TemporaryDirectory(prefix="imgsearch-upload-") as folder:
        path = os.path.join(folder, "query.png")
        image.save(path, "PNG", compress_level=1)
        return searchers.run(spec, lambda s: s.image(path, k=k))


@router.get("/api/similar")
def search_similar(state: State, id: int = Query(ge=0), model: str | None = None,
                   k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """Image -> image from an indexed image ("more like this"); the image itself is left out."""
    row = state.catalog.row(id)
    indexed_bytes(row, id)  # the file-serving rule holds for reading a query image too
    spec = state.catalog.spec(model)
    result = state.searchers.run(spec, lambda s: s.similar(id, k=offset + k))
    return {**page(state.catalog, result, offset, display_path(os.path.basename(row["path"]))), "like": id}


@router.get("/api/compare")
def compare(state: State, q: str = Query(min_length=1, max_length=1000), model: list[str] = Query(),
            k: int = Query(12, ge=1, le=MAX_K)):
    """One text query against several models: one column of hits per model."""
    specs = list(dict.fromkeys(state.catalog.spec(m) for m in model))
    if not 2 <= len(specs) <= MAX_COMPARE:
        raise UsageError(f"compare needs 2 to {MAX_COMPARE} different models, got {len(specs)}")
    return {"query": q, "columns": [page(state.catalog, state.searchers.run(spec, lambda s: s.text(q, k=k)), 0, q)
                                    for spec in specs]}
