"""Document versions: every cell of the status lifecycle, its date rules at the edges, and uploads
typed by their bytes."""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import FrozenInstanceError
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trialcoord.documents.rules.documents import (
    DOCX,
    JPEG,
    PDF,
    PERMITTED,
    PNG,
    RELEASED,
    DocumentKey,
    DocumentStatus,
    DocumentVersion,
    IrbApproval,
    Reader,
    check_upload,
    transition,
)
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import Grant

S = DocumentStatus
DAY = timedelta(days=1)
IRB_DAY = date(2024, 3, 4)
LETTER = "b" * 64
APPROVAL = IrbApproval("IRB-2024-017", IRB_DAY, LETTER)

# Written out independently of PERMITTED, so a change to the lifecycle must be made twice on purpose.
EXPECTED = {
    (S.DRAFT, S.IN_REVIEW),
    (S.IN_REVIEW, S.DRAFT),
    (S.IN_REVIEW, S.APPROVED),
    (S.APPROVED, S.EFFECTIVE),
    (S.EFFECTIVE, S.SUPERSEDED),
    (S.EFFECTIVE, S.EXPIRED),
}
MATRIX = [(frm, to) for frm in S for to in S]


def version(**kw) -> DocumentVersion:
    values = dict(
        key=DocumentKey("TST-1", "A", "Informed consent form"),
        label="2.0",
        sha256="a" * 64,
        author="jdoe",
        change_summary="Amendment 2 wording",
        created_at="2024-03-01T09:00:00.000000Z",
        size=1234,
        media_type=PDF,
    )
    return DocumentVersion(**(values | kw))


def at(status: DocumentStatus) -> DocumentVersion:
    """A version brought to `status` through the lifecycle, every step on the IRB approval day."""
    path = {S.DRAFT: [], S.IN_REVIEW: [S.IN_REVIEW], S.APPROVED: [S.IN_REVIEW, S.APPROVED]}
    path[S.EFFECTIVE] = path[S.APPROVED] + [S.EFFECTIVE]
    path[S.SUPERSEDED] = path[S.EFFECTIVE] + [S.SUPERSEDED]
    path[S.EXPIRED] = path[S.EFFECTIVE] + [S.EXPIRED]
    v = version()
    for step in path[status]:
        v = step_to(v, step, IRB_DAY)
    return v


def step_to(v: DocumentVersion, to: DocumentStatus, on: date) -> DocumentVersion:
    return transition(
        v,
        to,
        on=on,
        approval=APPROVAL if to is S.APPROVED else None,
        reason="wording unclear" if to is S.DRAFT else None,
    )


def problem_fields(caught) -> list[str]:
    return [p.field for p in caught.value.problems]


# --- the lifecycle table ---


def test_the_table_is_the_expected_lifecycle():
    assert {(frm, to) for frm, nexts in PERMITTED.items() for to in nexts} == EXPECTED
    assert set(PERMITTED) == set(S)


@pytest.mark.parametrize(("frm", "to"), [cell for cell in MATRIX if cell in EXPECTED], ids=str)
def test_a_permitted_transition_happens(frm, to):
    before = at(frm)
    after = step_to(before, to, IRB_DAY)
    assert after.status is to and after.status_date == IRB_DAY and after.entered(to) == IRB_DAY
    assert before.status is frm  # the earlier state is untouched
    assert after.history[:-1] == before.history


@pytest.mark.parametrize(("frm", "to"), [cell for cell in MATRIX if cell not in EXPECTED], ids=str)
def test_a_forbidden_transition_is_refused_naming_from_to_and_what_may_follow(frm, to):
    with pytest.raises(InvalidInput) as caught:
        step_to(at(frm), to, IRB_DAY)
    [problem] = caught.value.problems
    assert problem.field == "status"
    assert f"from {frm} to {to}" in problem.message
    allowed = sorted(PERMITTED[frm])
    assert all(s in problem.message for s in allowed) if allowed else f"nothing follows {frm}" in problem.message


def test_an_unknown_status_is_refused():
    with pytest.raises(InvalidInput) as caught:
        transition(version(), "published", on=IRB_DAY)
    assert problem_fields(caught) == ["status"]
    assert transition(version(), "in_review", on=IRB_DAY).status is S.IN_REVIEW


