"""The JSON API over both engines: every route's happy path, and 400/404/409/422 naming the field."""

from __future__ import annotations

import httpx
import pytest
from icalendar import Calendar

from tests.conftest import PROTOCOL_V1

pytestmark = [pytest.mark.anyio, pytest.mark.db]

STUDY = "/api/studies/TST-1"
SUBJECT = f"{STUDY}/participants/101-001"
AS_OF = "2024-03-25"
PROBLEM = "application/problem+json"


@pytest.fixture
async def enrolled(client, study):
    """101-001 in arm A, randomised 2024-03-04: V2's window is 2024-03-15 .. 2024-03-21."""
    response = await client.post(
        f"{STUDY}/participants", json={"subject_id": "101-001", "site": "101", "arm": "A", "enrolled_on": "2024-03-01"}
    )
    assert response.status_code == 201, response.text
    response = await client.post(f"{SUBJECT}/events", json={"event": "randomization", "date": "2024-03-04"})
    assert response.status_code == 201, response.text
    return "101-001"


def fields(response: httpx.Response) -> set[str]:
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "errors"} and body["status"] == response.status_code
    return {error["field"] for error in body["errors"]}


async def schedule(client, as_of=AS_OF) -> dict[str, dict]:
    response = await client.get(f"{SUBJECT}/schedule", params={"as_of": as_of})
    assert response.status_code == 200
    return {row["visit"]: row for row in response.json()}


async def test_health(client):
    response = await client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_studies_and_versions(client, study):
    assert [s["code"] for s in (await client.get("/api/studies")).json()] == ["TST-1"]
    assert (await client.get(STUDY)).json()["title"] == "Test study"
    versions = (await client.get(f"{STUDY}/protocol-versions")).json()
    assert [v["version"] for v in versions] == ["1.0", "2.0"]
    assert fields(await client.get("/api/studies/NOPE")) == set()
    assert (await client.get("/api/studies/NOPE/protocol-versions")).status_code == 404


async def test_load_protocol_as_yaml_or_json_and_again(client, db):
    yaml_body = {"content": PROTOCOL_V1, "headers": {"content-type": "application/yaml"}}
    created = await client.post(f"{STUDY}/protocol-versions", **yaml_body)
    assert created.status_code == 201 and created.json()["version"] == "1.0"
    assert (await client.post(f"{STUDY}/protocol-versions", **yaml_body)).status_code == 200  # same text: no change
    v3 = PROTOCOL_V1.replace('version: "1.0"', 'version: "3.0"')
    as_json = await client.post(f"{STUDY}/protocol-versions", json={"source": v3, "name": "tst-3.yaml"})
    assert as_json.status_code == 201 and as_json.json()["source_name"] == "tst-3.yaml"


