"""Pages: deviation trends (charts) and the reports page (downloads, filing into the binder, site summary)."""

from __future__ import annotations

from litestar import Controller


class ReportPages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False
