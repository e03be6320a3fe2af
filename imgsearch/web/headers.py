"""One set of security headers on every response, errors and refusals included.

Routes that need a stricter policy (a report page, an original file) set their own
Content-Security-Policy, which stays; every policy forbids framing.
"""

from __future__ import annotations

# The pages load nothing but this server's own files, so an injected script has nowhere to run.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
# A report page carries its own inline styles, SVG plots and maybe scripts; sandboxed, it runs as
# an opaque origin that cannot call this API with the server's origin, and it loads nothing.
REPORT_POLICY = ("sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
                 "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
# An original file shown on its own: no script, no plugin, only itself.
FILE_POLICY = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Set unless the route set its own: a stricter CSP; a public icon that a sandboxed page (an
# opaque origin) may fetch. Otherwise other sites may not embed these bytes (thumbnails, files).
DEFAULTS = [
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_COMMON_NAMES = {name for name, _ in COMMON}


class SecurityHeaders:
    """ASGI middleware: COMMON, and DEFAULTS where the route set none, on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _COMMON_NAMES]
                present = {k.lower() for k, _ in headers}
                headers += COMMON + [(k, v) for k, v in DEFAULTS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
