"""A consent is recorded on the version in force at the participant's site on the day it was signed: a version a
newer one replaced is neither offered nor accepted (page and API) for a later day, with a message naming both; a
consent signed before the newer version became effective is still recorded on the older one; on SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from datetime import date
from html import unescape

import pytest

from tests.conftest import RANDOMIZED, SITE_A, signed_in
from tests.integration.test_consent_records import ICF, effective_form
from trialcoord.documents import consent_versions, participant_consents
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, visits

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 1)
V2_ON = date(2024, 4, 1)


@pytest.fixture
async def two_versions(personas, installation):
    """Site A's consent versions 1.0 (from 2024-02-01) and 2.0 (from 2024-04-01), in English; subject 1001 there."""
    study = "TST-1"
    for label, on in (("1.0", date(2024, 2, 1)), ("2.0", V2_ON)):
        await effective_form(label, on, installation=installation)
        await consent_versions.register_version(study, SITE_A, "en", label, "1.0", ICF.name, label, actor="coord-a")
    await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY)
    return study


async def test_a_replaced_version_is_refused_for_a_later_day_naming_the_one_in_force(two_versions):
    with pytest.raises(InvalidInput) as replaced:
        await participant_consents.record_consent(two_versions, "1001", "en", "1.0", V2_ON, "coord-a", TODAY)
    problem = replaced.value.problems[0]
    assert problem.field == "label"
    assert "1.0" in problem.message and "2.0" in problem.message and str(V2_ON) in problem.message
    late_entry = await participant_consents.record_consent(
        two_versions, "1001", "en", "1.0", date(2024, 3, 1), "coord-a", TODAY
    )
    assert late_entry.label == "1.0"  # signed while 1.0 was in force: recorded late, on 1.0
    await participant_consents.record_consent(two_versions, "1001", "en", "2.0", V2_ON, "coord-a", TODAY)
    consents, offered = await participant_consents.of_participant(two_versions, "1001", TODAY)
    assert [c.label for c in consents] == ["1.0", "2.0"]
    assert [(v.language, v.label) for v in offered] == [("en", "2.0")]
    _, earlier = await participant_consents.of_participant(two_versions, "1001", date(2024, 3, 31))
    assert [v.label for v in earlier] == ["1.0"]
    _, before = await participant_consents.of_participant(two_versions, "1001", date(2024, 1, 1))
    assert before == []


async def test_the_api_refuses_a_replaced_version_with_422_naming_the_field(anonymous, two_versions):
    coord = await signed_in(anonymous, "coord-a")
    url = "/api/studies/TST-1/participants/1001/consents"
    body = {"language": "en", "label": "1.0", "signed_on": "2024-05-02", "obtained_by": "coord-a"}
    refused = await coord.post(url, json=body)
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["field"] == "label" and "replaced" in error["message"] and "2.0" in error["message"]
    assert (await coord.post(url, json={**body, "label": "2.0"})).status_code == 201


def _options(html: str) -> list[str]:
    select = re.search(r'<select id="consent-version" name="version"[^>]*>(.*?)</select>', html, re.S)
    assert select, "no consent version to choose"
    return [unescape(v) for v in re.findall(r'<option value="([^"]*)"', select.group(1)) if v]


async def test_the_participant_page_offers_the_version_in_force_and_shows_a_refusal_next_to_it(anonymous, two_versions):
    coord = await signed_in(anonymous, "coord-a")
    page = "/studies/TST-1/participants/1001"
    assert _options((await coord.get(page)).text) == ["en:2.0", "paper"]  # today: 2.0 replaced 1.0
    form = {"version": "en:1.0", "signed_on": "2024-05-02", "obtained_by": "coord-a", "signed_participant": "1"}
    form["signed_person_obtaining_consent"] = "1"
    refused = await coord.post(f"{page}/consents", data=form)
    assert refused.status_code == 422
    note = re.search(r'<span class="error" id="consent-version-note">([^<]*)<', refused.text)
    assert note and "1.0" in unescape(note.group(1)) and "2.0" in unescape(note.group(1))
    assert _options(refused.text) == ["en:2.0", "paper"]  # on the date typed, 2.0 is in force
    assert 'value="2024-05-02"' in refused.text  # what was typed stays
    early = await coord.post(f"{page}/consents", data={**form, "version": "en:2.0", "signed_on": "2024-03-01"})
    assert early.status_code == 422
    assert _options(early.text) == ["en:1.0", "paper"]  # signed on 2024-03-01: the version in force then is 1.0
    recorded = await coord.post(f"{page}/consents", data={**form, "signed_on": "2024-03-01"})
    assert recorded.status_code == 303, recorded.text
    found, _ = await participant_consents.of_participant("TST-1", "1001", TODAY)
    assert [(c.label, c.signed_on) for c in found] == [("1.0", date(2024, 3, 1))]
    assert await participants.participant_site("TST-1", "1001") == SITE_A
