"""The compliance report's figures that need no database: deviations per site from the DV and DM datasets (the
report and `trialcoord verify` compute them alike, so a package whose report and datasets disagree is caught),
a visit's adherence state as of a day, and the caps that keep a study of any size under the report's page budget.
Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from trialcoord.kernel.problems import InvalidInput, Problem

ADHERENCE = ("on_time", "early", "late", "missed")  # a visit due by the as-of day: done (in or out of window) or missed
OTHER = "other"


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
    if actual is not None and actual <= as_of:
        return status
    if actual is None and missed_reason is not None:
        return status
    if latest is not None and latest < as_of and not optional:
        return "missed"
    return "open"


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
