"""Window extensions: a coordinator requests more days before or after one visit's window, an investigator approves
or declines. An approved extension is a window exception (`deviations.WindowException`): the visit's early or late
deviation is prevented if it was approved on or before the day the visit took place, explained otherwise."""

from __future__ import annotations

from enum import StrEnum

from trialcoord.kernel.problems import InvalidInput, Problem

MAX_DAYS = 3650  # as the API's Days


class RequestState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    DECLINED = "declined"


def extension_problems(earlier_days: int, later_days: int, reason: str, reason_field: str = "reason") -> list[Problem]:
    """What is wrong with an extension's days and reason (nothing: [])."""
    problems: list[Problem] = []
    if not (0 <= earlier_days <= MAX_DAYS and 0 <= later_days <= MAX_DAYS) or earlier_days + later_days == 0:
        problems.append(
            Problem(
                f"an extension adds days before or after the window (0 to {MAX_DAYS} each, not both 0)",
                field="later_days",
            )
        )
    if not reason.strip():
        problems.append(
            Problem("an extension needs the reason the visit cannot take place in its window", field=reason_field)
        )
    return problems


def check_decision(state: str, approve: bool, reason: str | None) -> None:
    """An open request is decided once; declining says why."""
    problems: list[Problem] = []
    if state != RequestState.REQUESTED:
        problems.append(Problem(f"this request is already {state}; it is decided once", field="state"))
    if not approve and not (reason or "").strip():
        problems.append(Problem("declining a request needs the reason, for the coordinator who asked", field="reason"))
    if problems:
        raise InvalidInput(problems)
