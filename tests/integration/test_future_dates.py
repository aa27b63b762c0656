"""Facts, not plans: an enrolment and a date of birth on a day still to come are refused as events and visits are,
by the one rule (`scheduling/rules/facts.py`), through every door, naming the field."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.integration.test_cli import run
from tests.integration.test_pages import error_next_to
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import identities, participants

pytestmark = [pytest.mark.anyio, pytest.mark.db]

TODAY = date(2026, 12, 7)
STUDY = "/studies/TST-1"


async def test_enrolment_after_today_is_refused_naming_enrolled_on(study):
    with pytest.raises(InvalidInput) as refused:
        await participants.enroll_participant(study, "101-001", "101", enrolled_on=date(2027, 5, 1), today=TODAY)
    [problem] = refused.value.problems
    assert problem.field == "enrolled_on"
    assert problem.message == (
        "study TST-1, participant 101-001: enrolment cannot be recorded on 2027-05-01, after today (2026-12-07)"
    )
    assert await participants.list_participants(study) == []
    done = await participants.enroll_participant(study, "101-001", "101", enrolled_on=TODAY, today=TODAY)
    assert done.enrolled_on == TODAY  # today itself is fine


async def test_a_date_of_birth_after_today_is_refused_naming_date_of_birth(study):
    await participants.enroll_participant(study, "101-001", "101", enrolled_on=TODAY, today=TODAY)
    with pytest.raises(InvalidInput) as refused:
        await identities.set_identity(study, "101-001", {"date_of_birth": "2099-01-01"}, today=TODAY)
    [problem] = refused.value.problems
    assert problem.field == "date_of_birth"
    assert "date of birth cannot be recorded on 2099-01-01, after today (2026-12-07)" in problem.message
    assert (await identities.get_identity(study, "101-001")).date_of_birth is None
    await identities.set_identity(study, "101-001", {"date_of_birth": "1980-02-29"}, today=TODAY)
    assert (await identities.get_identity(study, "101-001")).date_of_birth == "1980-02-29"


async def test_api_refuses_both_with_422_naming_the_field(client, study):
    enrol = {"subject_id": "101-001", "site": "101", "enrolled_on": "2099-05-01"}
    refused = await client.post("/api/studies/TST-1/participants", json=enrol)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["enrolled_on"]
    assert "after today" in refused.json()["errors"][0]["message"]
    enrolled = await client.post("/api/studies/TST-1/participants", json={**enrol, "enrolled_on": "2024-03-01"})
    assert enrolled.status_code == 201
    identity = await client.put(
        "/api/studies/TST-1/participants/101-001/identity", json={"date_of_birth": "2099-01-01"}
    )
    assert identity.status_code == 422
    assert [e["field"] for e in identity.json()["errors"]] == ["date_of_birth"]


async def test_pages_show_the_message_by_the_field(client, study):
    form = {"subject_id": "101-001", "site": "101", "enrolled_on": "2099-05-01"}
    refused = await client.post(f"{STUDY}/participants", data=form)
    assert refused.status_code == 422
    assert "after today" in error_next_to(refused.text, "enrol-enrolled_on")
    assert (await client.post(f"{STUDY}/participants", data={**form, "enrolled_on": "2024-03-01"})).status_code == 303
    subject = f"{STUDY}/participants/101-001"
    born = await client.post(f"{subject}/identity", data={"name": "Ann Lee", "date_of_birth": "2099-01-01"})
    assert born.status_code == 422
    assert "after today" in error_next_to(born.text, "identity-date_of_birth")


async def test_command_line_refuses_an_enrolment_after_today(db, study):
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_TIME_ZONE": "UTC"}
    later = (date.today() + timedelta(days=400)).isoformat()
    refused = run("participant", "enrol", "TST-1", "101-001", "--site", "101", "--enrolled-on", later, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: enrolled_on: study TST-1, participant 101-001: enrolment cannot be")
    done = run("participant", "enrol", "TST-1", "101-001", "--site", "101", "--enrolled-on", "2024-03-01", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "participant 101-001 enrolled in TST-1 at site 101 on 2024-03-01 (protocol version 1.0)\n"
    again = run("participant", "enrol", "TST-1", "101-001", "--site", "101", env=env)
    assert again.returncode == 3 and "already has participant 101-001" in again.stderr
