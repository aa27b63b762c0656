"""TMF Reference Model artifacts and the site's expected-documents checklist at its date edges."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus, DocumentVersion, IrbApproval, transition
from trialcoord.documents.rules.tmf import (
    ARTIFACTS,
    DELEGATED,
    EXPIRING_WITHIN,
    PRINCIPAL_INVESTIGATOR,
    SITE_CHECKLIST,
    ExpectedDocument,
    FiledDocument,
    ItemState,
    StaffMember,
    artifact,
    checklist,
)
from trialcoord.kernel.problems import InvalidInput

TODAY = date(2024, 6, 15)
DAY = timedelta(days=1)

# The table of compliance-reference.md, written out again: unique ID -> number.
REFERENCE = {
    "031": "02.01.01",
    "032": "02.01.02",
    "034": "02.01.04",
    "040": "02.02.03",
    "065": "04.01.01",
    "066": "04.01.02",
    "067": "04.01.03",
    "073": "04.03.02",
    "085": "05.02.02",
    "086": "05.02.03",
    "087": "05.02.04",
    "088": "05.02.05",
    "089": "05.02.06",
    "090": "05.02.07",
    "091": "05.02.08",
    "093": "05.02.10",
    "101": "05.02.18",
    "104": "05.03.03",
    "105": "05.04.01",
    "234": "05.04.10",
    "107": "05.04.03",
    "108": "05.04.04",
    "110": "05.04.06",
    "160": "08.01.01",
    "163": "08.01.04",
    "204": "10.04.01",
}


def test_the_artifacts_are_the_reference_table():
    assert {uid: a.number for uid, a in ARTIFACTS.items()} == REFERENCE
    assert all(a.level in ("study", "site", "both") and a.dating and a.name for a in ARTIFACTS.values())


def test_an_artifact_sits_in_its_zone_and_section():
    cv = artifact("087")
    assert (cv.number, cv.zone, cv.section) == ("05.02.04", "05 Site Management", "05.02 Site Set-up")
    assert cv.folder == ("05 Site Management", "05.02 Site Set-up", "05.02.04 Principal investigator CV")
    assert artifact("160").zone == "08 Central and Local Testing"
    assert all(a.number.startswith(a.section[:5]) and a.section.startswith(a.zone[:2]) for a in ARTIFACTS.values())


def test_lookup_is_by_unique_id_not_number():
    assert artifact("234").number == "05.04.10"  # numbering and unique IDs run apart
    assert artifact("87") is artifact(" 087 ")


@pytest.mark.parametrize("unknown", ["05.02.04", "999", "", "cv"])
def test_an_unknown_artifact_lists_the_known_ids(unknown):
    with pytest.raises(InvalidInput) as caught:
        artifact(unknown)
    [problem] = caught.value.problems
    assert problem.field == "artifact" and "087" in problem.message and "234" in problem.message


def test_a_rule_names_a_known_artifact_and_scope():
    with pytest.raises(InvalidInput):
        ExpectedDocument("999", "site")
    with pytest.raises(InvalidInput) as caught:
        ExpectedDocument("091", "country")
    assert [p.field for p in caught.value.problems] == ["scope"]
    with pytest.raises(InvalidInput):
        ExpectedDocument("066", "site", per_role=DELEGATED, per_consent_version=True)
    assert ExpectedDocument("91", "site").artifact_id == "091"


# --- the checklist ---

PI, SUB, CRC = "dr.house", "dr.wilson", "jdoe"
STAFF = [StaffMember(PI, PRINCIPAL_INVESTIGATOR), StaffMember(SUB, "sub_investigator"), StaffMember(CRC, "coordinator")]


def filed(artifact_id, person=None, site="A", dated_on=date(2024, 1, 10), expires_on=None, sha="1" * 64):
    return FiledDocument(artifact_id, site, person, f"{artifact_id} {person or ''}", sha, dated_on, expires_on)


def consent_version(label, letter_sha) -> DocumentVersion:
    v = DocumentVersion(
        DocumentKey("TST-1", "A", "Informed consent form"),
        label,
        "a" * 64,
        "jdoe",
        "new",
        "2024-01-01T09:00:00.000000Z",
        100,
        "application/pdf",
    )
    v = transition(v, DocumentStatus.IN_REVIEW, on=date(2024, 1, 2))
    v = transition(
        v, DocumentStatus.APPROVED, on=date(2024, 1, 3), approval=IrbApproval("IRB-1", date(2024, 1, 3), letter_sha)
    )
    return transition(v, DocumentStatus.EFFECTIVE, on=date(2024, 1, 4))


def states(items) -> dict:
    return {(i.rule.artifact_id, i.person, i.consent_version): i.state for i in items}


def test_an_empty_binder_misses_everything_expected():
    items = checklist(SITE_CHECKLIST, [], STAFF, [consent_version("2.0", "c" * 64)], TODAY)
    assert states(items) == {
        ("087", PI, None): ItemState.MISSING,
        ("090", PI, None): ItemState.MISSING,
        ("104", CRC, None): ItemState.MISSING,
        ("104", PI, None): ItemState.MISSING,
        ("104", SUB, None): ItemState.MISSING,
        ("091", None, None): ItemState.MISSING,
        ("101", None, None): ItemState.MISSING,
        ("066", None, "2.0"): ItemState.MISSING,
        ("160", None, None): ItemState.MISSING,
    }
    assert all(i.filed is None for i in items)


def test_a_complete_binder_is_present_with_the_documents_that_satisfy_it():
    letter = "c" * 64
    docs = [
        filed("087", PI),
        filed("090", PI, expires_on=date(2026, 1, 31)),
        filed("091"),
        filed("101"),
        filed("160", expires_on=date(2025, 12, 31)),
        filed("066", site=None, sha=letter),
    ]
    docs += [filed("104", p) for p in (PI, SUB, CRC)]
    items = checklist(SITE_CHECKLIST, docs, STAFF, [consent_version("2.0", letter)], TODAY)
    assert set(states(items).values()) == {ItemState.PRESENT}
    by_key = {(i.rule.artifact_id, i.person): i for i in items}
    assert by_key["090", PI].filed == docs[1] and by_key["090", PI].expires_on == date(2026, 1, 31)
    assert by_key["104", SUB].expires_on == date(2024, 1, 10) + timedelta(days=3 * 365)


def test_someone_elses_document_or_another_level_does_not_count():
    docs = [filed("087", SUB), filed("091", site=None), filed("104", "someone.gone")]
    items = checklist(SITE_CHECKLIST, docs, STAFF, [], TODAY)
    s = states(items)
    assert s["087", PI, None] is s["091", None, None] is s["104", PI, None] is ItemState.MISSING


def test_the_irb_approval_of_each_effective_consent_version_is_matched_by_the_letter_hash():
    v2, v3 = consent_version("2.0", "c" * 64), consent_version("3.0", "d" * 64)
    rules = [ExpectedDocument("066", "site", per_consent_version=True)]
    items = checklist(rules, [filed("066", sha="c" * 64), filed("066", sha="e" * 64)], [], [v2, v3], TODAY)
    assert states(items) == {("066", None, "2.0"): ItemState.PRESENT, ("066", None, "3.0"): ItemState.MISSING}


def test_a_role_nobody_holds_is_missing_not_silently_dropped():
    items = checklist(
        [ExpectedDocument("087", "site", PRINCIPAL_INVESTIGATOR)], [], [StaffMember(CRC, "coordinator")], [], TODAY
    )
    assert states(items) == {("087", None, None): ItemState.MISSING}
    assert checklist([ExpectedDocument("104", "site", DELEGATED)], [], [], [], TODAY) == []


@pytest.mark.parametrize(
    ("days_left", "state"),
    [
        (61, ItemState.PRESENT),
        (60, ItemState.EXPIRING),
        (0, ItemState.EXPIRING),
        (-1, ItemState.EXPIRED),
    ],
)
def test_an_expiry_stated_on_the_document(days_left, state):
    assert EXPIRING_WITHIN == timedelta(days=60)
    doc = filed("160", expires_on=TODAY + days_left * DAY)
    [item] = checklist([ExpectedDocument("160", "site")], [doc], [], [], TODAY)
    assert item.state is state and item.filed == doc


@pytest.mark.parametrize(
    ("days_left", "state"),
    [
        (61, ItemState.PRESENT),
        (60, ItemState.EXPIRING),
        (0, ItemState.EXPIRING),
        (-1, ItemState.EXPIRED),
    ],
)
def test_an_expiry_from_the_renewal_period(days_left, state):
    every = timedelta(days=3 * 365)
    doc = filed("104", CRC, dated_on=TODAY + days_left * DAY - every)
    [item] = checklist(
        [ExpectedDocument("104", "site", DELEGATED, every)], [doc], [StaffMember(CRC, "coordinator")], [], TODAY
    )
    assert item.state is state and item.expires_on == TODAY + days_left * DAY


def test_the_renewed_document_counts_not_the_older_one():
    every = timedelta(days=365)
    old, new = filed("104", CRC, dated_on=TODAY - 400 * DAY), filed("104", CRC, dated_on=TODAY - 10 * DAY)
    [item] = checklist(
        [ExpectedDocument("104", "site", DELEGATED, every)], [new, old], [StaffMember(CRC, "coordinator")], [], TODAY
    )
    assert item.state is ItemState.PRESENT and item.filed == new


def test_the_earlier_of_a_stated_expiry_and_the_renewal_period_applies():
    doc = filed("090", PI, dated_on=TODAY - 10 * DAY, expires_on=TODAY + 5 * DAY)
    [item] = checklist(
        [ExpectedDocument("090", "site", PRINCIPAL_INVESTIGATOR, timedelta(days=365))], [doc], STAFF, [], TODAY
    )
    assert (item.state, item.expires_on) == (ItemState.EXPIRING, TODAY + 5 * DAY)
