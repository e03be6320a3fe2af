"""Eval report folders under a reports dir: any folder holding a report.html is one.

Only the files named in SERVED are ever sent, only from folders this module found itself, and
only when they are regular files (not symlinks) inside the reports dir.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

REPORT_PAGE = "report.html"
SERVED = {"report.html": "text/html; charset=utf-8", "report.md": "text/markdown; charset=utf-8",
          "results.json": "application/json"}
MAX_DEPTH = 3  # reports/<suite>/<run>/report.html at most
MAX_REPORTS = 1000


@dataclass
class Report:
    name: str  # path relative to the reports dir, "/"-separated
    modified: float
    files: list[str]

    def to_dict(self) -> dict:
        base = "/reports/" + quote(self.name)
        return {
            "name": self.name,
            "modified": datetime.fromtimestamp(self.modified, timezone.utc).isoformat(timespec="seconds"),
            "url": f"{base}/{REPORT_PAGE}",
            "files": {f: f"{base}/{f}" for f in self.files},
        }


def find_reports(reports_dir: str) -> list[Report]:
    """Report folders, newest first; symlinked folders are not entered."""
    base = os.path.realpath(reports_dir)
    if not os.path.isdir(base):
        return []
    found = []
    for folder, subfolders, _ in os.walk(base):  # followlinks=False: a link cannot lead outside
        if folder == base:
            continue
        if os.path.relpath(folder, base).count(os.sep) + 1 >= MAX_DEPTH:
            subfolders.clear()
        files = [name for name in SERVED if _regular_file(os.path.join(folder, name))]
        if REPORT_PAGE in files:
            mtime = os.stat(os.path.join(folder, REPORT_PAGE)).st_mtime
            found.append(Report(os.path.relpath(folder, base).replace(os.sep, "/"), mtime, files))
            if len(found) >= MAX_REPORTS:
                break
    return sorted(found, key=lambda r: (-r.modified, r.name))


def report_file(reports_dir: str, name: str, filename: str) -> tuple[str, str] | None:
    """(path, media type) of one file of a report found by find_reports, else None."""
    if filename not in SERVED:
        return None
    report = next((r for r in find_reports(reports_dir) if r.name == name), None)
    if report is None or filename not in report.files:
        return None
    return os.path.join(os.path.realpath(reports_dir), *name.split("/"), filename), SERVED[filename]


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
