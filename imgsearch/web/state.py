"""What every router reads: one WebState per app, in app.state.web, handed to routes by Depends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..judge import Judging
from .catalog import Catalog, SearcherPool
from .decoding import Decoder
from .indexing import IndexJob
from .thumbs import ThumbCache


@dataclass
class WebState:
    index_dir: str
    reports_dir: str
    allow_indexing: bool
    max_upload_bytes: int
    catalog: Catalog
    searchers: SearcherPool
    thumbs: ThumbCache
    job: IndexJob
    decoder: Decoder
    judging: Judging

    @classmethod
    def open(cls, index_dir: str, reports_dir: str, allow_indexing: bool, max_upload_bytes: int,
             decoder: Decoder) -> "WebState":
        index_dir = os.path.abspath(index_dir)
        catalog, searchers = Catalog(index_dir, create=allow_indexing), SearcherPool(index_dir)
        # Judging keeps searchers of its own, at each model row's stored precision, as the CLI's
        # judging does: the search page's are at "auto", which may encode queries at another
        # precision and so pool other images than `imgsearch judge pool` does.
        return cls(index_dir, os.path.abspath(reports_dir), allow_indexing, max_upload_bytes,
                   catalog, searchers, ThumbCache(index_dir), IndexJob(index_dir), decoder, Judging(index_dir))

    def close(self) -> None:
        self.decoder.close()
        self.searchers.close()
        self.judging.close()
        self.catalog.close()


def web_state(request: Request) -> WebState:
    return request.app.state.web


State = Annotated[WebState, Depends(web_state)]
