"""Indexing a server folder from the web: only on a server started with allow_indexing."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...errors import UsageError
from ..access import Refused
from ..state import State

router = APIRouter()


class IndexRequest(BaseModel):
    folder: str  # a folder on the server's disk
    models: list[str] | None = None  # default: every model this index already has


@router.get("/api/index")
def indexing_status(state: State):
    """The web-started indexing run: idle, running, done (with its report) or failed."""
    return {"allowed": state.allow_indexing, **state.job.status()}


@router.post("/api/index", status_code=202)
def start_indexing(state: State, body: IndexRequest | None = None):
    """Index a folder on the server in the background (refused unless the server allows indexing)."""
    if not state.allow_indexing:  # refused before the body is even looked at
        raise Refused(403, "indexing from the web is off; start the server with indexing allowed")
    if body is None:
        raise UsageError('send a JSON body: {"folder": "/path/on/the/server"}')
    specs = [state.catalog.indexable(m) for m in body.models] if body.models else [m.spec for m in state.catalog.models()]
    return state.job.start(body.folder, list(dict.fromkeys(specs)))
