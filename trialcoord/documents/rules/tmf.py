"""The regulatory binder: TMF Reference Model artifacts (CDISC v3.3.1) and the expected-documents
checklist of a site.

Artifacts are keyed on the Unique ID, never the number: numbering has gaps and public copies carry
invented numbers. `dating` says which date dates a filed document of that artifact, in our words.
`checklist` is pure: the caller passes what is filed, who is on the delegation log, the effective
consent versions and `today`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from trialcoord.documents.rules.documents import DocumentVersion
from trialcoord.kernel.problems import InvalidInput, Problem

EXPIRING_WITHIN = timedelta(days=60)
LEVELS = ("study", "site", "both")


@dataclass(frozen=True, slots=True)
class Artifact:
    unique_id: str  # "087"
    number: str  # "05.02.04"
    name: str
    zone: str  # "05 Site Management"
    section: str  # "05.02 Site Set-up"
    level: str  # study, site or both
    dating: str  # which date dates a filed document

    @property
    def folder(self) -> tuple[str, str, str]:
        """Where the artifact sits in a binder's folder tree: zone, section, artifact."""
        return self.zone, self.section, f"{self.number} {self.name}"


_ZONES = {
    "02": "Central Trial Documents",
    "04": "IRB or IEC and other Approvals",
    "05": "Site Management",
    "08": "Central and Local Testing",
    "10": "Data Management",
}
_SECTIONS = {
    "02.01": "Product and Trial Documentation",
    "02.02": "Subject Documentation",
    "04.01": "IRB or IEC Trial Approval",
    "04.03": "Trial Status Reporting",
    "05.02": "Site Set-up",
    "05.03": "Site Initiation",
    "05.04": "Site Management",
    "08.01": "Facility Documentation",
    "10.04": "EDC Management",
}
_SIGNED = "date of the investigator's signature"
_LAST_ENTRY = "date of the last entry"
_ROWS = [  # unique ID, number, name, level, dating convention
    ("031", "02.01.01", "Investigator's Brochure", "study", "version date"),
    ("032", "02.01.02", "Protocol", "study", "version date"),
    ("034", "02.01.04", "Protocol amendment", "study", "version date"),
    ("040", "02.02.03", "Informed consent form", "both", "version date"),
    ("065", "04.01.01", "IRB/IEC submission", "both", "date of submission"),
    ("066", "04.01.02", "IRB/IEC approval decision", "both", "date of the approval decision"),
    ("067", "04.01.03", "IRB/IEC composition", "both", "date of the membership list"),
    ("073", "04.03.02", "IRB/IEC progress report", "both", "date of the report"),
    ("085", "05.02.02", "Protocol signature page", "site", _SIGNED),
    ("086", "05.02.03", "Protocol amendment signature page", "site", _SIGNED),
    ("087", "05.02.04", "Principal investigator CV", "site", "date the CV was signed"),
    ("088", "05.02.05", "Sub-investigator CV", "site", "date the CV was signed"),
    ("089", "05.02.06", "Other CV", "site", "date the CV was signed"),
    ("090", "05.02.07", "Staff qualification (licences, GCP certificates)", "site", "date of issue"),
    ("091", "05.02.08", "Form FDA 1572", "site", _SIGNED),
    ("093", "05.02.10", "Financial disclosure", "site", "date of signature"),
    ("101", "05.02.18", "Delegation log (Site Signature Sheet)", "site", _LAST_ENTRY),
    ("104", "05.03.03", "Site evidence of training", "site", "date of the training"),
    ("105", "05.04.01", "Subject log", "site", _LAST_ENTRY),
    ("234", "05.04.10", "Subject identification log", "site", _LAST_ENTRY),
    ("107", "05.04.03", "Monitoring visit report", "site", "date of the visit"),
    ("108", "05.04.04", "Visit log", "site", _LAST_ENTRY),
    ("110", "05.04.06", "Protocol deviations", "both", "date of the log or report"),
    ("160", "08.01.01", "Lab certification", "both", "date of issue of the certificate"),
    ("163", "08.01.04", "Lab normal ranges", "both", "date the ranges took effect"),
    ("204", "10.04.01", "System account management", "study", _LAST_ENTRY),
]
# What an IRB/IEC approves before use (21 CFR 56.109, ICH E6 3.1.2): approving such a version rests on that
# decision. CVs, licences and certificates are approved by the site itself.
IRB_APPROVED = frozenset({"032", "034", "040"})
ARTIFACTS: dict[str, Artifact] = {
    uid: Artifact(
        uid, number, name, f"{number[:2]} {_ZONES[number[:2]]}", f"{number[:5]} {_SECTIONS[number[:5]]}", level, dating
    )
    for uid, number, name, level, dating in _ROWS
}


def artifact(unique_id: str) -> Artifact:
    """The artifact with this Unique ID; "87" is "087"."""
    key = unique_id.strip()
    key = key.zfill(3) if key.isdigit() else key
    if key not in ARTIFACTS:
        known = ", ".join(sorted(ARTIFACTS))
        raise InvalidInput(
            [Problem(f"unknown TMF artifact '{unique_id}'; known unique IDs: {known}", field="artifact")]
        )
    return ARTIFACTS[key]


# --- the expected-documents checklist ---

PRINCIPAL_INVESTIGATOR = "principal_investigator"
DELEGATED = "delegated"  # every person on the site's delegation log


