"""Protocol version changes at a real site (issue 15): a change is recorded once it takes effect, never for a day
still to come; moving participants back to an earlier version than the one they follow needs an explicit
confirmation, which the audit trail keeps. Use cases, API, pages and the command line, on both engines."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.conftest import add_user, signed_in
from tests.integration.test_amendments import TODAY, demo  # noqa: F401 (the fixture)
from tests.integration.test_cli import run
from tests.integration.test_pages import error_next_to
from trialcoord.amendments import applying
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants

pytestmark = [pytest.mark.anyio, pytest.mark.db]
TOMORROW = TODAY + timedelta(days=1)


async def versions() -> dict[str, str]:
    return {p.subject_id: p.protocol_version for p in await participants.list_participants("DEMO-001")}


async def changes() -> int:
    return (await fetch("SELECT COUNT(*) AS n FROM protocol_changes"))[0]["n"]


async def confirmations() -> list[audit_log.TrailEntry]:
    return await audit_log.browse(audit_log.AuditFilter(action="confirm_downgrade"), None, 100)


# A day still to come ------------------------------------------------------------------------------


async def test_found_a_change_for_a_day_still_to_come_is_refused_naming_the_field(demo):  # noqa: F811 (fixture)
    with pytest.raises(InvalidInput, match="still to come") as one:
        await applying.change_version(demo, "101-001", "2.0", TOMORROW, "amendment 1", today=TODAY)
    assert one.value.problems[0].field == "effective"
    with pytest.raises(InvalidInput, match="still to come") as site:
        await applying.apply_version(demo, "2.0", TOMORROW, "amendment 1", site="101", today=TODAY)
    assert site.value.problems[0].field == "effective"
    with pytest.raises(InvalidInput, match="still to come"):
        await applying.apply_version(demo, "2.0", TOMORROW, "amendment 1", today=TODAY)
    assert await changes() == 0 and set((await versions()).values()) == {"1.0"}
    moved = await applying.change_version(demo, "101-001", "2.0", TODAY, "amendment 1", today=TODAY)
    assert moved.protocol_version == "2.0"  # today itself is no day to come


async def test_a_day_still_to_come_over_the_api_and_the_pages(demo, anonymous):  # noqa: F811 (fixture)
    await add_user("cora", ("coordinator", demo, "101"))
    cora = await signed_in(anonymous, "cora")
    future = (date.today() + timedelta(days=30)).isoformat()  # the app's today is the real one
    put = await cora.put(
        f"/api/studies/{demo}/participants/101-001/protocol-version",
        json={"version": "2.0", "effective": future, "reason": "amendment 1"},
    )
    assert put.status_code == 422 and put.json()["errors"][0]["field"] == "effective"
    assert "still to come" in put.json()["errors"][0]["message"]
    api = await cora.post(
        f"/api/studies/{demo}/protocol-versions/2.0/apply",
        json={"effective": future, "reason": "amendment 1", "site": "101"},
    )
    assert api.status_code == 422 and api.json()["errors"][0]["field"] == "effective"
    page = await cora.post(
        f"/studies/{demo}/amendments/apply",
        data={"apply_version": "2.0", "apply_effective": future, "apply_reason": "amendment 1", "apply_site": "101"},
    )
    assert page.status_code == 422 and "still to come" in error_next_to(page.text, "apply_effective")
    assert await changes() == 0


# Back to an earlier version -----------------------------------------------------------------------


async def test_found_moving_back_to_an_earlier_version_needs_a_confirmation_kept_in_the_audit_trail(demo):  # noqa: F811 (fixture)
    await applying.change_version(demo, "101-001", "2.0", date(2026, 10, 1), "amendment 1", today=TODAY)
    before = await changes()
    with pytest.raises(InvalidInput, match="earlier protocol version") as refused:
        await applying.change_version(demo, "101-001", "1.0", date(2026, 10, 15), "back", today=TODAY)
    problem = refused.value.problems[0]
    assert problem.field == "confirm_downgrade" and "confirm" in problem.message and "2.0" in problem.message
    assert (await versions())["101-001"] == "2.0" and await changes() == before  # nothing changed
    assert await confirmations() == []
    back = await applying.change_version(
        demo, "101-001", "1.0", date(2026, 10, 15), "back", today=TODAY, actor="cora", confirm_downgrade=True
    )
    assert back.protocol_version == "1.0"
    [entry] = await confirmations()
    assert (entry.actor, entry.record_id, entry.reason) == ("cora", "DEMO-001/101/101-001", "back")
    assert entry.old == {"protocol_version": "2.0"}
    assert entry.new == {"protocol_version": "1.0", "effective": "2026-10-15", "downgrade_confirmed": True}
    # An upgrade needs no confirmation, and a confirmation given for one records nothing.
    await applying.change_version(
        demo, "101-001", "2.0", date(2026, 10, 20), "again", today=TODAY, confirm_downgrade=True
    )
    assert len(await confirmations()) == 1


async def test_a_site_moved_back_needs_the_confirmation_and_nobody_moves_without_it(demo):  # noqa: F811 (fixture)
    await applying.apply_version(demo, "2.0", date(2026, 10, 1), "amendment 1", site="101", today=TODAY)
    before = await changes()
    with pytest.raises(InvalidInput, match="101-001, 101-002") as refused:
        await applying.apply_version(demo, "1.0", date(2026, 10, 15), "back", site="101", today=TODAY)
    assert refused.value.problems[0].field == "confirm_downgrade"
    assert await changes() == before and (await versions())["101-002"] == "2.0"
    # The study: 102-001 follows 1.0 already (left, says why); the two of site 101 move back, confirmed.
    moved = await applying.apply_version(
        demo, "1.0", date(2026, 10, 15), "back", today=TODAY, actor="cora", confirm_downgrade=True
    )
    assert moved.moved == ["101-001", "101-002"] and "already follows" in moved.skipped["102-001"]
    assert sorted(e.record_id for e in await confirmations()) == ["DEMO-001/101/101-001", "DEMO-001/101/101-002"]


async def test_the_confirmation_over_the_api_and_the_pages(demo, anonymous):  # noqa: F811 (fixture)
    await add_user("cora", ("coordinator", demo, "101"))
    await applying.apply_version(demo, "2.0", date(2026, 10, 1), "amendment 1", site="101", today=TODAY)
    cora = await signed_in(anonymous, "cora")
    body = {"version": "1.0", "effective": "2026-10-15", "reason": "back"}
    url = f"/api/studies/{demo}/participants/101-001/protocol-version"
    refused = await cora.put(url, json=body)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "confirm_downgrade"
    done = await cora.put(url, json={**body, "confirm_downgrade": True})
    assert done.status_code == 200 and done.json()["protocol_version"] == "1.0"
    form = {"apply_version": "1.0", "apply_effective": "2026-10-15", "apply_reason": "back", "apply_site": "101"}
    page = await cora.post(f"/studies/{demo}/amendments/apply", data=form)
    assert page.status_code == 422
    assert "confirm" in error_next_to(page.text, "apply_confirm_downgrade")
    assert 'name="apply_confirm_downgrade"' in (await cora.get(f"/studies/{demo}/amendments/")).text
    confirmed = await cora.post(f"/studies/{demo}/amendments/apply", data={**form, "apply_confirm_downgrade": "yes"})
    assert confirmed.status_code == 303 and "moved=1" in confirmed.headers["location"]
    api = await cora.post(
        f"/api/studies/{demo}/protocol-versions/2.0/apply",
        json={"effective": "2026-10-20", "reason": "forward", "site": "101"},
    )
    assert api.status_code == 200 and api.json()["moved"] == ["101-001", "101-002"]
    back = {"effective": "2026-10-25", "reason": "back", "site": "101"}
    url = f"/api/studies/{demo}/protocol-versions/1.0/apply"
    assert (await cora.post(url, json=back)).status_code == 422
    assert (await cora.post(url, json={**back, "confirm_downgrade": True})).json()["moved"] == ["101-001", "101-002"]
    assert len(await confirmations()) == 4


async def test_the_command_line_refuses_a_day_to_come_and_a_downgrade_unless_confirmed(demo, db, tmp_path):  # noqa: F811 (fixture)
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}
    future = (date.today() + timedelta(days=30)).isoformat()
    ahead = run("protocol", "apply", demo, "2.0", "--effective", future, "--reason", "amendment 1", env=env)
    assert ahead.returncode == 2 and "effective" in ahead.stderr and "still to come" in ahead.stderr
    assert "Traceback" not in ahead.stderr
    forward = run("protocol", "apply", demo, "2.0", "--effective", "2026-10-01", "--reason", "amendment 1", env=env)
    assert forward.returncode == 0, forward.stderr
    back = ("protocol", "apply", demo, "1.0", "--effective", "2026-10-15", "--reason", "back", "--site", "101")
    refused = run(*back, env=env)
    assert refused.returncode == 2 and "--confirm-downgrade" in refused.stderr, refused.stderr
    assert (await versions())["101-001"] == "2.0"
    confirmed = run(*back, "--confirm-downgrade", env=env)
    assert confirmed.returncode == 0 and "2 participants moved to protocol version 1.0" in confirmed.stdout
    assert "moved back from a later version (confirmed)" in confirmed.stdout
    assert len(await confirmations()) == 2


async def test_the_participant_page_asks_for_the_confirmation_at_its_checkbox(demo, anonymous):  # noqa: F811 (fixture)
    await add_user("cora", ("coordinator", demo, "101"))
    await applying.change_version(demo, "101-001", "2.0", date(2026, 10, 1), "amendment 1", today=TODAY)
    cora = await signed_in(anonymous, "cora")
    url = f"/studies/{demo}/participants/101-001/protocol-version"
    form = {"version": "1.0", "effective": "2026-10-15", "reason": "back"}
    refused = await cora.post(url, data=form)
    assert refused.status_code == 422
    assert "downgrade" in error_next_to(refused.text, "version-confirm_downgrade")
    ahead = await cora.post(url, data={**form, "effective": (date.today() + timedelta(days=3)).isoformat()})
    assert ahead.status_code == 422 and "still to come" in error_next_to(ahead.text, "version-effective")
    confirmed = await cora.post(url, data={**form, "confirm_downgrade": "yes"})
    assert confirmed.status_code == 303 and (await versions())["101-001"] == "1.0"
    assert [e.actor for e in await confirmations()] == ["cora"]
