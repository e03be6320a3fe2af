"""The JSON shape of search hits, shared by every route that lists images."""

from __future__ import annotations

import os

from ..files import display_path
from ..search import SearchResult
from .catalog import Catalog


def thumb_url(image_id: int, row: dict) -> str:
    # The content hash in the URL lets browsers cache a thumbnail for good: new bytes, new URL.
    return f"/thumb/{image_id}?v={(row.get('hash') or '')[:12]}"


def hit(result: dict, row: dict | None) -> dict:
    row = row or {}
    return {
        "rank": result["rank"], "id": result["id"], "score": round(result["score"], 4),
        "name": display_path(os.path.basename(result["path"])), "path": display_path(result["path"]),
        "width": row.get("width"), "height": row.get("height"),
        "thumb": thumb_url(result["id"], row), "file": f"/file/{result['id']}",
    }


def page(catalog: Catalog, result: SearchResult, offset: int, query: str) -> dict:
    """Hits [offset:] of a search, with each image's size from the database."""
    results = result.results[offset:]
    rows = catalog.rows([r["id"] for r in results])
    return {
        "model": result.model, "query": query, "offset": offset,
        "results": [hit(r, rows.get(r["id"])) for r in results],
        "timing_ms": {k: round(v, 1) for k, v in result.timing_ms.items()},
    }
