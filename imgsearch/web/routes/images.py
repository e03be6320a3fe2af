"""One indexed image by id: its metadata, its thumbnail, its file (see access.py for the rule)."""

from __future__ import annotations

import os
from io import BytesIO

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from ...files import display_path
from ..access import Refused, indexed_bytes
from ..headers import FILE_POLICY
from ..results import thumb_url
from ..state import State
from ..thumbs import DECODE_MIN_SIDE

IMAGE_FACTS = ("width", "height", "size", "taken_at", "camera", "hash", "status", "reason")

router = APIRouter()


@router.get("/api/image/{image_id:int}")
def image_info(state: State, image_id: int):
    """An image's metadata, from the database (the file is not read)."""
    row = state.catalog.row(image_id)
    if row is None:
        raise Refused(404, f"no image with id {image_id}")
    return {
        "id": image_id, "name": display_path(os.path.basename(row["path"])), "path": display_path(row["path"]),
        **{key: row.get(key) for key in IMAGE_FACTS},
        "thumb": thumb_url(image_id, row), "file": f"/file/{image_id}",
    }


@router.get("/thumb/{image_id:int}")
async def thumbnail(state: State, image_id: int):
    """A JPEG of at most 256 px a side, made once and cached under the index dir."""
    row = await run_in_threadpool(state.catalog.row, image_id)
    path = state.thumbs.path_for(row, image_id)
    if not os.path.isfile(path):
        data = await run_in_threadpool(indexed_bytes, row, image_id)
        # The indexer took this image, so even one over the budget is decoded (alone).
        image = await state.decoder.decode(data, DECODE_MIN_SIDE, oversize_ok=True)
        await run_in_threadpool(state.thumbs.save, image, path)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/file/{image_id:int}")
def original(state: State, image_id: int):
    """The indexed file itself, exactly as indexed (see access.py for what is refused)."""
    data = indexed_bytes(state.catalog.row(image_id), image_id)
    return Response(data, media_type=media_type_of(data), headers={
        "Cache-Control": "private, max-age=3600", "Content-Security-Policy": FILE_POLICY})


def media_type_of(data: bytes) -> str:
    """From the bytes, not the file name: the bytes were decoded as an image when indexed."""
    try:
        kind = Image.open(BytesIO(data)).format
    except (OSError, ValueError):
        kind = None
    return Image.MIME.get(kind or "", "application/octet-stream")
