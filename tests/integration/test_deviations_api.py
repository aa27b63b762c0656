"""The deviation API as each role uses it: detection, the queue, review steps with signatures, bulk
acknowledgement, window exceptions and CAPA; refusals and problem details; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from tests.conftest import PASSWORD, RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, add_user, signed_in
from trialcoord.scheduling import visits

pytestmark = pytest.mark.anyio
API = "/api/studies/TST-1"
# the denial of a record to someone who sees only some sites: the same words whether or not it exists
DENIED = "coord-b may not see {what} of TST-1: it is at no site their grants cover (102), if it exists at all"
TODAY = date(2024, 6, 1)  # every visit window of both participants closed long ago: SCR, V2, V3 missed


@pytest.fixture
async def detected(login, personas):
    """Both participants randomised and detection run as the administrator: three missed visits at each site."""
    for subject in (SUBJECT_A, SUBJECT_B):
        await visits.record_event("TST-1", subject, "randomization", RANDOMIZED, today=TODAY)
    admin = await login("admin")
    run = await admin.post(f"{API}/deviations/detect", json={"as_of": TODAY.isoformat()})
    assert run.status_code == 200, run.text
    assert (run.json()["created"], run.json()["scope"]) == (6, "full")
    rows = (await admin.get(f"{API}/deviations")).json()["items"]
    return {site: [r["id"] for r in rows if r["site"] == site] for site in (SITE_A, SITE_B)}


@pytest.fixture
async def login(app):
    """`await login(user_id)`: a client of its own signed in as that user (one client per user, so several
    users act in one test)."""
    import httpx

    clients = []

    async def signed(user_id: str):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver")
        clients.append(client)
        return await signed_in(client, user_id)

    yield signed
    for client in clients:
        await client.aclose()


async def seen(client, deviation_id: int) -> int:
    """The row_version a writer reads before a step (every step needs it)."""
    return (await client.get(f"{API}/deviations/{deviation_id}")).json()["row_version"]


async def acknowledge(client, deviation_id: int) -> dict:
    return {"step": "acknowledge", "row_version": await seen(client, deviation_id)}


def fields(response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


async def respond(site_user, deviation_id: int) -> None:
    """The site's response, which a monitor's acknowledgement follows."""
    body = {"step": "respond", "response": "flu", "row_version": await seen(site_user, deviation_id)}
    done = await site_user.post(f"{API}/deviations/{deviation_id}/steps", json=body)
    assert done.status_code == 200 and done.json()["state"] == "site_response", done.text


async def test_detection_runs_again_without_creating_anything_and_needs_no_body(login, detected):
    monitor = await login("monitor")
    again = await monitor.post(f"{API}/deviations/detect")
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["updated"], again.json()["resolved"]) == (0, 0, 0)
    bad = await monitor.post(f"{API}/deviations/detect", json={"as_of": "1066-10-14"})
    assert bad.status_code == 400 and "as_of" in fields(bad)
    sponsor = await login("sponsor")
    assert (await sponsor.post(f"{API}/deviations/detect", json={})).status_code == 403


async def test_only_a_reader_of_every_site_chooses_the_date_or_a_full_run(login, detected):
    before = (await (await login("admin")).get(f"{API}/deviations")).json()
    coord_b = await login("coord-b")
    for body in ({"as_of": "2199-12-31"}, {"as_of": TODAY.isoformat()}, {"full": True}):
        refused = await coord_b.post(f"{API}/deviations/detect", json=body)
        assert refused.status_code == 403 and "every site of the study" in refused.json()["detail"], body
    assert (await coord_b.post(f"{API}/deviations/detect", json={})).status_code == 200  # today, incremental
    monitor = await login("monitor")
    future = await monitor.post(f"{API}/deviations/detect", json={"as_of": "2199-12-31"})
    assert future.status_code == 422 and fields(future) == {"as_of"}
    earlier = await monitor.post(f"{API}/deviations/detect", json={"as_of": "2024-03-01", "full": True})
    assert earlier.status_code == 422 and fields(earlier) == {"as_of"}  # before the last run (2024-06-01)
    after = (await (await login("admin")).get(f"{API}/deviations")).json()
    assert [(r["id"], r["state"]) for r in after["items"]] == [(r["id"], r["state"]) for r in before["items"]]


async def test_the_queue_paginates_and_filters(login, detected):
    monitor = await login("monitor")
    first = (await monitor.get(f"{API}/deviations", params={"limit": 4})).json()
    rest = (await monitor.get(f"{API}/deviations", params={"limit": 4, "offset": 4})).json()
    assert (first["total"], first["limit"], first["offset"], len(first["items"])) == (6, 4, 0, 4)
    assert (rest["total"], rest["offset"], len(rest["items"])) == (6, 4, 2)
    assert {r["id"] for r in first["items"] + rest["items"]} == set(detected[SITE_A] + detected[SITE_B])
    default = (await monitor.get(f"{API}/deviations")).json()
    assert (default["limit"], len(default["items"])) == (50, 6)

    async def ids(**params) -> set[int]:
        response = await monitor.get(f"{API}/deviations", params=params)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["items"]}

    assert await ids(site=SITE_B) == set(detected[SITE_B])
    assert await ids(participant=SUBJECT_A) == set(detected[SITE_A])
    assert await ids(category="visit schedule") == set(detected[SITE_A] + detected[SITE_B]) - await ids(
        category="eligibility"
    )
    await respond(await login("coord-a"), detected[SITE_A][0])
    await monitor.post(
        f"{API}/deviations/{detected[SITE_A][0]}/steps", json=await acknowledge(monitor, detected[SITE_A][0])
    )
    assert await ids(state="under_review") == {detected[SITE_A][0]}
    assert await ids(state="detected, under_review") == set(detected[SITE_A] + detected[SITE_B])
    day = date.fromisoformat(first["items"][0]["detected_at"][:10])
    later = (day + timedelta(days=10)).isoformat()
    assert len(await ids(min_age_days=10, as_of=later)) == 6
    assert await ids(min_age_days=11, as_of=later) == set()
    wrong = await monitor.get(f"{API}/deviations", params={"state": "detected,lost"})
    assert wrong.status_code == 422 and fields(wrong) == {"state"} and "lost" in wrong.text
    assert wrong.headers["content-type"] == "application/problem+json"
    too_many = await monitor.get(f"{API}/deviations", params={"limit": 501})
    assert too_many.status_code == 400 and "limit" in fields(too_many)
    negative = await monitor.get(f"{API}/deviations", params={"min_age_days": -1})
    assert negative.status_code == 400 and "min_age_days" in fields(negative)


async def test_a_coordinator_sees_only_the_own_sites_deviations(login, detected):
    coord_b = await login("coord-b")
    listed = (await coord_b.get(f"{API}/deviations")).json()
    assert {r["site"] for r in listed["items"]} == {SITE_B} and listed["total"] == 3
    other = await coord_b.get(f"{API}/deviations/{detected[SITE_A][0]}")
    missing = await coord_b.get(f"{API}/deviations/99999")
    assert other.status_code == missing.status_code == 403  # a denial, the same whether or not it exists
    assert other.json()["detail"] == DENIED.format(what=f"deviation {detected[SITE_A][0]}")
    assert missing.json()["detail"] == DENIED.format(what="deviation 99999")
    assert (await coord_b.get(f"{API}/deviations", params={"site": SITE_A})).status_code == 403
    step = await coord_b.post(
        f"{API}/deviations/{detected[SITE_A][0]}/steps", json={"step": "respond", "response": "x"}
    )
    assert step.status_code == 403
    assert (await (await login("monitor")).get(f"{API}/deviations/99999")).status_code == 404  # sees every site
    own = await coord_b.get(f"{API}/deviations/{detected[SITE_B][0]}")
    assert own.status_code == 200 and own.json()["dvcat"] in ("VISIT SCHEDULE", "ELIGIBILITY")
    sponsor = await login("sponsor")
    assert (await sponsor.get(f"{API}/deviations")).json()["total"] == 6  # coded data: sponsors read it


async def test_a_deviation_walks_from_response_to_closure_with_signatures(login, detected):
    did = detected[SITE_A][0]
    url = f"{API}/deviations/{did}/steps"
    coord = await login("coord-a")
    responded = await coord.post(
        url,
        json={
            "step": "respond",
            "response": "Patient had flu",
            "corrective_action": "Reminder calls",
            "row_version": await seen(coord, did),
        },
    )
    assert responded.status_code == 200, responded.text
    assert (responded.json()["state"], responded.json()["site_reason"]) == ("site_response", "Patient had flu")
    monitor = await login("monitor")
    assert (await monitor.post(url, json=await acknowledge(monitor, did))).json()["state"] == "under_review"
    classify = {
        "step": "classify",
        "classification": "important",
        "category": "visit schedule",
        "subcategory": "VISIT MISSED",
        "user_id": "monitor",
    }
    before = (await monitor.get(f"{API}/deviations/{did}")).json()
    classify["row_version"] = before["row_version"]
    unread = await monitor.post(
        url, json={k: v for k, v in {**classify, "password": PASSWORD}.items() if k != "row_version"}
    )
    assert unread.status_code == 409 and fields(unread) == {"row_version"}  # nobody signs what they did not read
    wrong = await monitor.post(url, json={**classify, "password": "not it"})
    assert wrong.status_code == 422 and fields(wrong) == {"password"} and "not correct" in wrong.text
    assert (await monitor.get(f"{API}/deviations/{did}")).json() == before  # nothing changed
    await asyncio.sleep(1.05)  # a wrong password delays the next attempt by a second, as at sign-in
    classified = await monitor.post(url, json={**classify, "password": PASSWORD})
    assert classified.status_code == 200, classified.text
    assert (classified.json()["state"], classified.json()["classification"]) == ("classified", "important")
    closed = await monitor.post(
        url,
        json={
            "step": "close",
            "password": PASSWORD,  # the password alone now
            "row_version": classified.json()["row_version"],
        },
    )
    assert closed.status_code == 200, closed.text
    shown = closed.json()
    assert shown["state"] == "closed" and shown["closed_at"] and not shown["open"]
    assert [s["step"] for s in shown["steps"]] == ["respond", "acknowledge", "classify", "close"]
    assert shown["steps"][2]["detail"]["subcategory"] == "VISIT MISSED"
    assert [(s["meaning"], s["signer_id"], s["verdict"]) for s in shown["signatures"]] == [
        ("review", "monitor", "valid"),
        ("approval", "monitor", "valid"),
    ]
    reopened = await monitor.post(
        url, json={"step": "reopen", "reason": "source data differs", "row_version": shown["row_version"]}
    )
    assert (reopened.json()["state"], reopened.json()["closed_at"]) == ("reopened", None)


async def test_each_step_is_refused_to_a_role_that_may_not_take_it(login, detected):
    did = detected[SITE_A][0]
    url = f"{API}/deviations/{did}/steps"
    monitor = await login("monitor")
    refused = await monitor.post(url, json={"step": "respond", "response": "I was not there"})
    assert refused.status_code == 403 and "respond" in refused.json()["detail"]
    coord = await login("coord-a")
    early = await monitor.post(url, json={"step": "acknowledge"})
    assert early.status_code == 422 and "cannot be acknowledged" in early.text  # the site responds first
    await respond(coord, did)
    assert (await monitor.post(url, json=await acknowledge(monitor, did))).status_code == 200
    classify = {
        "step": "classify",
        "classification": "important",
        "category": "visit schedule",
        "password": PASSWORD,
        "user_id": "coord-a",
    }
    assert (await coord.post(url, json=classify)).status_code == 403  # before any password is checked
    assert (await coord.post(url, json={"step": "acknowledge"})).status_code == 403
    sponsor = await login("sponsor")
    assert (await sponsor.post(url, json={"step": "respond", "response": "x"})).status_code == 403
    after = (await monitor.get(f"{API}/deviations/{did}")).json()
    assert [s["step"] for s in after["steps"]] == ["respond", "acknowledge"] and after["signatures"] == []


async def test_every_step_needs_the_row_version_its_writer_read(login, detected):
    did, monitor = detected[SITE_A][0], await login("monitor")
    await respond(await login("coord-a"), did)
    unread = await monitor.post(f"{API}/deviations/{did}/steps", json={"step": "acknowledge"})
    assert unread.status_code == 409 and fields(unread) == {"row_version"}, unread.text
    assert (await monitor.get(f"{API}/deviations/{did}")).json()["state"] == "site_response"  # nothing changed


async def test_bad_steps_are_named(login, detected):
    did = detected[SITE_A][0]
    url = f"{API}/deviations/{did}/steps"
    monitor = await login("monitor")
    unknown = await monitor.post(url, json={"step": "approve"})
    assert unknown.status_code == 422 and fields(unknown) == {"step"}
    early = await monitor.post(url, json={"step": "close", "password": PASSWORD, "user_id": "monitor"})
    assert early.status_code == 422 and fields(early) == {"state"}  # refused before the password is tried
    coord = await login("coord-a")
    empty = await coord.post(url, json={"step": "respond", "response": " "})
    assert empty.status_code == 422 and "site response needs" in empty.text
    assert (await coord.post(url, json={})).status_code == 400
    stale = await coord.post(url, json={"step": "respond", "response": "flu", "row_version": 7})
    assert stale.status_code == 409 and "changed meanwhile" in stale.text
    assert (await monitor.post(f"{API}/deviations/0/steps", json={"step": "acknowledge"})).status_code == 400


async def test_manual_deviations(login, detected):
    coord = await login("coord-a")
    body = {
        "site": SITE_A,
        "category": "study intervention",
        "description": "Dose from the wrong kit",
        "occurred_on": "2024-04-02",
        "subject_id": SUBJECT_A,
        "visit": "V3",
        "subcategory": "WRONG TREATMENT",
        "classification": "important",
    }
    made = await coord.post(f"{API}/deviations", json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["source"], made.json()["dvdecod"], made.json()["state"]) == (
        "manual",
        "WRONG TREATMENT",
        "detected",
    )
    assert (await coord.get(f"{API}/deviations/{made.json()['id']}")).status_code == 200
    assert (
        await coord.post(f"{API}/deviations", json={**body, "site": SITE_B, "subject_id": None, "visit": None})
    ).status_code == 403
    bad = await coord.post(f"{API}/deviations", json={**body, "category": "catering", "occurred_on": "2199-01-01"})
    assert bad.status_code == 422 and fields(bad) == {"category", "occurred_on"}
    missing = await coord.post(f"{API}/deviations", json={k: v for k, v in body.items() if k != "description"})
    assert missing.status_code == 400 and fields(missing) == {"description"}
    stranger = await coord.post(f"{API}/deviations", json={**body, "subject_id": SUBJECT_B})
    assert stranger.status_code == 403
    sponsor = await login("sponsor")
    assert (await sponsor.post(f"{API}/deviations", json=body)).status_code == 403


async def test_bulk_acknowledge_refuses_each_deviation_it_may_not_touch(login, detected):
    await add_user("monitor-a", ("monitor", "TST-1", SITE_A))
    monitor_a, coord_a, coord_b = await login("monitor-a"), await login("coord-a"), await login("coord-b")
    first, second, unanswered = detected[SITE_A]
    for did in (first, second):
        await respond(coord_a, did)
    await respond(coord_b, detected[SITE_B][0])
    await monitor_a.post(f"{API}/deviations/{first}/steps", json=await acknowledge(monitor_a, first))
    ids = detected[SITE_A] + detected[SITE_B] + [99999]
    done = await monitor_a.post(f"{API}/deviations/acknowledge", json={"ids": ids})
    assert done.status_code == 200, done.text
    assert done.json()["acknowledged"] == [second]
    refused = {r["id"]: r["reason"] for r in done.json()["refused"]}
    assert set(refused) == {first, unanswered, 99999, *detected[SITE_B]}
    assert "a deviation that is under_review cannot be acknowledged" in refused[first]
    assert "a deviation that is detected cannot be acknowledged" in refused[unanswered]  # no site response yet
    for did in [*detected[SITE_B], 99999]:  # another site's: the words of a missing one
        assert refused[did] == f"study TST-1 has no deviation {did}"
    b_rows = (await (await login("monitor")).get(f"{API}/deviations", params={"site": SITE_B})).json()
    assert sorted(r["state"] for r in b_rows["items"]) == ["detected", "detected", "site_response"]
    empty = await monitor_a.post(f"{API}/deviations/acknowledge", json={"ids": []})
    assert empty.status_code == 422 and fields(empty) == {"ids"}
    assert (await coord_a.post(f"{API}/deviations/acknowledge", json={"ids": [second]})).status_code == 403


async def test_window_exceptions_are_approved_by_the_sites_investigator(login, detected):
    await add_user("inv-a", ("investigator", "TST-1", SITE_A))
    investigator = await login("inv-a")
    body = {"visit": "V2", "earlier_days": 0, "later_days": 5, "approved_on": "2024-03-10", "reason": "travel"}
    made = await investigator.post(f"{API}/participants/{SUBJECT_A}/window-exceptions", json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["site"], made.json()["approved_by"], made.json()["later_days"]) == (SITE_A, "inv-a", 5)
    again = await investigator.post(f"{API}/participants/{SUBJECT_A}/window-exceptions", json=body)
    assert again.status_code == 409
    none = await investigator.post(
        f"{API}/participants/{SUBJECT_A}/window-exceptions", json={**body, "visit": "V3", "later_days": 0}
    )
    assert none.status_code == 422 and fields(none) == {"later_days"}
    assert (await investigator.post(f"{API}/participants/{SUBJECT_B}/window-exceptions", json=body)).status_code == 403
    coord = await login("coord-a")
    assert (await coord.post(f"{API}/participants/{SUBJECT_A}/window-exceptions", json=body)).status_code == 403
    listed = (await coord.get(f"{API}/window-exceptions")).json()
    assert [(e["subject_id"], e["visit"], e["approved_on"]) for e in listed] == [(SUBJECT_A, "V2", "2024-03-10")]
    assert (await (await login("coord-b")).get(f"{API}/window-exceptions")).json() == []


async def test_capa_records_group_only_deviations_their_user_sees(login, detected):
    coord = await login("coord-a")
    body = {
        "title": "Visit reminders",
        "root_cause": "No reminder process",
        "corrective_action": "Call patients",
        "preventive_action": "Reminder SOP",
        "owner": "coord-a",
        "due_on": "2024-07-01",
        "deviations": detected[SITE_A][:2],
    }
    made = await coord.post(f"{API}/capas", json=body)
    assert made.status_code == 201, made.text
    capa = made.json()
    assert (capa["state"], capa["deviations"], capa["due_on"]) == ("open", detected[SITE_A][:2], "2024-07-01")
    sneaky = await coord.post(f"{API}/capas", json={**body, "deviations": [detected[SITE_B][0]]})
    assert sneaky.status_code == 403
    blank = await coord.post(f"{API}/capas", json={**body, "title": " "})
    assert blank.status_code == 422 and fields(blank) == {"title"}
    assert (
        await coord.post(f"{API}/capas/{capa['id']}/deviations", json={"ids": [detected[SITE_B][0]]})
    ).status_code == 403
    monitor = await login("monitor")
    linked = await monitor.post(f"{API}/capas/{capa['id']}/deviations", json={"ids": [detected[SITE_B][0]]})
    assert linked.status_code == 200 and linked.json()["deviations"] == detected[SITE_A][:2] + [detected[SITE_B][0]]
    seen_by_b = (await (await login("coord-b")).get(f"{API}/capas/{capa['id']}")).json()
    assert seen_by_b["deviations"] == [detected[SITE_B][0]]  # site A's are not named to site B
    assert [c["id"] for c in (await coord.get(f"{API}/capas")).json()] == [capa["id"]]
    assert (await coord.get(f"{API}/capas/{capa['id']}")).json()["deviations"] == detected[SITE_A][:2]
    closed = await monitor.post(f"{API}/capas/{capa['id']}/close", json={"reason": "no repeat in 3 months"})
    assert closed.status_code == 200 and closed.json()["state"] == "closed" and closed.json()["closed_at"]
    assert (await monitor.post(f"{API}/capas/{capa['id']}/close", json={"reason": "again"})).status_code == 409
    no_reason = await monitor.post(f"{API}/capas/{capa['id']}/close", json={})
    assert no_reason.status_code == 400 and fields(no_reason) == {"reason"}
    assert (await monitor.get(f"{API}/capas/999")).status_code == 404
    sponsor = await login("sponsor")
    assert [c["deviations"] for c in (await sponsor.get(f"{API}/capas")).json()] == [
        detected[SITE_A][:2] + [detected[SITE_B][0]]
    ]  # coded data: sponsors read every record
    assert (await sponsor.post(f"{API}/capas", json=body)).status_code == 403


CAPA = {
    "title": "Reminders at A",
    "root_cause": "No reminder process",
    "corrective_action": "Call patients",
    "preventive_action": "Reminder SOP",
    "owner": "coord-a",
}


async def test_another_sites_capa_record_answers_403_on_every_route_and_nothing_changes(login, detected):
    coord_a, coord_b, monitor = await login("coord-a"), await login("coord-b"), await login("monitor")
    made = (await coord_a.post(f"{API}/capas", json={**CAPA, "deviations": detected[SITE_A][:1]})).json()
    url = f"{API}/capas/{made['id']}"
    before = (await monitor.get(url)).json()
    assert (await coord_b.get(f"{API}/capas")).json() == []
    for response in (
        await coord_b.get(url),
        await coord_b.post(f"{url}/deviations", json={"ids": [detected[SITE_B][0]]}),
        await coord_b.post(f"{url}/close", json={"reason": "closed by B"}),
    ):
        assert response.status_code == 403, response.request.url
        assert response.json()["detail"] == DENIED.format(what=f"CAPA record {made['id']}")
    missing = await coord_b.get(f"{API}/capas/99999")
    assert missing.status_code == 403 and missing.json()["detail"] == DENIED.format(what="CAPA record 99999")
    assert (await monitor.get(url)).json() == before
    assert (await monitor.get(f"{API}/deviations/{detected[SITE_B][0]}")).json()["capa"] is None


async def test_a_deviation_belongs_to_one_capa_record_and_a_closed_one_takes_no_more(login, detected):
    monitor = await login("monitor")
    first = (await monitor.post(f"{API}/capas", json={**CAPA, "deviations": detected[SITE_A][:1]})).json()
    moved = await monitor.post(f"{API}/capas", json={**CAPA, "deviations": detected[SITE_A][:1]})
    assert moved.status_code == 409 and "already belongs to another CAPA record" in moved.json()["detail"]
    await monitor.post(f"{API}/capas/{first['id']}/close", json={"reason": "checked"})
    late = await monitor.post(f"{API}/capas/{first['id']}/deviations", json={"ids": detected[SITE_A][1:2]})
    assert late.status_code == 409 and "is closed" in late.json()["detail"]
    assert (await monitor.get(f"{API}/capas/{first['id']}")).json()["deviations"] == detected[SITE_A][:1]


async def test_sponsors_read_deviations_and_capa_but_write_nothing(login, detected):
    did = detected[SITE_A][0]
    monitor, sponsor = await login("monitor"), await login("sponsor")
    capa = (await monitor.post(f"{API}/capas", json={**CAPA, "deviations": [did]})).json()
    for path in (
        "/deviations",
        f"/deviations/{did}",
        "/capas",
        f"/capas/{capa['id']}",
        "/window-exceptions",
        "/deviations/trends",
    ):
        assert (await sponsor.get(API + path)).status_code == 200, path
    writes = [
        ("/deviations/detect", {}),
        ("/deviations", {"site": SITE_A, "category": "other", "description": "d", "occurred_on": "2024-03-05"}),
        (f"/deviations/{did}/steps", {"step": "respond", "response": "x"}),
        (f"/deviations/{did}/steps", {"step": "acknowledge"}),
        ("/deviations/acknowledge", {"ids": [did]}),
        (
            f"/participants/{SUBJECT_A}/window-exceptions",
            {"visit": "V2", "earlier_days": 0, "later_days": 2, "approved_on": "2024-03-10", "reason": "r"},
        ),
        ("/capas", CAPA),
        (f"/capas/{capa['id']}/deviations", {"ids": [did]}),
        (f"/capas/{capa['id']}/close", {"reason": "r"}),
    ]
    for path, body in writes:
        assert (await sponsor.post(API + path, json=body)).status_code == 403, path
    assert (await monitor.get(f"{API}/deviations/{did}")).json()["steps"] == []


async def test_out_of_range_and_unicode_digit_inputs_are_4xx(login, detected):
    monitor = await login("monitor")
    for did in (2**31 - 1, 99999999999):  # the column is a 32-bit integer on PostgreSQL
        expected = 404 if did < 2**31 else 400
        assert (await monitor.get(f"{API}/deviations/{did}")).status_code == expected, did
        assert (await monitor.get(f"{API}/capas/{did}")).status_code == expected, did
        step = await monitor.post(f"{API}/deviations/{did}/steps", json={"step": "acknowledge"})
        assert step.status_code == expected, did
    for params in ({"limit": "²"}, {"offset": "²"}, {"min_age_days": "²"}):
        assert (await monitor.get(f"{API}/deviations", params=params)).status_code == 400, params
    assert (await monitor.get(f"{API}/deviations/²")).status_code == 404  # no route takes it
