"""What a protocol version change must respect beyond the schedule's own rules (issue 15).

- A change is a fact, recorded once it takes effect: a date still to come is refused (as for events and visits).
- Moving a participant back to a version earlier than the one followed (by the versions' order: effective date,
  then loading order) is a downgrade: allowed only when the person making the change confirms it.

Pure: the caller reads the versions, the participants and today.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from trialcoord.kernel.problems import InvalidInput, Problem

CONFIRM_FIELD = "confirm_downgrade"


def check_not_to_come(effective: date, today: date) -> None:
    if effective > today:
        raise InvalidInput(
            [
                Problem(
                    f"{effective} is still to come (today is {today}): record a protocol version change once it"
                    " takes effect, on or before today",
                    field="effective",
                )
            ]
        )


def downgrades(order: Sequence[str], following: Mapping[str, str], target: str) -> dict[str, str]:
    """The participants (subject ID -> version followed) whom a move to `target` takes back to an earlier
    version; `order` lists the study's version labels, oldest first. An unknown label is never a downgrade."""
    rank = {label: position for position, label in enumerate(order)}
    if target not in rank:
        return {}
    return {
        subject: version for subject, version in following.items() if version in rank and rank[version] > rank[target]
    }


def check_confirmed(back: Mapping[str, str], target: str, confirmed: bool) -> None:
    """A downgrade without its confirmation is refused, naming who would move back and from which version."""
    if not back or confirmed:
        return
    shown = ", ".join(f"{subject}" for subject in sorted(back)[:10]) + (" and more" if len(back) > 10 else "")
    earlier = ", ".join(sorted(set(back.values())))
    raise InvalidInput(
        [
            Problem(
                f"{target} is an earlier protocol version than {earlier}, which {shown}"
                f" {'follows' if len(back) == 1 else 'follow'}: moving back is a downgrade; confirm it to go ahead"
                " (tick the confirmation, confirm_downgrade, or --confirm-downgrade)",
                field=CONFIRM_FIELD,
            )
        ]
    )
