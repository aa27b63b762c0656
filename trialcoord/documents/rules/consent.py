"""Informed consent: which version each participant signed, who must re-consent, and visits that
are consent deviation candidates.

A consent version belongs to a study, site and language, and to the protocol version it was written
for. When a newer version becomes effective, every active participant whose latest consent is on an
older one must re-consent from that date; their older consent stays valid history. A visit with
procedures before the first consent, or on or after re-consent became required without it, is a
candidate for an informed-consent deviation (reviewed in the deviation workflow). Everything takes
the dates it applies on; nothing reads the clock.

A consent may have no registered version: signed on paper before its version was registered (with the
paper document's reference), or known only as the protocol's consent event (an import, say): its version
is unknown. Either satisfies the before-consent check; an unknown version is a data issue for the site,
reported once per participant (`data_issues`), never a deviation per visit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


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
    """A participant's signed consent. Never changed: a re-consent is a new one. `version` is None for a paper
    consent (then `reference` names the paper document, and `label`/`language` say what is printed on it, when
    known) and for a consent whose version is unknown (no reference either)."""

    subject_id: str
    version: ConsentVersion | None
    signed_on: date
    obtained_by: str  # user ID of the person obtaining consent
    signed_by: tuple[str, ...] = ()  # the form's signature blocks signed (SIGNATURE_BLOCKS); () unknown
    site: str | None = None  # the participant's site (a registered version names it too)
    reference: str | None = None
    label: str | None = None
    language: str | None = None

    @property
    def version_label(self) -> str:
        if self.version is not None:
            return self.version.label
        return self.label or ("paper" if self.reference else "unknown")

    @property
    def unknown(self) -> bool:
        """Known only from the consent event: nobody recorded which version was signed."""
        return self.version is None and self.reference is None


@dataclass(frozen=True, slots=True)
class ConsentIssue:
    """A data issue the site must resolve (not a deviation): a consent whose version nobody recorded."""

    subject_id: str
    site: str | None
    signed_on: date

    @property
    def message(self) -> str:
        return (
            f"{self.subject_id}: consent signed on {self.signed_on} has no version on record; record the"
            " consent version signed, or the paper document's reference"
        )


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
        return (
            f"{self.subject_id} visit {self.visit} on {self.visit_on}: signed version {self.signed_version}, "
            f"re-consent on version {self.required_version} required since {self.required_since}"
        )


def reconsent_queue(
    consents: Iterable[ParticipantConsent], versions: Iterable[ConsentVersion], today: date
) -> list[ReconsentEntry]:
    """Active participants (pass only their consents) whose latest consent is on a version older
    than the newest one effective by `today` for its study, site and language."""
    versions = list(versions)
    entries = []
    for subject_id, signed in sorted(_by_subject(consents).items()):
        entry = _reconsent_due(subject_id, signed, versions, today)
        if entry is not None:
            entries.append(entry)
    return entries


def consent_deviation_candidates(
    visits_with_procedures: Iterable[ProcedureVisit],
    consents: Iterable[ParticipantConsent],
    versions: Iterable[ConsentVersion],
) -> list[ConsentDeviationCandidate]:
    """Visits dated before the participant's first consent, or on or after the date a re-consent
    became required and was not yet obtained. A consent signed on the visit day counts for it."""
    by_subject, versions = _by_subject(consents), list(versions)
    candidates = []
    for visit in sorted(visits_with_procedures, key=lambda v: (v.subject_id, v.on, v.visit)):
        signed = by_subject.get(visit.subject_id, [])
        first = min((c.signed_on for c in signed), default=None)
        if first is None or visit.on < first:
            candidates.append(
                ConsentDeviationCandidate(visit.subject_id, visit.visit, visit.on, ConsentRule.BEFORE_CONSENT, first)
            )
            continue
        due = _reconsent_due(visit.subject_id, signed, versions, visit.on)
        if due is not None:
            candidates.append(
                ConsentDeviationCandidate(
                    visit.subject_id,
                    visit.visit,
                    visit.on,
                    ConsentRule.RECONSENT_NOT_OBTAINED,
                    first,
                    due.required_since,
                    due.signed_version,
                    due.required_version,
                )
            )
    return candidates


def in_force(versions: Iterable[ConsentVersion], site: str, on: date) -> list[ConsentVersion]:
    """The site's versions a consent signed on `on` is on: per language, the newest effective by then (a newer
    version replaces an older one from its effective date), by language."""
    newest: dict[tuple[str, str, str], ConsentVersion] = {}
    for version in versions:
        held = newest.get(version.group)
        if version.site == site and version.effective_on <= on and (held is None or _order(version) > _order(held)):
            newest[version.group] = version
    return sorted(newest.values(), key=lambda v: v.language)


def replaced_by(version: ConsentVersion, versions: Iterable[ConsentVersion], on: date) -> ConsentVersion | None:
    """The version in force on `on` in place of `version`, when a newer one of its site and language replaced it;
    None when `version` is in force then (or not yet effective: nothing replaced it)."""
    current = next((v for v in in_force(versions, version.site, on) if v.group == version.group), None)
    return current if current is not None and _order(current) > _order(version) else None


def data_issues(consents: Iterable[ParticipantConsent]) -> list[ConsentIssue]:
    """One issue per participant whose consents include one of unknown version (the earliest such)."""
    issues = {}
    for consent in sorted(consents, key=lambda c: (c.subject_id, c.signed_on)):
        if consent.unknown and consent.subject_id not in issues:
            issues[consent.subject_id] = ConsentIssue(consent.subject_id, consent.site, consent.signed_on)
    return list(issues.values())


def _by_subject(consents: Iterable[ParticipantConsent]) -> dict[str, list[ParticipantConsent]]:
    grouped: dict[str, list[ParticipantConsent]] = defaultdict(list)
    for consent in consents:
        grouped[consent.subject_id].append(consent)
    return grouped


def _order(version: ConsentVersion) -> tuple[date, str]:
    return version.effective_on, version.label


def _reconsent_due(
    subject_id: str, signed: list[ParticipantConsent], versions: list[ConsentVersion], on: date
) -> ReconsentEntry | None:
    """Is the participant's latest consent signed by `on` on an older version than the newest one
    effective by `on`? A latest consent of unknown version is a data issue instead (`data_issues`)."""
    latest = max((c for c in signed if c.signed_on <= on), key=_consent_order, default=None)
    if latest is None or latest.unknown:
        return None
    version = latest.version or _registered(latest, versions)
    if version is not None:
        newest = max(
            (v for v in versions if v.group == version.group and v.effective_on <= on), key=_order, default=None
        )
        if newest is None or _order(newest) <= _order(version):
            return None
        return ReconsentEntry(subject_id, latest.version_label, newest.label, newest.effective_on)
    # On paper, of a version never registered: older than every version of its site (and language) that
    # became effective after it was signed.
    newer = [
        v
        for v in versions
        if v.site == latest.site
        and latest.signed_on < v.effective_on <= on
        and (latest.language is None or v.language == latest.language)
    ]
    newest = max(newer, key=_order, default=None)
    if newest is None:
        return None
    return ReconsentEntry(subject_id, latest.version_label, newest.label, newest.effective_on)


def _registered(consent: ParticipantConsent, versions: list[ConsentVersion]) -> ConsentVersion | None:
    """The registered version a paper consent's printed label names, at its site (and language)."""
    if consent.label is None:
        return None
    matching = [
        v
        for v in versions
        if v.site == consent.site
        and v.label == consent.label
        and (consent.language is None or v.language == consent.language)
    ]
    return matching[0] if len(matching) == 1 else None


