"""Consent in the app: versions from effective consent form documents, participants' consents, the re-consent
queue and consent deviation candidates; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from datetime import date

import pytest

from tests.conftest import RANDOMIZED, SITE_A, sign_version, signed_in
from trialcoord.documents import consent_checks, consent_versions, documents, participant_consents
from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel import audit_log
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, visits

pytestmark = pytest.mark.anyio
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ICF = DocumentKey("TST-1", SITE_A, "ICF English")
LETTER = DocumentKey("TST-1", SITE_A, "IRB approval letters")
TODAY = date(2024, 6, 1)


async def effective_form(label: str, effective: date, installation) -> None:
    """An informed consent form version taken through review and IRB approval to effective."""
    letter = PDF + f"%letter {label}".encode()
    await documents.add_version(LETTER, "066", label, letter, "letter.pdf")
    await documents.add_version(ICF, "040", label, PDF + label.encode(), "icf.pdf")
    await documents.change_status(ICF, label, "in_review", effective)
    await sign_version(ICF, label, installation=installation)
    await documents.change_status(
        ICF,
        label,
        "approved",
        effective,
        approval=IrbApproval(f"IRB-{label}", effective, hashlib.sha256(letter).hexdigest()),
    )
    await documents.change_status(ICF, label, "effective", effective)


@pytest.fixture
async def consenting(study, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version(study, SITE_A, "en", "1.0", "1.0", ICF.name, "1.0", actor="cora")
    for subject in ("1001", "1002"):
        await participants.enroll_participant(study, subject, SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
        await visits.record_event(study, subject, "randomization", RANDOMIZED, today=TODAY)
        await visits.record_visit(study, subject, "V2", date(2024, 3, 18), today=TODAY)
    await participant_consents.record_consent(study, "1001", "en", "1.0", date(2024, 3, 1), "cora", TODAY, actor="cora")
    return study


async def test_a_visit_without_consent_is_a_candidate_and_consents_are_audited(consenting):
    found = await consent_checks.candidates(consenting)
    assert [(c.subject_id, c.visit, c.rule) for c in found] == [("1002", "V2", "procedure_before_consent")]
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="participant_consent"), None, 5)
    assert entries[0].record_id == "TST-1/101/1001/consent/1.0" and entries[0].new["signed_on"] == "2024-03-01"


async def test_a_new_effective_version_fills_the_reconsent_queue_until_reconsent(consenting, installation):
    assert await consent_checks.reconsent(consenting, TODAY) == []
    await effective_form("2.0", date(2024, 4, 1), installation=installation)
    await consent_versions.register_version(consenting, SITE_A, "en", "2.0", "2.0", ICF.name, "2.0")
    queue = await consent_checks.reconsent(consenting, TODAY)
    assert [asdict(due) for due in queue] == [
        {
            "subject_id": "1001",
            "site": SITE_A,
            "signed_version": "1.0",
            "required_version": "2.0",
            "required_since": date(2024, 4, 1),
        }
    ]
    await visits.record_visit(consenting, "1001", "V3", date(2024, 4, 2), today=TODAY)
    late = [c for c in await consent_checks.candidates(consenting) if c.subject_id == "1001"]
    assert [(c.visit, c.rule, c.required_version) for c in late] == [("V3", "reconsent_not_obtained", "2.0")]
    await participant_consents.record_consent(consenting, "1001", "en", "2.0", date(2024, 4, 5), "cora", TODAY)
    assert await consent_checks.reconsent(consenting, TODAY) == []
    assert len(await consent_checks.candidates(consenting)) == 2  # the history stays: V3 came before re-consent


async def test_only_an_effective_consent_form_becomes_a_consent_version_and_consents_fit_its_dates(consenting):
    await documents.add_version(ICF, "040", "3.0", PDF + b"3", "icf.pdf")  # a draft
    with pytest.raises(InvalidInput) as draft:
        await consent_versions.register_version(consenting, SITE_A, "en", "3.0", "1.0", ICF.name, "3.0")
    assert draft.value.problems[0].field == "document"
    with pytest.raises(InvalidInput) as early:
        await participant_consents.record_consent(consenting, "1002", "en", "1.0", date(2024, 1, 15), "cora", TODAY)
    assert early.value.problems[0].field == "signed_on"
    with pytest.raises(InvalidInput) as future:
        await participant_consents.record_consent(consenting, "1002", "en", "1.0", date(2024, 7, 1), "cora", TODAY)
    assert future.value.problems[0].field == "signed_on"
    with pytest.raises(InvalidInput) as unknown:
        await participant_consents.record_consent(consenting, "1002", "fr", "1.0", date(2024, 3, 1), "cora", TODAY)
    assert unknown.value.problems[0].field == "label"


async def test_the_consent_routes_follow_the_grants(anonymous, personas, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    coord = await signed_in(anonymous, "coord-a")
    version = {
        "site": SITE_A,
        "language": "en",
        "label": "1.0",
        "protocol_version": "1.0",
        "document": ICF.name,
        "document_label": "1.0",
    }
    assert (await coord.post("/api/studies/TST-1/consent-versions", json=version)).status_code == 201
    recorded = await coord.post(
        "/api/studies/TST-1/participants/1001/consents",
        json={"language": "en", "label": "1.0", "signed_on": "2024-03-01", "obtained_by": "coord-a"},
    )
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["signed_by"] == []  # not stated: unknown, never assumed
    unsigned = await coord.post(
        "/api/studies/TST-1/participants/1001/consents",
        json={
            "language": "en",
            "label": "1.0",
            "signed_on": "2024-03-01",
            "obtained_by": "coord-a",
            "signed_by": ["impartial_witness"],
        },
    )
    assert unsigned.status_code == 422 and "signed_by" in unsigned.text
    await participants.enroll_participant("TST-1", "1003", SITE_A, arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED)
    page = await coord.post(
        "/studies/TST-1/participants/1003/consents",
        data={
            "version": "en:1.0",
            "signed_on": "2024-03-02",
            "obtained_by": "coord-a",
            "signed_legally_authorised_representative": "1",
            "signed_impartial_witness": "1",
            "signed_person_obtaining_consent": "1",
        },
    )
    assert page.status_code == 303, page.text
    shown = await coord.get("/studies/TST-1/participants/1003")
    assert "signed by legally authorised representative, impartial witness, person obtaining consent" in shown.text
    sponsor = await signed_in(anonymous, "sponsor")
    assert (await sponsor.get("/api/studies/TST-1/reconsent-queue")).status_code == 200
    assert (
        await sponsor.post(
            "/api/studies/TST-1/participants/1001/consents",
            json={"language": "en", "label": "1.0", "signed_on": "2024-03-01", "obtained_by": "x"},
        )
    ).status_code == 403
    other = await signed_in(anonymous, "coord-b")
    assert (await other.get("/api/studies/TST-1/consent-versions")).json() == []
    assert (await other.post("/api/studies/TST-1/consent-versions", json={**version, "label": "9"})).status_code == 403


async def test_the_study_page_shows_the_queue_and_the_candidates_of_the_viewers_sites(
    anonymous, personas, installation
):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version("TST-1", SITE_A, "en", "1.0", "1.0", ICF.name, "1.0")
    await visits.record_event("TST-1", "1001", "randomization", RANDOMIZED, today=TODAY)
    await visits.record_visit("TST-1", "1001", "V2", date(2024, 3, 18), today=TODAY)
    coord = await signed_in(anonymous, "coord-a")
    page = (await coord.get("/studies/TST-1")).text
    assert "Re-consent queue" in page and "visit before consent" in page
    other = (await (await signed_in(anonymous, "coord-b")).get("/studies/TST-1")).text
    assert "visit before consent" not in other


async def test_sites_without_consent_versions_are_not_checked(personas):
    await visits.record_event("TST-1", "1001", "randomization", RANDOMIZED, today=TODAY)
    await visits.record_visit("TST-1", "1001", "V2", date(2024, 3, 18), today=TODAY)
    assert await consent_checks.candidates("TST-1") == []  # no consent form is kept here for site 101


async def test_a_coordinator_records_a_consent_on_the_participant_page(anonymous, personas, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version("TST-1", SITE_A, "en", "1.0", "1.0", ICF.name, "1.0")
    coord = await signed_in(anonymous, "coord-a")
    page = "/studies/TST-1/participants/1001"
    assert "No consent recorded yet." in (await coord.get(page)).text
    blocks = {"signed_participant": "1", "signed_person_obtaining_consent": "1"}  # as the form checks them
    unsigned = await coord.post(
        f"{page}/consents", data={"version": "en:1.0", "signed_on": "2024-03-01", "obtained_by": "coord-a"}
    )
    assert unsigned.status_code == 422 and "participant or their legally authorised representative" in unsigned.text
    wrong = await coord.post(
        f"{page}/consents", data={"version": "en:1.0", "signed_on": "2024-01-02", "obtained_by": "coord-a", **blocks}
    )
    assert wrong.status_code == 422 and "effective from 2024-02-01" in wrong.text
    saved = await coord.post(
        f"{page}/consents", data={"version": "en:1.0", "signed_on": "2024-03-01", "obtained_by": "coord-a", **blocks}
    )
    assert saved.status_code == 303
    assert (
        "Version 1.0 (en) signed on 2024-03-01, obtained by coord-a; signed by participant, person obtaining consent"
    ) in (await coord.get(page)).text


# --- one consent (issue 11, section 4) ---


async def test_recording_a_consent_records_the_consent_event_too(consenting, installation):
    assert (await participants.get_participant(consenting, "1001")).events["consent"] == date(2024, 3, 1)
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="participant_event"), None, 10)
    assert [e.record_id for e in entries if e.record_id.endswith("/consent")] == ["TST-1/101/1001/consent"]
    await participant_consents.record_consent(consenting, "1002", "en", "1.0", date(2024, 3, 10), "cora", TODAY)
    assert (await participants.get_participant(consenting, "1002")).events["consent"] == date(2024, 3, 10)
    # A re-consent leaves the date of first consent as it is.
    await effective_form("2.0", date(2024, 4, 1), installation=installation)
    await consent_versions.register_version(consenting, SITE_A, "en", "2.0", "2.0", ICF.name, "2.0")
    await participant_consents.record_consent(consenting, "1001", "en", "2.0", date(2024, 4, 5), "cora", TODAY)
    assert (await participants.get_participant(consenting, "1001")).events["consent"] == date(2024, 3, 1)


async def test_the_consent_event_and_the_consents_never_disagree(consenting):
    with pytest.raises(InvalidInput, match="first consent on record .* was signed on 2024-03-01"):
        await visits.record_event(consenting, "1001", "consent", date(2024, 3, 2), "typo", today=TODAY)
    await visits.record_event(consenting, "1002", "consent", date(2024, 3, 5), today=TODAY)
    with pytest.raises(InvalidInput, match="consent event is recorded on 2024-03-05"):
        await participant_consents.record_consent(consenting, "1002", "en", "1.0", date(2024, 3, 4), "cora", TODAY)
    recorded = await participant_consents.record_consent(
        consenting, "1002", "en", "1.0", date(2024, 3, 5), "cora", TODAY
    )
    assert recorded.label == "1.0"
    assert await consent_checks.issues(consenting) == []  # the consent of 2024-03-05 now has its version


async def test_found_a_consent_event_counts_once_a_site_registers_its_first_consent_version(db, installation):
    from trialcoord.demo.demo import load_demo
    from trialcoord.deviations import detection, queue

    today = date(2026, 12, 3)
    await load_demo(today)
    before = {(r.participant, r.rule) for r in (await queue.listing("DEMO-001"))[0]}
    icf, letters = DocumentKey("DEMO-001", "101", "ICF English"), DocumentKey("DEMO-001", "101", "IRB letters")
    letter = PDF + b"%letter"
    await documents.add_version(letters, "066", "1", letter, "letter.pdf")
    await documents.add_version(icf, "040", "3.0", PDF + b"3.0", "icf.pdf")
    await documents.change_status(icf, "3.0", "in_review", today)
    await sign_version(icf, "3.0", installation=installation)
    await documents.change_status(
        icf, "3.0", "approved", today, approval=IrbApproval("IRB-3", today, hashlib.sha256(letter).hexdigest())
    )
    await documents.change_status(icf, "3.0", "effective", today)
    await consent_versions.register_version("DEMO-001", "101", "en", "3.0", "2.0", icf.name, "3.0")
    await detection.detect("DEMO-001", today, today=today)
    after = {(r.participant, r.rule) for r in (await queue.listing("DEMO-001"))[0]}
    assert {rule for _, rule in after - before} & {"visit_before_consent", "visit_under_superseded_consent"} == set()
    assert await consent_checks.candidates("DEMO-001") == []
    issues = await consent_checks.issues("DEMO-001")  # once per participant of site 101, none of site 102 (not tracked)
    assert [(i.subject_id, i.site) for i in issues] == [
        ("101-001", "101"),
        ("101-002", "101"),
        ("101-003", "101"),
    ]


async def test_found_a_consent_signed_before_its_version_was_registered_is_recorded_on_paper(consenting):
    with pytest.raises(InvalidInput, match="recorded with the paper document's reference"):
        await participant_consents.record_consent(consenting, "1002", "en", "1.0", date(2024, 1, 15), "cora", TODAY)
    with pytest.raises(InvalidInput) as no_reference:
        await participant_consents.record_paper_consent(consenting, "1002", date(2024, 1, 15), " ", "cora", TODAY)
    assert no_reference.value.problems[0].field == "paper_reference"
    row = await participant_consents.record_paper_consent(
        consenting, "1002", date(2024, 1, 15), "Paper ICF v0.9, binder 1", "cora", TODAY, label="0.9", language="en"
    )
    assert (row.paper_reference, row.label, row.signed_on) == (
        "Paper ICF v0.9, binder 1",
        "0.9",
        date(2024, 1, 15),
    )
    assert (await participants.get_participant(consenting, "1002")).events["consent"] == date(2024, 1, 15)
    assert [
        c
        for c in await consent_checks.candidates(consenting)
        if c.subject_id == "1002" and c.rule == "procedure_before_consent"
    ] == []
    # Signed before version 1.0 became effective (2024-02-01): 1.0 is required before more procedures.
    assert [
        (r.subject_id, r.signed_version, r.required_version) for r in await consent_checks.reconsent(consenting, TODAY)
    ] == [("1002", "0.9", "1.0")]
    entries = await audit_log.browse(audit_log.AuditFilter(record_type="participant_consent"), None, 5)
    assert entries[0].record_id == "TST-1/101/1002/consent/paper/2024-01-15"


async def test_paper_consents_and_consent_issues_over_the_api(anonymous, personas, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version("TST-1", SITE_A, "en", "1.0", "1.0", ICF.name, "1.0")
    await visits.record_event("TST-1", "1001", "consent", date(2024, 2, 20), today=TODAY)
    coord = await signed_in(anonymous, "coord-a")
    issues = await coord.get("/api/studies/TST-1/consent-issues")
    assert [i["subject_id"] for i in issues.json()] == ["1001"]
    neither = await coord.post(
        "/api/studies/TST-1/participants/1001/consents", json={"signed_on": "2024-02-20", "obtained_by": "coord-a"}
    )
    assert neither.status_code == 422 and "paper_reference" in neither.text
    recorded = await coord.post(
        "/api/studies/TST-1/participants/1001/consents",
        json={"signed_on": "2024-02-20", "obtained_by": "coord-a", "paper_reference": "scan 2024-0042"},
    )
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["paper_reference"] == "scan 2024-0042"
    assert (await coord.get("/api/studies/TST-1/consent-issues")).json() == []


async def test_the_pages_record_a_paper_consent_and_list_consents_without_a_version(anonymous, personas, installation):
    await effective_form("1.0", date(2024, 2, 1), installation=installation)
    await consent_versions.register_version("TST-1", SITE_A, "en", "1.0", "1.0", ICF.name, "1.0")
    await visits.record_event("TST-1", "1001", "consent", date(2024, 1, 20), today=TODAY)
    coord = await signed_in(anonymous, "coord-a")
    assert "consent signed on 2024-01-20 has no version on record" in (await coord.get("/studies/TST-1")).text
    page = "/studies/TST-1/participants/1001"
    assert "version not on record" in (await coord.get(page)).text
    blocks = {"signed_participant": "1", "signed_person_obtaining_consent": "1"}
    missing = await coord.post(
        f"{page}/consents", data={"version": "paper", "signed_on": "2024-01-20", "obtained_by": "coord-a", **blocks}
    )
    assert missing.status_code == 422 and "give the paper consent document" in missing.text
    saved = await coord.post(
        f"{page}/consents",
        data={
            "version": "paper",
            "signed_on": "2024-01-20",
            "obtained_by": "coord-a",
            "paper_reference": "binder 2, tab 14",
            "paper_label": "0.9",
            **blocks,
        },
    )
    assert saved.status_code == 303, saved.text
    shown = (await coord.get(page)).text
    assert "On paper, version 0.9, signed on 2024-01-20" in shown and "binder 2, tab 14" in shown
    assert "Every consent has its version or paper reference on record." in (await coord.get("/studies/TST-1")).text


async def test_the_consent_lists_page_through_all_and_the_study_page_shows_their_first_rows(
    consenting, installation, anonymous
):
    from tests.conftest import add_user

    subjects = [f"20{n:02d}" for n in range(14)]
    for subject in subjects:
        await participants.enroll_participant(consenting, subject, SITE_A, enrolled_on=RANDOMIZED, today=TODAY)
        await participant_consents.record_consent(consenting, subject, "en", "1.0", date(2024, 3, 1), "cora", TODAY)
    await effective_form("2.0", date(2024, 4, 1), installation=installation)
    await consent_versions.register_version(consenting, SITE_A, "en", "2.0", "2.0", ICF.name, "2.0")
    due = sorted(row.subject_id for row in await consent_checks.reconsent(consenting, TODAY))
    assert due == sorted(["1001", *subjects])  # 15 participants to re-consent
    await add_user("cora-a", ("coordinator", "TST-1", SITE_A))
    cora = await signed_in(anonymous, "cora-a")

    study_page = (await cora.get("/studies/TST-1")).text
    queue = study_page.split('id="reconsent-queue"')[1].split("</table>")[0]
    assert queue.count("<tr><td>") == 10 and 'href="/studies/TST-1/consent?list=reconsent">All 15' in study_page

    seen: list[str] = []
    url = "/studies/TST-1/consent?list=reconsent&size=6&order=desc"
    for _ in range(5):
        page = await cora.get(url)
        assert page.status_code == 200, page.text
        seen += re.findall(r'participants/(\d+)#consent-heading">', page.text)
        following = re.search(r'rel="next" href="([^"]+)"', page.text)
        if following is None:
            break
        url = following.group(1).replace("&amp;", "&")
    assert seen == sorted(due, reverse=True)  # every participant once, in the order asked
    narrowed = await cora.get("/studies/TST-1/consent", params={"list": "reconsent", "q": "2013"})
    assert re.findall(r'participants/(\d+)#consent-heading">', narrowed.text) == ["2013"]
    candidates = await cora.get("/studies/TST-1/consent", params={"list": "candidates"})
    assert re.findall(r'participants/(\d+)#consent-heading">', candidates.text) == ["1002"]  # V2 before consent
    bad = await cora.get("/studies/TST-1/consent", params={"list": "reconsent", "sort": "arm"})
    assert bad.status_code == 400 and "sort" in bad.text
