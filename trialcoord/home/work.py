"""The home page as a whole: the sections of every role the user holds today, what their grants that ended or
have not begun say, and the studies they see (`Home`). Roles held together (a coordinator who also monitors
another study) get both pages' sections; a list shared by two roles (the site's response) is shown once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from trialcoord.accounts.rules.accounts import LockoutPolicy
from trialcoord.accounts.sessions import SignInAttempt
from trialcoord.accounts.users import User
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.site_summary import SiteFigures
from trialcoord.documents.consent_checks import ReconsentDue
from trialcoord.documents.documents import FiledVersion
from trialcoord.documents.rules.documents import Reader
from trialcoord.exports.packages import Package
from trialcoord.home import administration, oversight, site_work
from trialcoord.home.administration import Jobs, LockedAccount
from trialcoord.home.last_visit import previous_sign_in
from trialcoord.home.oversight import Change
from trialcoord.home.rules.nightly import Schedule
from trialcoord.home.rules.tasks import (
    GrantNotice,
    InStudy,
    Listed,
    Scope,
    administers,
    grant_notices,
    joined,
    scopes,
)
from trialcoord.home.site_work import SiteDocument, Visits
from trialcoord.home.sources import ExtensionRequest, SignatureRequest, Sources
from trialcoord.kernel.rules.access import Role, Viewer
from trialcoord.scheduling import protocols
from trialcoord.scheduling.protocols import Study


@dataclass(frozen=True, slots=True)
class Coordination:
    visits: Visits
    reconsent: Listed[InStudy[ReconsentDue]]
    binder: Listed[InStudy[SiteDocument]]


@dataclass(frozen=True, slots=True)
class Investigation:
    extensions: Listed[InStudy[ExtensionRequest]]


@dataclass(frozen=True, slots=True)
class Monitoring:
    awaiting_review: Listed[InStudy[Deviation]]
    since: str  # the previous sign-in (a first visit: the day the monitor's grant began)
    first_visit: bool
    trail: Listed[InStudy[Change]]
    documents: Listed[InStudy[FiledVersion]]


@dataclass(frozen=True, slots=True)
class Sponsoring:
    packages: Listed[InStudy[Package]]
    metrics: Listed[InStudy[SiteFigures]]


@dataclass(frozen=True, slots=True)
class Administering:
    locked: Listed[LockedAccount]
    disabled: Listed[User]
    since: str | None
    sign_in_problems: Listed[SignInAttempt]
    jobs: Jobs


@dataclass(frozen=True, slots=True)
class Home:
    """Each role's sections (None: a role not held), the notices of grants ended or to begin, the studies seen."""

    notices: list[GrantNotice]
    studies: list[Study]
    signatures: Listed[InStudy[SignatureRequest]]  # asked of the user, whatever their role
    awaiting_site: Listed[InStudy[Deviation]] | None
    coordination: Coordination | None
    investigation: Investigation | None
    monitoring: Monitoring | None
    sponsoring: Sponsoring | None
    administering: Administering | None

    @property
    def has_work(self) -> bool:
        parts = (self.coordination, self.investigation, self.monitoring, self.sponsoring, self.administering)
        return bool(self.signatures.total) or any(part is not None for part in parts)


@dataclass(frozen=True, slots=True)
class Setting:
    """What the home page is computed with, from the request and the app."""

    today: date
    now: datetime
    closing_days: int
    sources: Sources
    policy: LockoutPolicy
    schedule: Schedule | None
    not_run_because: str | None


async def home(viewer: Viewer, setting: Setting) -> Home:
    grants, today = viewer.grants, setting.today
    coordinator = scopes(grants, Role.COORDINATOR, today)
    investigator = scopes(grants, Role.INVESTIGATOR, today)
    monitor = scopes(grants, Role.MONITOR, today)
    sponsor = scopes(grants, Role.SPONSOR, today)
    site = joined(coordinator, investigator)
    seen = [
        study
        for study in await protocols.list_studies()
        if any(g.in_force(today) and g.study in (None, study.code) for g in grants)
    ]
    return Home(
        notices=grant_notices(grants, today),
        studies=seen,
        signatures=await site_work.signature_requests(setting.sources, viewer.user_id, today),
        awaiting_site=await site_work.awaiting_site(site) if site else None,
        coordination=await _coordination(coordinator, viewer, setting) if coordinator else None,
        investigation=await _investigation(investigator, viewer, setting) if investigator else None,
        monitoring=await _monitoring(monitor, viewer, setting) if monitor else None,
        sponsoring=await _sponsoring(sponsor, viewer, setting) if sponsor else None,
        administering=await _administering(viewer, setting) if administers(grants, today) else None,
    )


async def _coordination(where: list[Scope], viewer: Viewer, setting: Setting) -> Coordination:
    today = setting.today
    return Coordination(
        await site_work.visits(where, today, setting.closing_days),
        await site_work.reconsent(where, today),
        await site_work.binder(where, today, Reader(viewer.grants, today)),
    )


async def _investigation(where: list[Scope], viewer: Viewer, setting: Setting) -> Investigation:
    return Investigation(await site_work.extension_requests(setting.sources, where))


async def _monitoring(where: list[Scope], viewer: Viewer, setting: Setting) -> Monitoring:
    """Since the previous sign-in; on a first visit, since the monitor's grant began."""
    today = setting.today
    since = await previous_sign_in(viewer.user_id, viewer.session_id)
    began = min(g.valid_from for g in viewer.grants if g.role is Role.MONITOR and g.in_force(today))
    start = since or f"{began.isoformat()}T00:00:00.000000Z"
    return Monitoring(
        await oversight.awaiting_review(where),
        start,
        since is None,
        await oversight.trail_since(where, start),
        await oversight.documents_since(where, start, Reader(viewer.grants, today)),
    )


async def _sponsoring(where: list[Scope], viewer: Viewer, setting: Setting) -> Sponsoring:
    return Sponsoring(
        await oversight.packages_of(where, viewer.grants, setting.today),
        await oversight.metrics(where, setting.today),
    )


async def _administering(viewer: Viewer, setting: Setting) -> Administering:
    since = await previous_sign_in(viewer.user_id, viewer.session_id)
    return Administering(
        await administration.locked_accounts(setting.now, setting.policy),
        await administration.disabled_accounts(),
        since,
        await administration.sign_in_problems(since),
        await administration.jobs(setting.now, setting.schedule, setting.not_run_because),
    )