def test_a_version_is_immutable():
    with pytest.raises(FrozenInstanceError):
        version().status = S.EFFECTIVE


# --- approval and dates ---


def test_approving_needs_the_irb_approval_and_keeps_it():
    with pytest.raises(InvalidInput) as caught:
        transition(at(S.IN_REVIEW), S.APPROVED, on=IRB_DAY)
    assert problem_fields(caught) == ["approval"]
    approved = transition(at(S.IN_REVIEW), S.APPROVED, on=IRB_DAY, approval=APPROVAL)
    assert approved.approval == APPROVAL
    assert transition(approved, S.EFFECTIVE, on=IRB_DAY).approval == APPROVAL


def test_an_approval_is_recorded_only_when_approving():
    with pytest.raises(InvalidInput) as caught:
        transition(version(), S.IN_REVIEW, on=IRB_DAY, approval=APPROVAL)
    assert problem_fields(caught) == ["approval"]


@pytest.mark.parametrize(("approved_on", "ok"), [(IRB_DAY - DAY, True), (IRB_DAY, True), (IRB_DAY + DAY, False)])
def test_the_irb_approval_is_not_dated_after_the_version_is_approved(approved_on, ok):
    approval = IrbApproval("IRB-2024-017", approved_on, LETTER)
    if ok:
        assert transition(at(S.IN_REVIEW), S.APPROVED, on=IRB_DAY, approval=approval).approval == approval
    else:
        with pytest.raises(InvalidInput) as caught:
            transition(at(S.IN_REVIEW), S.APPROVED, on=IRB_DAY, approval=approval)
        assert problem_fields(caught) == ["approval"]


@pytest.mark.parametrize(("on", "ok"), [(IRB_DAY - DAY, False), (IRB_DAY, True), (IRB_DAY + DAY, True)])
def test_effective_from_the_irb_approval_date_on(on, ok):
    if ok:
        assert transition(at(S.APPROVED), S.EFFECTIVE, on=on).entered(S.EFFECTIVE) == on
    else:
        with pytest.raises(InvalidInput) as caught:
            transition(at(S.APPROVED), S.EFFECTIVE, on=on)
        assert problem_fields(caught) == ["on"]
        assert "before its IRB/IEC approval (2024-03-04)" in caught.value.problems[0].message


def test_effective_needs_an_approval_even_for_a_version_rebuilt_without_one():
    rebuilt = version(status=S.APPROVED)
    with pytest.raises(InvalidInput) as caught:
        transition(rebuilt, S.EFFECTIVE, on=IRB_DAY)
    assert problem_fields(caught) == ["approval"]


@pytest.mark.parametrize("to", [S.SUPERSEDED, S.EXPIRED])
@pytest.mark.parametrize(("offset", "ok"), [(-1, False), (0, True), (1, True)])
def test_superseded_or_expired_not_before_effective(to, offset, ok):
    effective_on = IRB_DAY + 30 * DAY
    effective = transition(at(S.APPROVED), S.EFFECTIVE, on=effective_on)
    on = effective_on + offset * DAY
    if ok:
        ended = transition(effective, to, on=on)
        assert ended.status is to and ended.entered(to) == on and ended.entered(S.EFFECTIVE) == effective_on
    else:
        with pytest.raises(InvalidInput) as caught:
            transition(effective, to, on=on)
        assert problem_fields(caught) == ["on"]


def test_the_date_is_a_calendar_date():
    with pytest.raises(InvalidInput) as caught:
        transition(version(), S.IN_REVIEW, on=datetime(2024, 3, 4, 9, 0))
    assert problem_fields(caught) == ["on"]


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_returning_to_draft_needs_a_reason(reason):
    with pytest.raises(InvalidInput) as caught:
        transition(at(S.IN_REVIEW), S.DRAFT, on=IRB_DAY, reason=reason)
    assert problem_fields(caught) == ["reason"]
    returned = transition(at(S.IN_REVIEW), S.DRAFT, on=IRB_DAY, reason="section 4 unclear")
    assert returned.history[-1].reason == "section 4 unclear"


