"""The visit a USDM instance becomes: found by the timelines (timelines.py), placed by its timings (placing.py),
written by the writer (writer.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trialcoord.scheduling.usdm.durations import Duration


@dataclass(slots=True)
class _Visit:
    instance: dict
    code: str
    name: str
    number: int
    ref: str | None = None  # an instance id (a visit's) or None for the timeline's event
    offset: Duration = Duration()
    early: Duration | None = None
    late: Duration | None = None
    timing_note: str = ""
    when: str | None = None
    event: str = ""
    arms: list[str] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    comment: str = ""
