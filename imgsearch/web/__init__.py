"""The web UI and JSON API of `imgsearch serve`: search, model comparison, eval reports."""

from .app import create_app
from .gate import Gate, exposure_notice
from .server import BackgroundServer, serve

__all__ = ["BackgroundServer", "Gate", "create_app", "exposure_notice", "serve"]
