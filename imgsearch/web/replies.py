"""Every error answers with one line of JSON, {"error": "..."}: domain errors mapped to statuses here."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (DecodeError, ImgsearchError, IndexCorrupt, IndexLocked, IndexMismatch, ModelUnavailable,
                      UsageError)
from .access import Refused
from .catalog import NotIndexed
from .indexing import Busy

# First match wins: subclasses before their bases.
STATUS_OF_ERROR = [
    (NotIndexed, 404), (Busy, 409), (IndexLocked, 409), (ModelUnavailable, 503), (IndexCorrupt, 500),
    (IndexMismatch, 409), (UsageError, 400), (DecodeError, 400),
]


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    line = (message or "error").splitlines()[0][:500]
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImgsearchError)
    async def domain_error(request, e: ImgsearchError):
        status = e.status if isinstance(e, Refused) else next(
            (code for kind, code in STATUS_OF_ERROR if isinstance(e, kind)), 500)
        return error_response(status, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        return error_response(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(Exception)
    async def internal_error(request, e: Exception):
        # A bug: the log has the traceback; the client gets one line that shows nothing of the server.
        return error_response(500, "internal error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, e: RequestValidationError):
        first = e.errors()[0]
        if first["loc"][0] == "path":
            return error_response(404, "Not Found")
        return error_response(400, f"{first['loc'][-1]}: {first['msg']}")
