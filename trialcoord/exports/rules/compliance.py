"""The compliance report's figures that need no database: deviations per site from the DV and DM datasets (the
report and `trialcoord verify` compute them alike, so a package whose report and datasets disagree is caught),
a visit's adherence state as of a day (one visit, or visits counted in groups), and the caps that keep a study of
any size under the report's page budget. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem

ADHERENCE = ("on_time", "early", "late", "missed")  # a visit due by the as-of day: done (in or out of window) or missed
OTHER = "other"
UNNUMBERED = 1e9  # orders a visit without a number (or numbered 0) after every numbered one


def deviations_per_site(dv: Iterable[Mapping[str, object]], dm: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """Deviations per site: each DV row counted at the SITEID its USUBJID has in DM. Every DM site is a key (0
    when it has none), in code order. A DV row whose USUBJID DM lacks is an error naming the row (1-based)."""
    site_of: dict[str, str] = {}
    for row in dm:
        site_of[str(row["USUBJID"])] = str(row["SITEID"])
    counts = Counter({site: 0 for site in site_of.values()})
    problems = []
    for number, row in enumerate(dv, start=1):
        subject = str(row.get("USUBJID"))
        if subject not in site_of:
            problems.append(Problem(f"dataset DV, row {number}: USUBJID {subject} is not in DM", field="USUBJID"))
            continue
        counts[site_of[subject]] += 1
    if problems:
        raise InvalidInput(problems)
    return {site: counts[site] for site in sorted(counts)}


def visit_state(
    status: str,
    actual: date | None,
    missed_reason: str | None,
    latest: date | None,
    optional: bool,
    as_of: date,
) -> str:
    """A stored visit's state as of `as_of`, as the site summary counts it (scheduling's counts): its status once
    done by then or marked missed; missed when its window closed before that day (not optional); else open."""
    done = actual is not None and actual <= as_of
    marked = actual is None and missed_reason is not None
    return state_of(status, done, marked, latest is not None and latest < as_of, optional)


def state_of(status: str, done: bool, marked: bool, closed: bool, optional: bool) -> str:
    """`visit_state` from what decides it (done by the day, marked missed, window closed before the day): the
    form the database counts visits in (`visit_groups`)."""
    if done or marked:
        return status
    return "missed" if closed and not optional else "open"


def adherence_by_visit(groups: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """(visit, on time / early / late / missed) of one site's visits counted in groups (definition, number,
    status, done, marked, closed, optional, n: `scheduling.lookups.visit_groups`), in visit-number order (a visit
    without a number, or numbered 0, last), each visit that has a count: the protocol's visit code, so a repeated
    visit counts once per occurrence under it."""
    counts: dict[str, Counter[str]] = {}
    numbers: dict[str, float] = {}
    for row in groups:
        code = str(row["definition"])
        state = state_of(str(row["status"]), *(bool(row[k]) for k in ("done", "marked", "closed", "optional")))
        counts.setdefault(code, Counter())[state] += int(row["n"])
        number = float(row["number"] or UNNUMBERED)
        numbers[code] = min(numbers.get(code, number), number)
    ordered = sorted(counts, key=lambda code: (numbers[code], code))
    found = [(code, {state: counts[code][state] for state in ADHERENCE}) for code in ordered]
    return [[code, per] for code, per in found if any(per.values())]


def adherence_counts(states: Iterable[str]) -> dict[str, int]:
    """On time, early, late, missed; and the on-time rate over visits done (None with none done)."""
    counts = Counter(states)
    return {state: counts[state] for state in ADHERENCE}


def on_time_rate(counts: Mapping[str, int]) -> float | None:
    done = counts["on_time"] + counts["early"] + counts["late"]
    return round(counts["on_time"] / done, 4) if done else None


def capped(
    rows: Sequence[tuple[str, dict[str, int]]], limit: int, label: str = OTHER
) -> list[tuple[str, dict[str, int]]]:
    """The first `limit - 1` rows, and the rest summed into one row named `label` (with how many it holds), so a
    table never outgrows its page; `rows` as they are when they fit."""
    if len(rows) <= limit:
        return list(rows)
    kept, rest = rows[: limit - 1], rows[limit - 1 :]
    total: Counter[str] = Counter()
    for _, counts in rest:
        total.update(counts)
    return [*kept, (f"{label} ({len(rest)})", dict(total))]


def by_year(periods: Sequence[str], series: Mapping[str, Sequence[int]]) -> tuple[list[str], dict[str, list[int]]]:
    """Months ("YYYY-MM", or "earlier") summed into their years: safe-harbor keeps no date element but the year.
    "earlier" stays its own period, first."""
    years = sorted({p[:4] for p in periods if p[:4].isdigit()})
    axis = (["earlier"] if any(not p[:4].isdigit() for p in periods) else []) + years
    place = {p: (p[:4] if p[:4].isdigit() else "earlier") for p in periods}
    summed = {}
    for name, counts in series.items():
        per: Counter[str] = Counter()
        for period, count in zip(periods, counts):
            per[place[period]] += count
        summed[name] = [per[p] for p in axis]
    return axis, summed
