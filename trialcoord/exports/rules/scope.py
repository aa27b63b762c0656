"""What a sponsor package covers and how much of it a sponsor may see: the study, the sites, the as-of date,
the privacy mode and whether participants' arms are shown. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class Privacy(StrEnum):
    CODED = "coded"  # subject IDs only: no name, birth date, contact or record number anywhere
    SAFE_HARBOR = "safe-harbor"  # HIPAA 164.514(b)(2): also dates to their year, ages over 89 grouped, no free text


@dataclass(frozen=True, slots=True)
class Scope:
    study: str
    as_of: date  # the package shows the study as it stood at the end of this day
    sites: tuple[str, ...] = ()  # empty: every site of the study
    privacy: Privacy = Privacy.CODED
    unblinded: bool = False  # asked for by a role that may view the allocation (recorded in the manifest)
