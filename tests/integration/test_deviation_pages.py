"""Deviation pages over both engines: the queue (filters, pages, detection, bulk acknowledgement), one
deviation with its review forms and signatures, CAPA; each for the roles it serves, refused for the others."""

from __future__ import annotations

import asyncio
import re
from datetime import date

import pytest

from tests.conftest import PASSWORD, RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, account_rules, signed_in
from tests.integration.test_pages import error_next_to
from trialcoord.accounts.signing import signing_by_password
from trialcoord.deviations import detection, deviation_review, manual, queue
from trialcoord.scheduling import visits

pytestmark = [pytest.mark.anyio, pytest.mark.db]

QUEUE = "/studies/TST-1/deviations"
CAPAS = "/studies/TST-1/capas"


@pytest.fixture
async def found(personas):
    """Both participants randomised; 1001's V2 four days late; detection run. -> {(subject, visit, rule): id}"""
    for subject in (SUBJECT_A, SUBJECT_B):
        await visits.record_event("TST-1", subject, "randomization", RANDOMIZED, today=RANDOMIZED)
    await visits.record_visit("TST-1", SUBJECT_A, "V2", date(2024, 3, 25), reason="travelling", today=date(2024, 3, 25))
    await detection.detect("TST-1")
    rows, _ = await queue.listing("TST-1")
    return {(r.participant, r.visit, r.rule): r.id for r in rows}


@pytest.fixture
def late(found) -> int:
    return found[(SUBJECT_A, "V2", "visit_late")]


def ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="deviation-(\d+)">', html)]


async def as_user(anonymous, user_id: str):
    """The one test client, signed in as `user_id` from now on."""
    return await signed_in(anonymous, user_id)


async def responded(*ids: int) -> None:
    """The site's response to each deviation, which a monitor's acknowledgement follows."""
    for i in ids:
        row = await queue.get("TST-1", i)
        await deviation_review.take_step(
            "TST-1", i, "respond", "coord-a" if row.site == SITE_A else "coord-b", response="Patient had flu"
        )


# The queue ---------------------------------------------------------------------------------------


async def test_the_queue_shows_each_reader_their_sites_and_refuses_other_roles(anonymous, found):
    monitor = await as_user(anonymous, "monitor")
    page = await monitor.get(QUEUE)
    assert page.status_code == 200
    assert sorted(ids_in(page.text)) == sorted(found.values())
    assert "Run detection" in page.text and "Acknowledge selected" in page.text
    assert '<input type="checkbox" name="ids"' in page.text
    coord = await as_user(anonymous, "coord-a")
    page = await coord.get(QUEUE)
    mine = {i for (subject, _, _), i in found.items() if subject == SUBJECT_A}
    assert page.status_code == 200 and set(ids_in(page.text)) == mine
    assert "Acknowledge selected" not in page.text  # coordinators respond, monitors acknowledge
    assert 'id="queue-form"' in page.text and "Record response for selected" in page.text
    assert "Classify and sign selected" not in page.text and "Run detection" in page.text
    assert (await coord.get(QUEUE, params={"site": SITE_B})).status_code == 403
    sponsor = await (await as_user(anonymous, "sponsor")).get(QUEUE)  # coded data: sponsors read the queue
    assert sponsor.status_code == 200 and sorted(ids_in(sponsor.text)) == sorted(found.values())
    assert 'method="post" action="/studies/TST-1/deviations' not in sponsor.text
    assert "Run detection" not in sponsor.text and "Acknowledge" not in sponsor.text
    for user_id in ("outsider", "monitor-expired"):
        assert (await (await as_user(anonymous, user_id)).get(QUEUE)).status_code == 403, user_id


async def test_the_queue_filters_by_site_state_category_and_age(anonymous, found, late):
    client = await as_user(anonymous, "monitor")
    by_site = await client.get(QUEUE, params={"site": SITE_B})
    assert set(ids_in(by_site.text)) == {i for (s, _, _), i in found.items() if s == SUBJECT_B}
    await responded(late)
    await deviation_review.take_step("TST-1", late, "acknowledge", "monitor")
    reviewed = await client.get(QUEUE, params=[("state", "under_review")])
    assert ids_in(reviewed.text) == [late]
    assert re.search(r'value="under_review" checked', reviewed.text)
    both = await client.get(QUEUE, params=[("state", "under_review"), ("state", "detected")])
    assert sorted(ids_in(both.text)) == sorted(found.values())
    assert ids_in((await client.get(QUEUE, params={"category": "informed consent"})).text) == []
    assert len(ids_in((await client.get(QUEUE, params={"category": "visit schedule"})).text)) == len(found)
    assert ids_in((await client.get(QUEUE, params={"min_age": "1"})).text) == []  # all detected today
    assert len(ids_in((await client.get(QUEUE, params={"min_age": "0"})).text)) == len(found)


