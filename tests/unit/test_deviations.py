"""Deviation detection and reconciliation (groundwork): each rule at its boundaries, one record per
(participant, visit occurrence, rule), resolution by data correction, approved window extensions."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.unit.builders import protocol, visit
from trialcoord.deviations.rules.deviations import (
    DEFAULTS,
    Classification,
    ClassificationDefaults,
    Finding,
    Kept,
    Rule,
    State,
    Threshold,
    WindowException,
    detect,
    reconcile,
)
from trialcoord.documents.rules.consent import ConsentDeviationCandidate, ConsentRule
from trialcoord.scheduling.rules.schedule import evaluate

DAY = timedelta(days=1)
RANDOMIZED = date(2024, 3, 4)
PROTOCOL = protocol(visit("SCR", offset="-7d", early="7d", late="6d"), visit("V2", offset="2w", early="3d", late="3d"))
V2_EARLIEST, V2_LATEST = date(2024, 3, 15), date(2024, 3, 21)  # the contract's worked example
AS_OF = date(2024, 6, 1)


def run(actuals: dict, as_of: date = AS_OF, **kw) -> list[Finding]:
    rows = evaluate(PROTOCOL, {"randomization": RANDOMIZED}, actuals, as_of)
    return detect("1001", rows, screening={"SCR"}, **kw)


def rules(findings: list[Finding], visit_code: str) -> list[tuple[str, int]]:
    return [(str(f.rule), f.days_outside) for f in findings if f.visit == visit_code]


SCR_DONE = {"SCR": date(2024, 2, 26)}


@pytest.mark.parametrize(
    "actual, expected",
    [
        (V2_EARLIEST - DAY, [("visit_early", -1)]),
        (V2_EARLIEST, []),
        (V2_EARLIEST + DAY, []),
        (V2_LATEST - DAY, []),
        (V2_LATEST, []),
        (V2_LATEST + DAY, [("visit_late", 1)]),
    ],
)
def test_early_and_late_at_the_day_before_on_and_after_each_bound(actual, expected):
    assert rules(run({**SCR_DONE, "V2": actual}), "V2") == expected


@pytest.mark.parametrize("as_of, expected", [(V2_LATEST, []), (V2_LATEST + DAY, [("visit_missed", 0)])])
def test_missed_once_the_window_has_closed(as_of, expected):
    assert rules(run(SCR_DONE, as_of=as_of), "V2") == expected


@pytest.mark.parametrize(
    "actual, expected",
    [
        (date(2024, 2, 18), [("screening_out_of_window", -1)]),
        (date(2024, 2, 19), []),
        (date(2024, 3, 3), []),
        (date(2024, 3, 4), [("screening_out_of_window", 1)]),
    ],
)
def test_screening_outside_its_window_is_its_own_rule(actual, expected):
    assert rules(run({"SCR": actual, "V2": date(2024, 3, 18)}), "SCR") == expected


@pytest.mark.parametrize(
    "actual, found", [(date(2024, 3, 19), False), (date(2024, 3, 20), False), (date(2024, 3, 21), True)]
)
def test_a_visit_after_collection_stopped(actual, found):
    findings = run({**SCR_DONE, "V2": actual}, collection_stopped_on=date(2024, 3, 20))
    assert (("visit_after_ending_event", 0) in rules(findings, "V2")) is found


def test_consent_candidates_become_consent_deviations():
    candidates = [
        ConsentDeviationCandidate("1001", "SCR", date(2024, 2, 26), ConsentRule.BEFORE_CONSENT, None),
        ConsentDeviationCandidate(
            "1001",
            "V2",
            date(2024, 3, 18),
            ConsentRule.RECONSENT_NOT_OBTAINED,
            date(2024, 2, 20),
            date(2024, 3, 1),
            "1.0",
            "2.0",
        ),
    ]
    findings = run({**SCR_DONE, "V2": date(2024, 3, 18)}, consent=candidates)
    assert [(f.visit, str(f.rule), str(f.category)) for f in findings] == [
        ("SCR", "visit_before_consent", "informed consent"),
        ("V2", "visit_under_superseded_consent", "informed consent"),
    ]
    assert all(DEFAULTS.classify(f) is Classification.IMPORTANT for f in findings)


@pytest.mark.parametrize(
    "approved_on, extension, prevented",
    [
        (date(2024, 3, 20), 2, True),  # approved before the visit, covers the 2 days
        (date(2024, 3, 20), 1, False),  # does not cover them
        (date(2024, 3, 23), 2, True),  # approved on the visit day: before it took place
        (date(2024, 3, 24), 2, False),  # approved after the visit: a deviation all the same
    ],
)
def test_an_approved_window_extension_prevents_the_deviation_only_if_approved_before(approved_on, extension, prevented):
    late_by_two = {**SCR_DONE, "V2": V2_LATEST + 2 * DAY}
    exception = WindowException("1001", "V2", 0, extension, approved_on)
    assert (rules(run(late_by_two, exceptions=[exception]), "V2") == []) is prevented


@pytest.mark.parametrize("days, expected", [(7, Classification.NON_IMPORTANT), (8, Classification.IMPORTANT)])
def test_a_threshold_makes_more_than_n_days_out_of_window_important(days, expected):
    defaults = ClassificationDefaults({}, {Rule.VISIT_LATE: (Threshold(7, Classification.IMPORTANT),)})
    finding = Finding("1001", "V2", 1, Rule.VISIT_LATE, date(2024, 3, 30), days)
    assert defaults.classify(finding) is expected


def test_one_record_per_participant_visit_and_rule_however_often_detection_runs():
    findings = run({**SCR_DONE, "V2": V2_LATEST + 3 * DAY})
    first = reconcile([], findings)
    assert [f.rule for f in first.created] == [Rule.VISIT_LATE]
    kept = [Kept(f) for f in first.created]
    again = reconcile(kept, run({**SCR_DONE, "V2": V2_LATEST + 3 * DAY}))
    assert again == reconcile(kept, findings) and not (again.created or again.updated or again.resolved)


def test_a_corrected_date_resolves_the_record_and_a_new_fact_updates_it():
    kept = [Kept(f) for f in reconcile([], run({**SCR_DONE, "V2": V2_LATEST + 3 * DAY})).created]
    later = reconcile(kept, run({**SCR_DONE, "V2": V2_LATEST + 5 * DAY}))
    assert [k.finding.days_outside for k in later.updated] == [5] and not later.created
    corrected = reconcile(kept, run({**SCR_DONE, "V2": V2_LATEST}))
    assert [k.state for k in corrected.resolved] == [State.RESOLVED_BY_CORRECTION] and not corrected.created
    resolved = list(corrected.resolved)
    assert reconcile(resolved, run({**SCR_DONE, "V2": V2_LATEST})) == reconcile(resolved, [])  # stays resolved
    back = reconcile(resolved, run({**SCR_DONE, "V2": V2_LATEST + 3 * DAY}))
    assert [k.state for k in back.reopened] == [State.DETECTED]


def test_any_approved_exception_recorded_in_time_prevents_whatever_else_was_recorded():
    late = {**SCR_DONE, "V2": V2_LATEST + 2 * DAY}
    in_time = WindowException("1001", "V2", 0, 5, date(2024, 3, 20), recorded_on=date(2024, 3, 20))
    too_late = WindowException("1001", "V2", 0, 5, date(2024, 3, 20), recorded_on=date(2024, 3, 30))
    assert rules(run(late, exceptions=[in_time, too_late]), "V2") == []
    assert rules(run(late, exceptions=[too_late, in_time]), "V2") == []


def test_once_collection_stopped_even_an_unscheduled_visit_is_a_deviation():
    findings = run(
        {**SCR_DONE, "V2": date(2024, 3, 18), "AE": date(2024, 3, 21)}, collection_stopped_on=date(2024, 3, 20)
    )
    assert rules(findings, "AE") == [("visit_after_ending_event", 0)]
    assert rules(run({**SCR_DONE, "AE": date(2024, 3, 21)}), "AE") == []  # no such event: nothing


def test_a_consent_deviation_carries_its_visits_real_occurrence():
    candidate = ConsentDeviationCandidate("1001", "C3D1", date(2024, 5, 1), ConsentRule.BEFORE_CONSENT, None)
    [finding] = detect("1001", [], consent=[candidate], occurrences={"C3D1": 3})
    assert (finding.visit, finding.occurrence) == ("C3D1", 3)


def test_the_detail_says_how_far_outside_in_plain_words():
    [one] = [f for f in run({**SCR_DONE, "V2": V2_LATEST + DAY}) if f.visit == "V2"]
    [two] = [f for f in run({**SCR_DONE, "V2": V2_EARLIEST - 2 * DAY}) if f.visit == "V2"]
    assert (one.detail, two.detail) == ("1 day after the window", "2 days before the window")


def test_an_exception_recorded_after_the_visit_does_not_prevent_it():
    late = {**SCR_DONE, "V2": V2_LATEST + 2 * DAY}
    before = WindowException("1001", "V2", 0, 5, date(2024, 3, 20), recorded_on=date(2024, 3, 20))
    after = WindowException("1001", "V2", 0, 5, date(2024, 3, 20), recorded_on=date(2024, 3, 24))
    assert rules(run(late, exceptions=[before]), "V2") == []
    assert rules(run(late, exceptions=[after]), "V2") == [("visit_late", 2)]


def test_an_optional_visit_marked_missed_is_not_a_deviation():
    rows = evaluate(PROTOCOL, {"randomization": RANDOMIZED}, SCR_DONE, AS_OF)
    v2 = next(r for r in rows if r.visit == "V2")
    assert [f.rule for f in detect("1001", [v2])] == ["visit_missed"]
    assert detect("1001", [v2._replace(optional=True)]) == []
