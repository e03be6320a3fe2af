"""Indexing a server-side folder from the web UI: one background run at a time.

Only reachable when the server was started with allow_indexing=True: it reads any folder the
server's user can read, so it is off by default.
"""

from __future__ import annotations

import os
import threading

from ..errors import ImgsearchError, UsageError
from ..indexer import index_folder


class Busy(ImgsearchError):
    """An indexing run is already going on."""


class IndexJob:
    def __init__(self, index_dir: str):
        self.index_dir = index_dir
        self._lock = threading.Lock()
        self._state: dict = {"state": "idle"}

    def status(self) -> dict:
        with self._lock:
            return dict(self._state)

    def start(self, folder: str, specs: list[str]) -> dict:
        """Index folder (absolute: nothing is resolved against the server's working or home
        dir) with specs, canonical ones that the caller has checked (Catalog.indexable)."""
        if not os.path.isabs(folder):
            raise UsageError("the folder must be an absolute path on the server")
        folder = os.path.normpath(folder)
        if not os.path.isdir(folder):
            raise UsageError(f"not a folder on the server: {folder}")
        if not specs:
            raise UsageError("no models to index with: name at least one in \"models\"")
        with self._lock:
            if self._state["state"] == "running":
                raise Busy(f"already indexing {self._state['folder']}")
            self._state = {"state": "running", "folder": folder, "models": specs}
            # A daemon thread: stopping the server mid-run loses at most one uncommitted chunk.
            threading.Thread(target=self._run, args=(folder, specs), daemon=True, name="imgsearch-index").start()
            return dict(self._state)

    def _run(self, folder: str, specs: list[str]) -> None:
        try:
            report = index_folder(folder, specs, self.index_dir)
            outcome = {"state": "done", "report": report.to_dict()}
        except ImgsearchError as e:
            outcome = {"state": "failed", "error": str(e)}
        except Exception as e:  # the thread must always leave a state a client can read
            outcome = {"state": "failed", "error": f"{e.__class__.__name__}: {e}"}
        with self._lock:
            self._state = {**self._state, **outcome}
