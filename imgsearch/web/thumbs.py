"""Thumbnails, made once per image content and kept on disk beside the index.

A thumbnail's file name carries the image's content hash (`thumbs/<id>-<hash>.jpg`), so a file
that changed and was indexed again gets a new thumbnail, and a cached one never goes stale.
Decoding is the caller's (through decoding.Decoder, under the server's memory budget).
"""

from __future__ import annotations

import os
import re
import tempfile

from PIL import Image

from .access import Refused

THUMB_SIDE = 256
DECODE_MIN_SIDE = 2 * THUMB_SIDE  # reduced decoding at twice the thumbnail side stays sharp
JPEG_QUALITY = 85
_HASH = re.compile(r"[0-9a-f]{8,128}")


class ThumbCache:
    def __init__(self, index_dir: str):
        self.folder = os.path.join(index_dir, "thumbs")

    def path_for(self, row: dict | None, image_id: int) -> str:
        """Where the image's thumbnail is (or will be) cached; Refused for an image not indexed."""
        hash_ = (row or {}).get("hash")
        # The name is built from database text: keep it a plain name.
        if row is None or row.get("status") != "ok" or not _HASH.fullmatch(hash_ or ""):
            raise Refused(404, f"no indexed image with id {image_id}")
        return os.path.join(self.folder, f"{image_id}-{hash_}.jpg")

    def save(self, image: Image.Image, path: str) -> None:
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
