"""The reads of a study that the sponsor package's datasets are built from: participants, their recorded events,
consents and encrypted birth dates, visits done, deviations and their review steps, each of the study (and of the
sites asked for) on or before the as-of date.

This store reads the tables of the features below exports (scheduling's participants, sites, events, visits and
identities; documents' consents; deviations' records and steps) directly, as the scheduling store reads the
consent records: the package reads everything of a study at once, in a few statements, which no feature's use
cases offer (they read one participant or one page). It never writes. Every function runs inside the caller's
`read()`, so all of them see one snapshot. Rows are driver tuples (`fetch_rows`), columns in the SELECT's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from trialcoord.kernel.database.engine import fetch_rows

PAGE = 500  # participants per read of visits: a page of their visits, never the whole study's at once


def day(value: Any) -> date | None:
    """A DATE column (a date from asyncpg, ISO text from SQLite) or an ISO TEXT column, as a date."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _sites(column: str, sites: Sequence[str]) -> tuple[str, list[str]]:
    if not sites:
        return "", []
    return f" AND {column} IN ({', '.join('{}' for _ in sites)})", list(sites)


async def site_codes(study_id: int) -> list[str]:
    return [row[0] for row in await fetch_rows("SELECT code FROM sites WHERE study = {} ORDER BY code", study_id)]


async def participants(study_id: int, sites: Sequence[str], as_of: date) -> list[Sequence[Any]]:
    """(id, subject_id, site code, arm) of those enrolled on or before `as_of`, by subject ID."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT p.id, p.subject_id, s.code, p.arm FROM participants p JOIN sites s ON s.id = p.site"
        f" WHERE p.study = {{}} AND p.enrolled_on <= {{}}{where} ORDER BY p.subject_id",
        study_id,
        as_of,
        *args,
    )


async def events(study_id: int, sites: Sequence[str], as_of: date) -> list[Sequence[Any]]:
    """(participant, event, date) of the events recorded for a day on or before `as_of`."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT e.participant, e.event, e.date FROM recorded_events e JOIN participants p ON p.id = e.participant"
        f" JOIN sites s ON s.id = p.site WHERE p.study = {{}} AND e.date <= {{}}{where}",
        study_id,
        as_of,
        *args,
    )


async def consents(study_id: int, sites: Sequence[str], as_of: date) -> list[Sequence[Any]]:
    """(participant, signed_on, label) of the consents signed on or before `as_of`, oldest first; the label is the
    consent version's, else the one printed on a paper consent, else None."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT pc.participant, pc.signed_on, COALESCE(c.label, pc.paper_label) FROM participant_consents pc"
        " LEFT JOIN consent_versions c ON c.id = pc.consent_version JOIN participants p ON p.id = pc.participant"
        f" JOIN sites s ON s.id = p.site WHERE p.study = {{}} AND pc.signed_on <= {{}}{where}"
        " ORDER BY pc.participant, pc.signed_on, pc.id",
        study_id,
        as_of.isoformat(),
        *args,
    )


async def birth_dates(study_id: int, sites: Sequence[str]) -> list[Sequence[Any]]:
    """(participant, subject_id, encrypted date of birth as base64 text) of those who have one: decrypted by the
    caller with the installation's key ring, only to compute an age."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT i.participant, p.subject_id, i.date_of_birth FROM participant_identities i"
        " JOIN participants p ON p.id = i.participant JOIN sites s ON s.id = p.site"
        f" WHERE p.study = {{}} AND i.date_of_birth IS NOT NULL{where}",
        study_id,
        *args,
    )


async def visits_done(participant_ids: Sequence[int], as_of: date) -> list[Sequence[Any]]:
    """(participant, code, occurrence, name, number, actual) of the visits done on or before `as_of` by these
    participants (a page of `PAGE` at most; ids are ints, inlined)."""
    ids = ", ".join(str(int(i)) for i in participant_ids) or "NULL"
    return await fetch_rows(
        "SELECT participant, code, occurrence, name, number, actual FROM visits"
        f" WHERE participant IN ({ids}) AND actual IS NOT NULL AND actual <= {{}}",
        as_of,
    )


DEVIATION_COLUMNS = (
    "id, participant, site, visit, rule, description, category, subcategory, classification, state, occurred_on,"
    " closed_at, site_reason"
)


async def deviations(study_id: int, sites: Sequence[str], as_of: date) -> list[Sequence[Any]]:
    """The study's deviations detected or recorded on or before `as_of` (UTC date of the instant), by id: the
    `DEVIATION_COLUMNS` with the site's code for `site`; `participant` is the row id or None (site-level)."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT d.id, d.participant, s.code, d.visit, d.rule, d.description, d.category, d.subcategory,"
        " d.classification, d.state, d.occurred_on, d.closed_at, d.site_reason"
        " FROM deviations d JOIN sites s ON s.id = d.site"
        f" WHERE d.study = {{}} AND substr(d.detected_at, 1, 10) <= {{}}{where} ORDER BY d.id",
        study_id,
        as_of.isoformat(),
        *args,
    )


async def review_steps(study_id: int, sites: Sequence[str]) -> list[Sequence[Any]]:
    """(deviation, step, from_state, to_state, at, detail) of every review step of the study's deviations, in the
    order taken: what a deviation's state was on an earlier day is read back from them."""
    where, args = _sites("s.code", sites)
    return await fetch_rows(
        "SELECT t.deviation, t.step, t.from_state, t.to_state, t.at, t.detail FROM deviation_steps t"
        " JOIN deviations d ON d.id = t.deviation JOIN sites s ON s.id = d.site"
        f" WHERE d.study = {{}}{where} ORDER BY t.deviation, t.id",
        study_id,
        *args,
    )
