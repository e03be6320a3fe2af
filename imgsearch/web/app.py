"""`imgsearch serve`: a JSON API over one index dir, and the pages that use it (web/static/).

The routes live in routes/, one router per page or API area, and read the server's state
(WebState) through a dependency. Before any route, gate.py checks the Host header, the token
and, for changes, the Origin. Every error answers with one line of JSON (replies.py); every
response carries the same security headers (headers.py). Files are served by image id only,
under the rule in access.py; nothing indexes a server folder unless allow_indexing.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from .decoding import DECODE_BUDGET, Decoder
from .gate import Gate, GateMiddleware
from .headers import SecurityHeaders
from .limits import UPLOAD_LIMIT, BodyLimit
from .replies import install_error_handlers
from .routes import ROUTERS
from .state import WebState


class WebApp(FastAPI):
    def __init__(self, gate: Gate, **kwargs):
        super().__init__(**kwargs)
        self.gate = gate

    def build_middleware_stack(self):
        # Outside Starlette's own error middleware: a refusal runs no route, and even a 500 gets the headers.
        return SecurityHeaders(GateMiddleware(super().build_middleware_stack(), self.gate))


def create_app(index_dir: str, allow_indexing: bool = False, *, reports_dir: str | None = None,
               max_upload_bytes: int = UPLOAD_LIMIT, decode_budget: int = DECODE_BUDGET,
               gate: Gate | None = None) -> FastAPI:
    """The web app over index_dir; reports_dir (default ./reports) holds eval report folders.

    gate says which host names the server answers to and which token it needs (gate.py); by
    default loopback names only, and no token.
    """
    state = WebState.open(index_dir, reports_dir or "reports", allow_indexing, max_upload_bytes,
                          Decoder(decode_budget))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.close()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN. /openapi.json stays.
    app = WebApp(gate or Gate(), title="imgsearch", summary="Search your photos with several models and compare them",
                 lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.web = state
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