@given(st.lists(st.sampled_from(list(S)), max_size=12), st.lists(st.integers(0, 5), min_size=12, max_size=12))
def test_any_walk_keeps_to_the_table_and_dates_never_go_backwards(targets, gaps):
    v, day = version(), IRB_DAY
    for to, gap in zip(targets, gaps):
        day += gap * DAY
        try:
            nxt = step_to(v, to, day)
        except InvalidInput:
            continue
        assert to in PERMITTED[v.status]
        v = nxt
    dates = [c.on for c in v.history]
    assert dates == sorted(dates)
    statuses = [S.DRAFT] + [c.status for c in v.history]
    assert all(b in PERMITTED[a] for a, b in zip(statuses, statuses[1:]))


# --- the version record ---


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sha256": "A" * 64}, "sha256"),
        ({"sha256": "a" * 63}, "sha256"),
        ({"sha256": "g" * 64}, "sha256"),
        ({"label": " "}, "label"),
        ({"author": ""}, "author"),
        ({"created_at": "2024-03-01T09:00:00+00:00"}, "created_at"),
        ({"created_at": "2024-03-01 09:00:00"}, "created_at"),
        ({"size": -1}, "size"),
        ({"status": "published"}, "status"),
    ],
)
def test_an_invalid_version_names_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        version(**kwargs)
    assert problem_fields(caught) == [field]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reference": " "}, "approval.reference"),
        ({"letter_sha256": "c" * 65}, "approval.letter_sha256"),
    ],
)
def test_an_invalid_irb_approval_names_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        IrbApproval(**({"reference": "IRB-1", "approved_on": IRB_DAY, "letter_sha256": LETTER} | kwargs))
    assert problem_fields(caught) == [field]


# --- uploads ---

MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
LIMIT = 10_000


def zipped(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<xml/>")
    return buffer.getvalue()


DOCX_BYTES = zipped("[Content_Types].xml", "word/document.xml")


@pytest.mark.parametrize(
    ("data", "name", "media_type"),
    [
        (MINIMAL_PDF, "approval.pdf", PDF),
        (MINIMAL_PDF + b"\r\n" + b" " * 500, "trailing-bytes.pdf", PDF),
        (PNG_BYTES, "scan.png", PNG),
        (JPEG_BYTES, "scan.jpg", JPEG),
        (DOCX_BYTES, "cv.docx", DOCX),
        (PNG_BYTES, "cv.pdf", PNG),  # the name is not trusted either way
        (MINIMAL_PDF, "licence", PDF),
    ],
)
def test_an_upload_is_typed_by_its_bytes(data, name, media_type):
    assert check_upload(data, name, LIMIT) == media_type


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (MINIMAL_PDF[:-7], "truncated"),
        (MINIMAL_PDF + b"\x00" * 2000, "truncated"),  # %%EOF too far from the end
        (b"%PDF", "not a PDF"),
        (zipped("[Content_Types].xml", "xl/workbook.xml"), "not a PDF"),
        (b"PK\x03\x04 broken zip", "not a PDF"),
        (b"<html><body>cv</body></html>", "not a PDF"),
        (b"MZ\x90\x00", "not a PDF"),
        (b"x" * (LIMIT + 1), f"the limit is {LIMIT}"),
    ],
)
def test_an_unacceptable_upload_is_refused_naming_the_file(data, says):
    with pytest.raises(InvalidInput) as caught:
        check_upload(data, "cv.pdf", LIMIT)
    [problem] = caught.value.problems
    assert (problem.field, problem.file) == ("file", "cv.pdf")
    assert says in problem.message


@pytest.mark.parametrize(("size", "ok"), [(LIMIT - 1, True), (LIMIT, True), (LIMIT + 1, False)])
def test_the_size_limit_is_inclusive(size, ok):
    data = MINIMAL_PDF + b" " * (size - len(MINIMAL_PDF) - 6) + b"%%EOF\n"
    assert len(data) == size
    if ok:
        assert check_upload(data, "big.pdf", LIMIT) == PDF
    else:
        with pytest.raises(InvalidInput):
            check_upload(data, "big.pdf", LIMIT)


def test_random_bytes_are_refused():
    data = b"\x00" + os.urandom(512)  # a leading zero byte matches no accepted signature
    with pytest.raises(InvalidInput):
        check_upload(data, "scan.png", LIMIT)


