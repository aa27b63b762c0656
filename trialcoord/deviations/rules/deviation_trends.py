"""Deviation trends and the site summary's figures: pure aggregation, no I/O and no clock.

Deviation rows are those `deviations.queue.listing` gives, read by attribute (`Facts`: site, rule, category,
classification, state, occurred_on, detected_at, closed_at, open). Trends count the deviations that
stand: a record resolved by data correction was a data error, and one classified "not a protocol
deviation" was judged not to be one, so neither counts (both are reported as `excluded`).
A deviation's month is the month it occurred (the month it was detected when that is unknown). The month
axis shows the last `MONTHS_SHOWN` months at most; older deviations are grouped into one `EARLIER` bucket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from statistics import median
from typing import Any, Literal, Protocol

NOT_STANDING_STATES = frozenset({"resolved_by_data_correction"})
NOT_STANDING_CLASSES = frozenset({"not_a_protocol_deviation"})
MANUAL = "manual"  # the rule column of a deviation someone recorded by hand
AGE_BUCKETS = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), (">90", 91, None))  # days since detection
MONTHS_SHOWN, EARLIER = 36, "earlier"
DONE = frozenset({"on_time", "early", "late"})  # a visit with an actual date in its schedule position


class Facts(Protocol):
    """What the figures read of a deviation (dates ISO text, instants audit instants)."""

    @property
    def site(self) -> str: ...
    @property
    def rule(self) -> str | None: ...
    @property
    def category(self) -> str: ...
    @property
    def classification(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def occurred_on(self) -> str | None: ...
    @property
    def detected_at(self) -> str: ...
    @property
    def closed_at(self) -> str | None: ...
    @property
    def open(self) -> bool: ...


def stands(row: Facts) -> bool:
    return row.state not in NOT_STANDING_STATES and row.classification not in NOT_STANDING_CLASSES


def month(row: Facts) -> str:
    return str(row.occurred_on or row.detected_at)[:7]


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` ("YYYY-MM"), so a quiet month shows as 0, not as a gap."""
    year, number = int(first[:4]), int(first[5:7])
    found = []
    while f"{year:04d}-{number:02d}" <= last:
        found.append(f"{year:04d}-{number:02d}")
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return found


def month_axis(rows: Sequence[Facts]) -> list[str]:
    """The months from the first deviation's to the last's; past `MONTHS_SHOWN`, "earlier" and the last ones."""
    if not rows:
        return []
    months = months_between(min(map(month, rows)), max(map(month, rows)))
    return months if len(months) <= MONTHS_SHOWN else [EARLIER, *months[-MONTHS_SHOWN:]]


def _bucket(months: list[str]) -> Callable[[Facts], str]:
    """A row's place on the axis `months`: its month, or "earlier" before the first month shown."""
    first = months[1] if months and months[0] == EARLIER else ""
    return lambda row: EARLIER if month(row) < first else month(row)


def by_month_and_category(rows: Sequence[Facts]) -> tuple[list[str], dict[str, list[int]]]:
    """(months, category -> count per month), categories in name order."""
    if not rows:
        return [], {}
    months = month_axis(rows)
    place = _bucket(months)
    counts = Counter((place(row), row.category) for row in rows)
    categories = sorted({row.category for row in rows})
    return months, {c: [counts[(m, c)] for m in months] for c in categories}


def counts_by(rows: Iterable[Facts], key: Literal["site", "rule", "category"]) -> list[tuple[str, int]]:
    """(value, count), most first, then by value; a manual deviation's rule is "manual"."""
    counts = Counter(str(row.rule or MANUAL) if key == "rule" else str(getattr(row, key)) for row in rows)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def repeats(rows: Sequence[Facts], months: list[str]) -> list[dict[str, Any]]:
    """Each (site, rule, category) that happened more than once, with its count per month of `months`."""
    groups: dict[tuple[str, str, str], Counter[Any]] = {}
    place = _bucket(months)
    for row in rows:
        key = (row.site, row.rule or MANUAL, row.category)
        groups.setdefault(key, Counter())[place(row)] += 1
    found = [
        {
            "site": site,
            "rule": rule,
            "category": category,
            "total": sum(per.values()),
            "by_month": [per[m] for m in months],
            "first": min(per, key=_order),
            "last": max(per, key=_order),
        }
        for (site, rule, category), per in groups.items()
        if sum(per.values()) > 1
    ]
    return sorted(found, key=lambda r: (-r["total"], r["site"], r["rule"], r["category"]))


def _order(place: str) -> str:
    return "" if place == EARLIER else place


def days_to_closure(rows: Iterable[Facts]) -> list[int]:
    """Whole days from detection to closure of each closed deviation (UTC calendar dates)."""
    return [
        (_day(row.closed_at) - _day(row.detected_at)).days for row in rows if row.state == "closed" and row.closed_at
    ]


def closure_summary(days: list[int]) -> dict[str, Any]:
    if not days:
        return {"closed": 0, "median_days": None, "mean_days": None, "max_days": None}
    return {
        "closed": len(days),
        "median_days": median(days),
        "mean_days": round(sum(days) / len(days), 1),
        "max_days": max(days),
    }


def age_buckets(rows: Iterable[Facts], as_of: date) -> dict[str, int]:
    """Open deviations by days since detection: 0-30, 31-60, 61-90, >90."""
    counts = dict.fromkeys((label for label, _, _ in AGE_BUCKETS), 0)
    for row in rows:
        if row.open:
            age = max(0, (as_of - _day(row.detected_at)).days)
            counts[next(label for label, lo, hi in AGE_BUCKETS if lo <= age and (hi is None or age <= hi))] += 1
    return counts


def visit_rates(statuses: Iterable[str]) -> dict[str, Any]:
    """Completion: visits done / visits due (done, or missed: window closed and not done); on time: visits
    done inside their window / visits done. Upcoming, open, optional-not-needed and unscheduled visits are
    neither; a rate with nothing to divide by is None."""
    counts = Counter(statuses)
    done = sum(counts[s] for s in DONE)
    due = done + counts["missed"]
    return {
        "due": due,
        "done": done,
        "on_time": counts["on_time"],
        "missed": counts["missed"],
        "completion_rate": _ratio(done, due),
        "on_time_rate": _ratio(counts["on_time"], done),
    }


def trends(rows: Sequence[Facts]) -> dict[str, Any]:
    """Every trend the reports show, from the listing rows of the sites in scope."""
    kept = [row for row in rows if stands(row)]
    months, series = by_month_and_category(kept)
    days = days_to_closure(kept)
    return {
        "total": len(kept),
        "excluded": len(rows) - len(kept),
        "months": months,
        "by_month_and_category": series,
        "by_site": counts_by(kept, "site"),
        "by_rule": counts_by(kept, "rule"),
        "by_category": counts_by(kept, "category"),
        "repeats": repeats(kept, months),
        "days_to_closure": days,
        "closure": closure_summary(days),
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _day(value: object) -> date:
    return value if type(value) is date else date.fromisoformat(str(value)[:10])