async def test_bad_filters_are_shown_next_to_their_field(anonymous, found):
    client = await as_user(anonymous, "monitor")
    bad = await client.get(QUEUE, params={"min_age": "old", "category": "catering", "state": "lost"})
    assert bad.status_code == 400
    assert "whole number of days" in error_next_to(bad.text, "filter-min_age")
    assert "category" in error_next_to(bad.text, "filter-category")
    assert 'id="filter-state-note"' in bad.text
    for params in ({"min_age": "²"}, {"min_age": "١"}, {"sort": "colour"}, {"order": "up"}, {"after": "x"}):
        assert (await client.get(QUEUE, params=params)).status_code == 400, params  # digits to isdigit, not int()


async def test_the_queue_pages_by_fifty_keeping_the_filters(anonymous, personas):
    for n in range(53):
        await manual.record_manual("TST-1", SITE_A, "other", f"Case {n}", RANDOMIZED, "coord-a", subcategory="OTHER")
    client = await as_user(anonymous, "monitor")
    first = await client.get(QUEUE, params={"category": "other", "site": SITE_A})
    assert len(ids_in(first.text)) == 50 and "53 deviations, 50 a page." in first.text
    next_url = re.search(r'<a rel="next" href="([^"]+)">', first.text).group(1).replace("&amp;", "&")
    assert "category=other" in next_url and f"site={SITE_A}" in next_url and "after=" in next_url
    second = await client.get(next_url)
    assert len(ids_in(second.text)) == 3 and 'rel="next"' not in second.text
    assert set(ids_in(second.text)).isdisjoint(ids_in(first.text))
    back = re.search(r'<a href="([^"]+)">First page</a>', second.text).group(1).replace("&amp;", "&")
    assert "after" not in back and "category=other" in back
    assert ids_in((await client.get(back)).text) == ids_in(first.text)


async def test_running_detection_shows_the_counts_after_the_redirect(anonymous, personas):
    await visits.record_event("TST-1", SUBJECT_A, "randomization", RANDOMIZED, today=RANDOMIZED)
    client = await as_user(anonymous, "coord-a")
    ran = await client.post(f"{QUEUE}/detect", data={})
    assert ran.status_code == 303 and re.search(r"\?ran=\d+-0-0-0$", ran.headers["location"])
    created = int(re.search(r"ran=(\d+)", ran.headers["location"]).group(1))
    assert created == len((await queue.listing("TST-1"))[0]) > 0
    page = await client.get(ran.headers["location"])
    assert f"Detection ran: {created} created, 0 updated, 0 resolved, 0 reopened." in page.text
    assert (await (await as_user(anonymous, "sponsor")).post(f"{QUEUE}/detect", data={})).status_code == 403


async def test_bulk_acknowledge_lists_what_was_refused_and_why(anonymous, found, late):
    client = await as_user(anonymous, "monitor")
    unanswered, *others = [i for i in found.values() if i != late][:3]
    await responded(late, *others)
    await deviation_review.take_step("TST-1", late, "acknowledge", "monitor")
    chosen = [str(late), str(unanswered), *map(str, others), "99999", "²"]
    response = await client.post(f"{QUEUE}/acknowledge", data={"ids": chosen})
    assert response.status_code == 200
    refused = re.search(r'<div class="alert" role="alert" id="refused">(.*?)</div>', response.text, re.S).group(1)
    assert re.search(rf"#{late}: [^<]*a deviation that is under_review cannot be acknowledged", refused)
    assert re.search(rf"#{unanswered}: [^<]*a deviation that is detected cannot be acknowledged", refused)
    assert "#99999: study TST-1 has no deviation 99999" in refused and "#²: &#39;²&#39; is not a deviation" in refused
    assert all(f"#{i}" in response.text for i in others) and f"Acknowledged {len(others)}" in response.text
    for i in others:
        assert (await queue.get("TST-1", i)).state == "under_review"
    assert (await queue.get("TST-1", unanswered)).state == "detected"
    rest = [i for i in found.values() if i not in others and i != late]
    await responded(*rest)
    done = await client.post(f"{QUEUE}/acknowledge", data={"ids": [str(i) for i in rest]})
    assert done.status_code == 303 and done.headers["location"].endswith(f"?acknowledged={len(rest)}")
    empty = await client.post(f"{QUEUE}/acknowledge", data={})
    assert empty.status_code == 422 and "Choose at least one deviation" in empty.text
    coord = await as_user(anonymous, "coord-a")
    assert (await coord.post(f"{QUEUE}/acknowledge", data={"ids": str(late)})).status_code == 403