@given(st.binary(min_size=1, max_size=200))
def test_any_bytes_are_accepted_by_content_or_refused_cleanly(data):
    try:
        media_type = check_upload(data, "upload", LIMIT)
    except InvalidInput as refused:
        assert [p.field for p in refused.problems] == ["file"]
    else:
        assert media_type in {PDF, PNG, JPEG, DOCX}


# --- documents no IRB/IEC approves (CVs, licences, certificates) ---


def test_a_document_no_irb_approves_is_approved_and_effective_without_one():
    cv = version(key=DocumentKey("TST-1", "A", "PI CV"))
    reviewed = transition(cv, S.IN_REVIEW, on=IRB_DAY, irb_approved=False)
    approved = transition(reviewed, S.APPROVED, on=IRB_DAY + DAY, irb_approved=False)
    assert approved.approval is None
    assert transition(approved, S.EFFECTIVE, on=IRB_DAY + DAY, irb_approved=False).status is S.EFFECTIVE
    with pytest.raises(InvalidInput) as caught:
        transition(approved, S.EFFECTIVE, on=IRB_DAY, irb_approved=False)
    assert problem_fields(caught) == ["on"]


def test_a_document_no_irb_approves_takes_no_irb_approval():
    with pytest.raises(InvalidInput) as caught:
        transition(at(S.IN_REVIEW), S.APPROVED, on=IRB_DAY, approval=APPROVAL, irb_approved=False)
    assert "not approved by an IRB/IEC" in caught.value.problems[0].message


def test_the_irb_approved_artifacts_are_protocols_amendments_and_consent_forms():
    from trialcoord.documents.rules.tmf import ARTIFACTS, IRB_APPROVED

    assert {ARTIFACTS[uid].name for uid in IRB_APPROVED} == {"Protocol", "Protocol amendment", "Informed consent form"}


# --- who reads a version before it is released ---

READER_DAY = date(2026, 11, 27)


def _reader(*grants: tuple) -> Reader:
    made = tuple(
        Grant("someone", role, study, site, date(2020, 1, 1), valid_to, personal_data=personal)
        for role, study, site, valid_to, personal in grants
    )
    return Reader(made, READER_DAY)


SITE_DOC, STUDY_DOC = DocumentKey("TST-1", "101", "PI CV"), DocumentKey("TST-1", None, "Protocol")


@pytest.mark.parametrize(
    ("grants", "site_doc", "study_doc"),
    [
        ([("administrator", None, None, None, False)], True, True),
        ([("coordinator", "TST-1", "101", None, False)], True, True),  # site staff of the study: its protocol
        ([("investigator", "TST-1", "101", None, False)], True, True),
        ([("coordinator", "TST-1", "102", None, False)], False, True),  # another site's drafts are not theirs
        ([("monitor", "TST-1", None, None, True)], False, False),  # even with personal data
        ([("sponsor", "TST-1", None, None, False)], False, False),
        ([("coordinator", "TST-1", "101", date(2025, 1, 1), False)], False, False),  # a grant that ended
        ([("coordinator", "OTHER", "101", None, False)], False, False),
        ([("monitor", "TST-1", None, None, False), ("coordinator", "TST-1", "101", None, False)], True, True),
        ([], False, False),
    ],
)
def test_drafts_and_versions_in_review_are_seen_by_those_who_manage_documents_there(grants, site_doc, study_doc):
    reader = _reader(*grants)
    for key, sees_drafts in ((SITE_DOC, site_doc), (STUDY_DOC, study_doc)):
        assert reader.sees_unreleased(key.study, key.site) is sees_drafts
        for status in S:
            released = status in {S.APPROVED, S.EFFECTIVE, S.SUPERSEDED, S.EXPIRED}  # superseded: history
            assert reader.sees(key, status) is (released or sees_drafts), (grants, key, status)


def test_only_versions_once_approved_are_released():
    # a superseded or expired version was effective first: nothing else leads to those states
    reached_only_from = {to: {frm for frm, nexts in PERMITTED.items() if to in nexts} for to in S}
    assert reached_only_from[S.SUPERSEDED] == reached_only_from[S.EXPIRED] == {S.EFFECTIVE}
    assert RELEASED == {S.APPROVED, S.EFFECTIVE, S.SUPERSEDED, S.EXPIRED}
    assert S.DRAFT not in RELEASED and S.IN_REVIEW not in RELEASED
