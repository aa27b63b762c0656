"""What the consent records call for: the re-consent queue, the visits a consent did not cover (consent
deviation candidates), consent data issues, and the versions each participant signed (for an amendment's
re-consent)."""

from __future__ import annotations

from collections.abc import Collection
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


async def reconsent(study: str, today: date) -> list[dict]:
    """Active participants whose latest consent is older than the newest effective version for them."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=True)
    site_of = {c.subject_id: c.site for c in signed}
    return [
        {
            "subject_id": e.subject_id,
            "site": site_of[e.subject_id],
            "signed_version": e.signed_version,
            "required_version": e.required_version,
            "required_since": e.required_since,
        }
        for e in reconsent_queue(signed, versions, today)
    ]


async def candidates(study: str, participants: Collection[int] | None = None) -> list[dict]:
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
        {
            "subject_id": c.subject_id,
            "site": site_of[c.subject_id],
            "visit": c.visit,
            "visit_on": c.visit_on,
            "rule": str(c.rule),
            "consented_on": c.consented_on,
            "required_since": c.required_since,
            "signed_version": c.signed_version,
            "required_version": c.required_version,
        }
        for c in found
    ]


async def issues(study: str) -> list[dict]:
    """Consent data issues for the sites to resolve: a consent whose version nobody recorded (an import of the
    consent event, say), once per participant, at sites whose consent versions are kept here."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    tracked = {v.site for v in versions}
    return [
        {"subject_id": issue.subject_id, "site": issue.site, "signed_on": issue.signed_on, "message": issue.message}
        for issue in data_issues(signed)
        if issue.site in tracked
    ]


async def versions_and_signatures(study: str) -> tuple[list[ConsentVersion], dict[str, set[str]]]:
    """The study's consent versions, and for each participant the labels of the versions signed."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    labels: dict[str, set[str]] = {}
    for c in signed:
        if c.version is not None:
            labels.setdefault(c.subject_id, set()).add(c.version.label)
        elif c.label:
            labels.setdefault(c.subject_id, set()).add(c.label)
    return versions, labels
