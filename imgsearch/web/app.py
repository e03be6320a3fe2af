"""`imgsearch serve`: a JSON API over one index dir, and the pages that use it (web/static/).

Every error answers with one line of JSON, {"error": "..."}. Files are served by image id
only, under the rule in access.py; nothing indexes a server folder unless allow_indexing.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import asynccontextmanager
from io import BytesIO

from fastapi import FastAPI, File, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..decode import decode_bytes
from ..errors import (DecodeError, ImgsearchError, IndexCorrupt, IndexLocked, IndexMismatch, ModelUnavailable,
                      UsageError)
from ..files import display_path
from ..search import SearchResult
from ..vectors import current_type
from .access import Refused, indexed_bytes
from .catalog import Catalog, NotIndexed, SearcherPool
from .indexing import Busy, IndexJob
from .limits import BodyLimit, too_large_message
from .reports import find_reports, report_file
from .thumbs import ThumbCache

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
UPLOAD_LIMIT = 20 * 1024 * 1024
MAX_K = 200  # per page; a page never lists more, whatever the index size
MAX_OFFSET = 800  # deepest page start: FAISS is asked for offset + k hits
MAX_COMPARE = 6
DEFAULT_K = 24
# The pages load nothing but this server's own files, so an injected script has nowhere to run.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")
# A report page may carry its own inline scripts and styles; sandboxed, it runs as an opaque
# origin that cannot call this API with the server's origin.
REPORT_POLICY = "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox"
IMAGE_FACTS = ("width", "height", "size", "taken_at", "camera", "hash", "status", "reason")

# First match wins: subclasses before their bases.
STATUS_OF_ERROR = [
    (NotIndexed, 404), (Busy, 409), (IndexLocked, 409), (ModelUnavailable, 503), (IndexCorrupt, 500),
    (IndexMismatch, 409), (UsageError, 400), (DecodeError, 400),
]


class IndexRequest(BaseModel):
    folder: str  # a folder on the server's disk
    models: list[str] | None = None  # default: every model this index already has


def create_app(index_dir: str, allow_indexing: bool = False, *, reports_dir: str | None = None,
               max_upload_bytes: int = UPLOAD_LIMIT) -> FastAPI:
    """The web app over index_dir; reports_dir (default ./reports) holds eval report folders."""
    index_dir = os.path.abspath(index_dir)
    reports_dir = os.path.abspath(reports_dir or "reports")
    catalog = Catalog(index_dir, create=allow_indexing)
    searchers = SearcherPool(index_dir)
    thumbs = ThumbCache(index_dir)
    job = IndexJob(index_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        searchers.close()
        catalog.close()

    app = FastAPI(title="imgsearch", summary="Search your photos with several models and compare them",
                  lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(ImgsearchError)
    async def domain_error(request, e: ImgsearchError):
        status = e.status if isinstance(e, Refused) else next(
            (code for kind, code in STATUS_OF_ERROR if isinstance(e, kind)), 500)
        return error_response(status, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        return error_response(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, e: RequestValidationError):
        first = e.errors()[0]
        if first["loc"][0] == "path":
            return error_response(404, "Not Found")
        return error_response(400, f"{first['loc'][-1]}: {first['msg']}")

    def hit(result: dict, row: dict | None) -> dict:
        row = row or {}
        return {
            "rank": result["rank"], "id": result["id"], "score": round(result["score"], 4),
            "name": display_path(os.path.basename(result["path"])), "path": display_path(result["path"]),
            "width": row.get("width"), "height": row.get("height"),
            "thumb": thumb_url(result["id"], row), "file": f"/file/{result['id']}",
        }

    def page(result: SearchResult, offset: int, query: str) -> dict:
        results = result.results[offset:]
        rows = catalog.rows([r["id"] for r in results])
        return {
            "model": result.model, "query": query, "offset": offset,
            "results": [hit(r, rows.get(r["id"])) for r in results],
            "timing_ms": {k: round(v, 1) for k, v in result.timing_ms.items()},
        }

    @app.get("/", include_in_schema=False)
    def home():
        return FileResponse(os.path.join(STATIC_DIR, "index.html"),
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": PAGE_POLICY})

    @app.get("/api/info")
    def info():
        """What the pages need to start: models, image counts, limits, whether indexing is on."""
        counts = catalog.counts()
        return {
            "index_dir": index_dir, "reports_dir": reports_dir, "allow_indexing": allow_indexing,
            "images": counts.get("ok", 0), "pending": counts.get("pending", 0), "skipped": counts.get("skipped", 0),
            "models": models(), "max_k": MAX_K, "max_offset": MAX_OFFSET, "max_compare": MAX_COMPARE,
            "max_upload_bytes": max_upload_bytes,
        }

    @app.get("/api/models")
    def models():
        """Models indexed here, first indexed first (the default)."""
        loaded = searchers.loaded()
        return [{"spec": m.spec, "family": m.family, "dim": m.dim, "factory": current_type(m), "loaded": m.spec in loaded}
                for m in catalog.models()]

    @app.get("/api/search")
    def search_text(q: str = Query(min_length=1, max_length=1000), model: str | None = None,
                    k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
        """Text -> image: the page of hits [offset, offset + k)."""
        spec = catalog.spec(model)
        return page(searchers.run(spec, lambda s: s.text(q, k=offset + k)), offset, q)

    @app.post("/api/search/image")
    def search_upload(file: UploadFile = File(description="the query image"), model: str | None = None,
                      k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
        """Image -> image with an uploaded query image (multipart field "file")."""
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise Refused(413, too_large_message(max_upload_bytes))
        decode_bytes(data)  # not an image: 400 before any model is loaded
        spec = catalog.spec(model)
        with tempfile.TemporaryDirectory(prefix="imgsearch-upload-") as folder:
            path = os.path.join(folder, "query")
            with open(path, "wb") as f:
                f.write(data)
            result = searchers.run(spec, lambda s: s.image(path, k=offset + k))
        return page(result, offset, display_path(file.filename or "uploaded image"))

    @app.get("/api/similar")
    def search_similar(id: int = Query(ge=0), model: str | None = None,
                       k: int = Query(DEFAULT_K, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
        """Image -> image from an indexed image ("more like this"); the image itself is left out."""
        row = catalog.row(id)
        indexed_bytes(row, id)  # the file-serving rule holds for reading a query image too
        spec = catalog.spec(model)
        return {**page(searchers.run(spec, lambda s: s.similar(id, k=offset + k)), offset,
                       display_path(os.path.basename(row["path"]))), "like": id}

    @app.get("/api/compare")
    def compare(q: str = Query(min_length=1, max_length=1000), model: list[str] = Query(),
                k: int = Query(12, ge=1, le=MAX_K)):
        """One text query against several models: one column of hits per model."""
        specs = list(dict.fromkeys(catalog.spec(m) for m in model))
        if not 2 <= len(specs) <= MAX_COMPARE:
            raise UsageError(f"compare needs 2 to {MAX_COMPARE} different models, got {len(specs)}")
        return {"query": q, "columns": [page(searchers.run(spec, lambda s: s.text(q, k=k)), 0, q) for spec in specs]}

    @app.get("/api/image/{image_id:int}")
    def image_info(image_id: int):
        """An image's metadata, from the database (the file is not read)."""
        row = catalog.row(image_id)
        if row is None:
            raise Refused(404, f"no image with id {image_id}")
        return {
            "id": image_id, "name": display_path(os.path.basename(row["path"])), "path": display_path(row["path"]),
            **{key: row.get(key) for key in IMAGE_FACTS},
            "thumb": thumb_url(image_id, row), "file": f"/file/{image_id}",
        }

    @app.get("/thumb/{image_id:int}")
    def thumbnail(image_id: int):
        """A JPEG of at most 256 px a side, made once and cached under the index dir."""
        return FileResponse(thumbs.get(catalog.row(image_id), image_id), media_type="image/jpeg",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/file/{image_id:int}")
    def original(image_id: int):
        """The indexed file itself, exactly as indexed (see access.py for what is refused)."""
        data = indexed_bytes(catalog.row(image_id), image_id)
        return Response(data, media_type=media_type_of(data), headers={
            "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        })

    @app.get("/api/reports")
    def reports():
        """Eval report folders (any folder with a report.html) under the reports dir, newest first."""
        return {"reports_dir": reports_dir, "reports": [r.to_dict() for r in find_reports(reports_dir)]}

    @app.get("/reports/{name:path}/{filename}")
    def report(name: str, filename: str):
        """report.html, report.md or results.json of a report folder listed by /api/reports."""
        found = report_file(reports_dir, name, filename)
        if found is None:
            raise Refused(404, "no such report file")
        return FileResponse(found[0], media_type=found[1],
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": REPORT_POLICY})

    @app.get("/api/index")
    def indexing_status():
        """The web-started indexing run: idle, running, done (with its report) or failed."""
        return {"allowed": allow_indexing, **job.status()}

    if allow_indexing:
        @app.post("/api/index", status_code=202)
        def start_indexing(body: IndexRequest):
            """Index a folder on the server in the background (the server was started to allow it)."""
            return job.start(body.folder, body.models or [m.spec for m in catalog.models()])
    else:
        @app.post("/api/index", status_code=403)
        def indexing_refused():
            """Refused: this server was started without allow_indexing."""
            raise Refused(403, "indexing from the web is off; start the server with indexing allowed")

    return app


def thumb_url(image_id: int, row: dict) -> str:
    # The content hash in the URL lets browsers cache a thumbnail for good: new bytes, new URL.
    return f"/thumb/{image_id}?v={(row.get('hash') or '')[:12]}"


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    line = (message or "error").splitlines()[0][:500]
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def media_type_of(data: bytes) -> str:
    """From the bytes, not the file name: the bytes were decoded as an image when indexed."""
    try:
        kind = Image.open(BytesIO(data)).format
    except (OSError, ValueError):
        kind = None
    return Image.MIME.get(kind or "", "application/octet-stream")
