"""Trends of a study's deviations (issue 5 §3): the figures are the domain's
(`deviations/rules/deviation_trends.py`) over `queue.listing` rows; and the chart specifications the templates
draw them with."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from trialcoord.deviations.queue import listing
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.report_support import require_sites
from trialcoord.deviations.rules import deviation_trends as figures

CLOSURE_BINS = [[0, 8], [8, 31], [31, 61], [61, 91], [91, None]]  # days: "0–7", "8–30", "31–60", "61–90", "91+"


@dataclass(frozen=True, slots=True)
class DeviationTrends:
    """The trends of a study's deviations that stand (`excluded`: those left out). `by_month_and_category`:
    category -> count per month of `months`; `by_site`, `by_rule`, `by_category`: (value, count), most first;
    `repeats`: each (site, rule, category) seen more than once, with its count per month; `closure`: how many
    were closed and the median, mean and longest days to closure."""

    study: str
    total: int
    excluded: int
    months: list[str]
    by_month_and_category: dict[str, list[int]]
    by_site: list[tuple[str, int]]
    by_rule: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    repeats: list[dict[str, Any]]
    days_to_closure: list[int]
    closure: dict[str, Any]


def trends_of(study: str, rows: Sequence[Deviation]) -> DeviationTrends:
    """The trends of these deviations (`queue.listing` rows, or those of a report's day)."""
    return DeviationTrends(study, **figures.trends(rows))


async def trends(study: str, sites: Collection[str] | None = None, as_of: date | None = None) -> DeviationTrends:
    """The trends of the study's deviations at `sites` (None: every site; a site the study lacks: NotFound).
    `as_of` is accepted for compatibility and ignored: trends cover every deviation recorded so far."""
    if sites is not None:
        await require_sites(study, sites)
    rows, _ = await listing(study, sites=sites)
    return trends_of(study, rows)


def trend_charts(trend: DeviationTrends, *, with_sites: bool = True) -> list[dict[str, Any]]:
    """Chart specifications (JSON) for the templates' `chart()`: by month and category, by site, time to closure."""
    specs: list[dict[str, Any]] = [
        {
            "kind": "stacked",
            "title": "Deviations by month and category",
            "periods": trend.months,
            "series": trend.by_month_and_category,
            "y_label": "deviations",
        }
    ]
    if with_sites:
        specs.append({"kind": "bars", "title": "Deviations by site", "items": [list(i) for i in trend.by_site]})
    specs.append({"kind": "bars", "title": "Deviations by rule", "items": [list(i) for i in trend.by_rule]})
    specs.append(
        {
            "kind": "histogram",
            "title": "Days from detection to closure",
            "values": trend.days_to_closure,
            "bins": CLOSURE_BINS,
            "unit": "days",
        }
    )
    return specs
