"""Who may do what, where, and when: roles, grants and the one permission table (Part 11 11.10(d),(g)).

`authorize` is pure: it takes the user's grants and `today`, so every cell of the role x action x
scope matrix is tested without a database or a clock. See docs/access-control.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from trialcoord.kernel.problems import InvalidInput, Problem


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    COORDINATOR = "coordinator"
    INVESTIGATOR = "investigator"
    MONITOR = "monitor"
    SPONSOR = "sponsor"
    UNBLINDED_PHARMACIST = "unblinded_pharmacist"  # a site's unblinded pharmacist: sees and assigns the allocation


class Action(StrEnum):
    VIEW_SCHEDULE = "view_schedule"  # studies, sites, coded participants, schedules, worklists
    VIEW_PERSONAL_DATA = "view_personal_data"  # names, dates of birth, contact details, record numbers
    VIEW_AUDIT = "view_audit"
    EXPORT = "export"  # coded data only; personal data also needs view_personal_data
    ENROLL_PARTICIPANT = "enroll_participant"  # enrol, change protocol version
    ASSIGN_ARM = "assign_arm"  # record the arm a participant was allocated to (blinded studies: also view_allocation)
    RECORD_VISIT = "record_visit"  # events, visit dates, appointments, missed visits
    MANAGE_DOCUMENTS = "manage_documents"  # binder documents: new versions, lifecycle steps
    SIGN = "sign"
    LOAD_PROTOCOL = "load_protocol"
    MANAGE_SITES = "manage_sites"
    MANAGE_USERS = "manage_users"  # accounts and grants
    RECORD_DEVIATION = "record_deviation"  # manual deviations, detection runs, root cause and CAPA records
    RESPOND_DEVIATION = "respond_deviation"  # the site's response: reason and corrective action
    REVIEW_DEVIATION = "review_deviation"  # acknowledge, classify (signed), close (signed), reopen
    APPROVE_EXCEPTION = "approve_exception"  # an investigator's approved window extension for one visit
    VIEW_ALLOCATION = "view_allocation"  # the arm a participant is in, when the study is blinded (single or double)


READ_ONLY_ACTIONS = frozenset(
    {Action.VIEW_SCHEDULE, Action.VIEW_PERSONAL_DATA, Action.VIEW_AUDIT, Action.EXPORT, Action.VIEW_ALLOCATION}
)
SITE_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR, Role.UNBLINDED_PHARMACIST})

_SITE_WORK = frozenset(
    {
        Action.VIEW_SCHEDULE,
        Action.VIEW_PERSONAL_DATA,
        Action.EXPORT,
        Action.ENROLL_PARTICIPANT,
        Action.ASSIGN_ARM,
        Action.RECORD_VISIT,
        Action.MANAGE_DOCUMENTS,
        Action.SIGN,
    }
)

# The only place that says which role may do what; docs/access-control.md shows it (a test compares).
ROLE_PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMINISTRATOR: frozenset(Action),
    Role.COORDINATOR: _SITE_WORK | {Action.RECORD_DEVIATION, Action.RESPOND_DEVIATION},
    Role.INVESTIGATOR: _SITE_WORK
    | {Action.VIEW_AUDIT, Action.RECORD_DEVIATION, Action.RESPOND_DEVIATION, Action.APPROVE_EXCEPTION},
    # Monitors see personal data only under a grant that says so (source data verification).
    Role.MONITOR: frozenset(
        {
            Action.VIEW_SCHEDULE,
            Action.VIEW_AUDIT,
            Action.EXPORT,
            Action.SIGN,
            Action.RECORD_DEVIATION,
            Action.REVIEW_DEVIATION,
        }
    ),
    Role.SPONSOR: frozenset({Action.VIEW_SCHEDULE, Action.EXPORT}),
    # Blinded studies: the one site role that knows the allocation. It sees the coded schedule and the arms and
    # records the arm it dispenses for, but never enrols, records visits, signs, sees personal data or exports.
    Role.UNBLINDED_PHARMACIST: frozenset({Action.VIEW_SCHEDULE, Action.VIEW_ALLOCATION, Action.ASSIGN_ARM}),
}
# Coordinators and investigators hold no view_allocation: in a blinded study the site's staff are blinded too.


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        expected = ", ".join(Role)
        raise InvalidInput([Problem(f"unknown role '{text}'; expected one of {expected}", field="role")]) from None


@dataclass(frozen=True, slots=True)
class Grant:
    """A role for one user, in one study (None: every study, administrators only) and one site
    (None: every site of the study), from `valid_from` to `valid_to` inclusive (None: open-ended)."""

    user_id: str
    role: Role
    study: str | None
    site: str | None
    valid_from: date
    valid_to: date | None = None
    personal_data: bool = False  # monitors only: may view personal data

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", parse_role(self.role))
        problems = _grant_problems(self)
        if problems:
            raise InvalidInput(problems)

    def in_force(self, today: date) -> bool:
        return self.valid_from <= today and (self.valid_to is None or today <= self.valid_to)

    def describe(self) -> str:
        if self.study is None:
            return f"{self.role} of every study"
        where = f"site {self.site}" if self.site is not None else "all sites"
        return f"{self.role} of {self.study} at {where}"


def _grant_problems(grant: Grant) -> list[Problem]:
    checks = [
        (not grant.user_id, "a grant must name the user it is for", "user_id"),
        (
            grant.study is None and grant.role is not Role.ADMINISTRATOR,
            f"a {grant.role} grant must name its study; only administrators hold grants for every study",
            "study",
        ),
        (grant.study is None and grant.site is not None, "a grant for a site must name the site's study", "site"),
        (grant.role in SITE_ROLES and grant.site is None, f"a {grant.role} grant must name its site", "site"),
        (
            grant.valid_to is not None and grant.valid_to < grant.valid_from,
            f"the grant ends ({grant.valid_to}) before it starts ({grant.valid_from})",
            "valid_to",
        ),
        (
            grant.personal_data and grant.role is not Role.MONITOR,
            "only a monitor grant can add personal data; sponsors see coded data only",
            "personal_data",
        ),
    ]
    return [Problem(message, field=field) for failed, message, field in checks if failed]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        # A dataclass is always truthy; `if authorize(...)` must not allow a denied request.
        return self.allowed


def authorize(
    grants: Iterable[Grant], action: Action | str, study: str | None, site: str | None, today: date
) -> Decision:
    """May the holder of `grants` do `action` on `study` (None: system-wide) at `site` (None: the
    whole study)? Allowed when one grant in force covers it; otherwise every grant's reason."""
    action = Action(action)  # an unknown action is a programming error, not a denial
    if site is not None and study is None:
        raise ValueError(f"site {site!r} was given without its study")
    grants = _of_one_user(grants)
    reasons = []
    for grant in grants:
        refusal = _refusal(grant, action, study, site, today)
        if refusal is None:
            return Decision(True, f"allowed as {grant.describe()}")
        reasons.append(f"{grant.describe()}: {refusal}")
    return Decision(False, "; ".join(reasons) or "no grant")


