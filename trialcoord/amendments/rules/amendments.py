"""What a new protocol version would change for a participant, before it takes effect (issue 11, section 2).

Pure: it compares the participant's schedule as it is (`current`) with the schedule once the new version
applies from its effective date (`proposed`, judged by `schedule.judge`), both as of the same day. Nothing
here reads the clock or stores anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from trialcoord.deviations.rules.deviations import Finding, WindowException, detect
from trialcoord.documents.rules.consent import ConsentVersion
from trialcoord.scheduling.rules.durations import Duration
from trialcoord.scheduling.rules.protocol import Event, Protocol, VisitDefinition, Window
from trialcoord.scheduling.rules.schedule import NOT_APPLICABLE, UNSCHEDULED, VisitOccurrence

REQUIRED, NOT_REQUIRED, NO_VERSION = "required", "not_required", "no_consent_version"


@dataclass(frozen=True, slots=True)
class VisitChange:
    """A visit whose target or window moves, appears (was not expected, now is) or disappears."""

    visit: str
    name: str
    kind: str  # "moves", "appears" or "disappears"
    old: tuple[date | None, date | None, date | None]  # target, earliest, latest; None when not expected
    new: tuple[date | None, date | None, date | None]


@dataclass(frozen=True, slots=True)
class Reconsent:
    """Whether the participant must re-consent before the next visit under the new version: `required` (on one
    of `versions`), `not_required` (already signed one), or `no_consent_version` (none registered for it yet
    at the participant's site, so nobody can tell)."""

    status: str
    versions: tuple[str, ...] = ()  # labels of the consent versions written for the new protocol version
    before: tuple[str, date] | None = None  # the next visit under the new version, and its target


@dataclass(frozen=True, slots=True)
class ParticipantImpact:
    subject_id: str
    site: str
    changes: tuple[VisitChange, ...]
    resolved: tuple[Finding, ...]  # deviations the new version makes go away
    created: tuple[Finding, ...]  # and those it raises
    reconsent: Reconsent

    @property
    def affected(self) -> bool:
        return bool(self.changes or self.resolved or self.created) or self.reconsent.status == REQUIRED


def participant_impact(
    subject_id: str,
    site: str,
    current: Sequence[VisitOccurrence],
    proposed: Sequence[VisitOccurrence],
    as_of: date,
    reconsent: Reconsent,
    *,
    screening: Iterable[str] = (),
    stopped_now: date | None = None,
    stopped_then: date | None = None,
    exceptions: Iterable[WindowException] = (),
) -> ParticipantImpact:
    """The visits that move, appear or disappear (of those not done yet whose window is still open, or opens
    later, as of `as_of`) and the deviations resolved or created. `stopped_now`/`stopped_then`: the date
    collection stopped under the current and under the new version (see `deviations.detect`)."""
    before, after = {row.visit: row for row in current}, {row.visit: row for row in proposed}
    # a row the change leaves as it is changes nothing and raises or resolves nothing (the rules are per row
    # once the collection stop is the same): most rows of a participant, so only the others are compared
    same = {code for code, row in before.items() if after.get(code) == row}
    changes = []
    for code in dict.fromkeys([*before, *after]):
        if code in same:
            continue
        change = _visit_change(code, before.get(code), after.get(code), as_of)
        if change is not None:
            changes.append(change)
    if stopped_now == stopped_then:
        current = [row for row in current if row.visit not in same]
        proposed = [row for row in proposed if row.visit not in same]
    screening, exceptions = tuple(screening), tuple(exceptions)
    was = {
        f.key: f
        for f in detect(
            subject_id, current, screening=screening, collection_stopped_on=stopped_now, exceptions=exceptions
        )
    }
    will = {
        f.key: f
        for f in detect(
            subject_id, proposed, screening=screening, collection_stopped_on=stopped_then, exceptions=exceptions
        )
    }
    return ParticipantImpact(
        subject_id,
        site,
        tuple(changes),
        tuple(f for k, f in was.items() if k not in will),
        tuple(f for k, f in will.items() if k not in was),
        reconsent,
    )


_NOT_EXPECTED = (NOT_APPLICABLE, UNSCHEDULED)
_NO_WINDOW = (None, None, None)


def _expected(row: VisitOccurrence | None) -> bool:
    return row is not None and row.status not in _NOT_EXPECTED


def _visit_change(
    code: str, old: VisitOccurrence | None, new: VisitOccurrence | None, as_of: date
) -> VisitChange | None:
    row = new or old
    assert row is not None
    if row.actual is not None:
        return None  # done: what a version change does to it shows in the deviations
    was, will = _expected(old), _expected(new)
    before = (old.target, old.earliest, old.latest) if was else _NO_WINDOW  # type: ignore[union-attr]
    after = (new.target, new.earliest, new.latest) if will else _NO_WINDOW  # type: ignore[union-attr]
    if not ((was and (before[2] is None or before[2] >= as_of)) or (will and (after[2] is None or after[2] >= as_of))):
        return None  # closed under both: nothing left to plan
    if was and will:
        if before == after:
            return None
        kind = "moves"
    else:
        kind = "appears" if will else "disappears"
    return VisitChange(code, row.name, kind, before, after)


def reconsent_for(
    signed: Iterable[str], offered: Iterable[ConsentVersion], next_visit: tuple[str, date] | None
) -> Reconsent:
    """`signed`: labels of the consent versions the participant signed at their site; `offered`: the site's
    consent versions written for the new protocol version."""
    labels = tuple(sorted({version.label for version in offered}))
    if not labels:
        return Reconsent(NO_VERSION, (), next_visit)
    if set(signed) & set(labels):
        return Reconsent(NOT_REQUIRED, labels, next_visit)
    return Reconsent(REQUIRED, labels, next_visit)


def next_visit(rows: Iterable[VisitOccurrence], from_day: date) -> tuple[str, date] | None:
    """The first expected visit not done whose target is on or after `from_day`."""
    upcoming = [
        row
        for row in rows
        if row.actual is None and row.target is not None and row.target >= from_day and row.status not in _NOT_EXPECTED
    ]
    first = min(upcoming, key=lambda row: (row.target, row.visit), default=None)
    return (first.visit, first.target) if first is not None and first.target is not None else None


# --- what the versions themselves differ in (the IRB summary) ---


def protocol_differences(old: Protocol, new: Protocol) -> list[str]:
    """One line per visit the new version adds or removes, or defines differently, in the new file's order."""
    lines = []
    for visit in new.visits:
        was = old.visits_by_code.get(visit.code)
        if was is None:
            lines.append(f"{visit.code} {visit.name} – added, {_timing(visit)}")
            continue
        changed = [f"{label} {before} → {after}" for label, before, after in _fields(was, visit) if before != after]
        if changed:
            lines.append(f"{visit.code} {visit.name} – " + "; ".join(changed))
    lines += [f"{visit.code} {visit.name} – removed" for visit in old.visits if visit.code not in new.visits_by_code]
    for name, event in new.events.items():
        previous = old.events.get(name)
        if previous is None:
            lines.append(f"event {name} – added")
        elif previous != event:
            lines.append(f"event {name} – {_event(previous)} → {_event(event)}")
    return lines


def _side(duration: Duration | None) -> str:
    return "unbounded" if duration is None else str(duration)


def _window_text(window: Window) -> str:
    return f"-{_side(window.early)} / +{_side(window.late)}"


def _timing(visit: VisitDefinition) -> str:
    return f"{visit.offset} from {visit.reference_name}, window {_window_text(visit.window)}"


def _fields(old: VisitDefinition, new: VisitDefinition) -> list[tuple[str, str, str]]:
    def repeat(v: VisitDefinition) -> str:
        if v.repeat is None:
            return "none"
        return f"every {v.repeat.every}, {'open' if v.repeat.count is None else v.repeat.count}"

    def arms(v: VisitDefinition) -> str:
        return ", ".join(sorted(v.arms)) if v.arms is not None else "all"

    return [
        ("name", old.name, new.name),
        ("counted from", f"{old.reference_name} ({old.reference})", f"{new.reference_name} ({new.reference})"),
        ("offset", str(old.offset), str(new.offset)),
        ("window", _window_text(old.window), _window_text(new.window)),
        ("repeat", repeat(old), repeat(new)),
        ("arms", arms(old), arms(new)),
        ("only when", old.when or "always", new.when or "always"),
        ("optional", str(old.optional).lower(), str(new.optional).lower()),
        (
            "after the end",
            "expected" if old.after_end else "not applicable",
            "expected" if new.after_end else "not applicable",
        ),
    ]


def _event(event: Event) -> str:
    if not event.ends_schedule:
        return "does not end the schedule"
    return "ends the schedule" + (", collection stops" if event.stops_collection else "")
