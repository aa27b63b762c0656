"""What the consent records call for: the re-consent queue, the visits a consent did not cover (consent
deviation candidates), consent data issues, and the versions each participant signed (for an amendment's
re-consent)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from trialcoord.documents import consent_store as store
from trialcoord.documents.consent_records import day, versions_and_consents
from trialcoord.documents.rules.consent import (
    ConsentVersion,
    ProcedureVisit,
    consent_deviation_candidates,
    data_issues,
    reconsent_queue,
)
from trialcoord.kernel.database.engine import read


@dataclass(frozen=True, slots=True)
class ReconsentDue:
    """An active participant whose latest consent is older than the version now required for them."""

    subject_id: str
    site: str
    signed_version: str
    required_version: str
    required_since: date


@dataclass(frozen=True, slots=True)
class ConsentCandidate:
    """A consent deviation candidate at the participant's site (the rule's candidate, `rule` as its term)."""

    subject_id: str
    site: str
    visit: str
    visit_on: date
    rule: str
    consented_on: date | None
    required_since: date | None
    signed_version: str | None
    required_version: str | None


@dataclass(frozen=True, slots=True)
class SiteConsentIssue:
    """A consent data issue for a site to resolve."""

    subject_id: str
    site: str
    signed_on: date
    message: str


@dataclass(frozen=True, slots=True)
class ConsentsSigned:
    """The study's consent versions, and for each participant the labels of the versions signed."""

    versions: list[ConsentVersion]
    labels: dict[str, set[str]]


async def reconsent(study: str, today: date) -> list[ReconsentDue]:
    """Active participants whose latest consent is older than the newest effective version for them."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=True)
    site_of = {c.subject_id: c.site for c in signed}
    return [
        ReconsentDue(e.subject_id, _site(site_of[e.subject_id]), e.signed_version, e.required_version, e.required_since)
        for e in reconsent_queue(signed, versions, today)
    ]


async def candidates(study: str, participants: Collection[int] | None = None) -> list[ConsentCandidate]:
    """Visits that took place before the participant's consent, or after re-consent became required and
    was not obtained: consent deviation candidates (reviewed in the deviation workflow). Sites without a
    consent version registered are not checked. `participants`: only these (ids; a detection's scope)."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False, participants=participants)
        # Only sites whose consent forms are kept here are checked: elsewhere no consent is "missing".
        tracked = {v.site for v in versions}
        visits = (
            [row for row in await store.visits_done(study, participants) if row["site"] in tracked] if tracked else []
        )
    site_of = {row["subject_id"]: row["site"] for row in visits}
    found = consent_deviation_candidates(
        [ProcedureVisit(row["subject_id"], row["code"], day(row["actual"])) for row in visits], signed, versions
    )
    return [
        ConsentCandidate(
            c.subject_id,
            site_of[c.subject_id],
            c.visit,
            c.visit_on,
            str(c.rule),
            c.consented_on,
            c.required_since,
            c.signed_version,
            c.required_version,
        )
        for c in found
    ]


async def issues(study: str) -> list[SiteConsentIssue]:
    """Consent data issues for the sites to resolve: a consent whose version nobody recorded (an import of the
    consent event, say), once per participant, at sites whose consent versions are kept here."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    tracked = {v.site for v in versions}
    return [
        SiteConsentIssue(issue.subject_id, issue.site, issue.signed_on, issue.message)
        for issue in data_issues(signed)
        if issue.site is not None and issue.site in tracked
    ]


async def versions_and_signatures(study: str) -> ConsentsSigned:
    """The study's consent versions, and for each participant the labels of the versions signed."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    labels: dict[str, set[str]] = {}
    for c in signed:
        if c.version is not None:
            labels.setdefault(c.subject_id, set()).add(c.version.label)
        elif c.label:
            labels.setdefault(c.subject_id, set()).add(c.label)
    return ConsentsSigned(versions, labels)


def _site(site: str | None) -> str:
    if site is None:  # the queue holds participants with a registered consent, whose version names the site
        raise ValueError("a participant in the re-consent queue has no site on record")
    return site
