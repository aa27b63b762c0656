"""Subscribable calendar feeds: an address that works with no header, re-checks its owner's grants on every fetch,
is audited per fetch, revocable, and opens nothing but its calendar. What is served is read back with the
`icalendar` library's own parser (never trialcoord's), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from icalendar import Calendar

from tests.conftest import RANDOMIZED, SITE_A, SUBJECT_A, SUBJECT_B, signed_in
from trialcoord.kernel.database.engine import fetch

STUDY = "TST-1"
REQUIRED = ("UID", "DTSTAMP", "SEQUENCE", "LAST-MODIFIED", "DTSTART")


@pytest.fixture
async def randomized(personas):
    """The personas' study with both participants randomized on RANDOMIZED: their visits have dates."""
    from trialcoord.scheduling import visits

    for subject in (SUBJECT_A, SUBJECT_B):
        await visits.record_event(STUDY, subject, "randomization", RANDOMIZED, today=RANDOMIZED)
    return personas


def vevents(body: bytes) -> dict[str, object]:
    """The served calendar's events by UID, each checked for what RFC 5545 and its updates in place need."""
    found = Calendar.from_ical(body).walk("VEVENT")
    for event in found:
        missing = [name for name in REQUIRED if name not in event]
        assert missing == [], f"{event.get('UID')} lacks {missing}"
    by_uid = {str(event["uid"]): event for event in found}
    assert len(by_uid) == len(found), "two events share a UID"
    return by_uid


async def new_feed(client, where: str) -> str:
    """The path of a new feed of `where` (such as `sites/101`), as its owner's API answers it once."""
    answer = await client.post(f"/api/studies/{STUDY}/{where}/feeds")
    assert answer.status_code == 201, answer.text
    return urlsplit(answer.json()["url"]).path


async def fetch_feed(anonymous, path: str, **params: str):
    """A calendar app's fetch: no cookie, no Authorization header."""
    anonymous.cookies.clear()
    for header in ("Authorization", "X-CSRF-Token"):
        anonymous.headers.pop(header, None)
    return await anonymous.get(path, params=params)


async def test_a_feed_serves_without_headers_audits_each_fetch_and_updates_a_moved_visit(
    anonymous, randomized, server_clock
):
    from trialcoord.scheduling import visits

    coordinator = await signed_in(anonymous, "coord-a")
    path = await new_feed(coordinator, f"participants/{SUBJECT_A}")
    token = path.split("/feeds/")[1].split("/")[0]
    stored = await fetch("SELECT token_hash FROM calendar_feeds")
    assert [row["token_hash"] for row in stored] != [token]  # only its hash is kept

    first = await fetch_feed(anonymous, path)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/calendar")
    before = vevents(first.content)
    uid = f"{STUDY}/{SUBJECT_A}/V2@trialcoord"
    assert before[uid].decoded("dtstart") == date(2024, 3, 18)
    assert (await fetch_feed(anonymous, path)).content == first.content  # same stored state, same bytes

    server_clock.to(datetime.now(UTC) + timedelta(days=1))  # the move happens later than the enrolment
    await visits.book_appointment(STUDY, SUBJECT_A, "V2", date(2024, 3, 20), today=RANDOMIZED + timedelta(days=10))
    after = vevents((await fetch_feed(anonymous, path)).content)
    assert after[uid].decoded("dtstart") == date(2024, 3, 20)
    assert after[uid].decoded("sequence") > before[uid].decoded("sequence")
    assert after[uid].decoded("last-modified") > before[uid].decoded("last-modified")
    unmoved = f"{STUDY}/{SUBJECT_A}/V3@trialcoord"
    assert after[unmoved].decoded("sequence") == before[unmoved].decoded("sequence")

    feed_id = (await fetch("SELECT id FROM calendar_feeds"))[0]["id"]
    fetches = [
        json.loads(row["new"])
        for row in await fetch(
            "SELECT new FROM audit_entries WHERE action = 'export' AND actor = 'coord-a' ORDER BY sequence"
        )
    ]
    assert len(fetches) == 3 and all(entry["calendar_feed"] == feed_id for entry in fetches)  # one per fetch
    coordinator = await signed_in(anonymous, "coord-a")  # the calendar app's fetches cleared the client's session
    listed = (await coordinator.get("/api/calendar-feeds")).json()
    assert [f["id"] for f in listed] == [feed_id] and listed[0]["last_used_at"] is not None


