"""The Duplicates page and its API: groups of copies (duplicates.find_duplicates), largest first.

The same call as `imgsearch duplicates`: the perceptual hash by default, or a model's vectors
with a cosine threshold. Hashes are cached in the index, so only the first call decodes images.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from ...duplicates import find_duplicates
from ..results import thumb_url
from ..state import State
from .home import STATIC_DIR

DUPLICATES_PAGE = "duplicates.html"
MAX_GROUPS = 1000  # per answer: a page of side-by-side groups beyond this is not read by anyone
DEFAULT_GROUPS = 200
MAX_SPEC_CHARS = 500

router = APIRouter()


@router.get("/duplicates", include_in_schema=False)
def duplicates_page():
    return FileResponse(os.path.join(STATIC_DIR, DUPLICATES_PAGE), headers={"Cache-Control": "no-cache"})


@router.get("/api/duplicates")
def duplicates(state: State, model: str | None = Query(None, max_length=MAX_SPEC_CHARS),
               threshold: float | None = None, limit: int = Query(DEFAULT_GROUPS, ge=1, le=MAX_GROUPS)):
    """Groups of copies among the indexed images, each image with its thumbnail and file URLs.

    model: find near copies with this indexed model's vectors (then threshold, a cosine, is
    required); without it the perceptual hash, threshold being the bits that may differ.
    """
    model = model or None
    report = find_duplicates(state.index_dir, "vectors" if model else "phash", threshold, model).to_dict()
    groups = report["groups"]
    rows = state.catalog.rows([m["id"] for g in groups[:limit] for m in g["images"]])
    for group in groups[:limit]:
        for member in group["images"]:
            row = rows.get(member["id"], {})
            member.update(name=os.path.basename(member["path"]), thumb=thumb_url(member["id"], row),
                          file=f"/file/{member['id']}")
    return {**report, "groups": groups[:limit], "groups_total": len(groups), "limit": limit}
