"""The protocol's visits and events by the labels and terms SDTM datasets give them: a visit by its name, code
or number (SV's VISIT, VISITNUM), an event by its name or a synonym of the disposition term (DS's DSDECOD)."""

from __future__ import annotations

from typing import Any

from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.sdtm.values import norm

SYNONYMS = {
    "randomized": ("randomization", "randomisation", "randomized"),
    "informed_consent_obtained": ("consent", "informed_consent"),
    "withdrawal_by_subject": ("withdrawal", "consent_withdrawn", "withdrawn"),
    "death": ("death", "died"),
    "completed": ("completed", "completion", "study_completion", "end_of_study"),
}


def visit_lookup(protocol: Protocol) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for visit in protocol.visits:
        if visit.repeat is None:
            lookup.setdefault(norm(visit.name), visit.code)
            for one, other in (("termination", "discontinuation"), ("discontinuation", "termination")):
                if one in norm(visit.name):  # "EARLY DISCONTINUATION" is the Early Termination visit
                    lookup.setdefault(norm(visit.name).replace(one, other), visit.code)
            lookup.setdefault(norm(visit.code), visit.code)
            lookup.setdefault(f"#{visit.number:g}", visit.code)
    return lookup


def visit_code(label: str, visitnum: Any, mapped: dict, lookup: dict[str, str]) -> str | None:
    if label in mapped:
        return str(mapped[label])
    code = lookup.get(norm(label)) if label else None
    if code is None and visitnum is not None:
        code = lookup.get(f"#{visitnum:g}")
    return code


def event_lookup(protocol: Protocol) -> dict[str, str]:
    lookup = {norm(name): name for name in protocol.events}
    for term, names in SYNONYMS.items():
        found = next((name for name in names if name in protocol.events), None)
        if term == "informed_consent_obtained":
            found = protocol.consent_event or found
        if found:
            lookup.setdefault(term, found)
    return lookup
