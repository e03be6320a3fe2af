"""Which bytes the server may send for an image id: the rule every file-serving route obeys.

A client never names a path. It names an image id; the path comes from the database row, and
the file at that path is sent only when all of these hold:

1. the row exists and its status is "ok" (it was decoded and embedded as an image);
2. the file is not a symlink that leads out of its own folder (files.escapes_its_folder, the
   rule the indexer applies too: such a link is skipped with that reason, never indexed).
   Symlinked *folders* stay allowed; a file swapped for a link to /etc/passwd does not;
3. the bytes read hash (blake2b-128, the indexer's content hash) to the row's hash: only
   bytes that were indexed as an image are ever sent. This also catches what rule 2 cannot
   see: a symlinked folder re-pointed elsewhere after indexing, or a file replaced in place.

The bytes checked are the bytes sent (read once), so swapping the file between the check and
the send changes nothing.
"""

from __future__ import annotations


from ..errors import ImgsearchError
from ..files import LEAVES_FOLDER, content_hash, escapes_its_folder


class Refused(ImgsearchError):
    """A file the rule above does not allow; status is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def indexed_bytes(row: dict | None, image_id: int) -> bytes:
    """The file of an indexed image, exactly as it was indexed, or Refused."""
    if row is None or row.get("status") != "ok" or not row.get("hash"):
        raise Refused(404, f"no indexed image with id {image_id}")
    path = row["path"]
    if escapes_its_folder(path):
        raise Refused(403, f"image {image_id} is a {LEAVES_FOLDER}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise Refused(404, f"image {image_id} is gone from disk; run `imgsearch index` again") from None
    if content_hash(data) != row["hash"]:
        raise Refused(404, f"image {image_id} changed on disk since indexing; run `imgsearch index` again")
    return data
