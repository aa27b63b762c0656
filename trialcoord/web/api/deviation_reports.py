"""Deviation reports over the API: listings (CSV, XLSX), trends, the deviation log and monitoring visit
report (PDF/A, DOCX, filed into the binder), the site manager's summary."""

from __future__ import annotations

from litestar import Controller


class DeviationReportController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["deviation reports"]
