"""A deviation record as every deviation use case names and reads it: its name in the audit trail
(`STUDY/SITE/SUBJECT/deviation/ID`), its source, its shape as listed and the fields audited, the window exception
a stored row stands for, and the instant a change is recorded at (the audit trail's clock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypedDict

from trialcoord.deviations.rules.deviation_review import OPEN_STATES
from trialcoord.deviations.rules.deviations import WindowException
from trialcoord.kernel import audit_log
from trialcoord.kernel.rules.audit_entries import utc_instant

AUTOMATIC, MANUAL = "automatic", "manual"


class Row(Protocol):
    """A stored row read by column name: a fetched dict, or a detection run's kept record."""

    def __getitem__(self, name: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Deviation:
    """A deviation as listed: its stored columns (dates and instants as stored, ISO text), its participant and
    site codes, and the SDTM DV terms and whether it is open, derived from them."""

    id: int
    participant: str | None
    site: str
    visit: str | None
    occurrence: int | None
    rule: str | None
    source: str
    category: str
    subcategory: str | None
    classification: str
    state: str
    days_outside: int
    occurred_on: str | None
    description: str
    site_reason: str | None
    corrective_action: str | None
    capa: int | None
    detected_at: str
    updated_at: str
    closed_at: str | None
    resolved_by_entry: int | None
    row_version: int
    dvcat: str
    dvdecod: str | None
    open: bool


def as_exception(row: dict[str, Any]) -> WindowException:
    approved_on = day_of(row["approved_on"])
    if approved_on is None:  # the column is NOT NULL
        raise ValueError(f"the window exception of {row['subject_id']}'s {row['visit']} has no approval date")
    return WindowException(
        row["subject_id"],
        row["visit"],
        row["earlier_days"],
        row["later_days"],
        approved_on,
        day_of(row["recorded_at"]),
    )


def now() -> str:
    return utc_instant(audit_log.clock())


def record_id(study: str, site: str, subject_id: str | None, deviation_id: int) -> str:
    """How the audit trail names a deviation: under its participant (`STUDY/SITE/SUBJECT/deviation/ID`)."""
    return "/".join((study, site, subject_id or "-", "deviation", str(deviation_id)))


def as_deviation(row: dict[str, Any]) -> Deviation:
    """A stored row (`store.COLUMNS`) as listed."""
    return Deviation(
        id=row["id"],
        participant=row["subject_id"],
        site=row["site"],
        visit=row["visit"],
        occurrence=row["occurrence"],
        rule=row["rule"],
        source=row["source"],
        category=row["category"],
        subcategory=row["subcategory"],
        classification=row["classification"],
        state=row["state"],
        days_outside=row["days_outside"],
        occurred_on=row["occurred_on"],
        description=row["description"],
        site_reason=row["site_reason"],
        corrective_action=row["corrective_action"],
        capa=row["capa"],
        detected_at=row["detected_at"],
        updated_at=row["updated_at"],
        closed_at=row["closed_at"],
        resolved_by_entry=row["resolved_by_entry"],
        row_version=row["row_version"],
        dvcat=row["category"].upper(),
        dvdecod=row["subcategory"],
        open=row["state"] in OPEN_STATES,
    )


def record_id_of(study: str, row: Row) -> str:
    return record_id(study, row["site"], row["subject_id"], row["id"])


class AuditedFields(TypedDict):
    """A deviation's fields as its audit entry carries them (the entry's payload, canonical JSON: a mapping)."""

    visit: str | None
    occurrence: int | None
    rule: str | None
    source: str
    category: str
    subcategory: str | None
    classification: str
    state: str
    occurred_on: str | None
    days_outside: int
    description: str


def audited(row: dict[str, Any]) -> AuditedFields:
    """The fields of a stored row an audit entry carries."""
    return AuditedFields(
        visit=row["visit"],
        occurrence=row["occurrence"],
        rule=row["rule"],
        source=row["source"],
        category=row["category"],
        subcategory=row["subcategory"],
        classification=row["classification"],
        state=row["state"],
        occurred_on=row["occurred_on"],
        days_outside=row["days_outside"],
        description=row["description"],
    )


def day_of(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
