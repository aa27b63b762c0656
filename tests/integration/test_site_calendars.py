"""Site calendars in the database (issue 11, section 5): a site's holidays and closures move the business-day
windows of its participants only, the protocol's calendar applies where a site has none; shown on the worklist."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import add_user, signed_in
from trialcoord.kernel import audit_log
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, protocols, visits, worklists
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.sites import ClosedDay, add_site_closure, create_site, set_site_calendar, site_calendar_days

pytestmark = pytest.mark.anyio
PROTOCOL = """\
study: CAL-1
title: Business-day windows
version: "1.0"
effective: 2026-01-01
day_one: randomization
calendar: weekdays
events:
  randomization: {}
visits:
  - {code: V2, name: Week 2, from: randomization, offset: 2w, window: {early: 0d, late: 2bd}}
"""
RANDOMIZED = date(2026, 4, 16)  # V2 targets Thursday 2026-04-30; Friday 1 May is a holiday in Germany, not the US
TODAY = date(2026, 4, 20)


@pytest.fixture
async def sites(db):
    await protocols.load_protocol_version(parse_protocol(PROTOCOL, "cal.yaml"), PROTOCOL, "cal.yaml")
    await create_site("CAL-1", "101", "Boston", "America/New_York")
    await create_site("CAL-1", "201", "München", "Europe/Berlin", calendar="holidays:DE-BY")
    await create_site("CAL-1", "301", "Leeds", "Europe/London")
    for subject, site in (("101-1", "101"), ("201-1", "201"), ("301-1", "301")):
        await participants.enroll_participant("CAL-1", subject, site, enrolled_on=RANDOMIZED, today=TODAY)
        await visits.record_event("CAL-1", subject, "randomization", RANDOMIZED, today=TODAY)
    return "CAL-1"


async def latest(study: str, subject: str) -> date:
    rows = [r for r in await worklists.worklist(study, date(2026, 4, 30), kind="today") if r.subject_id == subject]
    return rows[0].visit.latest  # as stored


async def test_a_non_us_site_skips_its_own_holidays_and_others_the_protocols_calendar(sites):
    assert await latest(sites, "101-1") == date(2026, 5, 4)  # weekdays: Fri 1 May, Mon 4 May
    assert await latest(sites, "201-1") == date(2026, 5, 5)  # Bavaria: 1 May is Labour Day
    assert await latest(sites, "301-1") == date(2026, 5, 4)


async def test_a_closure_and_a_change_of_calendar_move_the_stored_windows(sites):
    await add_site_closure(sites, "301", date(2026, 5, 4), None, "Building works", today=TODAY, actor="admin")
    assert await latest(sites, "301-1") == date(2026, 5, 5)
    await set_site_calendar(sites, "101", "holidays:DE-BY", today=TODAY, actor="admin")
    assert await latest(sites, "101-1") == date(2026, 5, 5)
    await set_site_calendar(sites, "101", None, today=TODAY, actor="admin")
    assert await latest(sites, "101-1") == date(2026, 5, 4)
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="site"), None, 10)
    assert {(e.record_id, e.action) for e in entries} >= {
        ("CAL-1/301/closure/2026-05-04", "create"),
        ("CAL-1/101", "update"),
    }
    days = await site_calendar_days(sites, "301", date(2026, 4, 30), date(2026, 5, 6))
    assert days.closed == [ClosedDay(date=date(2026, 5, 4), reason="Building works")]
    assert (days.calendar, days.own) == ("weekdays", False)


async def test_calendar_and_closure_problems_name_the_field(sites):
    with pytest.raises(InvalidInput) as unknown:
        await create_site(sites, "401", "Nowhere", calendar="holidays:XX")
    assert unknown.value.problems[0].field == "calendar"
    with pytest.raises(InvalidInput) as backwards:
        await add_site_closure(sites, "101", date(2026, 5, 4), date(2026, 5, 1), "x", today=TODAY)
    assert backwards.value.problems[0].field == "last_day"
    with pytest.raises(InvalidInput, match="why the site is closed"):
        await add_site_closure(sites, "101", date(2026, 5, 4), None, " ", today=TODAY)


async def test_the_worklist_shows_the_sites_closed_days_and_the_api_manages_them(sites, anonymous):
    await add_user("admin", ("administrator", None, None))
    await add_user("coord", ("coordinator", sites, "201"))
    admin = await signed_in(anonymous, "admin")
    added = await admin.post(
        f"/api/studies/{sites}/sites/201/closures",
        json={"first_day": "2026-04-27", "last_day": "2026-04-28", "reason": "Staff training"},
    )
    assert added.status_code == 201, added.text
    coord = await signed_in(anonymous, "coord")
    page = await coord.get(f"/studies/{sites}", params={"site": "201", "as_of": "2026-04-25"})
    assert "follow holidays:DE-BY" in page.text and "2026-05-01 (Labor Day)" in page.text
    assert "2026-04-27 (Staff training)" in page.text
    shown = await coord.get(
        f"/api/studies/{sites}/sites/201/calendar", params={"first": "2026-05-01", "last": "2026-05-01"}
    )
    assert shown.json()["closed"] == [{"date": "2026-05-01", "reason": "Labor Day"}]
    assert (await coord.put(f"/api/studies/{sites}/sites/201/calendar", json={"calendar": None})).status_code == 403
    admin = await signed_in(anonymous, "admin")  # the same client, signed in again
    bad = await admin.put(f"/api/studies/{sites}/sites/201/calendar", json={"calendar": "holidays:DE-ZZ"})
    assert bad.status_code == 422 and "not a region of DE" in bad.text
    done = await admin.put(f"/api/studies/{sites}/sites/201/calendar", json={"calendar": "holidays:fr"})
    assert done.status_code == 200 and done.json()["calendar"] == "holidays:FR"  # as the library spells it
    reversed_range = await admin.get(
        f"/api/studies/{sites}/sites/201/calendar", params={"first": "2026-05-02", "last": "2026-05-01"}
    )
    assert reversed_range.status_code == 422 and "comes before the first" in reversed_range.text
    twice = await admin.post(
        f"/api/studies/{sites}/sites/201/closures", json={"first_day": "2026-04-28", "reason": "Staff training"}
    )
    assert twice.status_code == 409 and "already closed from 2026-04-27 to 2026-04-28" in twice.text
    withdrawn = await admin.post(
        f"/api/studies/{sites}/sites/201/closures/2026-04-27/withdraw", json={"reason": "Training moved online"}
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["last_day"] == "2026-04-28"
    shown = await admin.get(
        f"/api/studies/{sites}/sites/201/calendar", params={"first": "2026-04-27", "last": "2026-04-28"}
    )
    assert shown.json()["closures"] == [] and shown.json()["closed"] == []
    again = await admin.post(f"/api/studies/{sites}/sites/201/closures/2026-04-27/withdraw", json={"reason": "x"})
    assert again.status_code == 404
