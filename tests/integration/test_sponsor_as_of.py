"""A sponsor package sees the study as of its day, on both engines: the report's consent figures count the consent
versions in effect and the signatures signed by then; a package is blinded when the protocol version in force on
its day or the current one is (an amendment that closes the blind does not leave earlier packages open)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import PROTOCOL_V1, RANDOMIZED, SITE_A
from tests.integration.test_consent_records import ICF, effective_form
from trialcoord.documents import consent_versions, participant_consents
from trialcoord.exports import datasets, report_figures
from trialcoord.exports.rules.scope import Scope
from trialcoord.exports.rules.sdtm import Variable, dataset
from trialcoord.scheduling import participants, protocols, sites, visits
from trialcoord.scheduling.protocol_files import parse_protocol

pytestmark = pytest.mark.anyio
TODAY = date(2024, 6, 1)


def empty(name: str):
    return dataset(name, name, [Variable("USUBJID", "Unique Subject Identifier")], [])


async def test_the_reports_consent_figures_count_what_was_in_effect_and_signed_by_the_as_of_day(study, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version(study, SITE_A, "en", "1.0", "1.0", ICF.name, "1.0", actor="cora")
    await effective_form("2.0", date(2024, 4, 1), installation=installation)
    await consent_versions.register_version(study, SITE_A, "en", "2.0", "2.0", ICF.name, "2.0", actor="cora")
    await participants.enroll_participant(study, "1001", SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
    await visits.record_event(study, "1001", "randomization", RANDOMIZED, today=TODAY)
    await participant_consents.record_consent(study, "1001", "en", "1.0", date(2024, 3, 1), "cora", TODAY)
    await participant_consents.record_consent(study, "1001", "en", "2.0", date(2024, 4, 5), "cora", TODAY)

    async def consent(as_of: date) -> dict:
        dm = dataset("DM", "DM", [Variable("USUBJID", "U"), Variable("SITEID", "S")], [])
        figures = await report_figures.gather(Scope(study, as_of), [dm, empty("DV")], arms_shown=True)
        return figures["sites"][0]["consent"]

    before = await consent(date(2024, 3, 20))  # 2.0 neither in effect nor signed yet
    assert before["versions"] == [["1.0", "en", 1]] and before["current"] == 1
    after = await consent(date(2024, 4, 10))
    assert after["versions"] == [["1.0", "en", 1], ["2.0", "en", 1]] and after["current"] == 1
    assert (await report_figures.consents_as_of(study, date(2024, 2, 15))).labels == {}


async def test_a_package_is_blinded_when_the_current_protocol_version_is_though_its_day_was_open(db):
    opened = PROTOCOL_V1.replace("TST-1", "TST-9")
    closed = (
        opened.replace('version: "1.0"', 'version: "2.0"')
        .replace("effective: 2024-01-01", "effective: 2024-06-01")
        .replace("day_one: randomization", "day_one: randomization\nblinding: double")
    )
    for text in (opened, closed):
        await protocols.load_protocol_version(parse_protocol(text, "tst.yaml"), text, "tst.yaml")
    await sites.create_site("TST-9", SITE_A, "Riverside Clinic", "America/New_York")
    await participants.enroll_participant("TST-9", "1001", SITE_A, arm="A", enrolled_on=RANDOMIZED, today=TODAY)
    as_of = date(2024, 3, 20)  # 1.0, open-label, in force
    blinded = await datasets.build(Scope("TST-9", as_of))
    assert not blinded.arms_shown and blinded.protocol == "TST-9 version 1.0"
    dm = next(d for d in blinded.datasets if d.name == "DM")
    assert {dict(zip(dm.names, row))["ARMCD"] for row in dm.rows} == {None}
    assert (await datasets.build(Scope("TST-9", as_of, unblinded=True))).arms_shown
