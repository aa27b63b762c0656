"""What every JSON API body shares: codes and text without control characters, plausible dates."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

# Codes and names are free text for the services, but never empty nor control characters
# (PostgreSQL refuses NUL in text, and such values make unreadable worklists).
Code = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^/\x00-\x1f\x7f]+$")
]  # no '/': see record_id
Text = Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^[^\x00]*$")]
EARLIEST_YEAR, LATEST_YEAR = 1900, 2199  # dates outside are typing mistakes, and overflow window arithmetic


def check_plausible(day: date | None, field: str) -> None:
    if day is not None and not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise ValueError(f"`{field}` must be a date between {EARLIEST_YEAR} and {LATEST_YEAR}, got {day}")