def _consent_order(consent: ParticipantConsent) -> tuple[object, ...]:
    order = _order(consent.version) if consent.version is not None else (date.min, "")
    return consent.signed_on, order


# --- who signed the consent form (the four signature blocks of the template) ---

SIGNATURE_BLOCKS = ("participant", "legally_authorised_representative", "impartial_witness", "person_obtaining_consent")


def consent_signatures(signed_by: Iterable[str]) -> tuple[str, ...]:
    """The blocks signed on a participant's consent form, in the form's order; InvalidInput unless the
    participant or their legally authorised representative signed, and the person obtaining consent."""
    from trialcoord.kernel.problems import InvalidInput, Problem

    given = {str(block).strip() for block in signed_by}
    unknown = sorted(given - set(SIGNATURE_BLOCKS))
    problems = [
        Problem(f"unknown signature block {b!r}; the blocks are {', '.join(SIGNATURE_BLOCKS)}", field="signed_by")
        for b in unknown
    ]
    if not given & {"participant", "legally_authorised_representative"}:
        problems.append(
            Problem("the participant or their legally authorised representative must have signed", field="signed_by")
        )
    if "person_obtaining_consent" not in given:
        problems.append(Problem("the person obtaining consent must have signed", field="signed_by"))
    if problems:
        raise InvalidInput(problems)
    return tuple(block for block in SIGNATURE_BLOCKS if block in given)
