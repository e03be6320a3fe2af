"""Running the web app: in the foreground for `imgsearch serve`, or in a thread for tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .decoding import return_big_frees_to_the_os
from .gate import Gate
from .timeouts import BODY_IDLE_TIMEOUT_S, HEAD_TIMEOUT_S, timed_protocol

STARTUP_TIMEOUT_S = 30


def serve(index_dir: str, host: str = "127.0.0.1", port: int = 8000, allow_indexing: bool = False,
          *, reports_dir: str | None = None, gate: Gate | None = None,
          on_start: Callable[[], None] = lambda: None) -> None:
    """Serve the UI and API over index_dir until interrupted (Ctrl-C).

    gate defaults to Gate.for_bind(host): off loopback that makes a token, which the caller
    then cannot show; pass the gate whose token you printed. on_start runs once the app is
    made (the index opened), before the server listens.
    """
    app = create_app(index_dir, allow_indexing, reports_dir=reports_dir, gate=gate or Gate.for_bind(host))
    return_big_frees_to_the_os()
    on_start()
    try:
        uvicorn.Server(server_config(app, host, port)).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down for: that is the normal way out
        pass


def server_config(app: FastAPI, host: str, port: int, log_level: str = "info", *,
                  head_s: float = HEAD_TIMEOUT_S, idle_s: float = BODY_IDLE_TIMEOUT_S) -> uvicorn.Config:
    # Short graceful shutdown: a search in flight finishes in well under a second. The server
    # header says nothing about the software.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                          http=timed_protocol(head_s, idle_s), server_header=False)


class BackgroundServer:
    """`with BackgroundServer(app) as server:` serves app on a free port; server.url is its address."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", log_level: str = "warning", **limits):
        self.host = host
        self.server = uvicorn.Server(server_config(app, host, 0, log_level, **limits))
        self.url = ""
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "BackgroundServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))  # the OS picks a free port: no race with other servers
        port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"imgsearch-web-{port}")
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(STARTUP_TIMEOUT_S)
