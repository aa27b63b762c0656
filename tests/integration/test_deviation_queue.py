"""The deviation queue at a real site (issue 15), on both engines: keyset pages sorted by any column and filtered by
state, site, kind, classification and text; the CAPA list likewise; the counts the home page shows; and one review
step on several deviations at once (a site's response, a signed classification or closure), all or none."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from tests.conftest import PASSWORD, RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, account_rules, signed_in
from tests.integration.test_pages import error_next_to
from trialcoord.accounts.signing import signing_by_password
from trialcoord.deviations import bulk_review, deviation_review, manual, queue, review_store
from trialcoord.deviations.deviation_review import StepFields
from trialcoord.kernel import audit_log
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import Conflict, InvalidInput
from trialcoord.kernel.web.paging import encode_cursor, page_request

pytestmark = [pytest.mark.anyio, pytest.mark.db]
QUEUE = "/studies/TST-1/deviations"
CAPAS = "/studies/TST-1/capas"


async def record(site: str, subject: str | None, description: str, **more) -> int:
    made = await manual.record_manual(
        "TST-1", site, "other", description, RANDOMIZED, "monitor", subject_id=subject, subcategory="OTHER", **more
    )
    return made.id


@pytest.fixture
async def six(personas) -> list[int]:
    """Six deviations found by hand: four at site A (two of 1001, two of the site), two of 2001 at site B."""
    return [
        await record(SITE_A, SUBJECT_A, "Dose taken with food"),
        await record(SITE_A, None, "Fridge log missing", classification="important"),
        await record(SITE_B, SUBJECT_B, "ECG not done"),
        await record(SITE_A, SUBJECT_A, "Diary not collected"),
        await record(SITE_B, SUBJECT_B, "Lab sample haemolysed"),
        await record(SITE_A, None, "Training record missing"),
    ]


def ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="deviation-(\d+)">', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


async def states(*ids: int) -> list[str]:
    return [(await queue.get("TST-1", i)).state for i in ids]


# Sorting, paging, filtering -----------------------------------------------------------------------


async def test_the_queue_walks_every_sort_a_keyset_page_at_a_time(anonymous, six):
    monitor = await signed_in(anonymous, "monitor")
    everyone = {}
    for sort in queue.SORTS:
        for order in ("asc", "desc"):
            seen, url, pages = [], f"{QUEUE}?sort={sort}&order={order}&size=4", 0
            while url:
                page = await monitor.get(url)
                assert page.status_code == 200, (sort, order, page.text[:200])
                seen += ids_in(page.text)
                url, pages = next_link(page.text), pages + 1
            assert sorted(seen) == sorted(six) and pages == 2, (sort, order, seen)  # none repeated, none skipped
            everyone[(sort, order)] = seen
    assert everyone[("id", "asc")] == sorted(six) and everyone[("id", "desc")] == sorted(six, reverse=True)
    by_participant = everyone[("participant", "asc")]
    assert set(by_participant[:2]) == {six[1], six[5]}  # the site's own deviations (no participant) first
    assert set(by_participant[-2:]) == {six[2], six[4]}
    assert everyone[("classification", "asc")][0] == six[1]  # important before non_important
    first = await monitor.get(QUEUE, params={"sort": "participant", "order": "desc"})
    assert 'aria-sort="descending"' in first.text


async def test_the_queue_filters_by_kind_classification_and_text(anonymous, six):
    monitor = await signed_in(anonymous, "monitor")

    async def shown(**params) -> set[int]:
        page = await monitor.get(QUEUE, params=params)
        assert page.status_code == 200, params
        return set(ids_in(page.text))

    assert await shown(kind="manual") == set(six) and await shown(kind="visit_late") == set()
    assert await shown(classification="important") == {six[1]}
    assert await shown(q=str(six[2])) == {six[2]}
    assert await shown(q=SUBJECT_B[:3]) == {six[2], six[4]}  # part of a subject ID
    assert await shown(q="%") == set() and await shown(q="_") == set()  # LIKE's wildcards are taken literally
    assert await shown(site=SITE_B, q=SUBJECT_B) == {six[2], six[4]}
    await deviation_review.take_step("TST-1", six[0], "respond", "coord-a", response="Patient forgot")
    assert await shown(state="site_response") == {six[0]}
    assert await shown(state="site_response,detected") == set(six)  # the links' form of several states
    page = await monitor.get(QUEUE, params={"q": SUBJECT_B, "classification": "non_important", "size": "1"})
    link = next_link(page.text)
    assert link and f"q={SUBJECT_B}" in link and "classification=non_important" in link
    bad = await monitor.get(QUEUE, params={"kind": "vibes", "classification": "awful"})
    assert bad.status_code == 400
    assert "kind" in error_next_to(bad.text, "filter-kind")
    assert "classification" in error_next_to(bad.text, "filter-classification")
    cursor = next_link((await monitor.get(QUEUE, params={"size": "2"})).text).split("after=")[1]
    wrong = await monitor.get(QUEUE, params={"sort": "days_outside", "after": cursor})  # another sort's cursor
    assert wrong.status_code == 400 and "cursor" in wrong.text


async def test_the_home_page_counts_what_awaits_the_site_and_the_monitor(six):
    await deviation_review.take_step("TST-1", six[0], "respond", "coord-a", response="Patient forgot")
    await deviation_review.take_step("TST-1", six[2], "respond", "coord-b", response="Machine broken")
    await deviation_review.take_step("TST-1", six[2], "acknowledge", "monitor")
    counts = await queue.awaiting_by_site("TST-1")
    assert [(c.site, c.awaiting_response, c.awaiting_review) for c in counts] == [(SITE_A, 3, 1), (SITE_B, 1, 1)]
    assert [c.site for c in await queue.awaiting_by_site("TST-1", {SITE_B})] == [SITE_B]
    assert await queue.awaiting_by_site("TST-1", set()) == []


async def test_the_capa_list_pages_sorts_and_filters(anonymous, six):
    for n, (title, owner) in enumerate([("Fridge", "pharmacy"), ("Diaries", "cora"), ("Training", "ada")]):
        await deviation_review.create_capa(
            "TST-1", title, "cause", "fix", "prevent", owner, None, [six[n]] if n < 2 else [], "monitor"
        )
    await deviation_review.close_capa("TST-1", 3, "monitor", "checked at the next visit")
    monitor = await signed_in(anonymous, "monitor")

    def rows(html: str) -> list[int]:
        return [int(i) for i in re.findall(r'<tr id="capa-(\d+)">', html)]

    assert rows((await monitor.get(CAPAS)).text) == [1, 2, 3]
    assert rows((await monitor.get(CAPAS, params={"sort": "title"})).text) == [2, 1, 3]
    assert rows((await monitor.get(CAPAS, params={"sort": "owner", "order": "desc"})).text) == [1, 2, 3]
    assert rows((await monitor.get(CAPAS, params={"state": "closed"})).text) == [3]
    assert rows((await monitor.get(CAPAS, params={"q": "cora"})).text) == [2]
    first = await monitor.get(CAPAS, params={"size": "2", "state": "open"})
    assert rows(first.text) == [1, 2] and next_link(first.text) is None
    paged = await monitor.get(CAPAS, params={"size": "2"})
    link = next_link(paged.text)
    assert rows(paged.text) == [1, 2] and link and rows((await monitor.get(link)).text) == [3]
    assert (await monitor.get(CAPAS, params={"state": "ajar"})).status_code == 400
    for sort, cursor in (("id", ("1", 1)), ("title", (3, 1)), ("id", (1, "x"))):  # tampered: never compared
        tampered = await monitor.get(CAPAS, params={"sort": sort, "after": encode_cursor(cursor)})
        assert tampered.status_code == 400 and "after" in tampered.text


# Several deviations at once ------------------------------------------------------------------------


async def test_a_coordinator_responds_for_several_deviations_in_one_go(anonymous, six):
    coord = await signed_in(anonymous, "coord-a")
    data = {"ids": [str(six[0]), str(six[3])], "response": "Patient was travelling", "corrective_action": "Call ahead"}
    done = await coord.post(f"{QUEUE}/bulk/respond", data=data)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=respond-2")
    assert "Response recorded for 2 deviations." in (await coord.get(done.headers["location"])).text
    assert await states(six[0], six[3]) == ["site_response", "site_response"]
    responded = await audit_log.browse(audit_log.AuditFilter(record_type="deviation", action="respond"), None, 10)
    assert sorted(e.record_id.rsplit("/", 1)[1] for e in responded) == sorted([str(six[0]), str(six[3])])
    empty = await coord.post(f"{QUEUE}/bulk/respond", data={"ids": [str(six[1])]})
    assert empty.status_code == 422 and "reason" in error_next_to(empty.text, "bulk-response")
    assert f'id="choose-{six[1]}" aria-label="Choose deviation {six[1]}" checked' in empty.text  # still chosen


async def test_one_deviation_that_cannot_be_changed_leaves_all_unchanged_and_is_named(anonymous, six):
    coord = await signed_in(anonymous, "coord-a")
    await deviation_review.take_step("TST-1", six[1], "respond", "coord-a", response="first")
    await deviation_review.take_step("TST-1", six[1], "acknowledge", "monitor")  # the monitor's turn now
    data = {"ids": [str(six[0]), str(six[1]), str(six[2])], "response": "Patient was travelling"}
    refused = await coord.post(f"{QUEUE}/bulk/respond", data=data)
    assert refused.status_code == 422
    alert = refused.text.split('id="bulk-refused"')[1].split("</div>")[0]
    assert "Nothing was changed" in alert
    assert f"deviation {six[1]}: a deviation that is under_review cannot be responded to" in alert
    assert f"deviation {six[2]}: study TST-1 has no deviation {six[2]}" in alert  # site B: not one coord-a sees
    assert await states(six[0], six[1], six[2]) == ["detected", "under_review", "detected"]


async def classified_ready(*ids: int) -> None:
    for i in ids:
        row = await queue.get("TST-1", i)
        await deviation_review.take_step(
            "TST-1", i, "respond", "coord-a" if row.site == SITE_A else "coord-b", response="r"
        )
        await deviation_review.take_step("TST-1", i, "acknowledge", "monitor")


async def test_a_monitor_classifies_several_with_one_ceremony_and_each_is_signed(anonymous, six, server_clock):
    await classified_ready(six[0], six[2], six[3])
    server_clock.to(datetime.now(UTC))
    monitor = await signed_in(anonymous, "monitor")
    page = await monitor.get(QUEUE, params={"state": "under_review"})
    assert "Classify and sign selected" in page.text and 'name="row_version_' in page.text
    versions = {i: (await queue.get("TST-1", i)).row_version for i in (six[0], six[2], six[3])}
    form = {
        "ids": [str(i) for i in versions],
        **{f"row_version_{i}": str(v) for i, v in versions.items()},
        "classification": "important",
        "category": "other",
        "subcategory": "OTHER",
        "user_id": "monitor",
        "password": PASSWORD,
    }
    wrong = await monitor.post(f"{QUEUE}/bulk/classify", data={**form, "password": "not it"})
    assert wrong.status_code == 422 and "signing refused" in error_next_to(wrong.text, "bulk-password")
    assert await states(*versions) == ["under_review"] * 3
    server_clock.by(seconds=30)  # past the lock-out gate's delay after a wrong password
    done = await monitor.post(f"{QUEUE}/bulk/classify", data=form)
    assert done.status_code == 303
    assert done.headers["location"].endswith("?done=classify-3")
    assert await states(*versions) == ["classified"] * 3
    for i in versions:
        [signature] = await deviation_review.verify_signatures("TST-1", i)
        assert (signature.meaning, signature.signer_id, signature.verdict) == ("review", "monitor", "valid")
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="deviation", action="classify"), None, 10)
    assert len(entries) == 3 and all(e.new["signature"] for e in entries)
    ceremonies = await fetch(
        "SELECT COUNT(*) AS n FROM login_attempts WHERE address = '(signing)' AND outcome = 'succeeded'"
    )
    assert ceremonies[0]["n"] == 1  # one ceremony for the batch
    closing = {
        "ids": [str(i) for i in versions],
        **{f"row_version_{i}": str((await queue.get("TST-1", i)).row_version) for i in versions},
        "password": PASSWORD,
    }
    closed = await monitor.post(f"{QUEUE}/bulk/close", data=closing)
    assert closed.status_code == 303 and await states(*versions) == ["closed"] * 3
    stale = await monitor.post(f"{QUEUE}/bulk/close", data={**closing})
    assert stale.status_code == 422 and "Nothing was changed" in stale.text


async def test_a_failure_on_the_last_deviation_rolls_every_one_back(six, monkeypatch, installation):
    await classified_ready(six[0], six[3])
    items = [(i, (await queue.get("TST-1", i)).row_version) for i in (six[0], six[3])]
    signing = await signing_by_password("monitor", "review", PASSWORD, rules=account_rules())
    original, calls = review_store.insert_signature, []

    async def failing_on_the_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise RuntimeError("the disk is full")
        return await original(*args, **kwargs)

    monkeypatch.setattr(review_store, "insert_signature", failing_on_the_second)
    fields = StepFields(classification="important", category="other", subcategory="OTHER")
    tables = ("deviation_steps", "audit_entries WHERE record_type = 'deviation'")
    counts = [(await fetch(f"SELECT COUNT(*) AS n FROM {t}"))[0]["n"] for t in tables]
    with pytest.raises(RuntimeError, match="disk is full"):
        await bulk_review.take_steps(
            "TST-1",
            "classify",
            items,
            "monitor",
            fields,
            visible=None,
            permitted=None,
            signing=signing,
            installation=installation,
        )
    assert calls == [six[0], six[3]]
    assert await states(six[0], six[3]) == ["under_review", "under_review"]
    after = [(await fetch(f"SELECT COUNT(*) AS n FROM {t}"))[0]["n"] for t in tables]
    assert after == counts and await fetch("SELECT id FROM deviation_signatures") == []


async def test_the_use_case_names_every_refusal_and_a_stale_batch_is_a_conflict(six):
    fields = StepFields(response="r")
    with pytest.raises(InvalidInput) as refused:
        await bulk_review.take_steps(
            "TST-1",
            "respond",
            [(six[0], None), (999, None), (six[2], None)],
            "coord-a",
            fields,
            visible=None,
            permitted=[SITE_A],
        )
    messages = [p.message for p in refused.value.problems]
    assert messages == [
        "deviation 999: study TST-1 has no deviation 999",
        f"deviation {six[2]}: you may not respond deviations at site {SITE_B}",
    ]
    with pytest.raises(Conflict, match=f"deviation {six[0]}: it changed meanwhile"):
        await bulk_review.take_steps("TST-1", "respond", [(six[0], 7)], "coord-a", fields, visible=None, permitted=None)
    with pytest.raises(InvalidInput) as twice:
        await bulk_review.take_steps(
            "TST-1", "respond", [(six[0], None)] * 2, "coord-a", fields, visible=None, permitted=None
        )
    assert twice.value.problems[0].field == "ids"
    with pytest.raises(InvalidInput) as step:
        await bulk_review.take_steps(
            "TST-1", "reopen", [(six[0], None)], "monitor", fields, visible=None, permitted=None
        )
    assert step.value.problems[0].field == "step"
    assert await states(six[0], six[2]) == ["detected", "detected"]


async def test_several_at_once_over_the_api(anonymous, six):
    await classified_ready(six[0], six[3])
    monitor = await signed_in(anonymous, "monitor")
    url = "/api/studies/TST-1/deviations/steps"
    body = {
        "step": "classify",
        "deviations": [{"id": six[0]}, {"id": six[3]}],
        "classification": "important",
        "category": "other",
        "password": PASSWORD,
        "user_id": "monitor",
    }
    unread = await monitor.post(url, json=body)
    assert unread.status_code == 409 and unread.json()["errors"][0]["field"] == "row_version"
    chosen = [{"id": i, "row_version": (await queue.get("TST-1", i)).row_version} for i in (six[0], six[3])]
    done = await monitor.post(url, json={**body, "deviations": chosen})
    assert done.status_code == 200 and [d["state"] for d in done.json()] == ["classified", "classified"]
    coord = await signed_in(anonymous, "coord-a")
    forbidden = await coord.post(url, json={**body, "deviations": chosen})
    assert forbidden.status_code == 403  # a coordinator classifies nowhere
    read = [{"id": i, "row_version": (await queue.get("TST-1", i)).row_version} for i in (six[1], six[0])]
    refused = await coord.post(url, json={"step": "respond", "deviations": read, "response": "r"})
    assert refused.status_code == 422
    assert any(f"deviation {six[0]}: a deviation that is classified" in e["message"] for e in refused.json()["errors"])
    assert await states(six[1]) == ["detected"]


async def test_the_page_sizes_and_dates_stay_put(six):
    request = page_request(None, None, None, 2, sorts=tuple(queue.SORTS), default="detected", key_width=2)
    page, total = await queue.queue_page("TST-1", queue.QueueFilter(as_of=date.today()), request)
    assert total == 6 and len(page.rows) == 2 and page.next_after and page.first
