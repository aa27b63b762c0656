"""What each privacy mode does to a value of the package (compliance-reference.md, HIPAA): `coded` keeps the
values as recorded (subject IDs only: no name, birth date, contact or record number is ever read into a dataset);
`safe-harbor` (164.514(b)(2)) also reduces every date to its year, groups ages over 89, and replaces free text
with the coded term that classifies it. Site codes are kept (they are not a geographic subdivision), and so are
study days: an interval counted from the participant's own reference date, not a date (the Safe Harbor list
names dates, not intervals; shifting dates instead would not be Safe Harbor). Pure."""

from __future__ import annotations

from datetime import date

from trialcoord.exports.rules.scope import Privacy

OLDEST_AGE = 90  # Safe Harbor: ages over 89 are one group, "90 or older"
AGE_GROUPED = "ages over 89 are given as 90, meaning 90 or older (HIPAA Safe Harbor)"
YEAR_ONLY = "the year only (HIPAA Safe Harbor: no date element but the year)"
CODED_TEXT = "the coded term in place of the free text (HIPAA Safe Harbor)"
STUDY_DAYS_KEPT = "study days are intervals from the participant's reference date, kept under Safe Harbor"


def dtc(day: date | None, privacy: Privacy) -> str | None:
    """A --DTC value: the ISO 8601 date, or under Safe Harbor its year alone (ISO 8601's reduced precision)."""
    if day is None:
        return None
    return f"{day.year:04d}" if privacy is Privacy.SAFE_HARBOR else day.isoformat()


def age(years: int | None, privacy: Privacy) -> int | None:
    if years is None:
        return None
    return min(years, OLDEST_AGE) if privacy is Privacy.SAFE_HARBOR else years


def text(free: str | None, coded: str | None, privacy: Privacy) -> str | None:
    """Free text as recorded, or under Safe Harbor the coded term that stands for it (None drops it)."""
    return coded if privacy is Privacy.SAFE_HARBOR else free


def rule(base: str | None, privacy: Privacy, transformation: str) -> str | None:
    """A variable's derivation in words, with what Safe Harbor did to it."""
    if privacy is not Privacy.SAFE_HARBOR:
        return base
    return f"{base}; {transformation}" if base else transformation


def years_between(born: date, on: date) -> int:
    """Completed years of age on a day (a birthday on 29 February counts from 1 March in other years)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
