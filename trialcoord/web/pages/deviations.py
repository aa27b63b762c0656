"""Pages: the deviation queue, one deviation with its participant's timeline and review steps, CAPA."""

from __future__ import annotations

from litestar import Controller


class DeviationPages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False
