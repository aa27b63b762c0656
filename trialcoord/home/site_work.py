"""A site's work, across every study and site where the user holds a site role: today's booked visits, windows
closing without a booking, overdue visits (the coordinator's); deviations awaiting the site's response;
participants due to re-consent and binder documents expiring or missing; and the investigator's signature
and window-extension requests (from `sources`). One read per study for each list, none per participant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from trialcoord.deviations import queue
from trialcoord.deviations.records import Deviation
from trialcoord.documents import binder_checklist, consent_checks
from trialcoord.documents.binder_checklist import ChecklistEntry
from trialcoord.documents.consent_checks import ReconsentDue
from trialcoord.documents.rules.documents import Reader
from trialcoord.home import store
from trialcoord.home.rules.tasks import AWAITING_SITE, EXPIRING_DAYS, SHOWN, InStudy, Listed, Scope, listed
from trialcoord.home.sources import ExtensionRequest, SignatureRequest, Sources
from trialcoord.kernel.database.engine import read
from trialcoord.scheduling import lookups, protocols, sites, worklists
from trialcoord.scheduling.schedules import ScheduledVisit, restated, scheduled


@dataclass(frozen=True, slots=True)
class Visits:
    """The coordinator's visits: booked for today, windows closing within `closing_days` with nothing booked,
    overdue (window closed, not done, not marked missed)."""

    booked: Listed[InStudy[ScheduledVisit]]
    closing: Listed[InStudy[ScheduledVisit]]
    overdue: Listed[InStudy[ScheduledVisit]]
    closing_days: int


async def visits(scopes: Sequence[Scope], today: date, closing_days: int) -> Visits:
    booked: list[InStudy[ScheduledVisit]] = []
    overdue: list[InStudy[ScheduledVisit]] = []
    closing: list[InStudy[ScheduledVisit]] = []
    for scope in scopes:
        site = next(iter(scope.sites)) if scope.sites and len(scope.sites) == 1 else None
        for row in await worklists.worklist(scope.study, today, site=site, kind="today"):
            if scope.includes(row.site) and row.appointment == today and _open(row):
                booked.append(InStudy(scope.study, row))
        for row in await worklists.worklist(scope.study, today, site=site, kind="overdue"):
            if scope.includes(row.site):
                overdue.append(InStudy(scope.study, row))
        closing += [InStudy(scope.study, row) for row in await _closing(scope, today, closing_days)]
    return Visits(
        listed(booked, key=_by_subject),
        listed(closing, key=lambda t: (t.row.visit.latest, t.study, t.row.subject_id, t.row.visit.visit)),
        listed(overdue, key=lambda t: (t.row.visit.latest, t.study, t.row.subject_id, t.row.visit.visit)),
        closing_days,
    )


def _open(row: ScheduledVisit) -> bool:
    return row.visit.actual is None and row.missed_reason is None and row.visit.status != "not_applicable"


def _by_subject(task: InStudy[ScheduledVisit]) -> tuple:
    return task.study, task.row.site, task.row.subject_id, task.row.visit.visit


async def _closing(scope: Scope, today: date, days: int) -> list[ScheduledVisit]:
    """The scope's open visits whose window closes within `days` (today included), nothing booked from today on."""
    condition, args = store.CLOSING, list[object](store.closing_args(today, days))
    if scope.sites is not None:
        condition += f" AND s.code IN ({', '.join('{}' for _ in scope.sites)})"
        args += sorted(scope.sites)
    async with read():
        study_id = (await protocols.require_study(scope.study)).id
        rows = await lookups.worklist_rows(study_id, condition, *args)
        return [scheduled(row, restated(row, today)) for row in rows]


async def awaiting_site(scopes: Sequence[Scope]) -> Listed[InStudy[Deviation]]:
    """Deviations detected or reopened at the scopes' sites: the site's response is due (oldest first)."""
    return await deviations_in(scopes, AWAITING_SITE)


async def deviations_in(scopes: Sequence[Scope], states: Sequence[str]) -> Listed[InStudy[Deviation]]:
    """The scopes' deviations in `states`, oldest first: the queue's first page of each study and its count."""
    rows: list[InStudy[Deviation]] = []
    totals = {}
    for scope in scopes:
        found, totals[scope.study] = await queue.listing(scope.study, states=states, sites=scope.sites, limit=SHOWN)
        rows += [InStudy(scope.study, row) for row in found]
    return listed(rows, key=lambda t: (t.row.detected_at, t.study, t.row.id), totals=totals)


async def reconsent(scopes: Sequence[Scope], today: date) -> Listed[InStudy[ReconsentDue]]:
    """Active participants at the scopes' sites whose consent is older than the version now required."""
    rows = [
        InStudy(scope.study, row)
        for scope in scopes
        for row in await consent_checks.reconsent(scope.study, today)
        if scope.includes(row.site)
    ]
    return listed(rows, key=lambda t: (t.row.required_since, t.study, t.row.site, t.row.subject_id))


@dataclass(frozen=True, slots=True)
class SiteDocument:
    """An expected binder document of a site that is missing, expired, or expires within EXPIRING_DAYS."""

    site: str
    entry: ChecklistEntry
    upload: str  # the upload form prefilled for it


async def binder(scopes: Sequence[Scope], today: date, reader: Reader) -> Listed[InStudy[SiteDocument]]:
    """The scopes' sites' expected documents that are missing, expired or expiring soon (each site's checklist,
    as the reader sees the binder)."""
    soon = today + timedelta(days=EXPIRING_DAYS)
    rows = []
    totals = {}  # by "STUDY/SITE": each site's checklist is a page of its own
    for scope in scopes:
        codes = (
            sorted(scope.sites) if scope.sites is not None else [s.code for s in await sites.list_sites(scope.study)]
        )
        for site in codes:
            found = [
                InStudy(scope.study, SiteDocument(site, entry, binder_checklist.upload_path(scope.study, entry)))
                for entry in await binder_checklist.site_checklist(scope.study, site, today, reader)
                if entry.state in ("missing", "expired")
                or (entry.state == "expiring" and entry.expires_on is not None and entry.expires_on <= soon)
            ]
            rows += found
            totals[f"{scope.study}/{site}"] = len(found)
    return listed(
        rows, key=lambda t: (_urgency(t.row.entry), t.study, t.row.site, t.row.entry.artifact.number), totals=totals
    )


def _urgency(entry: ChecklistEntry) -> tuple:
    """Expired first, then expiring by date, then missing."""
    order = {"expired": 0, "expiring": 1, "missing": 2}[entry.state]
    return order, entry.expires_on or date.max


async def signature_requests(sources: Sources, user_id: str, today: date) -> Listed[InStudy[SignatureRequest]]:
    rows = [InStudy(r.study, r) for r in await sources.signature_requests(user_id, today)]
    return listed(rows, key=lambda t: (t.row.requested_at, t.study, t.row.site or "", t.row.document, t.row.label))


async def extension_requests(sources: Sources, scopes: Sequence[Scope]) -> Listed[InStudy[ExtensionRequest]]:
    """The requests awaiting a decision at the investigator's sites, oldest first (one read per study)."""
    rows = [
        InStudy(scope.study, r)
        for scope in scopes
        for r in await sources.extension_requests(scope.study, set(scope.sites) if scope.sites is not None else None)
    ]
    return listed(rows, key=lambda t: (t.row.requested_at, t.study, t.row.site, t.row.participant, t.row.visit))
