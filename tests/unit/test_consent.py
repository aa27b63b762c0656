"""Consent versions, the re-consent queue and consent deviation candidates at their date edges."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trialcoord.documents.rules.consent import (
    ConsentRule,
    ConsentVersion,
    ParticipantConsent,
    ProcedureVisit,
    ReconsentEntry,
    consent_deviation_candidates,
    reconsent_queue,
)

DAY = timedelta(days=1)
V1_ON, V2_ON = date(2024, 1, 1), date(2024, 6, 1)
V1 = ConsentVersion("TST-1", "A", "en", "1.0", "1", V1_ON)
V2 = ConsentVersion("TST-1", "A", "en", "2.0", "2", V2_ON)
V1_ES = ConsentVersion("TST-1", "A", "es", "1.0", "1", V1_ON)
V1_B = ConsentVersion("TST-1", "B", "en", "1.0", "1", V1_ON)
VERSIONS = [V1, V2, V1_ES, V1_B]


def signed(subject, version, on, by="jdoe") -> ParticipantConsent:
    return ParticipantConsent(subject, version, on, by)


# --- the re-consent queue ---


@pytest.mark.parametrize(("today", "queued"), [(V2_ON - DAY, False), (V2_ON, True), (V2_ON + DAY, True)])
def test_a_newer_version_queues_its_signers_from_its_effective_date(today, queued):
    queue = reconsent_queue([signed("001", V1, date(2024, 2, 1))], VERSIONS, today)
    assert queue == ([ReconsentEntry("001", "1.0", "2.0", V2_ON)] if queued else [])


def test_re_consenting_clears_the_entry_and_the_old_consent_stays_history():
    consents = [signed("001", V1, date(2024, 2, 1)), signed("001", V2, V2_ON + 3 * DAY)]
    assert reconsent_queue(consents, VERSIONS, V2_ON + 2 * DAY) == [ReconsentEntry("001", "1.0", "2.0", V2_ON)]
    assert reconsent_queue(consents, VERSIONS, V2_ON + 3 * DAY) == []
    assert consents[0].version_label == "1.0"  # the first consent is untouched


def test_other_sites_and_languages_follow_their_own_versions():
    consents = [
        signed("010", V1_ES, date(2024, 2, 1)),
        signed("020", V1_B, date(2024, 2, 1)),
        signed("001", V1, date(2024, 2, 1)),
    ]
    assert [e.subject_id for e in reconsent_queue(consents, VERSIONS, V2_ON)] == ["001"]


def test_the_latest_consent_decides_even_in_another_language():
    consents = [signed("001", V1, date(2024, 2, 1)), signed("001", V1_ES, date(2024, 3, 1))]
    assert reconsent_queue(consents, VERSIONS, V2_ON) == []  # now follows the Spanish versions


def test_the_newest_of_several_newer_versions_is_required():
    v3 = ConsentVersion("TST-1", "A", "en", "3.0", "3", date(2024, 9, 1))
    queue = reconsent_queue([signed("001", V1, date(2024, 2, 1))], VERSIONS + [v3], date(2024, 9, 1))
    assert queue == [ReconsentEntry("001", "1.0", "3.0", date(2024, 9, 1))]


def test_signing_the_old_version_after_the_new_one_took_effect_still_queues():
    queue = reconsent_queue([signed("001", V1, V2_ON + DAY)], VERSIONS, V2_ON + 2 * DAY)
    assert queue == [ReconsentEntry("001", "1.0", "2.0", V2_ON)]


def test_the_queue_is_ordered_by_subject():
    consents = [signed(s, V1, date(2024, 2, 1)) for s in ("003", "001", "002")]
    assert [e.subject_id for e in reconsent_queue(consents, VERSIONS, V2_ON)] == ["001", "002", "003"]


# --- consent deviation candidates ---

CONSENTED = date(2024, 2, 1)


def candidates(visits, consents):
    return consent_deviation_candidates(visits, consents, VERSIONS)


@pytest.mark.parametrize(
    ("visit_on", "flagged"), [(CONSENTED - DAY, True), (CONSENTED, False), (CONSENTED + DAY, False)]
)
def test_a_visit_before_the_first_consent(visit_on, flagged):
    found = candidates([ProcedureVisit("001", "SCR", visit_on)], [signed("001", V1, CONSENTED)])
    if flagged:
        [c] = found
        assert (c.rule, c.consented_on, c.visit_on) == (ConsentRule.BEFORE_CONSENT, CONSENTED, visit_on)
        assert "before consent" in c.message and str(CONSENTED) in c.message
    else:
        assert found == []


def test_a_visit_without_any_consent():
    [c] = candidates([ProcedureVisit("009", "SCR", CONSENTED)], [])
    assert (c.rule, c.consented_on) == (ConsentRule.BEFORE_CONSENT, None)
    assert "no consent on record" in c.message


@pytest.mark.parametrize(("visit_on", "flagged"), [(V2_ON - DAY, False), (V2_ON, True), (V2_ON + DAY, True)])
def test_a_visit_once_re_consent_is_required_and_not_obtained(visit_on, flagged):
    found = candidates([ProcedureVisit("001", "V3", visit_on)], [signed("001", V1, CONSENTED)])
    if flagged:
        [c] = found
        assert (c.rule, c.required_since, c.signed_version, c.required_version) == (
            ConsentRule.RECONSENT_NOT_OBTAINED,
            V2_ON,
            "1.0",
            "2.0",
        )
        assert c.consented_on == CONSENTED and "required since 2024-06-01" in c.message
    else:
        assert found == []


@pytest.mark.parametrize(
    ("reconsent_on", "flagged"), [(V2_ON + 6 * DAY, True), (V2_ON + 5 * DAY, False), (V2_ON + 4 * DAY, False)]
)
def test_re_consent_on_or_before_the_visit_day_covers_it(reconsent_on, flagged):
    visit_on = V2_ON + 5 * DAY
    consents = [signed("001", V1, CONSENTED), signed("001", V2, reconsent_on)]
    found = candidates([ProcedureVisit("001", "V3", visit_on)], consents)
    assert [c.rule for c in found] == ([ConsentRule.RECONSENT_NOT_OBTAINED] if flagged else [])


def test_earlier_visits_stay_covered_by_the_older_consent():
    consents = [signed("001", V1, CONSENTED), signed("001", V2, V2_ON + 10 * DAY)]
    visits = [
        ProcedureVisit("001", "V1", CONSENTED),
        ProcedureVisit("001", "V2", V2_ON - DAY),
        ProcedureVisit("001", "V3", V2_ON + 20 * DAY),
    ]
    assert candidates(visits, consents) == []


@given(st.lists(st.integers(-30, 200), max_size=6), st.integers(0, 200))
def test_a_flagged_visit_is_before_consent_or_after_the_requirement(visit_days, reconsent_day):
    consents = [signed("001", V1, CONSENTED), signed("001", V2, V2_ON + reconsent_day * DAY)]
    visits = [ProcedureVisit("001", f"V{i}", CONSENTED + d * DAY) for i, d in enumerate(visit_days)]
    for c in candidates(visits, consents):
        if c.rule is ConsentRule.BEFORE_CONSENT:
            assert c.visit_on < CONSENTED
        else:
            assert V2_ON <= c.visit_on < V2_ON + reconsent_day * DAY
    flagged = {c.visit for c in candidates(visits, consents)}
    for v in visits:
        covered = CONSENTED <= v.on and not (V2_ON <= v.on < V2_ON + reconsent_day * DAY)
        assert (v.visit in flagged) is not covered


def test_a_consent_form_needs_the_participant_or_representative_and_the_person_obtaining_it():
    from trialcoord.documents.rules.consent import consent_signatures
    from trialcoord.kernel.problems import InvalidInput

    assert consent_signatures(["person_obtaining_consent", "participant"]) == (
        "participant",
        "person_obtaining_consent",
    )
    assert consent_signatures(
        ["legally_authorised_representative", "impartial_witness", "person_obtaining_consent"]
    ) == ("legally_authorised_representative", "impartial_witness", "person_obtaining_consent")
    for blocks, message in (
        (["participant"], "person obtaining consent"),
        (["impartial_witness", "person_obtaining_consent"], "participant or their legally"),
        (["participant", "person_obtaining_consent", "notary"], "unknown signature block"),
    ):
        with pytest.raises(InvalidInput, match=message) as refused:
            consent_signatures(blocks)
        assert {p.field for p in refused.value.problems} == {"signed_by"}


# --- consents without a registered version (issue 11, section 4) ---


def paper(subject, on, label=None, language=None, site="A") -> ParticipantConsent:
    return ParticipantConsent(
        subject, None, on, "jdoe", site=site, reference="binder 3, tab 12", label=label, language=language
    )


def unknown(subject, on, site="A") -> ParticipantConsent:
    return ParticipantConsent(subject, None, on, "", site=site)


def test_a_consent_of_unknown_version_satisfies_the_before_consent_check_and_is_one_data_issue():
    from trialcoord.documents.rules.consent import data_issues

    visits = [ProcedureVisit("001", code, date(2024, 3, day)) for code, day in (("V1", 2), ("V2", 9), ("V3", 16))]
    assert consent_deviation_candidates(visits, [unknown("001", date(2024, 3, 1))], VERSIONS) == []
    assert [c.visit for c in consent_deviation_candidates(visits, [unknown("001", date(2024, 3, 5))], VERSIONS)] == [
        "V1"
    ]  # only the visit before it
    issues = data_issues([unknown("001", date(2024, 3, 1)), signed("002", V1, date(2024, 2, 1))])
    assert [(i.subject_id, i.signed_on) for i in issues] == [("001", date(2024, 3, 1))]
    assert "has no version on record" in issues[0].message
    assert reconsent_queue([unknown("001", date(2024, 3, 1))], VERSIONS, V2_ON) == []  # a data issue, not a queue


def test_a_paper_consent_is_older_than_every_version_of_its_site_effective_after_it():
    legacy = paper("001", V1_ON - 30 * DAY)
    assert reconsent_queue([legacy], VERSIONS, V1_ON - DAY) == []
    assert reconsent_queue([legacy], VERSIONS, V1_ON) == [ReconsentEntry("001", "paper", "1.0", V1_ON)]
    assert reconsent_queue([paper("001", V1_ON - 30 * DAY, language="en")], VERSIONS, V2_ON) == [
        ReconsentEntry("001", "paper", "2.0", V2_ON)
    ]
    assert reconsent_queue([paper("001", date(2024, 7, 1))], VERSIONS, date(2024, 8, 1)) == []  # after them all


def test_a_paper_consent_naming_a_registered_version_counts_as_that_version():
    assert reconsent_queue([paper("001", V1_ON - 30 * DAY, label="1.0", language="en")], VERSIONS, V1_ON) == []
    assert reconsent_queue([paper("001", V1_ON - 30 * DAY, label="1.0", language="en")], VERSIONS, V2_ON) == [
        ReconsentEntry("001", "1.0", "2.0", V2_ON)
    ]
    visit = ProcedureVisit("001", "V1", V1_ON - 10 * DAY)
    assert consent_deviation_candidates([visit], [paper("001", V1_ON - 30 * DAY)], VERSIONS) == []