async def test_a_site_feed_shows_the_days_asked_for_and_names_a_bad_parameter(anonymous, randomized):
    path = await new_feed(await signed_in(anonymous, "coord-a"), f"sites/{SITE_A}")
    shown = await fetch_feed(anonymous, path, **{"from": "2024-03-15", "to": "2024-03-31"})
    days = {event.decoded("dtstart") for event in vevents(shown.content).values()}
    assert days and all(date(2024, 3, 15) <= day <= date(2024, 3, 31) for day in days)
    everything = vevents((await fetch_feed(anonymous, path, **{"from": "2024-01-01", "to": "2025-12-31"})).content)
    assert len(everything) > len(days)
    # By default a month back to a year ahead of today: this 2024 schedule lies before it.
    assert vevents((await fetch_feed(anonymous, path)).content) == {}
    for params, named in (
        ({"from": "2024-13-01"}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": "2024-04-01", "to": "2024-03-01"}, "from"),
    ):
        refused = await fetch_feed(anonymous, path, **params)
        assert refused.status_code == 400 and named in refused.text, refused.text


async def test_a_feed_stops_with_its_revocation_its_owners_grant_or_account(anonymous, randomized, installation):
    from trialcoord.accounts import users

    coordinator = await signed_in(anonymous, "coord-a")
    revoked, ended, disabled = [await new_feed(coordinator, f"sites/{SITE_A}") for _ in range(3)]
    feeds = (await coordinator.get("/api/calendar-feeds")).json()
    assert (await fetch_feed(anonymous, revoked, **{"from": "2024-03-01"})).status_code == 200

    other = await signed_in(anonymous, "coord-b")
    assert (await other.post(f"/api/calendar-feeds/{feeds[-1]['id']}/revoke")).status_code == 404  # not theirs
    coordinator = await signed_in(anonymous, "coord-a")
    answer = await coordinator.post(f"/api/calendar-feeds/{feeds[-1]['id']}/revoke")
    assert answer.status_code == 200 and answer.json()["revoked_by"] == "coord-a"
    gone = await fetch_feed(anonymous, revoked)
    assert gone.status_code == 404 and "BEGIN:VCALENDAR" not in gone.text

    grant = (await users.get_user("coord-a")).grants[0]
    await users.revoke(grant.id, "admin", "left the site")
    refused = await fetch_feed(anonymous, ended, **{"from": "2024-03-01"})
    assert refused.status_code == 403 and "VEVENT" not in refused.text and "coordinator" not in refused.text

    await users.disable_user("coord-a", "admin", "left", installation)
    assert (await fetch_feed(anonymous, disabled)).status_code == 404
    admin = await signed_in(anonymous, "admin")
    assert (await admin.post(f"/api/calendar-feeds/{feeds[0]['id']}/revoke")).json()["revoked_by"] == "admin"


async def test_a_feed_token_opens_its_calendar_only(anonymous, randomized):
    path = await new_feed(await signed_in(anonymous, "coord-a"), f"sites/{SITE_A}")
    token = path.split("/feeds/")[1].split("/")[0]
    await fetch_feed(anonymous, "/")  # headers cleared
    as_bearer = await anonymous.get(f"/api/studies/{STUDY}/worklist", headers={"Authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    as_bearer = await anonymous.get(
        f"/api/studies/{STUDY}/sites/{SITE_A}/schedule.ics", headers={"Authorization": f"Bearer {token}"}
    )
    assert as_bearer.status_code == 401
    assert (await fetch_feed(anonymous, path.replace(f"/sites/{SITE_A}/", "/sites/102/"))).status_code == 404
    assert (await fetch_feed(anonymous, path.replace(token, token[:-1] + "x"))).status_code == 404


async def test_the_pages_offer_a_feed_show_its_address_once_and_list_it(anonymous, randomized):
    coordinator = await signed_in(anonymous, "coord-a")
    study_page = await coordinator.get(f"/studies/{STUDY}", params={"site": SITE_A})
    assert "Subscribe in a calendar app" in study_page.text
    participant_page = await coordinator.get(f"/studies/{STUDY}/participants/{SUBJECT_A}")
    assert f"/studies/{STUDY}/participants/{SUBJECT_A}/calendar-feeds" in participant_page.text
    made = await coordinator.post(f"/studies/{STUDY}/sites/{SITE_A}/calendar-feeds", data={})
    assert made.status_code == 201 and "shown <strong>only now</strong>" in made.text
    url = made.text.split('id="feed-url"')[1].split('value="')[1].split('"')[0]
    assert "/feeds/" in url and (await fetch_feed(anonymous, urlsplit(url).path)).status_code == 200
    coordinator = await signed_in(anonymous, "coord-a")
    listing = await coordinator.get("/calendar-feeds")
    assert f"{STUDY} site {SITE_A}" in listing.text and url not in listing.text  # the address is never shown again
    feed_id = (await fetch("SELECT id FROM calendar_feeds"))[0]["id"]
    revoked = await coordinator.post(f"/calendar-feeds/{feed_id}/revoke", data={}, follow_redirects=True)
    assert revoked.status_code == 200 and "revoked" in revoked.text
    refused = await coordinator.post(f"/studies/{STUDY}/sites/102/calendar-feeds", data={})
    assert refused.status_code == 403
    pharmacist = await signed_in(anonymous, "pharmacist-a")  # sees the schedule, may not export it: no offer
    site_page = await pharmacist.get(f"/studies/{STUDY}", params={"site": SITE_A})
    assert site_page.status_code == 200 and "Subscribe in a calendar app" not in site_page.text
    assert "calendar-feeds" not in (await pharmacist.get(f"/studies/{STUDY}/participants/{SUBJECT_A}")).text