# One deviation ------------------------------------------------------------------------------------


async def test_the_deviation_page_shows_facts_and_the_highlighted_visit(anonymous, found, late):
    for user_id in ("monitor", "coord-a"):
        page = await (await as_user(anonymous, user_id)).get(f"{QUEUE}/{late}")
        assert page.status_code == 200, user_id
        html = page.text
        assert '<dd id="dvcat">VISIT SCHEDULE</dd>' in html and '<dd id="dvdecod">VISIT OUT OF WINDOW</dd>' in html
        assert '<g class="highlighted">' in html and html.count('class="highlight"') == 1
        highlighted = re.search(r'<g class="highlighted">\s*<title>([^<]*)</title>', html).group(1)
        assert highlighted.startswith("V2 ") and highlighted.endswith("(the visit in question)")
    sponsor = await (await as_user(anonymous, "sponsor")).get(f"{QUEUE}/{late}")
    assert sponsor.status_code == 200 and '<dd id="dvcat">VISIT SCHEDULE</dd>' in sponsor.text
    assert 'class="step"' not in sponsor.text  # no form of any step
    assert (await (await as_user(anonymous, "outsider")).get(f"{QUEUE}/{late}")).status_code == 403


async def test_each_reader_is_offered_only_the_steps_they_may_take(anonymous, found, late):
    coord = (await (await as_user(anonymous, "coord-a")).get(f"{QUEUE}/{late}")).text
    assert 'id="respond-form"' in coord and 'id="acknowledge-form"' not in coord and 'id="classify-form"' not in coord
    monitor = (await (await as_user(anonymous, "monitor")).get(f"{QUEUE}/{late}")).text
    assert 'class="step"' not in monitor  # the site responds first
    await responded(late)
    monitor = (await (await as_user(anonymous, "monitor")).get(f"{QUEUE}/{late}")).text
    assert 'id="acknowledge-form"' in monitor and 'id="respond-form"' not in monitor
    assert 'id="classify-form"' not in monitor and 'id="close-form"' not in monitor  # not in this state


