"""Where each role works, what a grant that ended or has not begun says, and a list cut to its first rows with
how many there are in all (per study, for the "show all" links)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, TypeVar

from trialcoord.deviations.rules.deviation_review import State
from trialcoord.kernel.rules.access import Grant, Role

SHOWN = 10  # rows of a list on the home page; the rest are one "show all" link away
CLOSING_DAYS, MAX_CLOSING_DAYS = 7, 90  # windows closing within this many days (the page's `within`)
EXPIRING_DAYS = 30  # binder documents expiring within this many days
AWAITING_SITE = (State.DETECTED.value, State.REOPENED.value)  # the site's response is due
# Responded to by the site, taken into review, or classified and not yet closed: the monitor's turn.
AWAITING_REVIEW = (State.SITE_RESPONSE.value, State.UNDER_REVIEW.value, State.CLASSIFIED.value)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where one role works in one study: some of its sites, or every site (`sites` None)."""

    study: str
    sites: frozenset[str] | None

    def includes(self, site: str | None) -> bool:
        """A record of a site in scope; a study-level record (site None) is in every scope of its study."""
        return self.sites is None or site is None or site in self.sites


def scopes(grants: Iterable[Grant], role: Role, today: date) -> list[Scope]:
    """The studies where `role` is held today, by study code, with the sites it covers (administrators' grants
    for every study are not scopes: their home page is the installation's)."""
    sites: dict[str, set[str] | None] = {}
    for grant in grants:
        if grant.role is not role or grant.study is None or not grant.in_force(today):
            continue
        held = sites.setdefault(grant.study, set())
        if grant.site is None or held is None:
            sites[grant.study] = None
        else:
            held.add(grant.site)
    return [Scope(study, None if held is None else frozenset(held)) for study, held in sorted(sites.items())]


def joined(*groups: Sequence[Scope]) -> list[Scope]:
    """Scopes of several roles as one per study (every site wins over some)."""
    sites: dict[str, set[str] | None] = {}
    for scope in (scope for group in groups for scope in group):
        held = sites.setdefault(scope.study, set())
        if scope.sites is None or held is None:
            sites[scope.study] = None
        else:
            held.update(scope.sites)
    return [Scope(study, None if held is None else frozenset(held)) for study, held in sorted(sites.items())]


def administers(grants: Iterable[Grant], today: date) -> bool:
    return any(g.role is Role.ADMINISTRATOR and g.in_force(today) for g in grants)


@dataclass(frozen=True, slots=True)
class GrantNotice:
    """A grant that ended (`ended`) or has not begun, in a study where its holder has no grant in force."""

    role: str
    study: str
    on: date  # the last day it was in force, or its first
    ended: bool

    @property
    def text(self) -> str:
        if self.ended:
            return f"Your {self.role} grant at {self.study} ended on {self.on.isoformat()}."
        return f"Your {self.role} grant at {self.study} begins on {self.on.isoformat()}."


def grant_notices(grants: Iterable[Grant], today: date) -> list[GrantNotice]:
    """One notice per study and role whose grants have all ended (the latest end) or not begun (the earliest
    start), where no grant in force covers the study."""
    grants = list(grants)
    covered = {g.study for g in grants if g.in_force(today)}
    if None in covered:  # an administrator sees every study
        return []
    notices: dict[tuple[str, str], GrantNotice] = {}
    for g in grants:
        if g.study is None or g.study in covered:
            continue
        ended = g.valid_to is not None and g.valid_to < today
        notice = GrantNotice(str(g.role), g.study, g.valid_to if ended and g.valid_to else g.valid_from, ended)
        key = (notice.study, notice.role)
        kept = notices.get(key)
        if kept is None or _sooner(notice, kept):
            notices[key] = notice
    return sorted(notices.values(), key=lambda n: (n.study, n.role))


def _sooner(new: GrantNotice, kept: GrantNotice) -> bool:
    """A grant still to begin is news before one that ended; among ended ones the latest end, among the
    others the earliest start."""
    if new.ended != kept.ended:
        return not new.ended
    return new.on > kept.on if new.ended else new.on < kept.on


@dataclass(frozen=True, slots=True)
class InStudy(Generic[T]):
    """A row of a list that spans studies, with its study's code."""

    study: str
    row: T


@dataclass(frozen=True, slots=True)
class Listed(Generic[T]):
    """A list on the home page: its first rows, how many there are in all, and (of a list that spans studies)
    how many in each full list, for a "show all" link to each: by study code, or by "STUDY/SITE" where the full
    list is a site's."""

    rows: tuple[T, ...]
    total: int
    by_study: tuple[tuple[str, int], ...] = ()

    @property
    def more(self) -> bool:
        return self.total > len(self.rows)


def listed(
    rows: Iterable[InStudy[R]], key: Callable[[InStudy[R]], Any], totals: Mapping[str, int] | None = None
) -> Listed[InStudy[R]]:
    """`rows` of several studies in `key` order, cut to SHOWN; counted per study, unless `totals` says how many
    each full list has (the rows given being only the first of them)."""
    ordered = sorted(rows, key=key)
    counted: dict[str, int] = {}
    for row in ordered:
        counted[row.study] = counted.get(row.study, 0) + 1
    if totals is not None:
        counted = {study: n for study, n in totals.items() if n}
    return Listed(tuple(ordered[:SHOWN]), sum(counted.values()), tuple(sorted(counted.items())))


def first(rows: Iterable[T], key: Callable[[T], Any], total: int | None = None) -> Listed[T]:
    """`rows` in `key` order, cut to SHOWN; `total`: how many there are when `rows` are only the first."""
    ordered = sorted(rows, key=key)
    return Listed(tuple(ordered[:SHOWN]), len(ordered) if total is None else total)
