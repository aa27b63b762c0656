"""Informed consent: which version each participant signed, who must re-consent, and visits that
are consent deviation candidates.

A consent version belongs to a study, site and language, and to the protocol version it was written
for. When a newer version becomes effective, every active participant whose latest consent is on an
older one must re-consent from that date; their older consent stays valid history. A visit with
procedures before the first consent, or on or after re-consent became required without it, is a
candidate for an informed-consent deviation (reviewed in the deviation workflow). Everything takes
the dates it applies on; nothing reads the clock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Iterable


@dataclass(frozen=True, slots=True)
class ConsentVersion:
    study: str
    site: str
    language: str  # e.g. "en", "es"
    label: str  # e.g. "3.0"
    protocol_version: str
    effective_on: date

    @property
    def group(self) -> tuple[str, str, str]:
        """Versions of one group replace each other; other sites and languages run alongside."""
        return self.study, self.site, self.language


@dataclass(frozen=True, slots=True)
class ParticipantConsent:
    """A participant's signed consent on one version. Never changed: a re-consent is a new one."""

    subject_id: str
    version: ConsentVersion
    signed_on: date
    obtained_by: str  # user ID of the person obtaining consent
    signed_by: tuple[str, ...] = ()  # the form's signature blocks signed (SIGNATURE_BLOCKS); () unknown

    @property
    def version_label(self) -> str:
        return self.version.label


@dataclass(frozen=True, slots=True)
class ReconsentEntry:
    subject_id: str
    signed_version: str
    required_version: str
    required_since: date  # the newer version's effective date


@dataclass(frozen=True, slots=True)
class ProcedureVisit:
    """A visit of a participant at which procedures were done (or are planned), on its date."""

    subject_id: str
    visit: str  # visit code
    on: date


class ConsentRule(StrEnum):
    BEFORE_CONSENT = "procedure_before_consent"
    RECONSENT_NOT_OBTAINED = "reconsent_not_obtained"


@dataclass(frozen=True, slots=True)
class ConsentDeviationCandidate:
    subject_id: str
    visit: str
    visit_on: date
    rule: ConsentRule
    consented_on: date | None  # first consent; None: never consented
    required_since: date | None = None  # for RECONSENT_NOT_OBTAINED
    signed_version: str | None = None
    required_version: str | None = None

    @property
    def message(self) -> str:
        if self.rule is ConsentRule.BEFORE_CONSENT:
            when = f"first consent on {self.consented_on}" if self.consented_on else "no consent on record"
            return f"{self.subject_id} visit {self.visit} on {self.visit_on}: procedures before consent ({when})"
        return (f"{self.subject_id} visit {self.visit} on {self.visit_on}: signed version {self.signed_version}, "
                f"re-consent on version {self.required_version} required since {self.required_since}")


def reconsent_queue(consents: Iterable[ParticipantConsent], versions: Iterable[ConsentVersion],
                    today: date) -> list[ReconsentEntry]:
    """Active participants (pass only their consents) whose latest consent is on a version older
    than the newest one effective by `today` for its study, site and language."""
    versions = list(versions)
    entries = []
    for subject_id, signed in sorted(_by_subject(consents).items()):
        entry = _reconsent_due(subject_id, signed, versions, today)
        if entry is not None:
            entries.append(entry)
    return entries


def consent_deviation_candidates(visits_with_procedures: Iterable[ProcedureVisit],
                                 consents: Iterable[ParticipantConsent],
                                 versions: Iterable[ConsentVersion]) -> list[ConsentDeviationCandidate]:
    """Visits dated before the participant's first consent, or on or after the date a re-consent
    became required and was not yet obtained. A consent signed on the visit day counts for it."""
    by_subject, versions = _by_subject(consents), list(versions)
    candidates = []
    for visit in sorted(visits_with_procedures, key=lambda v: (v.subject_id, v.on, v.visit)):
        signed = by_subject.get(visit.subject_id, [])
        first = min((c.signed_on for c in signed), default=None)
        if first is None or visit.on < first:
            candidates.append(ConsentDeviationCandidate(visit.subject_id, visit.visit, visit.on,
                                                        ConsentRule.BEFORE_CONSENT, first))
            continue
        due = _reconsent_due(visit.subject_id, signed, versions, visit.on)
        if due is not None:
            candidates.append(ConsentDeviationCandidate(
                visit.subject_id, visit.visit, visit.on, ConsentRule.RECONSENT_NOT_OBTAINED, first,
                due.required_since, due.signed_version, due.required_version))
    return candidates


def _by_subject(consents: Iterable[ParticipantConsent]) -> dict[str, list[ParticipantConsent]]:
    grouped: dict[str, list[ParticipantConsent]] = defaultdict(list)
    for consent in consents:
        grouped[consent.subject_id].append(consent)
    return grouped


def _order(version: ConsentVersion) -> tuple[date, str]:
    return version.effective_on, version.label


def _reconsent_due(subject_id: str, signed: list[ParticipantConsent], versions: list[ConsentVersion],
                   on: date) -> ReconsentEntry | None:
    """Is the participant's latest consent signed by `on` on an older version than the newest one
    effective by `on`?"""
    latest = max((c for c in signed if c.signed_on <= on), key=lambda c: (c.signed_on, _order(c.version)),
                 default=None)
    if latest is None:
        return None
    newest = max((v for v in versions if v.group == latest.version.group and v.effective_on <= on),
                 key=_order, default=None)
    if newest is None or _order(newest) <= _order(latest.version):
        return None
    return ReconsentEntry(subject_id, latest.version.label, newest.label, newest.effective_on)


# --- who signed the consent form (the four signature blocks of the template) ---

SIGNATURE_BLOCKS = ("participant", "legally_authorised_representative", "impartial_witness",
                    "person_obtaining_consent")


def consent_signatures(signed_by: Iterable[str]) -> tuple[str, ...]:
    """The blocks signed on a participant's consent form, in the form's order; InvalidInput unless the
    participant or their legally authorised representative signed, and the person obtaining consent."""
    from trialcoord.domain.problems import InvalidInput, Problem

    given = {str(block).strip() for block in signed_by}
    unknown = sorted(given - set(SIGNATURE_BLOCKS))
    problems = [Problem(f"unknown signature block {b!r}; the blocks are {', '.join(SIGNATURE_BLOCKS)}",
                        field="signed_by") for b in unknown]
    if not given & {"participant", "legally_authorised_representative"}:
        problems.append(Problem("the participant or their legally authorised representative must have signed",
                                field="signed_by"))
    if "person_obtaining_consent" not in given:
        problems.append(Problem("the person obtaining consent must have signed", field="signed_by"))
    if problems:
        raise InvalidInput(problems)
    return tuple(block for block in SIGNATURE_BLOCKS if block in given)
