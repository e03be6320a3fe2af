"""One router per page or API area; a new area is one module here and one line in ROUTERS."""

from . import duplicates, home, images, indexing, info, judge, reports, search

ROUTERS = (home.router, info.router, search.router, images.router, reports.router, indexing.router, judge.router,
           duplicates.router)