async def test_the_site_responds_through_the_form(anonymous, late):
    client = await as_user(anonymous, "coord-a")
    missing = await client.post(f"{QUEUE}/{late}/respond", data={"reason": " ", "corrective_action": "Calls"})
    assert missing.status_code == 422
    assert "reason" in error_next_to(missing.text, "respond-reason")
    assert 'value="Calls"' in missing.text
    done = await client.post(
        f"{QUEUE}/{late}/respond", data={"reason": "Patient had flu", "corrective_action": "Reminder calls"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"{QUEUE}/{late}?saved=respond"
    page = (await client.get(done.headers["location"])).text
    assert "Response recorded." in page and "Patient had flu" in page and "Reminder calls" in page
    assert re.search(r"<td>respond</td><td>detected → site response</td>\s*<td>coord-a</td>", page)


async def test_a_stale_form_is_a_conflict_shown_above_it(anonymous, late):
    client = await as_user(anonymous, "coord-a")
    stale = await client.post(f"{QUEUE}/{late}/respond", data={"reason": "flu", "row_version": "99"})
    assert stale.status_code == 422 and "changed meanwhile" in stale.text
    assert (await queue.get("TST-1", late)).state == "detected"


async def test_a_forbidden_step_posted_directly_is_refused(anonymous, found, late):
    coord = await as_user(anonymous, "coord-a")
    for step in ("acknowledge", "classify", "close", "reopen"):
        assert (await coord.post(f"{QUEUE}/{late}/{step}", data={"reason": "x"})).status_code == 403, step
    monitor = await as_user(anonymous, "monitor")
    assert (await monitor.post(f"{QUEUE}/{late}/respond", data={"reason": "x"})).status_code == 403
    coord_b = await as_user(anonymous, "coord-b")  # responds at site B only: site A's is not there for them
    assert (await coord_b.post(f"{QUEUE}/{late}/respond", data={"reason": "x"})).status_code == 403
    monitor = await as_user(anonymous, "monitor")
    wrong_state = await monitor.post(f"{QUEUE}/{late}/close", data={"password": PASSWORD, "user_id": "monitor"})
    assert wrong_state.status_code == 422 and "cannot be closed" in wrong_state.text
    assert (await queue.get("TST-1", late)).state == "detected"


async def test_the_monitor_acknowledges_classifies_and_closes_with_signatures(anonymous, late):
    await deviation_review.take_step("TST-1", late, "respond", "coord-a", response="Patient had flu")
    client = await as_user(anonymous, "monitor")
    acked = await client.post(f"{QUEUE}/{late}/acknowledge", data={"row_version": "2"})
    assert acked.status_code == 303 and acked.headers["location"].endswith("?saved=acknowledge")
    form = {
        "classification": "important",
        "category": "visit schedule",
        "subcategory": "VISIT OUT OF WINDOW",
        "user_id": "monitor",
    }
    wrong = await client.post(f"{QUEUE}/{late}/classify", data={**form, "password": "not it"})
    assert wrong.status_code == 422 and "not correct" in error_next_to(wrong.text, "classify-password")
    assert "not it" not in wrong.text
    no_password = await client.post(f"{QUEUE}/{late}/classify", data={**form, "classification": ""})
    assert no_password.status_code == 422 and error_next_to(no_password.text, "classify-password")
    assert error_next_to(no_password.text, "classify-classification") == "Choose the classification."
    mismatch = await client.post(
        f"{QUEUE}/{late}/classify", data={**form, "subcategory": "WRONG DOSE", "password": PASSWORD}
    )
    assert "not a subcategory" in error_next_to(mismatch.text, "classify-subcategory")
    await asyncio.sleep(1.1)  # a wrong password delays the next attempt by a second
    signed = await client.post(f"{QUEUE}/{late}/classify", data={**form, "password": PASSWORD})
    assert signed.status_code == 303, signed.text
    page = (await client.get(signed.headers["location"])).text
    assert "Classified and signed (review)." in page and '<dd id="classification">important</dd>' in page
    assert 'id="close-form"' in page and 'id="reopen-form"' in page
    closed = await client.post(f"{QUEUE}/{late}/close", data={"password": PASSWORD})
    assert closed.status_code == 303
    page = (await client.get(closed.headers["location"])).text
    assert 'id="deviation-state">closed</span>' in page
    assert re.search(r"<dt>Closed</dt><dd>[-0-9 :]+ E[SD]T \(America/New_York\)</dd>", page)  # the site's time
    table = re.search(r'<table id="signatures">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r"<td>(review|approval)</td>", table) == ["review", "approval"]
    assert re.findall(r'<td class="verdict">([^<]*)</td>', table) == ["valid", "valid"]
    assert "(America/New_York)" in table and "Monitor <span" in table


async def test_reopening_needs_a_reason(anonymous, late, installation):
    await responded(late)
    await deviation_review.take_step("TST-1", late, "acknowledge", "monitor")
    client = await as_user(anonymous, "monitor")
    signing = await signing_by_password("monitor", "review", PASSWORD, rules=account_rules())
    await deviation_review.take_step(
        "TST-1",
        late,
        "classify",
        "monitor",
        classification="important",
        category="visit schedule",
        signing=signing,
        installation=installation,
    )
    empty = await client.post(f"{QUEUE}/{late}/reopen", data={"reason": ""})
    assert empty.status_code == 422 and error_next_to(empty.text, "reopen-reason")
    done = await client.post(f"{QUEUE}/{late}/reopen", data={"reason": "source data differs"})
    assert done.status_code == 303
    assert (await queue.get("TST-1", late)).state == "reopened"


# CAPA ---------------------------------------------------------------------------------------------

CAPA_FORM = {
    "title": "Visit reminders",
    "root_cause": "No reminder process",
    "corrective": "Call patients",
    "preventive": "Reminder SOP",
    "owner": "coord-a",
    "due_on": "2030-01-31",
}


async def test_a_capa_record_is_created_shown_and_closed_through_the_forms(anonymous, found, late):
    client = await as_user(anonymous, "coord-a")
    assert (await client.get(CAPAS)).status_code == 200
    made = await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": f"{late}"})
    assert made.status_code == 303 and made.headers["location"].endswith("?saved=created")
    page = (await client.get(made.headers["location"])).text
    assert "CAPA record created." in page and "No reminder process" in page and f">{late}</a>" in page
    listed = (await client.get(CAPAS)).text
    assert "Visit reminders" in listed
    detail = made.headers["location"].split("?")[0]
    assert '<a href="/studies/TST-1/capas/' in (await client.get(f"{QUEUE}/{late}")).text
    empty = await client.post(f"{detail}/close", data={"reason": ""})
    assert empty.status_code == 422 and error_next_to(empty.text, "close-reason")
    closed = await client.post(f"{detail}/close", data={"reason": "no repeat in 3 months"})
    assert closed.status_code == 303
    page = (await client.get(closed.headers["location"])).text
    assert 'id="capa-state">closed</span>' in page and "Close CAPA record" not in page
    assert (await client.get(f"{CAPAS}/99999")).status_code == 403  # sees site A only: denied, as B's would be
    assert (await (await as_user(anonymous, "monitor")).get(f"{CAPAS}/99999")).status_code == 404  # sees every site
    # coordinators of another site neither see it listed nor open it; sponsors read it, with no form
    coord_b = await as_user(anonymous, "coord-b")
    assert "Visit reminders" not in (await coord_b.get(CAPAS)).text
    assert (await coord_b.get(detail)).status_code == 403
    sponsor = await as_user(anonymous, "sponsor")
    listed = await sponsor.get(CAPAS)
    assert listed.status_code == 200 and "Visit reminders" in listed.text and "Create CAPA record" not in listed.text
    assert "No reminder process" in (await sponsor.get(detail)).text


async def test_the_capa_form_stores_each_field_in_its_place(anonymous, found, late):
    """The form's fields reach the record by name: each text in its own column, the due date and the deviations."""
    client = await as_user(anonymous, "coord-a")
    made = await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": f"{late}"})
    assert made.status_code == 303
    [capa] = await deviation_review.list_capas("TST-1")
    assert (
        capa.title,
        capa.root_cause,
        capa.corrective_action,
        capa.preventive_action,
        capa.owner,
        capa.due_on,
        capa.deviations,
        capa.created_by,
    ) == (
        "Visit reminders",
        "No reminder process",
        "Call patients",
        "Reminder SOP",
        "coord-a",
        "2030-01-31",
        [late],
        "coord-a",
    )


async def test_capa_form_errors_are_shown_next_to_the_fields(anonymous, found):
    client = await as_user(anonymous, "coord-a")
    missing = await client.post(CAPAS, data={**CAPA_FORM, "title": "", "due_on": "soon", "deviation_ids": "a, 3"})
    assert missing.status_code == 422
    assert error_next_to(missing.text, "capa-title") == "Enter the title."
    assert "as a date" in error_next_to(missing.text, "capa-due_on")
    assert "deviation numbers" in error_next_to(missing.text, "capa-deviation_ids")
    assert 'value="Visit reminders"' not in missing.text and 'value="No reminder process"' in missing.text
    other_site = found[(SUBJECT_B, "V2", "visit_missed")]
    hidden = await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": str(other_site)})
    assert hidden.status_code == 422
    assert f"no deviation {other_site}" in error_next_to(hidden.text, "capa-deviation_ids")
    assert await deviation_review.list_capas("TST-1") == []
    mine = str(found[(SUBJECT_A, "V2", "visit_late")])
    assert (await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": mine})).status_code == 303
    moved = await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": mine})
    assert moved.status_code == 422
    assert "already belongs to another CAPA record" in error_next_to(moved.text, "capa-deviation_ids")


async def test_the_study_page_and_the_nav_link_to_the_queue_for_every_reader(anonymous, personas):
    for user_id in ("monitor", "coord-a", "sponsor"):
        page = (await (await as_user(anonymous, user_id)).get("/studies/TST-1")).text
        assert page.count('href="/studies/TST-1/deviations"') == 2, user_id  # the nav and the study's links


# Object-level refusals ----------------------------------------------------------------------------


DENIED = "coord-{site} may not see {what} of TST-1: it is at no site their grants cover ({number}), if it exists at all"


async def test_another_sites_deviation_is_denied_as_a_missing_one_is(anonymous, found, late):
    other_site = found[(SUBJECT_B, "V2", "visit_missed")]
    coord = await as_user(anonymous, "coord-a")
    for number in (other_site, 99999):
        denied = DENIED.format(site="a", what=f"deviation {number}", number=SITE_A)
        page = await coord.get(f"{QUEUE}/{number}")
        assert page.status_code == 403 and denied in page.text, number
        assert SITE_B not in page.text
        api = await coord.get(f"/api/studies/TST-1/deviations/{number}")
        assert api.status_code == 403 and api.json()["detail"] == denied
    await responded(other_site)
    await add_user_monitor_a()
    refused = await (await as_user(anonymous, "mon-a")).post(f"{QUEUE}/acknowledge", data={"ids": str(other_site)})
    assert refused.status_code == 422
    assert re.findall(r"<li>(#[^<]*)</li>", refused.text) == [
        f"#{other_site}: study TST-1 has no deviation {other_site}"
    ]
    assert (await queue.get("TST-1", other_site)).state == "site_response"


async def add_user_monitor_a() -> None:
    from tests.conftest import add_user

    await add_user("mon-a", ("monitor", "TST-1", SITE_A))


async def test_another_sites_capa_record_answers_403_on_every_page_and_nothing_changes(anonymous, found, late):
    made = await deviation_review.create_capa(
        "TST-1", "SECRET-A", "rc", "c", "p", "coord-a", None, [late], "coord-a", sites=[SITE_A]
    )
    detail = f"{CAPAS}/{made.id}"
    coord_b = await as_user(anonymous, "coord-b")
    listed = await coord_b.get(CAPAS)
    assert listed.status_code == 200 and "SECRET-A" not in listed.text
    for response in (await coord_b.get(detail), await coord_b.post(f"{detail}/close", data={"reason": "by B"})):
        denied = DENIED.format(site="b", what=f"CAPA record {made.id}", number=SITE_B)
        assert response.status_code == 403 and denied in response.text, response.text
        assert "SECRET-A" not in response.text
    assert await deviation_review.get_capa("TST-1", made.id) == made


async def test_sponsors_read_the_pages_and_every_write_is_refused(anonymous, found, late):
    made = await deviation_review.create_capa("TST-1", "Reminders", "rc", "c", "p", "monitor", None, [late], "monitor")
    sponsor = await as_user(anonymous, "sponsor")
    for url in (QUEUE, f"{QUEUE}/{late}", CAPAS, f"{CAPAS}/{made.id}", f"{QUEUE}/trends", "/studies/TST-1/reports"):
        page = await sponsor.get(url)
        assert page.status_code == 200, url
        assert 'method="post" action="/studies/TST-1/' not in page.text, url  # no form they could not send
    for path in (
        "deviations/detect",
        "deviations/acknowledge",
        *(f"deviations/{late}/{step}" for step in ("respond", "acknowledge", "classify", "close", "reopen")),
        "capas",
        f"capas/{made.id}/close",
        "reports/file",
    ):
        response = await sponsor.post(f"/studies/TST-1/{path}", data={"ids": str(late), "reason": "x"})
        assert response.status_code == 403, path
    assert (await queue.get("TST-1", late)).steps == []
    assert (await deviation_review.get_capa("TST-1", made.id)).state == "open"


async def test_out_of_range_and_unicode_digit_inputs_are_4xx(anonymous, found, late):
    client = await as_user(anonymous, "monitor")
    assert (await client.get(f"{QUEUE}/{2**31 - 1}")).status_code == 404  # the largest 32-bit number
    assert (await client.get(f"{CAPAS}/{2**31 - 1}")).status_code == 404
    for url in (f"{QUEUE}/99999999999", f"{CAPAS}/99999999999", f"{QUEUE}/0"):
        assert (await client.get(url)).status_code == 400, url
    assert (await client.post(f"{QUEUE}/99999999999/acknowledge", data={})).status_code == 400
    await responded(late)
    stale = await client.post(f"{QUEUE}/{late}/acknowledge", data={"row_version": "²"})  # taken as no version
    assert stale.status_code == 303
    capa = await client.post(CAPAS, data={**CAPA_FORM, "deviation_ids": "²"})
    assert capa.status_code == 422 and "deviation numbers" in error_next_to(capa.text, "capa-deviation_ids")
    assert (await client.get(QUEUE, params={"acknowledged": "²"})).status_code == 200


async def test_capa_owner_is_a_code_of_64_characters_as_on_the_api(anonymous, found):
    client = await as_user(anonymous, "monitor")
    long = await client.post(CAPAS, data={**CAPA_FORM, "owner": "x" * 65})
    assert long.status_code == 422 and "longer than 64" in error_next_to(long.text, "capa-owner")
    assert (await client.post(CAPAS, data={**CAPA_FORM, "owner": "x" * 64})).status_code == 303
