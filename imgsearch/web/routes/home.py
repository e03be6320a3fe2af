"""The page itself, served at / only, and its script, style and icon under /static/."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..access import Refused

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")
APP_PAGE = "index.html"
# Assets by suffix; the page itself is not one, so the app has one URL and one header set.
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

router = APIRouter()


@router.get("/", include_in_schema=False)
def home():
    return FileResponse(os.path.join(STATIC_DIR, APP_PAGE), headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
def asset(name: str):
    # Names come from the folder listing, never from the request: nothing else can be reached.
    if name not in os.listdir(STATIC_DIR) or os.path.splitext(name)[1] not in ASSET_TYPES:
        raise Refused(404, "no such file")
    return FileResponse(os.path.join(STATIC_DIR, name), media_type=ASSET_TYPES[os.path.splitext(name)[1]],
                        headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon():
    # Asked for by browsers on pages that name no icon (an original file opened on its own).
    return FileResponse(os.path.join(STATIC_DIR, "favicon.svg"), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400", "Cross-Origin-Resource-Policy": "cross-origin"})
