"""The compliance report's pure figures: deviations per site from DV and DM (shared with the verifier), a visit's
state as of a day, capped tables and months made years for safe-harbor."""

from __future__ import annotations

from datetime import date

import pytest

from trialcoord.exports.rules.compliance import (
    adherence_by_visit,
    adherence_counts,
    by_year,
    capped,
    deviations_per_site,
    visit_state,
)
from trialcoord.kernel.problems import InvalidInput

DM = [
    {"USUBJID": "S-101-001", "SITEID": "101"},
    {"USUBJID": "S-102-001", "SITEID": "102"},
    {"USUBJID": "S-103-001", "SITEID": "103"},
]


def test_deviations_are_counted_at_the_site_dm_gives_their_subject_every_dm_site_listed():
    dv = [{"USUBJID": "S-102-001"}, {"USUBJID": "S-101-001"}, {"USUBJID": "S-102-001"}]
    assert deviations_per_site(dv, DM) == {"101": 1, "102": 2, "103": 0}
    assert list(deviations_per_site([], DM)) == ["101", "102", "103"]


def test_a_dv_subject_dm_lacks_is_named_by_its_row():
    with pytest.raises(InvalidInput) as raised:
        deviations_per_site([{"USUBJID": "S-101-001"}, {"USUBJID": "S-999-001"}], DM)
    assert "dataset DV, row 2: USUBJID S-999-001 is not in DM" in str(raised.value)


AS_OF = date(2024, 6, 1)


@pytest.mark.parametrize(
    ("status", "actual", "missed_reason", "latest", "optional", "state"),
    [
        ("late", date(2024, 5, 1), None, date(2024, 4, 20), False, "late"),  # done by then: its status
        ("on_time", date(2024, 6, 2), None, date(2024, 5, 30), False, "missed"),  # done after: its window had closed
        ("on_time", date(2024, 6, 2), None, date(2024, 6, 5), False, "open"),
        ("missed", None, "withdrew", None, False, "missed"),  # marked missed
        ("upcoming", None, None, date(2024, 5, 31), False, "missed"),  # window closed before the day
        ("upcoming", None, None, date(2024, 5, 31), True, "open"),  # optional: never missed
        ("upcoming", None, None, date(2024, 6, 1), False, "open"),  # closes that day: still open
    ],
)
def test_a_visit_state_as_of_a_day_counts_as_the_site_summary_does(
    status, actual, missed_reason, latest, optional, state
):
    assert visit_state(status, actual, missed_reason, latest, optional, AS_OF) == state


def test_adherence_counts_only_due_states():
    assert adherence_counts(["on_time", "late", "open", "late", "missed", "upcoming"]) == {
        "on_time": 1,
        "early": 0,
        "late": 2,
        "missed": 1,
    }


def group(definition, number, status, n, done=0, marked=0, closed=0, optional=0):
    return dict(
        definition=definition,
        number=number,
        status=status,
        n=n,
        done=done,
        marked=marked,
        closed=closed,
        optional=optional,
    )


def test_visits_counted_in_groups_are_states_per_visit_in_visit_number_order():
    groups = [
        group("V2", 3.0, "late", 4, done=1),
        group("V2", 3.0, "on_time", 1, done=True),  # PostgreSQL's booleans as SQLite's 0 and 1
        group("V2", 3.0, "upcoming", 2, closed=1),  # window closed: missed
        group("V2", 3.0, "upcoming", 5, closed=1, optional=1),  # optional: open, not counted
        group("V1", 2.0, "missed", 1, marked=1),
        group("V1", 2.0, "on_time", 3, done=1),
        group("FU", 9.001, "early", 1, done=1),
        group("FU", 9.0, "on_time", 1, done=1),  # a repeat: counted under its definition, at its first number
        group("SCR", 0.0, "on_time", 2, done=1),  # numbered 0 (or none): last, as the per-visit count ordered it
        group("UNS1", None, "unscheduled", 3, done=1),  # no adherence state: no row
        group("V3", 4.0, "upcoming", 6),  # open only: no row
    ]
    assert adherence_by_visit(groups) == [
        ["V1", {"on_time": 3, "early": 0, "late": 0, "missed": 1}],
        ["V2", {"on_time": 1, "early": 0, "late": 4, "missed": 2}],
        ["FU", {"on_time": 1, "early": 1, "late": 0, "missed": 0}],
        ["SCR", {"on_time": 2, "early": 0, "late": 0, "missed": 0}],
    ]
    assert adherence_by_visit([]) == []


def test_a_capped_table_sums_the_rest_into_its_last_row():
    rows = [(f"V{i}", {"on_time": i}) for i in range(1, 6)]
    assert capped(rows, 5) == rows
    assert capped(rows, 3, "other visits") == [
        ("V1", {"on_time": 1}),
        ("V2", {"on_time": 2}),
        ("other visits (3)", {"on_time": 12}),
    ]


def test_months_become_years_for_safe_harbor_earlier_first():
    periods = ["earlier", "2023-11", "2023-12", "2024-01"]
    assert by_year(periods, {"visit": [5, 1, 2, 3], "consent": [0, 0, 1, 1]}) == (
        ["earlier", "2023", "2024"],
        {"visit": [5, 3, 3], "consent": [0, 1, 1]},
    )
    assert by_year([], {}) == ([], {})
