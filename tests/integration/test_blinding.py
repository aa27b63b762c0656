"""Blinding (issue 14, section 2): in a double-blind study the arm a participant is in reaches only roles with
view_allocation (administrator, unblinded pharmacist), through every door (API, pages, listings); an open-label
study is unchanged; in a blinded study only those roles record an arm.

Today (before this) the sponsor saw every participant's arm in the double-blind demo study, DEMO-001."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from tests.conftest import PERSONAS, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, add_user, signed_in

pytestmark = pytest.mark.anyio

DEMO_ARMS = {"101-001": "A", "101-002": "P", "101-003": "A", "102-001": "A", "102-002": "P"}
DEMO_USERS = {
    "sam": ("sponsor", "DEMO-001", None),
    "mona": ("monitor", "DEMO-001", None, None, True),  # even with personal data: no allocation
    "cora": ("coordinator", "DEMO-001", "101"),
    "ivan": ("investigator", "DEMO-001", "101"),
    "paula": ("unblinded_pharmacist", "DEMO-001", "101"),
    "root": ("administrator", None, None),
}
BLINDED = ("sam", "mona", "cora", "ivan")
ARM_NAMES = ("Demostat 20 mg", "Placebo once daily")


@pytest.fixture
async def demo(db):
    from trialcoord.demo.demo import load_demo

    assert await load_demo(date.today())
    for user_id, grant in DEMO_USERS.items():
        await add_user(user_id, grant)
    return "DEMO-001"


def _arms(rows: list[dict]) -> dict[str, str | None]:
    return {row["subject_id"]: row["arm"] for row in rows}


@pytest.mark.parametrize("user_id", BLINDED)
async def test_a_blinded_role_sees_no_arm_through_the_api(anonymous, demo, user_id):
    client = await signed_in(anonymous, user_id)
    listed = await client.get("/api/studies/DEMO-001/participants")
    assert listed.status_code == 200
    assert listed.json() and set(_arms(listed.json()).values()) == {None}
    one = await client.get("/api/studies/DEMO-001/participants/101-001")
    assert one.status_code == 200 and one.json()["arm"] is None
    assert set(one.json()) >= {"subject_id", "site", "protocol_version", "status", "enrolled_on", "events"}


@pytest.mark.parametrize("user_id", BLINDED)
async def test_a_blinded_role_sees_no_arm_on_the_pages(anonymous, demo, user_id):
    client = await signed_in(anonymous, user_id)
    study = await client.get("/studies/DEMO-001?tab=participants")
    assert study.status_code == 200 and "101-001" in study.text
    assert '<th scope="col">Arm</th>' not in study.text
    participant = await client.get("/studies/DEMO-001/participants/101-001")
    assert participant.status_code == 200
    assert "<dt>Arm</dt><dd>blinded</dd>" in participant.text
    assert "Assign an arm" not in participant.text
    for page in (study.text, participant.text):
        assert not any(name in page for name in ARM_NAMES)  # not even as an enrolment choice
        assert 'name="arm"' not in page


@pytest.mark.parametrize("user_id", ["sam", "mona"])
async def test_the_listings_carry_no_arm(anonymous, demo, user_id):
    client = await signed_in(anonymous, user_id)
    for url in ("/api/studies/DEMO-001/deviations/listing.csv",):
        response = await client.get(url)
        assert response.status_code == 200, url
        header = next(csv.reader(io.StringIO(response.text)))
        assert not {"arm", "ARM", "ARMCD", "Arm"} & set(header), header
        assert not any(name in response.text for name in ARM_NAMES)
    worklist = await client.get("/api/studies/DEMO-001/worklist?kind=week")
    assert worklist.status_code == 200 and all("arm" not in row for row in worklist.json())


async def test_the_administrator_sees_every_arm(anonymous, demo):
    client = await signed_in(anonymous, "root")
    assert _arms((await client.get("/api/studies/DEMO-001/participants")).json()) == DEMO_ARMS
    page = await client.get("/studies/DEMO-001?tab=participants")
    assert '<th scope="col">Arm</th>' in page.text and "Demostat 20 mg" in page.text  # the enrolment form's arms
    assert "<dt>Arm</dt><dd>P</dd>" in (await client.get("/studies/DEMO-001/participants/102-002")).text


async def test_the_unblinded_pharmacist_sees_the_arms_of_its_site_only(anonymous, demo):
    client = await signed_in(anonymous, "paula")
    listed = _arms((await client.get("/api/studies/DEMO-001/participants")).json())
    assert listed == {subject: arm for subject, arm in DEMO_ARMS.items() if subject.startswith("101-")}
    assert (await client.get("/api/studies/DEMO-001/participants/101-002")).json()["arm"] == "P"
    assert (await client.get("/api/studies/DEMO-001/participants/102-002")).status_code == 403  # another site
    page = await client.get("/studies/DEMO-001/participants/101-001")
    assert "<dt>Arm</dt><dd>A</dd>" in page.text
    study = await client.get("/studies/DEMO-001?tab=participants")
    assert '<th scope="col">Arm</th>' in study.text and "<td>P</td>" in study.text
    # sees the schedule, but never enrols, records visits or signs
    assert (
        await client.post("/api/studies/DEMO-001/participants", json={"subject_id": "9", "site": "101"})
    ).status_code == 403
    body = {"event": "first_dose", "date": date.today().isoformat()}
    assert (await client.post("/api/studies/DEMO-001/participants/101-001/events", json=body)).status_code == 403


async def test_in_a_blinded_study_only_an_unblinded_role_records_the_arm(anonymous, demo):
    coordinator = await signed_in(anonymous, "cora")
    enrolled = await coordinator.post(
        "/api/studies/DEMO-001/participants", json={"subject_id": "101-009", "site": "101"}
    )
    assert enrolled.status_code == 201 and enrolled.json()["arm"] is None  # enrolment keeps working, blind
    with_arm = await coordinator.post(
        "/api/studies/DEMO-001/participants", json={"subject_id": "101-010", "site": "101", "arm": "A"}
    )
    assert with_arm.status_code == 403 and "view_allocation" in with_arm.json()["detail"]
    refused = await coordinator.put("/api/studies/DEMO-001/participants/101-009/arm", json={"arm": "A"})
    assert refused.status_code == 403 and "blinded" in refused.json()["detail"]
    # refused the same way whether or not the participant has an arm: the refusal tells nothing
    assigned = await coordinator.put("/api/studies/DEMO-001/participants/101-001/arm", json={"arm": "P"})
    assert assigned.status_code == 403 and assigned.json()["detail"] == refused.json()["detail"]
    page = await coordinator.post("/studies/DEMO-001/participants/101-009/arm", data={"arm": "A"})
    assert page.status_code == 403

    pharmacist = await signed_in(anonymous, "paula")
    done = await pharmacist.put("/api/studies/DEMO-001/participants/101-009/arm", json={"arm": "P"})
    assert done.status_code == 200 and done.json()["arm"] == "P"
    assert "Assign an arm" not in (await pharmacist.get("/studies/DEMO-001/participants/101-009")).text
    coordinator = await signed_in(anonymous, "cora")
    assert (await coordinator.get("/api/studies/DEMO-001/participants/101-009")).json()["arm"] is None


async def test_the_pharmacist_assigns_an_arm_from_the_participant_page(anonymous, demo):
    await signed_in(anonymous, "cora")
    await anonymous.post("/api/studies/DEMO-001/participants", json={"subject_id": "101-011", "site": "101"})
    pharmacist = await signed_in(anonymous, "paula")
    page = await pharmacist.get("/studies/DEMO-001/participants/101-011")
    assert "Assign an arm" in page.text and "Record event" not in page.text
    saved = await pharmacist.post("/studies/DEMO-001/participants/101-011/arm", data={"arm": "A"})
    assert saved.status_code == 303
    assert "<dt>Arm</dt><dd>A</dd>" in (await pharmacist.get("/studies/DEMO-001/participants/101-011")).text


async def test_an_open_label_study_is_unchanged(anonymous, personas):
    for user_id in ("sponsor", "monitor", "coord-a"):
        client = await signed_in(anonymous, user_id)
        listed = _arms((await client.get("/api/studies/TST-1/participants")).json())
        assert set(listed.values()) == {"A"}, user_id
        assert (await client.get(f"/api/studies/TST-1/participants/{SUBJECT_A}")).json()["arm"] == "A"
        page = await client.get("/studies/TST-1?tab=participants")
        assert '<th scope="col">Arm</th>' in page.text and "<td>A</td>" in page.text
        assert "<dt>Arm</dt><dd>A</dd>" in (await client.get(f"/studies/TST-1/participants/{SUBJECT_A}")).text
    assert SITE_B and SUBJECT_B and PERSONAS  # the fixture enrolled one participant at each site


async def test_a_coordinator_still_assigns_arms_in_an_open_label_study(anonymous, personas):
    from trialcoord.scheduling import participants

    await participants.enroll_participant("TST-1", "1009", SITE_A, enrolled_on=date(2024, 3, 4), today=date(2024, 3, 4))
    client = await signed_in(anonymous, "coord-a")
    page = await client.get("/studies/TST-1/participants/1009")
    assert "Assign an arm" in page.text
    assert (await client.put("/api/studies/TST-1/participants/1009/arm", json={"arm": "A"})).json()["arm"] == "A"
