"""The scheduling feature's commands: protocols, schedules without a database, imports, visits, sites and
participants."""

from __future__ import annotations

from trialcoord.scheduling.cli import importing as _importing
from trialcoord.scheduling.cli import participants as _participants
from trialcoord.scheduling.cli import protocols as _protocols
from trialcoord.scheduling.cli import schedules as _schedules
from trialcoord.scheduling.cli import sites as _sites
from trialcoord.scheduling.cli import visits as _visits


def register(commands) -> None:
    _protocols.register(commands)
    _schedules.register(commands)
    _importing.register(commands)
    _visits.register(commands)
    _sites.register(commands)
    _participants.register(commands)
