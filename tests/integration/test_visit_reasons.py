"""A visit done outside its window is recorded with its reason, through every door (use case, API, page, command
line); the reason is stored and audited, and a re-save that only adds or changes it is a recorded change."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import RANDOMIZED
from tests.integration.test_cli import run
from tests.integration.test_pages import error_next_to
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import AuditFilter
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import importing, participants, worklists
from trialcoord.scheduling.visits import record_event, record_visit

pytestmark = [pytest.mark.anyio, pytest.mark.db]

S = "101-001"
LATE = date(2024, 3, 23)  # V2's window is 2024-03-15 .. 2024-03-21
TODAY = date(2024, 3, 25)
V2 = "TST-1/101/101-001/V2"


@pytest.fixture
async def randomized(study):
    await participants.enroll_participant(study, S, "101", arm="A", enrolled_on=date(2024, 2, 26), today=TODAY)
    await record_event(study, S, "randomization", RANDOMIZED, today=TODAY)
    return S


async def stored_v2():
    rows = {row.visit.visit: row for row in await worklists.participant_schedule("TST-1", S, TODAY)}
    return rows["V2"]


async def visit_entries() -> list:
    return list(reversed(await audit_log.browse(AuditFilter(record_type="visit", record_id=V2), None, 20)))


async def test_a_visit_outside_its_window_needs_a_reason_and_nothing_is_stored_without_one(randomized):
    with pytest.raises(InvalidInput) as refused:
        await record_visit("TST-1", S, "V2", LATE, today=TODAY)
    [problem] = refused.value.problems
    assert problem.field == "reason"
    assert "visit V2 on 2024-03-23 is outside its window 2024-03-15 to 2024-03-21;" in problem.message
    assert (await stored_v2()).visit.actual is None and await visit_entries() == []
    done = await record_visit("TST-1", S, "V2", LATE, reason="Participant was travelling", today=TODAY)
    assert (done.visit.status, done.actual_reason) == ("late", "Participant was travelling")
    [entry] = await visit_entries()
    assert entry.reason == "Participant was travelling" and entry.new == {"actual": "2024-03-23"}


async def test_within_the_window_no_reason_is_needed(randomized):
    done = await record_visit("TST-1", S, "V2", date(2024, 3, 20), today=TODAY)
    assert (done.visit.status, done.actual_reason) == ("on_time", None)


async def test_a_resave_that_only_adds_the_reason_is_stored_and_audited(randomized):
    """A visit imported outside its window carries no reason of its own (the import's file is its source)."""
    await importing.import_events("TST-1", f"participant,event,date\n{S},V2,{LATE}\n", today=TODAY)
    assert (await stored_v2()).actual_reason is None
    with pytest.raises(InvalidInput) as refused:  # saved again as it is: the reason is still owed
        await record_visit("TST-1", S, "V2", LATE, today=TODAY)
    assert [p.field for p in refused.value.problems] == ["reason"]
    saved = await record_visit("TST-1", S, "V2", LATE, reason="Clinic closed for a storm", today=TODAY)
    assert saved.actual_reason == "Clinic closed for a storm" and saved.visit.actual == LATE
    assert (await stored_v2()).actual_reason == "Clinic closed for a storm"
    *_, entry = await visit_entries()
    assert (entry.action, entry.old, entry.new) == (
        "update",
        {"actual_reason": None},
        {"actual_reason": "Clinic closed for a storm"},
    )
    assert entry.reason == "Clinic closed for a storm"


async def test_changing_the_reason_is_audited_and_the_same_save_again_changes_nothing(randomized):
    await record_visit("TST-1", S, "V2", LATE, reason="travelling", today=TODAY)
    changed = await record_visit("TST-1", S, "V2", LATE, reason="travelling abroad for work", today=TODAY)
    assert changed.actual_reason == "travelling abroad for work"
    first, second = await visit_entries()
    assert second.old == {"actual_reason": "travelling"} and second.new == {
        "actual_reason": "travelling abroad for work"
    }
    again = await record_visit("TST-1", S, "V2", LATE, reason="travelling abroad for work", today=TODAY)
    kept = await record_visit("TST-1", S, "V2", LATE, today=TODAY)  # no reason given: the stored one stands
    assert again.actual_reason == kept.actual_reason == "travelling abroad for work"
    assert len(await visit_entries()) == 2
    assert again.row_version == changed.row_version  # nothing written


async def test_an_in_window_visit_may_carry_a_note_added_later(randomized):
    await record_visit("TST-1", S, "V2", date(2024, 3, 20), today=TODAY)
    noted = await record_visit("TST-1", S, "V2", date(2024, 3, 20), reason="done at home", today=TODAY)
    assert noted.actual_reason == "done at home"
    assert [e.new for e in await visit_entries()] == [{"actual": "2024-03-20"}, {"actual_reason": "done at home"}]


async def test_api_names_the_reason_field(client, randomized):
    url = f"/api/studies/TST-1/participants/{S}/visits/V2/actual"

    async def version() -> int:
        rows = (await client.get(f"/api/studies/TST-1/participants/{S}/schedule")).json()
        return next(row["row_version"] for row in rows if row["visit"] == "V2")

    refused = await client.post(url, json={"date": LATE.isoformat(), "row_version": await version()})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["reason"]
    assert "outside its window" in refused.json()["errors"][0]["message"]
    saved = await client.post(
        url, json={"date": LATE.isoformat(), "reason": "travelling", "row_version": await version()}
    )
    assert saved.status_code == 201 and saved.json()["actual_reason"] == "travelling"
    resaved = await client.post(
        url, json={"date": LATE.isoformat(), "reason": "travelling abroad", "row_version": await version()}
    )
    assert resaved.status_code == 201 and resaved.json()["actual_reason"] == "travelling abroad"
    assert [e.new for e in await visit_entries()][-1] == {"actual_reason": "travelling abroad"}


async def test_page_shows_the_error_by_the_reason_field_and_the_reason_once_saved(client, randomized):
    page = f"/studies/TST-1/participants/{S}"
    refused = await client.post(f"{page}/visits/V2/actual", data={"date": LATE.isoformat(), "row_version": ""})
    assert refused.status_code == 422
    assert "outside its window" in error_next_to(refused.text, "V2-actual-reason")
    saved = await client.post(f"{page}/visits/V2/actual", data={"date": LATE.isoformat(), "reason": "travelling"})
    assert saved.status_code == 303
    shown = (await client.get(page, params={"as_of": TODAY.isoformat()})).text
    assert '<span class="hint">Reason: travelling</span>' in shown
    # Never offered again in the form: a changed date needs its own reason, not the old one resent.
    assert 'id="V2-actual-reason" name="reason" type="text" value=""' in shown


async def test_command_line_names_the_reason(db, randomized):
    env = {"TRIALCOORD_DATABASE_URL": db.url}
    refused = run("participant", "visit", "TST-1", S, "V2", LATE.isoformat(), env=env)
    assert refused.returncode == 2 and "reason: " in refused.stderr and "outside its window" in refused.stderr
    assert "Traceback" not in refused.stderr
    saved = run("participant", "visit", "TST-1", S, "V2", LATE.isoformat(), "--reason", "travelling", env=env)
    assert saved.returncode == 0, saved.stderr
    assert "V2 recorded on 2024-03-23 (late, 2 days outside its window): travelling" in saved.stdout
    assert (await stored_v2()).actual_reason == "travelling"
