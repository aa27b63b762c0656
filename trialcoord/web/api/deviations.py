"""Deviations over the API: detection runs, the queue, one deviation, review steps, exceptions, CAPA."""

from __future__ import annotations

from litestar import Controller


class DeviationController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["deviations"]
