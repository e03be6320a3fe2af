"""The Judge page and its API: each query's pool (every model's top results), judged one query
at a time, blind.

Blind: nothing here names a model, or gives a score or a rank; a pool comes in
judge.blind_order. Every change is a POST, so gate.py's same-origin rule covers it. A judge
name is optional ("" is a judge too); counts and marks are those of the judge named.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StrictBool, StrictInt

from ...errors import UsageError
from ...files import display_path
from ...judge import DEFAULT_DEPTH, agreement
from ..access import Refused
from ..results import thumb_url
from ..state import State, WebState
from .home import STATIC_DIR

JUDGE_PAGE = "judge.html"
MAX_DEPTH = 100  # each model's top results pooled: beyond this nobody judges by hand
MAX_QUERY_CHARS = 1000
MAX_JUDGE_CHARS = 100
MAX_NEW_QUERIES = 1000  # per request
MAX_SUGGEST = 50

Depth = Annotated[int, Query(ge=1, le=MAX_DEPTH)]
JudgeName = Annotated[str, Query(max_length=MAX_JUDGE_CHARS)]
QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]

router = APIRouter()


class NewQueries(BaseModel):
    queries: list[Annotated[str, Field(max_length=MAX_QUERY_CHARS)]] = Field(max_length=MAX_NEW_QUERIES)
    suggested: StrictBool = False  # they came from "Suggest queries"


class Mark(BaseModel):
    query: QueryText
    image_id: StrictInt
    relevant: StrictBool
    judge: str = Field("", max_length=MAX_JUDGE_CHARS)
    depth: StrictInt = Field(DEFAULT_DEPTH, ge=1, le=MAX_DEPTH)


class Unmark(BaseModel):
    query: QueryText
    image_id: StrictInt
    judge: str = Field("", max_length=MAX_JUDGE_CHARS)


@router.get("/judge", include_in_schema=False)
def judge_page():
    return FileResponse(os.path.join(STATIC_DIR, JUDGE_PAGE), headers={"Cache-Control": "no-cache"})


@router.get("/api/judge/queries")
def queries(state: State, judge: JudgeName = "", depth: Depth = DEFAULT_DEPTH):
    """Every query with its pool size and how much of it this judge has judged; judges' agreement."""
    entries = state.judging.pool(None, depth, judge=judge, unjudged_only=False)
    pooled = Counter(e["query"] for e in entries)
    judged = Counter(e["query"] for e in entries if e["judged"])
    rows = [{"query": q["text"], "source": q["source"], "pooled": pooled[q["text"]], "judged": judged[q["text"]]}
            for q in state.judging.queries()]
    valid = [j for j in state.judging.judgments() if j.state == "valid"]
    return {"judge": judge, "depth": depth, "queries": rows, "pooled": sum(pooled.values()),
            "judged": sum(judged.values()), "agreement": agreement(valid)}


@router.post("/api/judge/queries")
def add_queries(state: State, body: NewQueries):
    """Add queries (blank ones dropped, whitespace collapsed); those already there are kept."""
    if not any(text.strip() for text in body.queries):
        raise UsageError("no query given: type one query per line")
    return {"queries": state.judging.add_queries(body.queries, source="suggested" if body.suggested else "user")}


@router.get("/api/judge/suggest")
def suggest(state: State, n: int = Query(12, ge=1, le=MAX_SUGGEST)):
    """Queries for what the photos show most often (an offline ImageNet classifier; seconds)."""
    return {"suggestions": state.judging.suggest(n)}


@router.get("/api/judge/pool")
def pool(state: State, query: str = Query(min_length=1, max_length=MAX_QUERY_CHARS), judge: JudgeName = "",
         depth: Depth = DEFAULT_DEPTH):
    """One query's pool in its blind order, each image with this judge's mark (null: not judged)."""
    texts = [q["text"] for q in state.judging.queries()]
    text = known_query(texts, query)
    entries = state.judging.pool(text, depth, judge=judge, unjudged_only=False)
    marks = {j.image_id: j.relevant for j in state.judging.judgments()
             if j.state == "valid" and j.judge == judge and j.query == text}
    rows = state.catalog.rows([e["image_id"] for e in entries])
    images = [pooled_image(e, rows.get(e["image_id"], {}), marks.get(e["image_id"])) for e in entries]
    return {"query": text, "position": texts.index(text) + 1, "of": len(texts), "judge": judge, "depth": depth,
            "images": images, "judged": sum(i["relevant"] is not None for i in images)}


@router.post("/api/judge/mark")
def mark(state: State, body: Mark):
    """Judge one pooled image for one query: relevant or not."""
    known_query([q["text"] for q in state.judging.queries()], body.query)
    indexed(state, body.image_id)
    row = state.judging.mark(body.query, body.image_id, body.relevant, body.judge, body.depth)
    return {"query": row["query"], "image_id": row["image_id"], "relevant": row["relevant"], "judge": row["judge"]}


@router.post("/api/judge/unmark")
def unmark(state: State, body: Unmark):
    """Take a judgment back (the page's undo); removed is false when there was none."""
    text = known_query([q["text"] for q in state.judging.queries()], body.query)
    indexed(state, body.image_id)
    return {"query": text, "image_id": body.image_id, "judge": body.judge,
            "removed": state.judging.unmark(text, body.image_id, body.judge)}


def known_query(texts: list[str], asked: str) -> str:
    text = " ".join(asked.split())
    if text not in texts:
        shown = text if len(text) <= 120 else text[:120] + "..."
        raise Refused(404, f"unknown query {shown!r}: add it first")
    return text


def indexed(state: WebState, image_id: int) -> None:
    row = state.catalog.row(image_id)
    if row is None or row["status"] != "ok":
        raise Refused(404, f"no indexed image with id {image_id}")


def pooled_image(entry: dict, row: dict, relevant: bool | None) -> dict:
    return {"id": entry["image_id"], "name": display_path(os.path.basename(entry["path"])),
            "path": display_path(entry["path"]), "width": row.get("width"), "height": row.get("height"),
            "thumb": thumb_url(entry["image_id"], row), "file": f"/file/{entry['image_id']}", "relevant": relevant}
