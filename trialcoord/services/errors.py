"""Errors of the use cases. Validation problems reuse `trialcoord.domain.problems.InvalidInput`.

Every message names the study, participant, visit or field it is about, so a person can act on it.
"""

from __future__ import annotations

from trialcoord.domain.problems import InvalidInput, Problem

__all__ = ["Conflict", "Forbidden", "InvalidInput", "NotConfigured", "NotFound", "Problem", "invalid"]


class NotFound(LookupError):
    """The named study, site, participant, visit or protocol version does not exist."""


class Forbidden(Exception):
    """The person's grants do not allow this, whichever door they came through (web or command line)."""


class Conflict(Exception):
    """The request contradicts what is recorded, or lost a race with another change."""


def invalid(message: str, field: str = "") -> InvalidInput:
    """An InvalidInput with one problem; `field` is the request field to fix."""
    return InvalidInput([Problem(message, field=field)])


class NotConfigured(RuntimeError):
    """The installation lacks something this use case needs (a key); the message names the setting."""
