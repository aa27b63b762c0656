"""What a monitor and a sponsor see first: the deviations awaiting the monitor's review, the audit trail's
entries and the documents new since their previous sign-in; the sponsor's packages and study metrics
(participants enrolled, visits done and open deviations per site). One read per study for each list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from trialcoord.deviations import site_summary
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.site_summary import SiteFigures
from trialcoord.documents import documents
from trialcoord.documents.documents import FiledVersion
from trialcoord.documents.rules.documents import DocumentKey, Reader, record_id
from trialcoord.exports import packages
from trialcoord.exports.packages import Package
from trialcoord.home import store
from trialcoord.home.rules.tasks import AWAITING_REVIEW, SHOWN, InStudy, Listed, Scope, listed
from trialcoord.home.site_work import deviations_in
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.access import Action, Grant, authorize
from trialcoord.scheduling import sites


async def awaiting_review(scopes: Sequence[Scope]) -> Listed[InStudy[Deviation]]:
    return await deviations_in(scopes, AWAITING_REVIEW)


def instant(text: str) -> datetime:
    """An audit instant's text (`...Z`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def prefixes(scope: Scope) -> list[str]:
    """The audit record-ID prefixes of a scope: the study's, or each of its sites' (as the trail's pages)."""
    if scope.sites is None:
        return [f"{scope.study}/"]
    return [f"{scope.study}/{site}/" for site in sorted(scope.sites)]


@dataclass(frozen=True, slots=True)
class Change:
    """An audit entry of a monitor's study, and the site whose trail it was read from (None: the study's)."""

    site: str | None
    entry: TrailEntry


async def trail_since(scopes: Sequence[Scope], since: str) -> Listed[InStudy[Change]]:
    """The audit entries of the scopes' records recorded at or after `since`, newest first."""
    rows: list[InStudy[Change]] = []
    totals = {}  # by trail read: "STUDY", or "STUDY/SITE" under a grant of some sites (as the trail's pages are)
    for scope in scopes:
        for prefix in prefixes(scope):
            found = await audit_log.browse(AuditFilter(within=prefix, since=since), limit=SHOWN)
            site = prefix.split("/")[1] or None
            rows += [InStudy(scope.study, Change(site, entry)) for entry in found]
            async with read():
                totals[prefix[:-1]] = await store.trail_count([prefix], since)
    return listed(rows, key=lambda t: -t.row.entry.sequence, totals=totals)


async def documents_since(scopes: Sequence[Scope], since: str, reader: Reader) -> Listed[InStudy[FiledVersion]]:
    """The document versions of the scopes that the reader sees and that were stored or changed (a lifecycle
    step) at or after `since`, as the audit trail dates them; newest first."""
    rows = []
    for scope in scopes:
        study_level = [f"{scope.study}/documents/"] if scope.sites is not None else []
        async with read():
            changed = await store.records_changed([*prefixes(scope), *study_level], "document_version", since)
        if changed:
            rows += [
                InStudy(scope.study, version)
                for version in await documents.list_documents(scope.study, reader=reader)
                if scope.includes(version.site)
                and record_id(DocumentKey(scope.study, version.site, version.name), version.label) in changed
            ]
    return listed(rows, key=lambda t: (_newest(t.row), t.study, t.row.name))


def _newest(version: FiledVersion) -> tuple[int, float]:
    """Newest first: by the later of the day it was stored and its last step's, then by when it was stored."""
    stored = instant(version.created_at)
    latest = max([stored.date(), *(step.on for step in version.history)])
    return -latest.toordinal(), -stored.timestamp()


async def packages_of(scopes: Sequence[Scope], grants: Sequence[Grant], today: date) -> Listed[InStudy[Package]]:
    """The sponsor packages of the scopes' studies the holder of `grants` may see, newest first."""
    rows = [
        InStudy(scope.study, package)
        for scope in scopes
        for package in await packages.packages_of(scope.study)
        if package_shown(package, scope, grants, today)
    ]
    return listed(rows, key=lambda t: (t.study, -t.row.id))


def package_shown(package: Package, scope: Scope, grants: Sequence[Grant], today: date) -> bool:
    """As the sponsor packages page shows them: an unblinded package only to who may see the allocation at every
    site it covers; to who works at some sites, only packages within them."""
    covered = package.scope.sites or (None,)
    if package.scope.unblinded and not all(
        authorize(grants, Action.VIEW_ALLOCATION, package.study, site, today) for site in covered
    ):
        return False
    return scope.sites is None or (bool(package.scope.sites) and set(package.scope.sites) <= scope.sites)


async def metrics(scopes: Sequence[Scope], today: date) -> Listed[InStudy[SiteFigures]]:
    """Per study and site as of today: participants enrolled, visits done, open deviations (the site summary's
    figures, coded data only)."""
    rows = []
    for scope in scopes:
        codes = (
            sorted(scope.sites) if scope.sites is not None else [s.code for s in await sites.list_sites(scope.study)]
        )
        if codes:
            summary = await site_summary.site_summary(scope.study, codes, today, personal=False)
            rows += [InStudy(scope.study, figures) for figures in summary.sites]
    return listed(rows, key=lambda t: (t.study, t.row.site))
