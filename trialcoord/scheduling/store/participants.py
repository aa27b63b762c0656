"""Participants: one by codes with its recorded events, its engine inputs and stored visits; a study's
participants listed, locked, inserted and updated; their moves between protocol versions."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date
from typing import Any

from piccolo.columns import Column

from trialcoord.kernel.database.engine import execute_many, fetch, fetch_rows, is_sqlite
from trialcoord.kernel.database.tables import Participant
from trialcoord.scheduling.store import SortKey, among, as_date, contains, keyset_page, now
from trialcoord.scheduling.store.inputs import PROTOCOL_CHANGES, ScheduleInputs
from trialcoord.scheduling.store.visits import StoredVisit, participant_visits

_PARTICIPANTS = """SELECT p.id, p.subject_id, p.arm, p.status, p.enrolled_on, p.protocol_version,
    pv.version, s.code AS site FROM participants p
    JOIN sites s ON s.id = p.site JOIN protocol_versions pv ON pv.id = p.protocol_version"""


async def find_subject(study: str, subject_id: str) -> dict | None:
    """A participant by codes, with its study's id, site code, protocol version (label and sha256) and
    recorded `events` (name -> date), in one query (a row per event): None when the study does not exist,
    `id` None when it has no such participant."""
    rows = await fetch(
        "SELECT st.id AS study_id, p.id, p.subject_id, p.arm, p.status, p.enrolled_on, p.protocol_version,"
        " p.schedule_horizon, pv.version, pv.sha256, s.code AS site, e.event, e.date FROM studies st"
        " LEFT JOIN participants p ON p.study = st.id AND p.subject_id = {}"
        " LEFT JOIN sites s ON s.id = p.site LEFT JOIN protocol_versions pv ON pv.id = p.protocol_version"
        " LEFT JOIN recorded_events e ON e.participant = p.id WHERE st.code = {}",
        subject_id,
        study,
    )
    if not rows:
        return None
    subject = rows[0]
    subject["events"] = {row["event"]: row["date"] for row in rows if row["event"] is not None}
    del subject["event"], subject["date"]
    return subject


async def site_of_subject(study: str, subject_id: str) -> str | None:
    rows = await fetch(
        "SELECT s.code FROM participants p JOIN studies st ON st.id = p.study"
        " JOIN sites s ON s.id = p.site WHERE st.code = {} AND p.subject_id = {}",
        study,
        subject_id,
    )
    return rows[0]["code"] if rows else None


async def list_participants(study_id: int, site: str | None = None) -> list[dict]:
    if site is None:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}}", study_id)
    else:
        rows = await fetch(f"{_PARTICIPANTS} WHERE p.study = {{}} AND s.code = {{}}", study_id, site)
    return sorted(rows, key=lambda row: row["subject_id"])


_LISTED = ("id", "subject_id", "arm", "status", "enrolled_on", "protocol_version", "version", "site")  # _PARTICIPANTS'


async def participants_page(
    study_id: int,
    sites: Collection[str] | None,
    status: str | None,
    text: str | None,
    keys: Sequence[SortKey],
    descending: bool,
    after: Sequence[Any] | None,
    size: int,
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """A keyset page of a study's participants at `sites` (None: every site), of `status`, whose subject ID holds
    `text`; each with its key (see `keyset_page`), as rows of `list_participants`."""
    at, codes = among("s.code", sites)
    where, values = f"p.study = {{}} AND {at}", [study_id, *codes]
    if status:
        where, values = f"{where} AND p.status = {{}}", [*values, status]
    if text:
        holds, pattern = contains("p.subject_id", text)
        where, values = f"{where} AND {holds}", [*values, pattern]
    rows = await keyset_page(_PARTICIPANTS, where, values, keys, descending, after, size)
    return [(key, dict(zip(_LISTED, raw))) for key, raw in rows]


async def lock_participants(study_id: int) -> None:
    """Serialise writers of a study's participants (SQLite's immediate transactions already do)."""
    if not is_sqlite():
        await fetch("SELECT id FROM participants WHERE study = {} FOR UPDATE", study_id)


async def lock_subject(study: str, subject_id: str) -> None:
    """Serialise writers of one participant; lock before reading it, so that what is read is current."""
    if not is_sqlite():  # OF p: the participant's row only, not its study's
        await fetch(
            "SELECT p.id FROM participants p JOIN studies st ON st.id = p.study"
            " WHERE st.code = {} AND p.subject_id = {} FOR UPDATE OF p",
            study,
            subject_id,
        )


async def insert_participants(study_id: int, rows: Iterable[tuple[str, int, str | None, int, date]]) -> None:
    """rows: (subject_id, site_id, arm, protocol_version_id, enrolled_on)."""
    await execute_many(
        "INSERT INTO participants (study, subject_id, site, arm, protocol_version, status, enrolled_on)"
        " VALUES ({}, {}, {}, {}, {}, 'active', {})",
        [(study_id, *row) for row in rows],
    )


async def update_participant(participant_id: int, **values: Any) -> None:
    changes: dict[Column | str, Any] = {name: value for name, value in values.items()}
    changes[Participant.updated_at] = now()
    await Participant.update(changes).where(Participant._meta.primary_key == participant_id)


async def insert_protocol_changes(rows: Iterable[tuple[int, int, int, date, str]]) -> None:
    """rows: (participant_id, from_version, to_version, effective, reason)."""
    await execute_many(
        "INSERT INTO protocol_changes (participant, from_version, to_version, effective, reason)"
        " VALUES ({}, {}, {}, {}, {})",
        rows,
    )


async def set_protocol_versions(participant_ids: Iterable[int], version_id: int) -> None:
    await execute_many(
        "UPDATE participants SET protocol_version = {}, updated_at = CURRENT_TIMESTAMP WHERE id = {}",
        [(version_id, pid) for pid in participant_ids],
    )


async def subject_inputs(subject: dict) -> tuple[ScheduleInputs, dict[str, StoredVisit]]:
    """Engine inputs and stored visits (by code) of a participant as `find_subject` gives it, in one more
    query: the stored visits carry the recorded facts."""
    inputs = ScheduleInputs(
        subject["id"],
        subject["subject_id"],
        subject["site"],
        subject["arm"],
        subject["status"],
        subject["protocol_version"],
        subject["events"],
        horizon=as_date(subject["schedule_horizon"]) if subject["schedule_horizon"] else None,
    )
    visits = await participant_visits(subject["id"])
    for visit in visits.values():
        inputs.add_facts(visit.visit, visit.actual, visit.missed_reason)
    for _, from_version, to_version, effective in await fetch_rows(
        f"{PROTOCOL_CHANGES} WHERE x.participant = {{}} ORDER BY x.effective, x.id", subject["id"]
    ):
        inputs.add_change(from_version, to_version, as_date(effective))
    return inputs, visits
