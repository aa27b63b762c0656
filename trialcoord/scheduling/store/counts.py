"""What reports count and date from the stored schedules, in the caller's unit of work: participants and the
state of their visits per site as of a day (the site summary), the visits counted per site and definition with
what decides their state (the sponsor report's adherence per visit), and the dates of chosen recorded events (the
deviation listing's study days)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date

from trialcoord.kernel.database.engine import fetch

_VISIT_STATES = """
SELECT site, state, COUNT(*) AS n FROM (
  SELECT s.code AS site, CASE
    WHEN x.actual IS NOT NULL AND x.actual <= {} THEN x.status
    WHEN x.actual IS NULL AND x.missed_reason IS NOT NULL THEN x.status
    WHEN x.target IS NOT NULL AND x.latest IS NOT NULL AND x.latest < {} AND NOT x.optional THEN 'missed'
    ELSE 'open' END AS state
  FROM visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site
  WHERE p.study = {} AND p.enrolled_on <= {} AND x.status <> 'not_applicable' AND s.code IN (%s)
) counted GROUP BY site, state"""
_VISIT_GROUPS = """
SELECT site, definition, number, status, done, marked, closed, optional, COUNT(*) AS n FROM (
  SELECT s.code AS site, x.definition, x.number, x.status,
    CASE WHEN x.actual IS NOT NULL AND x.actual <= {} THEN 1 ELSE 0 END AS done,
    CASE WHEN x.actual IS NULL AND x.missed_reason IS NOT NULL THEN 1 ELSE 0 END AS marked,
    CASE WHEN x.latest IS NOT NULL AND x.latest < {} THEN 1 ELSE 0 END AS closed,
    CASE WHEN x.optional THEN 1 ELSE 0 END AS optional
  FROM visits x JOIN participants p ON p.id = x.participant JOIN sites s ON s.id = p.site
  WHERE p.study = {} AND p.enrolled_on <= {} AND x.status <> 'not_applicable' AND s.code IN (%s)
) grouped GROUP BY site, definition, number, status, done, marked, closed, optional"""
_PEOPLE = """
SELECT s.code AS site, COUNT(*) AS participants, SUM(CASE WHEN %s THEN 1 ELSE 0 END) AS ended
FROM participants p JOIN sites s ON s.id = p.site
WHERE p.study = {} AND p.enrolled_on <= {} AND s.code IN (%s) GROUP BY s.code"""
_ENDED = "EXISTS (SELECT 1 FROM recorded_events e WHERE e.participant = p.id AND e.date <= {} AND e.event IN (%s))"


async def site_people(study_id: int, sites: Sequence[str], as_of: date, ending: Sequence[str]) -> list[dict]:
    """Per site: participants enrolled on or before `as_of`, and how many had an `ending` event by then."""
    marks = ", ".join(["{}"] * len(sites))
    if ending:
        ended, ended_args = _ENDED % ", ".join(["{}"] * len(ending)), [as_of, *ending]
    else:
        ended, ended_args = "1 = 0", []
    return await fetch(_PEOPLE % (ended, marks), *ended_args, study_id, as_of, *sites)


async def site_visit_states(study_id: int, sites: Sequence[str], as_of: date) -> list[dict]:
    """Per site and state as of `as_of`: how many visits (done, marked missed, missed by their window, or open)."""
    marks = ", ".join(["{}"] * len(sites))
    return await fetch(_VISIT_STATES % marks, as_of, as_of, study_id, as_of, *sites)


async def visit_groups(study_id: int, sites: Sequence[str], as_of: date) -> list[dict]:
    """The stored visits of participants enrolled on or before `as_of` at `sites`, counted (n) per site, visit
    definition, number and status, and what decides their state as of `as_of` (1 or 0): done by then, marked
    missed, window closed before then, optional. A report's adherence per visit, without a row per visit."""
    if not sites:
        return []
    marks = ", ".join(["{}"] * len(sites))
    return await fetch(_VISIT_GROUPS % marks, as_of, as_of, study_id, as_of, *sites)


async def event_dates(study_id: int, events: Collection[str]) -> list[dict]:
    """The study's recorded events of the named kinds: subject, the version it follows, event and date."""
    if not events:
        return []
    return await fetch(
        "SELECT p.subject_id, p.protocol_version, e.event, e.date FROM participants p"
        " JOIN recorded_events e ON e.participant = p.id"
        f" WHERE p.study = {{}} AND e.event IN ({', '.join(['{}'] * len(events))})",
        study_id,
        *events,
    )