async def test_protocol_problems_name_field_line_and_column(client, db):
    broken = PROTOCOL_V1.replace("offset: 2w", "offset: 2x", 1)
    response = await client.post(f"{STUDY}/protocol-versions", content=broken, headers={"content-type": "text/plain"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "visits[1].offset" and error["line"] == 17 and error["column"] > 1


async def test_protocol_for_another_study_or_changed_text(client, study):
    other = await client.post("/api/studies/OTHER/protocol-versions", json={"source": PROTOCOL_V1})
    assert other.status_code == 422 and fields(other) == {"study"}
    changed = await client.post(f"{STUDY}/protocol-versions", json={"source": PROTOCOL_V1 + "# edited\n"})
    assert changed.status_code == 409 and "1.0" in changed.json()["detail"]
    assert (await client.post(f"{STUDY}/protocol-versions", json={"name": "x"})).status_code == 400


async def test_sites(client, study):
    created = await client.post(
        f"{STUDY}/sites", json={"code": "102", "name": "Lakeside", "time_zone": "America/Chicago"}
    )
    assert created.status_code == 201 and created.json()["time_zone"] == "America/Chicago"
    assert [s["code"] for s in (await client.get(f"{STUDY}/sites")).json()] == ["101", "102"]
    duplicate = await client.post(f"{STUDY}/sites", json={"code": "102", "name": "Again"})
    assert duplicate.status_code == 409
    bad_zone = await client.post(f"{STUDY}/sites", json={"code": "103", "time_zone": "Mars/Olympus"})
    assert bad_zone.status_code == 422 and fields(bad_zone) == {"time_zone"}
    assert (await client.post("/api/studies/NOPE/sites", json={"code": "1"})).status_code == 404
    assert fields(await client.post(f"{STUDY}/sites", json={"name": "no code"})) == {"code"}


async def test_enrol_list_and_get(client, enrolled):
    listed = (await client.get(f"{STUDY}/participants")).json()
    assert [(p["subject_id"], p["arm"], p["protocol_version"]) for p in listed] == [("101-001", "A", "1.0")]
    assert (await client.get(f"{STUDY}/participants", params={"site": "999"})).json() == []
    assert (await client.get(SUBJECT)).json()["enrolled_on"] == "2024-03-01"
    assert (await client.get(f"{STUDY}/participants/404-404")).status_code == 404


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"subject_id": "101-001", "site": "101"}, 409, None),
        ({"subject_id": "101-002", "site": "999"}, 422, "site"),
        ({"subject_id": "101-002", "site": "101", "arm": "Z"}, 422, "arm"),
        ({"subject_id": "101-002", "site": "101", "version": "9.9"}, 422, "version"),
        ({"site": "101"}, 400, "subject_id"),
        ({"subject_id": "101-002", "site": "101", "enrolled_on": "2024-02-30"}, 400, "enrolled_on"),
        ({"subject_id": "bad\u0000id", "site": "101"}, 400, "subject_id"),
    ],
)
async def test_enrol_problems(client, enrolled, body, status, field):
    response = await client.post(f"{STUDY}/participants", json=body)
    assert response.status_code == status, response.text
    if field:
        assert field in fields(response) or field in response.json()["errors"][0]["message"]


async def test_events(client, enrolled):
    again = await client.post(f"{SUBJECT}/events", json={"event": "randomization", "date": "2024-03-05"})
    assert again.status_code == 422 and fields(again) == {"reason"}
    moved = await client.post(
        f"{SUBJECT}/events", json={"event": "randomization", "date": "2024-03-05", "reason": "typo"}
    )
    assert moved.status_code == 201 and moved.json()["previous"] == "2024-03-04"
    assert (await client.get(SUBJECT)).json()["events"] == {"randomization": "2024-03-05"}
    unknown = await client.post(f"{SUBJECT}/events", json={"event": "lunch", "date": "2024-03-05"})
    assert unknown.status_code == 422 and fields(unknown) == {"event"}
    assert (
        await client.post(f"{STUDY}/participants/nobody/events", json={"event": "consent", "date": "2024-03-05"})
    ).status_code == 404
    assert fields(await client.post(f"{SUBJECT}/events", json={"event": "consent", "date": "1066-10-14"})) == {"date"}


async def test_protocol_version_change(client, enrolled):
    path = f"{SUBJECT}/protocol-version"
    assert fields(await client.put(path, json={"version": "9.9", "effective": "2024-06-02", "reason": "x"})) == {
        "version"
    }
    assert fields(await client.put(path, json={"version": "2.0", "effective": "2024-06-02", "reason": " "})) == {
        "reason"
    }
    assert (await client.put(path, json={"version": "2.0", "effective": "2024-06-02"})).status_code == 400
    moved = await client.put(path, json={"version": "2.0", "effective": "2024-06-02", "reason": "amendment 1"})
    assert moved.status_code == 200 and moved.json()["protocol_version"] == "2.0"
    assert "V4" in await schedule(client)  # added by version 2.0
    again = await client.put(path, json={"version": "2.0", "effective": "2024-06-03", "reason": "again"})
    assert fields(again) == {"version"}


