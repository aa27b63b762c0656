"""The study and participant pages offer a form only to a viewer whose grants allow its action at a site the form
covers: a coordinator enrols and records, a monitor and a sponsor read (no form that ends in a 403)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SITE_A, SITE_B, SUBJECT_A, signed_in

pytestmark = [pytest.mark.anyio, pytest.mark.db]

STUDY = "/studies/TST-1"


def posted_forms(html: str) -> set[str]:
    """The actions of the page's forms that post (a GET form filters what is shown; every page signs out and may
    keep its session alive)."""
    return set(re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', html)) - {"/sign-out", "/session/extend"}


async def as_persona(anonymous, persona: str):
    return await signed_in(anonymous, persona)


async def test_the_coordinator_sees_the_enrol_form_for_their_own_site_only(anonymous, personas):
    client = await as_persona(anonymous, "coord-a")
    html = (await client.get(STUDY)).text
    assert posted_forms(html) == {f"{STUDY}/participants"}
    enrol = html[html.index('id="enrol-heading"') :]
    assert f'<option value="{SITE_A}"' in enrol and f'<option value="{SITE_B}"' not in enrol


@pytest.mark.parametrize("persona", ["monitor", "sponsor", "pharmacist-a"])
async def test_readers_see_no_enrol_form(anonymous, personas, persona):
    client = await as_persona(anonymous, persona)
    response = await client.get(STUDY, params={"tab": "participants"})
    assert response.status_code == 200 and SUBJECT_A in response.text
    assert posted_forms(response.text) == set()
    assert "Enrol a participant" not in response.text


async def test_the_coordinator_records_on_the_participant_page(anonymous, personas, study):
    from tests.conftest import RANDOMIZED
    from trialcoord.scheduling import visits

    await visits.record_event(study, SUBJECT_A, "randomization", RANDOMIZED, today=RANDOMIZED)
    client = await as_persona(anonymous, "coord-a")
    html = (await client.get(f"{STUDY}/participants/{SUBJECT_A}", params={"as_of": "2024-03-16"})).text
    base = f"{STUDY}/participants/{SUBJECT_A}"
    forms = posted_forms(html)
    assert {f"{base}/events", f"{base}/identity", f"{base}/visits/V2/actual", f"{base}/protocol-version"} <= forms


@pytest.mark.parametrize("persona", ["monitor", "sponsor"])
async def test_monitors_and_sponsors_see_no_form_on_the_participant_page(anonymous, personas, persona):
    client = await as_persona(anonymous, persona)
    response = await client.get(f"{STUDY}/participants/{SUBJECT_A}", params={"as_of": "2024-03-16"})
    assert response.status_code == 200 and "Visits as of 2024-03-16" in response.text
    # Only their own calendar feed of the participant (they may export the schedule): nothing about the record.
    assert posted_forms(response.text) == {f"{STUDY}/participants/{SUBJECT_A}/calendar-feeds"}
    assert "Record an event" not in response.text and "Save visit date" not in response.text


async def test_the_pharmacist_is_offered_the_arm_only(anonymous, personas, study):
    from trialcoord.scheduling import participants

    await participants.enroll_participant(study, "1002", SITE_A)
    client = await as_persona(anonymous, "pharmacist-a")
    html = (await client.get(f"{STUDY}/participants/1002")).text
    assert posted_forms(html) == {f"{STUDY}/participants/1002/arm"}


async def test_every_form_the_coordinator_is_shown_accepts_them(anonymous, personas):
    """No dead end: each form offered, posted empty, is answered by the form's own checks (422), never 403."""
    client = await as_persona(anonymous, "coord-a")
    pages = [STUDY, f"{STUDY}/participants/{SUBJECT_A}?as_of=2024-03-16"]
    for page in pages:
        for action in posted_forms((await client.get(page)).text):
            response = await client.post(action, data={"_": ""})
            # A calendar feed's form has no field: it makes the feed and shows its address (201), once.
            accepted = (201,) if action.endswith("/calendar-feeds") else (303, 422)
            assert response.status_code in accepted, (action, response.status_code)


async def test_the_enrol_form_offers_only_the_sites_where_the_viewer_may_enrol(anonymous, personas):
    """A monitor of the whole study who coordinates site A too sees every site, and enrols at A only."""
    from tests.conftest import add_user

    await add_user("both", ("monitor", "TST-1", None), ("coordinator", "TST-1", SITE_A))
    html = (await (await as_persona(anonymous, "both")).get(STUDY, params={"tab": "participants"})).text
    assert SUBJECT_A in html and "2001" in html  # both sites' participants are listed
    enrol = html[html.index('id="enrol-heading"') :]
    assert f'<option value="{SITE_A}"' in enrol and f'<option value="{SITE_B}"' not in enrol
