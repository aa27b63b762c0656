"""External checkpoints' names and when one is due (issue 17, docs/audit-trail.md "External checkpoints").

A checkpoint file in the external directory is named `checkpoint-<size>-<yyyymmddThhmmssZ>.json`; the newest is
the one of the largest tree size, then the latest instant. Pure: no clock, no file system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

NAME = re.compile(r"checkpoint-([1-9][0-9]*)-([0-9]{8}T[0-9]{6}Z)\.json")


@dataclass(frozen=True, slots=True, order=True)
class Anchor:
    """What a file's name says: its tree size and the UTC instant it was issued (yyyymmddThhmmssZ)."""

    size: int
    instant: str

    @property
    def day(self) -> date:
        return date(int(self.instant[:4]), int(self.instant[4:6]), int(self.instant[6:8]))


def file_name(size: int, issued_at: str) -> str:
    """`issued_at` as the checkpoint states it: 2026-11-27T09:30:00.000000Z."""
    return f"checkpoint-{size}-{issued_at[:19].replace('-', '').replace(':', '')}Z.json"


def parse(name: str) -> Anchor | None:
    """The anchor a file name states; None for any other file (a temporary file, a note the operator left)."""
    found = NAME.fullmatch(name)
    return Anchor(int(found[1]), found[2]) if found else None


def newest(names: list[str]) -> tuple[Anchor, str] | None:
    """The newest anchor among the names, with its name."""
    parsed = [(anchor, name) for name in names if (anchor := parse(name)) is not None]
    return max(parsed) if parsed else None


def due(head: int, newest: Anchor | None, every: int, today: date, *, nightly: bool = False) -> bool:
    """Whether a new external checkpoint is due for a trail of `head` entries: none yet; or the trail crossed a
    multiple of `every` since the newest; or (daily) the newest is from an earlier UTC day, or the nightly run
    asks; never when the trail has not grown (nothing new to anchor)."""
    if head < 1:
        return False
    if newest is None:
        return True
    if head <= newest.size:
        return False
    return nightly or head // every > newest.size // every or newest.day < today