async def test_arm(client, study):
    await client.post(f"{STUDY}/participants", json={"subject_id": "101-002", "site": "101"})
    path = f"{STUDY}/participants/101-002/arm"
    assert fields(await client.put(path, json={"arm": "Z"})) == {"arm"}
    assigned = await client.put(path, json={"arm": "P"})
    assert assigned.status_code == 200 and assigned.json()["arm"] == "P"
    assert (await client.put(path, json={"arm": "A"})).status_code == 409


async def test_schedule_rows(client, enrolled):
    rows = await schedule(client)
    v2 = rows["V2"]
    assert set(v2) >= {
        "visit",
        "occurrence",
        "name",
        "target",
        "earliest",
        "latest",
        "actual",
        "status",
        "days_outside",
        "study_day",
        "appointment",
        "row_version",
    }
    assert (v2["target"], v2["earliest"], v2["latest"], v2["study_day"]) == (
        "2024-03-18",
        "2024-03-15",
        "2024-03-21",
        15,
    )
    assert v2["status"] == "missed"  # as of 2024-03-25 the window has closed
    assert (await schedule(client, "2024-03-10"))["V2"]["status"] == "upcoming"
    assert fields(await client.get(f"{SUBJECT}/schedule", params={"as_of": "soon"})) == {"as_of"}
    assert (await client.get(f"{SUBJECT}/schedule")).status_code == 200  # as_of defaults to today


async def test_record_a_late_visit_then_a_stale_change_conflicts(client, enrolled):
    version = (await schedule(client))["V2"]["row_version"]
    body = {"date": "2024-03-23", "reason": "travelling", "row_version": version}
    late = await client.post(f"{SUBJECT}/visits/V2/actual", json=body)
    assert late.status_code == 201, late.text
    assert (late.json()["status"], late.json()["days_outside"]) == ("late", 2)
    stale = await client.post(
        f"{SUBJECT}/visits/V2/actual", json={"date": "2024-03-22", "reason": "fix", "row_version": version}
    )
    assert stale.status_code == 409 and "V2" in stale.json()["detail"]
    current = (await schedule(client))["V2"]["row_version"]
    unexplained = await client.post(f"{SUBJECT}/visits/V2/actual", json={"date": "2024-03-22", "row_version": current})
    assert unexplained.status_code == 422 and fields(unexplained) == {"reason"}


async def test_appointments(client, enrolled):
    seen = (await schedule(client))["V3"]["row_version"]
    outside = await client.post(f"{SUBJECT}/visits/V3/appointment", json={"date": "2024-05-20", "row_version": seen})
    assert outside.status_code == 422 and fields(outside) == {"reason"}
    booked = await client.post(f"{SUBJECT}/visits/V3/appointment", json={"date": "2024-04-01", "row_version": seen})
    assert booked.status_code == 201 and booked.json()["appointment"] == "2024-04-01"
    nope = await client.post(f"{SUBJECT}/visits/NOPE/appointment", json={"date": "2024-04-01", "row_version": 0})
    assert nope.status_code == 404
    assert fields(await client.post(f"{SUBJECT}/visits/V3/appointment", json={})) == {"date"}


async def test_missed(client, enrolled):
    seen = (await schedule(client))["V2"]["row_version"]
    empty = await client.post(f"{SUBJECT}/visits/V2/missed", json={"reason": " ", "row_version": seen})
    assert empty.status_code == 422 and fields(empty) == {"reason"}
    missed = await client.post(f"{SUBJECT}/visits/V2/missed", json={"reason": "in hospital", "row_version": seen})
    assert missed.status_code == 201 and missed.json()["missed_reason"] == "in hospital"
    nobody = await client.post(f"{STUDY}/participants/nobody/visits/V2/missed", json={"reason": "x", "row_version": 1})
    assert nobody.status_code == 404


