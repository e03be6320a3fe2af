"""Thumbnails, made once per image content and kept on disk beside the index.

A thumbnail's file name carries the image's content hash (`thumbs/<id>-<hash>.jpg`), so a file
that changed and was indexed again gets a new thumbnail, and a cached one never goes stale.
"""

from __future__ import annotations

import os
import re
import tempfile

from PIL import Image

from ..decode import decode_bytes
from .access import Refused, indexed_bytes

THUMB_SIDE = 256
JPEG_QUALITY = 85
_HASH = re.compile(r"[0-9a-f]{8,128}")


class ThumbCache:
    def __init__(self, index_dir: str):
        self.folder = os.path.join(index_dir, "thumbs")

    def path_for(self, image_id: int, hash_: str) -> str:
        if not _HASH.fullmatch(hash_ or ""):  # the name is built from database text: keep it a plain name
            raise Refused(404, f"no indexed image with id {image_id}")
        return os.path.join(self.folder, f"{image_id}-{hash_}.jpg")

    def get(self, row: dict | None, image_id: int) -> str:
        """Path of the image's thumbnail, made now if it is not cached yet."""
        if row is None or row.get("status") != "ok":
            raise Refused(404, f"no indexed image with id {image_id}")
        path = self.path_for(image_id, row.get("hash"))
        if not os.path.isfile(path):
            self._make(indexed_bytes(row, image_id), path)
        return path

    def _make(self, data: bytes, path: str) -> None:
        # Draft decoding at twice the thumbnail side keeps big JPEGs cheap and still sharp.
        image = decode_bytes(data, min_side=2 * THUMB_SIDE).image
        image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
        os.makedirs(self.folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".jpg", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                image.save(f, "JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, path)  # two requests racing both write whole files; either one wins
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