@dataclass(frozen=True, slots=True)
class ExpectedDocument:
    """A document the binder must hold: once per site or study (`per_role` None), per person with
    `per_role` on the delegation log (DELEGATED: everyone on it), or the IRB/IEC approval of every
    effective consent version. `renew_every`: due again that long after its date (None: when the
    filed document says it expires, or never)."""

    artifact_id: str
    scope: str  # site or study
    per_role: str | None = None
    renew_every: timedelta | None = None
    per_consent_version: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "artifact_id", artifact(self.artifact_id).unique_id)
        if self.scope not in ("site", "study"):
            raise InvalidInput([Problem(f"scope is site or study, not '{self.scope}'", field="scope")])
        if self.per_role is not None and self.per_consent_version:
            raise InvalidInput([Problem("a rule is per role or per consent version, not both", field="per_role")])


@dataclass(frozen=True, slots=True)
class FiledDocument:
    """A current document in the binder, as the checklist needs it."""

    artifact_id: str
    site: str | None  # None: filed at study level
    person: str | None  # whose document it is (CVs, licences, training), else None
    label: str  # what the binder page shows, e.g. "CV J. Doe 2024"
    sha256: str
    dated_on: date  # by the artifact's dating convention
    expires_on: date | None = None  # last day it is valid, when the document itself says so
    name: str | None = None  # the document's name, which a renewing version keeps


@dataclass(frozen=True, slots=True)
class StaffMember:
    person: str
    role: str  # e.g. principal_investigator, sub_investigator, coordinator


class ItemState(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    EXPIRING = "expiring"  # within EXPIRING_WITHIN, still valid today
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    rule: ExpectedDocument
    state: ItemState
    person: str | None = None
    consent_version: str | None = None  # label of the effective consent version it covers
    filed: FiledDocument | None = None  # the document that satisfies it, if any
    expires_on: date | None = None

    @property
    def artifact(self) -> Artifact:
        return ARTIFACTS[self.rule.artifact_id]


# Defaults for a site; a study may pass its own rules.
SITE_CHECKLIST = (
    ExpectedDocument("087", "site", PRINCIPAL_INVESTIGATOR),
    ExpectedDocument("090", "site", PRINCIPAL_INVESTIGATOR),  # the licence states its own expiry
    ExpectedDocument("104", "site", DELEGATED, renew_every=timedelta(days=3 * 365)),  # GCP refresher: 3 years
    ExpectedDocument("091", "site"),
    ExpectedDocument("101", "site"),
    ExpectedDocument("066", "site", per_consent_version=True),
    ExpectedDocument("160", "site"),  # the certificate states its own expiry
)


def checklist(
    rules: Iterable[ExpectedDocument],
    filed: Iterable[FiledDocument],
    staff: Iterable[StaffMember],
    effective_consents: Iterable[DocumentVersion],
    today: date,
) -> list[ChecklistItem]:
    """Each expected document of one site (and its study) as present, missing, expiring or expired.
    `filed` holds that site's and the study's documents; `staff`, the people on its delegation log."""
    filed, staff, consents = list(filed), list(staff), list(effective_consents)
    items = []
    for rule in rules:
        for person, consent in _expected(rule, staff, consents):
            candidates = [f for f in filed if _satisfies(f, rule, person, consent)]
            items.append(_item(rule, person, consent, candidates, today))
    return items


def _expected(
    rule: ExpectedDocument, staff: list[StaffMember], consents: list[DocumentVersion]
) -> list[tuple[str | None, DocumentVersion | None]]:
    if rule.per_consent_version:
        return [(None, c) for c in consents]
    if rule.per_role is None:
        return [(None, None)]
    people = sorted({s.person for s in staff if rule.per_role in (DELEGATED, s.role)})
    if not people and rule.per_role != DELEGATED:
        return [(None, None)]  # nobody holds the role: the document is missing all the same
    return [(p, None) for p in people]


def _satisfies(f: FiledDocument, rule: ExpectedDocument, person: str | None, consent: DocumentVersion | None) -> bool:
    if f.artifact_id != rule.artifact_id:
        return False
    if consent is not None:  # the approval letter the version rests on, wherever it is filed
        return consent.approval is not None and f.sha256 == consent.approval.letter_sha256
    at_scope = (f.site is None) == (rule.scope == "study")
    return at_scope and (rule.per_role is None or (person is not None and f.person == person))


def _item(
    rule: ExpectedDocument,
    person: str | None,
    consent: DocumentVersion | None,
    candidates: list[FiledDocument],
    today: date,
) -> ChecklistItem:
    label = consent.label if consent is not None else None
    if not candidates:
        return ChecklistItem(rule, ItemState.MISSING, person, label)
    best = max(candidates, key=lambda f: (_expiry(f, rule) or date.max, f.dated_on))
    expires = _expiry(best, rule)
    if expires is None or expires - today > EXPIRING_WITHIN:
        state = ItemState.PRESENT
    else:
        state = ItemState.EXPIRING if today <= expires else ItemState.EXPIRED
    return ChecklistItem(rule, state, person, label, best, expires)


def _expiry(f: FiledDocument, rule: ExpectedDocument) -> date | None:
    dates = [d for d in (f.expires_on, f.dated_on + rule.renew_every if rule.renew_every else None) if d]
    return min(dates, default=None)
