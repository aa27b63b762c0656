"""The compliance report's adherence per visit, counted by one aggregate read of the study, equals what reading
each site's schedule visit by visit gave (the report's figures before): on the demo study with a third site, an
unscheduled visit, a participant enrolled later, as of every day of the demo's visits, on both engines."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from trialcoord.demo import demo
from trialcoord.exports.report_figures import adherence_per_site
from trialcoord.exports.rules.compliance import adherence_counts, visit_state
from trialcoord.scheduling import participants, sites, visits, worklists

pytestmark = pytest.mark.anyio
TODAY = date.today()  # the demo is dated from it
STUDY, SITES = "DEMO-001", ["101", "102", "103"]


async def visit_by_visit(site: str, as_of: date) -> list[list]:
    """The report's former computation: every stored visit of the site's schedule, one by one."""
    enrolled = {p.subject_id for p in await participants.list_participants(STUDY, site) if p.enrolled_on <= as_of}
    counts: dict[str, list[str]] = {}
    numbers: dict[str, float] = {}
    for row in await worklists.site_schedule(STUDY, site, as_of):
        if row.subject_id not in enrolled:
            continue
        visit = row.visit
        state = visit_state(visit.status, visit.actual, row.missed_reason, visit.latest, visit.optional, as_of)
        counts.setdefault(visit.definition, []).append(state)
        numbers[visit.definition] = min(numbers.get(visit.definition, visit.number or 1e9), visit.number or 1e9)
    ordered = sorted(counts, key=lambda code: (numbers[code], code))
    return [[code, adherence_counts(counts[code])] for code in ordered if any(adherence_counts(counts[code]).values())]


async def test_the_aggregate_equals_the_visit_by_visit_count_at_every_site_as_of_every_day(db):
    assert await demo.load_demo(TODAY) is True
    ago = lambda days: TODAY - timedelta(days=days)  # noqa: E731
    await sites.create_site(STUDY, "103", "Hilltop Clinic", "America/Denver")
    await participants.enroll_participant(STUDY, "103-001", "103", arm="A", enrolled_on=ago(30), today=TODAY)
    for event, days in (("consent", 30), ("randomization", 24), ("first_dose", 24)):
        await visits.record_event(STUDY, "103-001", event, ago(days), today=TODAY)
    await visits.record_visit(STUDY, "103-001", "V1", ago(30), today=TODAY)
    await visits.record_visit(STUDY, "103-001", "V2", ago(22), reason="travelling", today=TODAY)  # two days late
    await visits.record_visit(STUDY, "101-001", "UNS1", ago(5), today=TODAY)  # unscheduled: never counted
    seen: Counter[str] = Counter()
    for as_of in [ago(days) for days in range(0, 121)] + [ago(200)]:  # every day: each window's edges
        found = await adherence_per_site(STUDY, SITES, as_of)
        for site in SITES:
            expected = await visit_by_visit(site, as_of)
            assert found.get(site, []) == expected, (site, as_of)
            for _, counts in expected:
                seen.update(counts)
    # the days chosen reach every state, at every site
    assert all(seen[state] > 0 for state in ("on_time", "early", "late", "missed")), seen
    assert set(await adherence_per_site(STUDY, SITES, TODAY)) == set(SITES)
    assert await adherence_per_site(STUDY, SITES, ago(200)) == {}  # nobody enrolled yet
    assert await adherence_per_site(STUDY, [], TODAY) == {}
