"""The web UI and JSON API of `imgsearch serve`: search, model comparison, eval reports."""

from .app import create_app
from .server import BackgroundServer, serve

__all__ = ["BackgroundServer", "create_app", "serve"]
