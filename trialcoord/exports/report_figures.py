"""The compliance report's figures, gathered through the features' use cases as of the package's day: enrolment,
visit adherence by visit, deviations by category, classification and state, time to closure, consent coverage
and the re-consent backlog, binder completeness; per site and for the study. Deviation counts per site come from
the DV and DM datasets handed in (`deviations_per_site`), so the report agrees with the datasets by construction.

The result is a JSON document (attached to the PDF as report-figures.json): aggregates only, no participant's ID,
arm or date. Per-arm counts appear only when arms are shown; otherwise the visits some arms only have are left out
of the visit figures (per visit and the totals: a count of them per site is a count of a blinded arm there). The
consent figures count what was in effect and signed by the as-of day. In safe-harbor mode the deviations' months
become years. Visits are counted by the database (one aggregate read per study: a study of a million visits is never
held at once, nor read once per site); each site's other figures are gathered one site at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import date
from typing import Any, cast

from trialcoord.deviations.queue import listing
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.report_support import require_sites, rows_as_of
from trialcoord.deviations.rules import deviation_trends
from trialcoord.deviations.site_summary import SiteFigures, site_summary
from trialcoord.deviations.trends import CLOSURE_BINS, trends_of
from trialcoord.documents import binder_checklist, consent_checks
from trialcoord.documents.consent_records import versions_and_consents
from trialcoord.documents.rules.documents import Reader
from trialcoord.exports.rules import domains
from trialcoord.exports.rules.compliance import (
    ADHERENCE,
    adherence_by_visit,
    by_year,
    deviations_per_site,
    on_time_rate,
)
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.rules.sdtm import Dataset
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.problems import invalid
from trialcoord.scheduling import lookups, participants, protocols, sites
from trialcoord.scheduling.rules.protocol import Protocol

Progress = Callable[[float, str], None]
BINDER_STATES = ("present", "missing", "expiring", "expired")


def rows_of(data: Dataset) -> list[dict[str, object]]:
    return [dict(zip(data.names, row)) for row in data.rows]


def dataset_counts(datasets: Sequence[Dataset]) -> dict[str, int]:
    """Deviations per site from the DV and DM datasets among `datasets` (both must be there)."""
    named = {d.name: d for d in datasets}
    for needed in ("DV", "DM"):
        if needed not in named:
            raise invalid(f"the report needs the {needed} dataset to count deviations per site", field="datasets")
    return deviations_per_site(rows_of(named["DV"]), rows_of(named["DM"]))


async def gather(
    scope: Scope, datasets: Sequence[Dataset], *, arms_shown: bool, progress: Progress | None = None
) -> dict[str, Any]:
    """Every figure of the report, per site (in the study's order) and for the study."""
    say = progress or (lambda _fraction, _message: None)
    study, as_of = scope.study, scope.as_of
    chosen = await require_sites(study, scope.sites or [s.code for s in await sites.list_sites(study)])
    per_dataset = dataset_counts(datasets)
    rows = rows_as_of(await listing(study, sites=chosen), as_of)
    summary = await site_summary(study, chosen, as_of, personal=False, rows=rows)
    consents = await consents_as_of(study, as_of)
    hidden = frozenset() if arms_shown else domains.arm_limited_definitions(await _versions(study))
    adherence = await adherence_per_site(study, chosen, as_of, leave_out=hidden)
    say(0.1, "deviations, enrolment, visits and consents read")
    per_site = []
    for number, (code, figures) in enumerate(zip(chosen, summary.sites), start=1):
        people = [p for p in await participants.list_participants(study, code) if p.enrolled_on <= as_of]
        site_rows = [r for r in rows if r.site == code]
        by_visit = adherence.get(code, [])
        per_site.append(
            {
                "site": code,
                **_enrolment(figures, people, arms_shown),
                "visits": _visits(figures, by_visit) if arms_shown else visit_totals(by_visit),
                "by_visit": by_visit,
                "deviations": per_dataset.get(code, 0),
                "deviation_states": _deviation_states(site_rows),
                "closure": deviation_trends.closure_summary(_closure_days(site_rows)),
                "consent": _consent(code, consents, {p.subject_id for p in people}, figures.reconsent),
                "binder": await _binder(study, code, scope),
            }
        )
        say(0.1 + 0.4 * number / len(chosen), f"site {code} gathered")
    trend = trends_of(study, rows)
    periods, series = trend.months, trend.by_month_and_category
    if scope.privacy is Privacy.SAFE_HARBOR:
        periods, series = by_year(periods, series)
    return {
        "study": study,
        "as_of": as_of.isoformat(),
        "privacy": str(scope.privacy),
        "arms_shown": arms_shown,
        "sites": per_site,
        "deviations": {"per_site": per_dataset, "study": sum(per_dataset.values())},
        "trend": {
            "periods": periods,
            "series": series,
            "unit": "year" if scope.privacy is Privacy.SAFE_HARBOR else "month",
        },
        "closure_days": _closure_bins(trend.days_to_closure),
        "study_totals": study_totals(per_site, arms_shown, closure=trend.closure),
    }


def study_totals(per_site: Sequence[Mapping[str, Any]], arms_shown: bool, *, closure: Mapping[str, Any]) -> dict:
    """The sites' figures summed (rates over the sums); `closure` as the study's trends give it (a median does
    not sum)."""
    visits: Counter[str] = Counter()
    by_visit: dict[str, Counter[str]] = {}
    order: dict[str, int] = {}
    states: dict[str, Counter[str]] = {"by_state": Counter(), "by_classification": Counter()}
    categories: dict[str, Counter[str]] = {}
    consent: Counter[str] = Counter()
    binder: Counter[str] = Counter()
    people: Counter[str] = Counter()
    arms: Counter[str] = Counter()
    for site in per_site:
        people.update({k: site[k] for k in ("participants", "active", "ended")})
        arms.update(site.get("arms", {}))
        visits.update({k: v for k, v in site["visits"].items() if isinstance(v, int)})
        for label, counts in site["by_visit"]:
            order.setdefault(label, len(order))
            by_visit.setdefault(label, Counter()).update(counts)
        for key in states:
            states[key].update(site["deviation_states"][key])
        for category, per in site["deviation_states"]["by_category"].items():
            categories.setdefault(category, Counter()).update(per)
        consent.update({k: site["consent"][k] for k in ("participants", "current", "unknown", "reconsent")})
        binder.update({k: site["binder"][k] for k in BINDER_STATES})
    totals: dict[str, Any] = {
        **people,
        "visits": {**visits, "on_time_rate": on_time_rate(visits), "completion_rate": _completion(visits)},
        "by_visit": [[label, dict(by_visit[label])] for label in order],
        "deviation_states": {
            "open": sum(site["deviation_states"]["open"] for site in per_site),
            **{key: dict(sorted(counter.items())) for key, counter in states.items()},
            "by_category": {c: dict(sorted(per.items())) for c, per in sorted(categories.items())},
        },
        "closure": dict(closure),
        "consent": dict(consent),
        "binder": dict(binder),
    }
    if arms_shown:
        totals["arms"] = dict(sorted(arms.items()))
    return totals


def _enrolment(figures: SiteFigures, people: Sequence[participants.ParticipantSummary], arms_shown: bool) -> dict:
    found: dict[str, Any] = {"participants": figures.participants, "active": figures.active, "ended": figures.ended}
    if arms_shown:  # never computed otherwise: a blinded report cannot leak what it never read
        found["arms"] = dict(sorted(Counter(p.arm or "not assigned" for p in people).items()))
    return found


def _visits(figures: SiteFigures, by_visit: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The site summary's visit figures, with early and late summed from the visits' own counts."""
    return {
        "due": figures.visits_due,
        "done": figures.visits_done,
        "on_time": figures.visits_on_time,
        "early": sum(counts["early"] for _, counts in by_visit),
        "late": sum(counts["late"] for _, counts in by_visit),
        "missed": figures.visits_missed,
        "on_time_rate": figures.on_time_rate,
        "completion_rate": figures.completion_rate,
    }


def visit_totals(by_visit: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """`_visits`' figures summed from the visits' own counts: a blinded report's, whose per-visit counts leave
    out the visits some arms only have (the site summary counts them: their number per site is that of the
    participants there in those arms)."""
    counts: Counter[str] = Counter()
    for _, per in by_visit:
        counts.update(per)
    summed = {state: counts[state] for state in ADHERENCE}
    done = summed["on_time"] + summed["early"] + summed["late"]
    found = {"due": done + summed["missed"], "done": done, **summed}
    return {**found, "on_time_rate": on_time_rate(found), "completion_rate": _completion(found)}


def _completion(visits: Mapping[str, int]) -> float | None:
    return round(visits["done"] / visits["due"], 4) if visits.get("due") else None


async def _versions(study: str) -> list[Protocol]:
    return [await protocols.get_protocol(study, v.version) for v in await protocols.list_protocol_versions(study)]


async def adherence_per_site(
    study: str, sites: Sequence[str], as_of: date, *, leave_out: Collection[str] = ()
) -> dict[str, list[list[Any]]]:
    """Per site (those with visits due), (visit, on time / early / late / missed) of its participants enrolled by
    `as_of`, in visit-number order: one aggregate read of the study (`lookups.visit_groups`), never a row per
    visit, counted by `adherence_by_visit`; the definitions `leave_out` names are not counted."""
    groups: dict[str, list[dict[str, Any]]] = {}
    study_id = (await protocols.require_study(study)).id
    for row in await lookups.visit_groups(study_id, sites, as_of):
        if row["definition"] not in leave_out:
            groups.setdefault(row["site"], []).append(row)
    return {site: adherence_by_visit(rows) for site, rows in groups.items()}


def _deviation_states(rows: Sequence[Deviation]) -> dict[str, Any]:
    """Every deviation recorded by the as-of day (those judged not to be one too): open, by state, by
    classification, and by category and classification."""
    categories: dict[str, Counter[str]] = {}
    for row in rows:
        categories.setdefault(row.category, Counter())[row.classification] += 1
    return {
        "open": sum(r.open for r in rows),
        "by_state": dict(sorted(Counter(r.state for r in rows).items())),
        "by_classification": dict(sorted(Counter(r.classification for r in rows).items())),
        "by_category": {c: dict(sorted(per.items())) for c, per in sorted(categories.items())},
    }


def _closure_days(rows: Sequence[Deviation]) -> list[int]:
    return deviation_trends.days_to_closure([r for r in rows if deviation_trends.stands(r)])


def _closure_bins(days: Sequence[int]) -> list[list[Any]]:
    """Closed deviations per closure-time bin ("0-7", "8-30", ... "91+" days), as the trends report bins them."""
    found: list[list[Any]] = []
    for lo, hi in cast(list[tuple[int, int | None]], CLOSURE_BINS):
        label = f"{lo}+" if hi is None else f"{lo}-{hi - 1}"
        found.append([label, sum(1 for d in days if lo <= d and (hi is None or d < hi))])
    return found


async def consents_as_of(study: str, as_of: date) -> consent_checks.ConsentsSigned:
    """`consent_checks.versions_and_signatures` as the as-of day saw it: the versions in effect by then, the
    signatures signed by then (a later one would count a consent the package's day did not have)."""
    async with read():
        versions, signed = await versions_and_consents(study, active_only=False)
    labels: dict[str, set[str]] = {}
    for c in signed:
        label = c.version.label if c.version is not None else c.label
        if label and c.signed_on <= as_of:
            labels.setdefault(c.subject_id, set()).add(label)
    return consent_checks.ConsentsSigned([v for v in versions if v.effective_on <= as_of], labels)


def _consent(site: str, consents: consent_checks.ConsentsSigned, enrolled: set[str], reconsent: int) -> dict[str, Any]:
    """The site's consent versions with how many of its participants signed each; those current (signed the
    newest version of a language in force by the as-of day: those not awaiting re-consent among those with a
    known version), those with no known version, and the re-consent backlog."""
    mine = sorted((v for v in consents.versions if v.site == site), key=lambda v: (v.language, v.effective_on, v.label))
    signed = {s: consents.labels.get(s, set()) for s in enrolled}
    known = sum(1 for labels in signed.values() if labels)
    return {
        "versions": [[v.label, v.language, sum(v.label in labels for labels in signed.values())] for v in mine],
        "participants": len(enrolled),
        "current": max(known - reconsent, 0),
        "unknown": len(enrolled) - known,
        "reconsent": reconsent,
    }


async def _binder(study: str, site: str, scope: Scope) -> dict[str, Any]:
    """The site's checklist as a sponsor reads it (released versions only): counts by state, and each gap
    (missing, expired or expiring) by artifact, never by person."""
    items = await binder_checklist.site_checklist(study, site, scope.as_of, Reader((), scope.as_of))
    counts = Counter(i.state for i in items)
    gaps = sorted(
        Counter((f"{i.artifact.number} {i.artifact.name}", i.state) for i in items if i.state != "present").items()
    )
    return {
        **{state: counts[state] for state in BINDER_STATES},
        "gaps": [[artifact, state, n] for (artifact, state), n in gaps],
    }
