"""What the pages need to start: the index, its models, and the server's limits."""

from __future__ import annotations

from fastapi import APIRouter

from ...vectors import current_type
from ..limits import MAX_COMPARE, MAX_K, MAX_OFFSET
from ..state import State, WebState

router = APIRouter()


@router.get("/api/info")
def info(state: State):
    """What the pages need to start: models, image counts, limits, whether indexing is on."""
    counts = state.catalog.counts()
    return {
        "index_dir": state.index_dir, "reports_dir": state.reports_dir, "allow_indexing": state.allow_indexing,
        "images": counts.get("ok", 0), "pending": counts.get("pending", 0), "skipped": counts.get("skipped", 0),
        "models": indexed_models(state), "max_k": MAX_K, "max_offset": MAX_OFFSET, "max_compare": MAX_COMPARE,
        "max_upload_bytes": state.max_upload_bytes, "max_upload_pixels": state.decoder.max_pixels,
        "decode_budget_bytes": state.decoder.budget.total,
    }


@router.get("/api/models")
def models(state: State):
    """Models indexed here, first indexed first (the default)."""
    return indexed_models(state)


def indexed_models(state: WebState) -> list[dict]:
    loaded = state.searchers.loaded()
    return [{"spec": m.spec, "family": m.family, "dim": m.dim, "factory": current_type(m), "loaded": m.spec in loaded}
            for m in state.catalog.models()]
