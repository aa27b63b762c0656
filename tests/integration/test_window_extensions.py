"""Window extensions at a real site (issue 15): a coordinator requests more days for one visit, an investigator
approves or declines; an approved extension widens the window on the schedule and for booking, and detection
honours it. Use cases, API and pages, on both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.conftest import RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, add_user, signed_in
from tests.integration.test_pages import error_next_to
from trialcoord.deviations import detection, manual, queue, window_extensions
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.web.paging import encode_cursor
from trialcoord.scheduling import visits, worklists
from trialcoord.scheduling.visit_rows import visit_row

pytestmark = [pytest.mark.anyio, pytest.mark.db]
STUDY = "TST-1"
TODAY = date(2024, 3, 10)  # V2's window: 2024-03-15 .. 2024-03-21
EXTENSIONS = "/studies/TST-1/extensions"


@pytest.fixture
async def randomized(personas):
    await add_user("ivan", ("investigator", STUDY, SITE_A))
    for subject in (SUBJECT_A, SUBJECT_B):
        await visits.record_event(STUDY, subject, "randomization", RANDOMIZED, today=RANDOMIZED)
    return personas


async def ask(subject=SUBJECT_A, visit="V2", earlier=0, later=3, actor="coord-a"):
    return await window_extensions.request_extension(STUDY, subject, visit, earlier, later, "travelling", actor)


async def entries(record_type: str) -> list[audit_log.TrailEntry]:
    return await audit_log.export_rows(audit_log.AuditFilter(record_type=record_type), 100)


# Use cases ---------------------------------------------------------------------------------------


async def test_a_requested_extension_waits_for_an_investigator_and_is_counted_for_the_home_page(randomized):
    made = await ask()
    assert (made.participant, made.site, made.visit, made.earlier_days, made.later_days) == (
        SUBJECT_A,
        SITE_A,
        "V2",
        0,
        3,
    )
    assert (made.state, made.requested_by, made.path) == ("requested", "coord-a", f"{EXTENSIONS}/{made.id}")
    other = await ask(SUBJECT_B, "V3", earlier=2, later=0, actor="coord-b")
    assert [r.id for r in await window_extensions.open_extension_requests(STUDY, None)] == [made.id, other.id]
    assert [r.id for r in await window_extensions.open_extension_requests(STUDY, {SITE_B})] == [other.id]
    assert await window_extensions.count_open_extension_requests(STUDY, None) == 2
    assert await window_extensions.count_open_extension_requests(STUDY, {SITE_A}) == 1
    assert await window_extensions.count_open_extension_requests(STUDY, set()) == 0
    [entry, _] = await entries("window_extension_request")
    assert (entry.actor, entry.action, entry.record_id, entry.reason) == (
        "coord-a",
        "create",
        f"TST-1/{SITE_A}/{SUBJECT_A}/V2/extension/{made.id}",
        "travelling",
    )
    assert (await fetch("SELECT COUNT(*) AS n FROM window_exceptions"))[0]["n"] == 0  # nothing approved yet


async def test_approving_makes_the_visits_window_exception_approved_today_and_audits_both(randomized):
    made = await ask()
    decided = await window_extensions.decide_extension(STUDY, made.id, True, "ivan", TODAY, row_version=1)
    assert (decided.state, decided.decided_by) == ("approved", "ivan")
    assert await window_extensions.open_extension_requests(STUDY, None) == []
    [stored] = await manual.exceptions_of(STUDY)
    assert (stored.subject_id, stored.visit, stored.later_days, stored.approved_on[:10], stored.approved_by) == (
        SUBJECT_A,
        "V2",
        3,
        TODAY.isoformat(),
        "ivan",
    )
    actions = [(e.action, e.record_type) for e in await audit_log.export_rows(audit_log.AuditFilter(actor="ivan"), 10)]
    assert actions == [("approve", "window_extension_request"), ("create", "window_exception")]
    with pytest.raises(InvalidInput, match="already approved"):
        await window_extensions.decide_extension(STUDY, made.id, False, "ivan", TODAY, reason="changed my mind")
    with pytest.raises(Conflict, match="already has an approved extension"):
        await ask(later=5)


async def test_declining_needs_a_reason_and_approves_nothing(randomized):
    made = await ask()
    with pytest.raises(InvalidInput) as bare:
        await window_extensions.decide_extension(STUDY, made.id, False, "ivan", TODAY, reason=" ")
    assert bare.value.problems[0].field == "reason"
    with pytest.raises(Conflict, match="changed meanwhile"):
        await window_extensions.decide_extension(STUDY, made.id, False, "ivan", TODAY, reason="no", row_version=9)
    declined = await window_extensions.decide_extension(STUDY, made.id, False, "ivan", TODAY, reason="book V2 on time")
    assert (declined.state, declined.decision_reason) == ("declined", "book V2 on time")
    assert await manual.exceptions_of(STUDY) == []
    again = await ask(later=2)  # a declined request leaves the visit free for another
    assert again.state == "requested"


async def test_bad_requests_are_refused_naming_the_field(randomized):
    with pytest.raises(InvalidInput) as none:
        await ask(earlier=0, later=0)
    assert none.value.problems[0].field == "later_days"
    with pytest.raises(InvalidInput) as reasonless:
        await window_extensions.request_extension(STUDY, SUBJECT_A, "V2", 0, 2, "  ", "coord-a")
    assert reasonless.value.problems[0].field == "reason"
    with pytest.raises(InvalidInput) as unknown:
        await ask(visit="V99")
    assert unknown.value.problems[0].field == "visit"
    with pytest.raises(NotFound):
        await ask(subject="9999")
    await ask()
    with pytest.raises(Conflict, match="open extension request"):
        await ask(later=4)
    with pytest.raises(NotFound):  # a request at a site the decider may not decide at reads as missing
        await window_extensions.decide_extension(STUDY, 1, True, "ivan", TODAY, sites={SITE_B})


# The schedule and booking ------------------------------------------------------------------------


async def test_an_approved_extension_widens_the_schedule_and_booking_and_prevents_the_late_deviation(
    randomized, server_clock
):
    server_clock.to(datetime(2024, 3, 10, 15, tzinfo=UTC))  # approved and recorded before the visit took place
    with pytest.raises(InvalidInput, match="outside the window"):
        await visits.book_appointment(STUDY, SUBJECT_A, "V2", date(2024, 3, 23), today=TODAY)
    made = await ask()
    shown = {v.visit.visit: visit_row(v) for v in await worklists.participant_schedule(STUDY, SUBJECT_A, TODAY)}
    assert not shown["V2"].extended  # requested is not approved
    await window_extensions.decide_extension(STUDY, made.id, True, "ivan", TODAY)
    shown = {v.visit.visit: visit_row(v) for v in await worklists.participant_schedule(STUDY, SUBJECT_A, TODAY)}
    v2 = shown["V2"]
    assert (v2.extended, v2.earliest, v2.latest) == (True, date(2024, 3, 15), date(2024, 3, 21))
    assert (v2.extended_earliest, v2.extended_latest) == (date(2024, 3, 15), date(2024, 3, 24))
    assert not shown["V3"].extended and shown["V3"].extended_latest is None
    booked = await visits.book_appointment(STUDY, SUBJECT_A, "V2", date(2024, 3, 23), today=TODAY, actor="coord-a")
    assert (booked.appointment, booked.appointment_reason) == (date(2024, 3, 23), None)
    with pytest.raises(InvalidInput, match="2024-03-15 to 2024-03-24 as extended by the investigator"):
        await visits.book_appointment(
            STUDY, SUBJECT_A, "V2", date(2024, 3, 25), expected_row_version=booked.row_version, today=TODAY
        )
    await visits.record_visit(STUDY, SUBJECT_A, "V2", date(2024, 3, 23), today=date(2024, 3, 23))
    await detection.detect(STUDY, date(2024, 3, 23), today=date(2024, 3, 23))
    rows, _ = await queue.listing(STUDY, participant=SUBJECT_A)
    assert ("V2", "visit_late") not in {(r.visit, r.rule) for r in rows}


# API and pages -----------------------------------------------------------------------------------


async def test_requesting_and_deciding_over_the_api(anonymous, randomized):
    coord = await signed_in(anonymous, "coord-a")
    url = f"/api/studies/{STUDY}/participants/{SUBJECT_A}/window-extension-requests"
    made = await coord.post(url, json={"visit": "V2", "earlier_days": 0, "later_days": 3, "reason": "travelling"})
    assert made.status_code == 201 and made.json()["state"] == "requested"
    assert made.json()["path"] == f"{EXTENSIONS}/{made.json()['id']}"
    bad = await coord.post(url, json={"visit": "V2", "earlier_days": 0, "later_days": 0, "reason": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "later_days"
    other_site = f"/api/studies/{STUDY}/participants/{SUBJECT_B}/window-extension-requests"
    assert (
        await coord.post(other_site, json={"visit": "V2", "earlier_days": 1, "later_days": 0, "reason": "x"})
    ).status_code == 403
    listed = await coord.get(f"/api/studies/{STUDY}/window-extension-requests", params={"state": "requested"})
    assert [r["visit"] for r in listed.json()] == ["V2"]
    decision = f"/api/studies/{STUDY}/window-extension-requests/{made.json()['id']}/decision"
    assert (await coord.post(decision, json={"approve": True})).status_code == 403  # coordinators ask, never decide
    monitor = await signed_in(anonymous, "monitor")
    assert (await monitor.post(decision, json={"approve": True})).status_code == 403
    ivan = await signed_in(anonymous, "ivan")
    unread = await ivan.post(decision, json={"approve": True})
    assert unread.status_code == 409 and unread.json()["errors"][0]["field"] == "row_version"
    declined = await ivan.post(decision, json={"approve": False, "row_version": 1})
    assert declined.status_code == 422 and declined.json()["errors"][0]["field"] == "reason"
    approved = await ivan.post(decision, json={"approve": True, "row_version": 1})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    exceptions = (await ivan.get(f"/api/studies/{STUDY}/window-exceptions")).json()
    assert [(e["subject_id"], e["site"], e["later_days"]) for e in exceptions] == [(SUBJECT_A, SITE_A, 3)]
    schedule = (
        await ivan.get(f"/api/studies/{STUDY}/participants/{SUBJECT_A}/schedule", params={"as_of": "2024-03-10"})
    ).json()
    v2 = next(row for row in schedule if row["visit"] == "V2")
    assert (v2["extended"], v2["extended_latest"], v2["latest"]) == (True, "2024-03-24", "2024-03-21")


async def test_a_coordinator_requests_on_the_page_and_an_investigator_approves_on_the_next(anonymous, randomized):
    coord = await signed_in(anonymous, "coord-a")
    page = await coord.get(EXTENSIONS, params={"participant": SUBJECT_A, "visit": "V2"})
    assert page.status_code == 200 and "Request an extension" in page.text and f'value="{SUBJECT_A}"' in page.text
    empty = await coord.post(EXTENSIONS, data={"participant": SUBJECT_A, "visit": "V2", "later_days": "x"})
    assert empty.status_code == 422
    assert "whole number" in error_next_to(empty.text, "extension-later_days")
    assert "reason" in error_next_to(empty.text, "extension-reason")
    elsewhere = await coord.post(
        EXTENSIONS, data={"participant": SUBJECT_B, "visit": "V2", "later_days": "1", "reason": "x"}
    )
    assert elsewhere.status_code == 422 and "no participant" in error_next_to(elsewhere.text, "extension-participant")
    made = await coord.post(
        EXTENSIONS,
        data={"participant": SUBJECT_A, "visit": "V2", "earlier_days": "0", "later_days": "3", "reason": "travelling"},
    )
    assert made.status_code == 303 and made.headers["location"].endswith("?saved=requested")
    shown = await coord.get(made.headers["location"])
    assert "Extension requested." in shown.text and "2024-03-15 – 2024-03-24" in shown.text
    assert 'id="approve-form"' not in shown.text  # coordinators ask
    listing = await coord.get(EXTENSIONS)
    assert 'id="request-1"' in listing.text and "requested" in listing.text
    ivan = await signed_in(anonymous, "ivan")
    request = made.headers["location"].split("?")[0]
    assert 'id="approve-form"' in (await ivan.get(request)).text
    bare = await ivan.post(f"{request}/decline", data={"row_version": "1"})
    assert bare.status_code == 422 and "reason" in error_next_to(bare.text, "decline-reason")
    approved = await ivan.post(f"{request}/approve", data={"row_version": "1"})
    assert approved.status_code == 303
    after = await ivan.get(approved.headers["location"])
    assert "Extension approved." in after.text and 'id="approve-form"' not in after.text
    twice = await ivan.post(f"{request}/approve", data={"row_version": "2"})
    assert twice.status_code == 422 and "already approved" in twice.text
    schedule = await ivan.get(f"/studies/{STUDY}/participants/{SUBJECT_A}", params={"as_of": "2024-03-10"})
    row = schedule.text.split('id="visit-V2"')[1].split("</tr>")[0]
    assert "2024-03-15 – 2024-03-24" in row and "extended" in row and "protocol window 2024-03-15 – 2024-03-21" in row
    approved_list = await ivan.get(EXTENSIONS, params={"state": "approved"})
    assert 'id="request-1"' in approved_list.text and 'id="approved"' in approved_list.text
    assert (await ivan.get(EXTENSIONS, params={"state": "lost"})).status_code == 400
    coord_b = await signed_in(anonymous, "coord-b")
    assert (await coord_b.get(request)).status_code == 403  # another site's request: denied, as a missing one


async def test_the_requests_page_pages_and_sorts(anonymous, randomized):
    for visit in ("V2", "V3", "PK"):
        await ask(visit=visit)
    coord = await signed_in(anonymous, "coord-a")
    first = await coord.get(EXTENSIONS, params={"size": "2", "sort": "visit"})
    assert first.status_code == 200
    assert first.text.index(">PK<") < first.text.index(">V2<") and ">V3<" not in first.text
    link = first.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert "sort=visit" in link and "state=requested" in link
    second = await coord.get(link)
    assert ">V3<" in second.text and ">PK<" not in second.text
    tampered = await coord.get(EXTENSIONS, params={"sort": "visit", "after": encode_cursor((5, 1))})
    assert tampered.status_code == 400 and "after" in tampered.text
