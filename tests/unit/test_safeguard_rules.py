"""The pure rules of issue 15: a version change is never for a day still to come, a move back to an earlier version
is a downgrade needing confirmation; a window extension's days and reason, and a request decided once."""

from __future__ import annotations

from datetime import date

import pytest

from trialcoord.amendments.rules.changes import check_confirmed, check_not_to_come, downgrades
from trialcoord.deviations.rules.window_extensions import check_decision, extension_problems
from trialcoord.kernel.problems import InvalidInput

ORDER = ["1.0", "1.1", "2.0"]  # oldest first


def test_a_day_still_to_come_is_refused_and_today_is_not():
    check_not_to_come(date(2026, 11, 2), date(2026, 11, 2))
    with pytest.raises(InvalidInput, match="still to come") as ahead:
        check_not_to_come(date(2026, 11, 3), date(2026, 11, 2))
    assert ahead.value.problems[0].field == "effective"


def test_a_downgrade_is_a_move_to_a_version_earlier_than_the_one_followed():
    following = {"001": "2.0", "002": "1.0", "003": "1.1", "004": "9.9"}
    assert downgrades(ORDER, following, "1.1") == {"001": "2.0"}
    assert downgrades(ORDER, following, "1.0") == {"001": "2.0", "003": "1.1"}
    assert downgrades(ORDER, following, "2.0") == {}  # forward, or already on it
    assert downgrades(ORDER, following, "3.0") == {}  # an unknown label is pick_version's to refuse


def test_a_downgrade_without_confirmation_names_who_and_the_field():
    check_confirmed({}, "1.0", False)
    check_confirmed({"001": "2.0"}, "1.0", True)
    with pytest.raises(InvalidInput) as refused:
        check_confirmed({"002": "2.0", "001": "1.1"}, "1.0", False)
    problem = refused.value.problems[0]
    assert problem.field == "confirm_downgrade"
    assert "1.0 is an earlier protocol version than 1.1, 2.0, which 001, 002 follow" in problem.message
    many = {f"{n:03}": "2.0" for n in range(12)}
    with pytest.raises(InvalidInput, match="and more"):
        check_confirmed(many, "1.0", False)


@pytest.mark.parametrize(
    ("earlier", "later", "reason", "fields"),
    [
        (0, 3, "travel", []),
        (2, 0, "travel", []),
        (0, 0, "travel", ["later_days"]),
        (-1, 3, "travel", ["later_days"]),
        (0, 3651, "travel", ["later_days"]),
        (1, 1, "  ", ["reason"]),
    ],
)
def test_an_extension_adds_days_for_a_reason(earlier, later, reason, fields):
    assert [p.field for p in extension_problems(earlier, later, reason)] == fields


def test_a_request_is_decided_once_and_declining_says_why():
    check_decision("requested", True, None)
    check_decision("requested", False, "book it on time")
    with pytest.raises(InvalidInput) as bare:
        check_decision("requested", False, " ")
    assert bare.value.problems[0].field == "reason"
    with pytest.raises(InvalidInput, match="already approved"):
        check_decision("approved", True, None)
