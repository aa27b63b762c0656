"""Facts, not plans (docs/architecture.md): what is recorded as having happened (an event, the day a visit took
place, an enrolment, a date of birth) cannot fall on a day still to come; such a date is a typing mistake."""

from __future__ import annotations

from datetime import date

from trialcoord.kernel.problems import invalid


def check_happened(what: str, day: date, today: date, field: str) -> None:
    """Refuse `day` after `today`, naming `what` (the participant and the fact) and the request's `field`."""
    if day > today:
        raise invalid(f"{what} cannot be recorded on {day}, after today ({today})", field=field)