@pytest.mark.parametrize("kind", ["today", "week", "overdue", "missed_or_out_of_window"])
async def test_worklists(client, enrolled, kind):
    response = await client.get(f"{STUDY}/worklist", params={"kind": kind, "site": "101", "as_of": "2024-03-18"})
    assert response.status_code == 200
    assert all(row["subject_id"] == "101-001" for row in response.json())


async def test_worklist_problems(client, study):
    assert fields(await client.get(f"{STUDY}/worklist", params={"kind": "someday"})) == {"kind"}
    assert (await client.get("/api/studies/NOPE/worklist")).status_code == 404


async def test_calendars(client, enrolled):
    seen = (await schedule(client))["V3"]["row_version"]
    await client.post(f"{SUBJECT}/visits/V3/appointment", json={"date": "2024-04-01", "row_version": seen})
    response = await client.get(f"{SUBJECT}/schedule.ics", params={"as_of": AS_OF})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/calendar")
    events = {str(e["uid"]): e.decoded("dtstart") for e in Calendar.from_ical(response.content).walk("VEVENT")}
    assert str(events["TST-1/101-001/V3@trialcoord"]) == "2024-04-01"
    site = await client.get(f"{STUDY}/sites/101/schedule.ics", params={"as_of": AS_OF})
    assert site.status_code == 200 and b"TST-1/101-001/V2@trialcoord" in site.content
    booked = {str(e["uid"]): e.decoded("dtstart") for e in Calendar.from_ical(site.content).walk("VEVENT")}
    assert str(booked["TST-1/101-001/V3@trialcoord"]) == "2024-04-01"  # the appointment, not the target
    assert (await client.get(f"{STUDY}/sites/999/schedule.ics")).status_code == 404
    assert (await client.get(f"{STUDY}/participants/nobody/schedule.ics")).status_code == 404


async def test_unknown_routes_and_methods_are_problems(client, db):
    assert fields(await client.get("/api/nothing-here")) == set()
    wrong = await client.delete("/api/studies")
    assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]


async def test_openapi_is_served_and_documents_problem_statuses(client, db):
    document = (await client.get("/schema/openapi.json")).json()
    enrol = document["paths"]["/api/studies/{study}/participants"]["post"]["responses"]
    assert {"201", "400", "404", "409", "422"} <= set(enrol)
    assert "application/problem+json" in enrol["422"]["content"]
    upload = document["paths"]["/api/studies/{study}/protocol-versions"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml", "text/plain"} <= set(upload)


async def test_every_visit_write_needs_the_row_version_the_writer_read(client, enrolled):
    """Issue 17: two writers without row_version both got 201 and the first was silently replaced."""
    for action, body in (
        ("actual", {"date": "2024-03-18"}),
        ("appointment", {"date": "2024-03-18"}),
        ("missed", {"reason": "x"}),
    ):
        refused = await client.post(f"{SUBJECT}/visits/V2/{action}", json=body)
        assert refused.status_code == 409 and fields(refused) == {"row_version"}, (action, refused.text)
        assert "row_version" in refused.json()["detail"]
    version = (await schedule(client))["V2"]["row_version"]
    first = await client.post(f"{SUBJECT}/visits/V2/actual", json={"date": "2024-03-18", "row_version": version})
    second = await client.post(f"{SUBJECT}/visits/V2/actual", json={"date": "2024-03-19", "row_version": version})
    assert (first.status_code, second.status_code) == (201, 409)  # the second writer read the version before
    # a visit with no stored row yet (row_version null in the schedule) is written with row_version 0
    unscheduled = await client.post(f"{SUBJECT}/visits/UNS1/actual", json={"date": "2024-03-18", "row_version": 0})
    assert unscheduled.status_code == 201, unscheduled.text
    again = await client.post(f"{SUBJECT}/visits/UNS1/actual", json={"date": "2024-03-19", "row_version": 0})
    assert again.status_code == 409
