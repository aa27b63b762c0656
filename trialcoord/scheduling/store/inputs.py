"""Inputs of the schedule engine: what it needs about participants (their recorded events, the facts recorded
on their stored visits, their moves between protocol versions), and the recorded events written."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows
from trialcoord.scheduling.store import as_date, select_in


@dataclass
class ScheduleInputs:
    """What the engine needs about one participant, plus the ids to store its result under.

    `version_id` is the version the participant follows now; `changes` the moves recorded, (effective date,
    version id) in order, and `first_version` the version followed before the first of them."""

    id: int
    subject_id: str
    site: str
    arm: str | None
    status: str
    version_id: int
    events: dict[str, date] = field(default_factory=dict)
    actuals: dict[str, date] = field(default_factory=dict)
    marked_missed: set[str] = field(default_factory=set)
    changes: list[tuple[date, int]] = field(default_factory=list)
    first_version: int | None = None
    horizon: date | None = None  # the last day its stored schedule lists

    @property
    def versions(self) -> list[int]:
        """The versions followed, oldest first: the first one, then each change's."""
        return [self.first_version or self.version_id, *(version for _, version in self.changes)]

    def add_change(self, from_version: int, to_version: int, effective: date) -> None:
        if not self.changes:
            self.first_version = from_version
        self.changes.append((effective, to_version))

    def add_facts(self, code: str, actual: date | None, missed_reason: str | None) -> None:
        """What a coordinator recorded on a stored visit."""
        if actual is not None:
            self.actuals[code] = actual
        if missed_reason is not None:
            self.marked_missed.add(code)


PROTOCOL_CHANGES = "SELECT x.participant, x.from_version, x.to_version, x.effective FROM protocol_changes x"


async def load_inputs(
    study_id: int, participant_id: int | None = None, site: str | None = None
) -> dict[int, ScheduleInputs]:
    """Events and visit facts of one participant, or of a whole study, in three queries."""
    args: list[object]
    where, args = ("p.id = {}", [participant_id]) if participant_id is not None else ("p.study = {}", [study_id])
    if site is not None:
        where, args = f"{where} AND s.code = {{}}", [*args, site]
    people = await fetch(
        "SELECT p.id, p.subject_id, p.arm, p.status, p.protocol_version, p.schedule_horizon, s.code AS site"
        f" FROM participants p JOIN sites s ON s.id = p.site WHERE {where}",
        *args,
    )
    inputs = {
        row["id"]: ScheduleInputs(
            row["id"],
            row["subject_id"],
            row["site"],
            row["arm"],
            row["status"],
            row["protocol_version"],
            horizon=as_date(row["schedule_horizon"]) if row["schedule_horizon"] else None,
        )
        for row in people
    }
    joined = f"JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site WHERE {where}"
    for participant, event, day in await fetch_rows(
        f"SELECT x.participant, x.event, x.date FROM recorded_events x {joined}", *args
    ):
        inputs[participant].events[event] = day
    facts = await fetch_rows(
        f"SELECT x.participant, x.code, x.actual, x.missed_reason FROM visits x {joined}"
        " AND (x.actual IS NOT NULL OR x.missed_reason IS NOT NULL)",
        *args,
    )
    for participant, code, actual, missed_reason in facts:
        inputs[participant].add_facts(code, actual, missed_reason)
    for participant, from_version, to_version, effective in await fetch_rows(
        f"{PROTOCOL_CHANGES} {joined} ORDER BY x.effective, x.id", *args
    ):
        inputs[participant].add_change(from_version, to_version, as_date(effective))
    return inputs


async def upsert_events(rows: Iterable[tuple[int, str, date, str | None]]) -> None:
    """rows: (participant_id, event, date, reason); replaces the date of an event already recorded."""
    rows = list(rows)
    existing = {
        (participant, event): row_id
        for row_id, participant, event in await select_in(
            "SELECT id, participant, event FROM recorded_events WHERE participant IN ({})",
            {participant for participant, *_ in rows},
        )
    }
    await execute_many(
        "UPDATE recorded_events SET date = {}, reason = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}",
        [(day, reason, existing[(pid, event)]) for pid, event, day, reason in rows if (pid, event) in existing],
    )
    await execute_many(
        "INSERT INTO recorded_events (participant, event, date, reason) VALUES ({}, {}, {}, {})",
        [row for row in rows if row[:2] not in existing],
    )
