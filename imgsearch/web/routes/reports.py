"""Eval reports found under the reports dir: the list, and each report's files."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..access import Refused
from ..headers import REPORT_POLICY
from ..reports import find_reports, report_file
from ..state import State

router = APIRouter()


@router.get("/api/reports")
def reports(state: State):
    """Eval report folders (any folder with a report.html) under the reports dir, newest first."""
    return {"reports_dir": state.reports_dir, "reports": [r.to_dict() for r in find_reports(state.reports_dir)]}


@router.get("/reports/{name:path}/{filename}")
def report(state: State, name: str, filename: str):
    """report.html, report.md or results.json of a report folder listed by /api/reports."""
    found = report_file(state.reports_dir, name, filename)
    if found is None:
        raise Refused(404, "no such report file")
    return FileResponse(found[0], media_type=found[1],
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": REPORT_POLICY})
