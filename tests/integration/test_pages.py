"""Server-rendered pages over both engines: render, post/redirect/get, and field errors re-rendered."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.db]

STUDY = "/studies/TST-1"
SUBJECT = f"{STUDY}/participants/101-001"


@pytest.fixture
async def enrolled(client, study):
    form = {"subject_id": "101-001", "site": "101", "arm": "A", "enrolled_on": "2024-03-01"}
    response = await client.post(f"{STUDY}/participants", data=form)
    assert response.status_code == 303 and response.headers["location"] == SUBJECT
    response = await client.post(f"{SUBJECT}/events", data={"event": "randomization", "date": "2024-03-04"})
    assert response.status_code == 303 and response.headers["location"] == f"{SUBJECT}?saved=event"
    return "101-001"


def error_next_to(html: str, field_id: str) -> str:
    """The message shown for a field: the element the input's aria-describedby points at."""
    assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', html), f"{field_id} is not marked invalid"
    found = re.search(rf'<span class="error" id="{field_id}-note">([^<]*)</span>', html)
    assert found, f"no message next to {field_id}"
    return found.group(1)


async def test_index_lists_studies(client, study):
    response = await client.get("/")
    assert response.status_code == 200 and 'href="/studies/TST-1"' in response.text
    assert '<h2 id="studies-heading">Studies</h2>' in response.text  # on the home page, below the tasks


async def test_study_page_has_tabs_site_selector_and_enrol_form(client, enrolled):
    response = await client.get(STUDY, params={"tab": "overdue", "site": "101", "as_of": "2024-03-25"})
    html = response.text
    assert response.status_code == 200
    assert re.search(r'tab=overdue[^"]*"\s+aria-current="page"', html)
    assert all(f"tab={tab}" in html for tab in ("today", "week", "missed_or_out_of_window"))
    assert '<label for="site">Site</label>' in html and '<option value="101" selected>' in html
    assert '<label for="enrol-subject_id">Subject ID</label>' in html
    assert 'href="/studies/TST-1/participants/101-001"' in html
    assert "/static/site.css" in html and "http" not in re.sub(r'href="https?://testserver[^"]*"', "", html)


async def test_enrol_error_is_shown_next_to_the_field(client, study):
    response = await client.post(f"{STUDY}/participants", data={"subject_id": "101-009", "site": "999"})
    assert response.status_code == 422
    assert "no site 999" in error_next_to(response.text, "enrol-site")
    assert 'value="101-009"' in response.text  # what was typed stays in the form
    missing = await client.post(f"{STUDY}/participants", data={"site": "101", "enrolled_on": "soon"})
    assert missing.status_code == 422
    assert error_next_to(missing.text, "enrol-subject_id") == "Enter the subject ID."
    assert "as a date" in error_next_to(missing.text, "enrol-enrolled_on")


async def test_duplicate_enrolment_is_shown_on_the_form(client, enrolled):
    response = await client.post(f"{STUDY}/participants", data={"subject_id": "101-001", "site": "101"})
    assert response.status_code == 422 and 'role="alert"' in response.text and "101-001" in response.text


async def test_participant_page_shows_visits_badges_and_timeline(client, enrolled):
    response = await client.get(SUBJECT, params={"as_of": "2024-03-16", "saved": "event"})
    html = response.text
    assert response.status_code == 200 and "Event recorded." in html
    assert '<tr id="visit-V2">' in html and "2024-03-15 – 2024-03-21" in html
    assert '<span class="badge due">Due</span>' in html
    assert "<svg" in html and "Visit timeline" in html and 'class="legend"' in html
    assert '<option value="randomization">randomization</option>' in html
    assert "<dt>Events</dt><dd>randomization 2024-03-04</dd>" in html


async def test_record_a_late_visit_through_the_form(client, enrolled):
    form = {"date": "2024-03-23", "reason": "Participant was travelling", "row_version": ""}
    response = await client.post(f"{SUBJECT}/visits/V2/actual", data=form)
    assert response.status_code == 303 and response.headers["location"] == f"{SUBJECT}?saved=actual"
    page = (await client.get(response.headers["location"])).text
    row = page[page.index('<tr id="visit-V2">') :].split("</tr>")[0]
    assert '<span class="badge late">Late</span>' in row and "2 days late" in row


async def test_visit_form_errors_reopen_that_visit_form(client, enrolled):
    response = await client.post(f"{SUBJECT}/visits/V2/missed", data={"reason": ""})
    assert response.status_code == 422
    assert error_next_to(response.text, "V2-missed-reason") == "Enter the reason."
    row = response.text[response.text.index('<tr id="visit-V2">') :].split("</tr>")[0]
    assert '<details class="visit-actions" open>' in row
    outside = await client.post(f"{SUBJECT}/visits/V3/appointment", data={"date": "2024-06-01"})
    assert outside.status_code == 422 and "outside the window" in error_next_to(outside.text, "V3-appointment-reason")


async def test_stale_visit_form_is_a_conflict_shown_on_the_form(client, enrolled):
    await client.post(f"{SUBJECT}/visits/V2/actual", data={"date": "2024-03-18"})
    response = await client.post(f"{SUBJECT}/visits/V2/actual", data={"date": "2024-03-19", "row_version": "0"})
    assert response.status_code == 422 and "changed by someone else" in response.text


async def test_arm_form(client, study):
    await client.post(f"{STUDY}/participants", data={"subject_id": "101-002", "site": "101"})
    path = f"{STUDY}/participants/101-002"
    assert "Assign an arm" in (await client.get(path)).text
    bad = await client.post(f"{path}/arm", data={"arm": ""})
    assert bad.status_code == 422 and error_next_to(bad.text, "arm-arm") == "Choose the arm."
    assert (await client.post(f"{path}/arm", data={"arm": "P"})).status_code == 303


async def test_protocol_version_form(client, enrolled):
    page = (await client.get(SUBJECT)).text
    assert "Move to another protocol version" in page and '<option value="2.0">version 2.0</option>' in page
    bad = await client.post(f"{SUBJECT}/protocol-version", data={"version": "2.0", "effective": "2024-06-02"})
    assert bad.status_code == 422 and error_next_to(bad.text, "version-reason") == "Enter the reason."
    moved = await client.post(
        f"{SUBJECT}/protocol-version", data={"version": "2.0", "effective": "2024-06-02", "reason": "amendment 1"}
    )
    assert moved.status_code == 303 and moved.headers["location"] == f"{SUBJECT}?saved=version"
    page = (await client.get(moved.headers["location"])).text
    assert "Protocol version changed." in page and "(protocol version 2.0)" in page


async def test_bad_requests_get_friendly_pages_never_a_500(client, study):
    missing = await client.get(f"{STUDY}/participants/nobody")
    assert missing.status_code == 404 and "no participant nobody" in missing.text and "<h1>" in missing.text
    assert (await client.get(STUDY, params={"tab": "later"})).status_code == 400
    assert (await client.get("/studies/NOPE")).status_code == 404
    assert (await client.get(STUDY, params={"as_of": "0001-01-01"})).status_code == 400
    assert (await client.get("/static/site.css")).headers["content-type"].startswith("text/css")