def _of_one_user(grants: Iterable[Grant]) -> list[Grant]:
    # Mixing users' grants would let one person act under another's; refuse loudly.
    grants = list(grants)
    if len({g.user_id for g in grants}) > 1:
        raise ValueError("grants of more than one user were given for one decision")
    return grants


def _permits(grant: Grant, action: Action) -> bool:
    return action in ROLE_PERMISSIONS[grant.role] or (action is Action.VIEW_PERSONAL_DATA and grant.personal_data)


def _refusal(grant: Grant, action: Action, study: str | None, site: str | None, today: date) -> str | None:
    if not _permits(grant, action):
        return f"a {grant.role} may not {action}"
    if grant.study is not None and grant.study != study:
        return f"the grant does not cover {_scope(study, None)}"
    if grant.site is not None and grant.site != site:
        return f"the grant does not cover {_scope(study, site)}"
    if today < grant.valid_from:
        return f"the grant starts on {grant.valid_from}"
    if grant.valid_to is not None and today > grant.valid_to:
        return f"the grant ended on {grant.valid_to}"
    return None


def _scope(study: str | None, site: str | None) -> str:
    if study is None:
        return "every study"
    return f"{study} at site {site}" if site is not None else f"all sites of {study}"


@dataclass(frozen=True, slots=True)
class SiteScope:
    all_sites: bool
    sites: frozenset[str] = frozenset()

    def includes(self, site: str) -> bool:
        return self.all_sites or site in self.sites


def visible_sites(grants: Iterable[Grant], action: Action | str, study: str, today: date) -> SiteScope:
    """Which sites of `study` a listing for `action` may show, e.g. a worklist across sites."""
    action = Action(action)
    covering = [
        g for g in _of_one_user(grants) if _permits(g, action) and g.in_force(today) and g.study in (None, study)
    ]
    if any(g.site is None for g in covering):
        return SiteScope(all_sites=True)
    return SiteScope(all_sites=False, sites=frozenset(g.site for g in covering if g.site is not None))


class Blinding(StrEnum):
    """A protocol's `blinding:`: who may know the arm a participant is in."""

    OPEN = "open"  # open-label: everyone who sees the participant sees the arm
    SINGLE = "single"  # participants are blinded; trialcoord hides the arm as for double
    DOUBLE = "double"  # participants, site staff, sponsor and monitors are blinded

    @property
    def blinded(self) -> bool:
        return self is not Blinding.OPEN


def may_view_allocation(
    grants: Iterable[Grant], blinding: Blinding | str, study: str, site: str | None, today: date
) -> bool:
    """May the holder of `grants` see which arm a participant of `study` at `site` (None: every site of the
    study, as a study-wide listing or a sponsor's package needs) is in? Always in an open-label study; in a
    blinded one only under a grant in force with `view_allocation` that covers the site."""
    if not Blinding(blinding).blinded:
        return True
    return bool(authorize(grants, Action.VIEW_ALLOCATION, study, site, today))


def allocation_sites(grants: Iterable[Grant], blinding: Blinding | str, study: str, today: date) -> SiteScope:
    """The sites of `study` whose participants' arms the holder of `grants` may see (every site when open-label)."""
    if not Blinding(blinding).blinded:
        return SiteScope(all_sites=True)
    return visible_sites(grants, Action.VIEW_ALLOCATION, study, today)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person behind a request, with the grants they hold (revoked ones excluded)."""

    user_id: str
    printed_name: str
    grants: tuple[Grant, ...]
    session_id: int  # of a FEED_VIEWER: the calendar feed's id
    kind: str
    csrf_token: str


FEED_VIEWER = "calendar_feed"  # a Viewer's kind when a calendar feed's address stands for its owner


@dataclass(frozen=True, slots=True)
class Resolution:
    viewer: Viewer | None
    why: str = ""  # when None: 'missing', 'unknown', 'lapsed', 'expired'
