"""What one request may ask for: result pages, models compared, and a cap on request bodies
(enforced before the multipart parser spools an upload to disk)."""

from __future__ import annotations

import json

UPLOAD_LIMIT = 20 * 1024 * 1024
MAX_K = 200  # per page; a page never lists more, whatever the index size
MAX_OFFSET = 800  # deepest page start: FAISS is asked for offset + k hits
MAX_COMPARE = 6
DEFAULT_K = 24
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
# After the cap, read and discard up to this much more before answering: a client still
# sending when the server closes gets a connection reset instead of the 413.
DRAIN_BYTES = 8 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over max_bytes (+ multipart overhead).

    A declared Content-Length over the cap is refused before a byte is read. A chunked body
    is counted as it arrives: past the cap the app is told the client went away, and whatever
    it answers is replaced by the 413.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.cap = max_bytes + MULTIPART_OVERHEAD
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.cap:
            return await self._too_large(send)
        seen = 0
        over = started = False
        more_body = True

        async def counted_receive():
            nonlocal seen, over, more_body
            message = await receive()
            if message["type"] == "http.request":
                more_body = message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > self.cap and not started:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if not over:
                started = True
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:  # the app failing on the faked disconnect is expected; anything else is not
                raise
        if over:
            await _drain(receive, more=more_body)
            await self._too_large(send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": too_large_message(self.max_bytes)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive, more: bool) -> None:
    drained = 0
    while more and drained < DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        more = message.get("more_body", False)


def too_large_message(max_bytes: int) -> str:
    mib = 1024 * 1024
    limit = f"{max_bytes // mib} MB" if max_bytes % mib == 0 else f"{max_bytes} bytes"
    return f"upload too large: the limit is {limit}"
