"""The scheduling feature's commands: protocols, schedules without a database, imports, visits and sites."""

from __future__ import annotations

from trialcoord.scheduling.cli import commands as _commands
from trialcoord.scheduling.cli import sites as _sites


def register(commands) -> None:
    _commands.register(commands)
    _sites.register(commands)
