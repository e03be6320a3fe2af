"""Where things live and how much to run at once: settings every stage shares, read from the
environment so that tests and users can move them without flags."""

from __future__ import annotations

import os


def default_index_dir() -> str:
    """Per-model indexes: $IMGSEARCH_INDEX_DIR, else ./indexes."""
    return os.environ.get("IMGSEARCH_INDEX_DIR") or os.path.join(os.getcwd(), "indexes")


def cache_dir() -> str:
    """Derived files worth keeping between runs (class-prompt vectors, bench corpora):
    $IMGSEARCH_CACHE_DIR, else ~/.cache/imgsearch."""
    return os.environ.get("IMGSEARCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "imgsearch")


def default_workers() -> int:
    """Decode/hash threads: at least 2 so that reading overlaps decoding, at most 8."""
    return max(2, min(8, os.cpu_count() or 2))
