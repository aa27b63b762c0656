"""What an SDTM variable's value reads as, from XPT (numbers as floats, NaN when missing; dates as dates) or CSV
(text): a --DTC variable's date, a character variable's text, USUBJID, VISITNUM; and labels compared with case,
spacing, `_` and `-` ignored."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any


def norm(text: Any) -> str:
    return re.sub(r"[\s_\-]+", "_", str(text).strip().lower())


def dtc_date(value: Any) -> date | None:
    """SDTM --DTC's date part; None when partial (2013-01) or missing. (A numeric SAS date with a date format
    comes from pyreadstat as a date or datetime.)"""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 and text[4] == "-" and text[7] == "-" else None
    except ValueError:
        return None


def variable_text(value: Any) -> str:
    """A character variable's text; a number read from XPT as a float is written as an integer when whole."""
    if isinstance(value, float):
        return "" if value != value else (f"{value:.0f}" if value.is_integer() else f"{value:g}")
    return str(value or "").strip()


def usubjid(record: dict) -> str:
    return variable_text(record.get("USUBJID"))


def visit_number(value: Any) -> float | None:
    """VISITNUM as a number, from XPT (float, NaN when missing) or CSV (text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def visit_number_text(visitnum: float | None) -> str:
    return "" if visitnum is None else f"{visitnum:g}"
