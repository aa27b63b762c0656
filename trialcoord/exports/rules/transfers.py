"""Transfers: what changed in DV since the previous package a sponsor received, so deliveries reconcile. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A delivered DV record: its fingerprint (the SHA-256 of its values as delivered) and whether it was closed.
Delivered = Mapping[str, Sequence[Any]]


def changes_since(previous: Delivered | None, current: Delivered) -> dict[str, list[str]]:
    """DVREFIDs created (not delivered before), changed (delivered with other values, not newly closed) and
    closed (closed now, open or absent before), each in record order. The first transfer has everything created.
    A record delivered before and missing now (a site dropped from the scope) is not listed: the parameters say."""
    before = previous or {}
    created, changed, closed = [], [], []
    for refid in sorted(current, key=_order):
        fingerprint, is_closed = current[refid][0], bool(current[refid][1])
        old = before.get(refid)
        if old is None:
            created.append(refid)
        if is_closed and (old is None or not old[1]):
            closed.append(refid)
        elif old is not None and old[0] != fingerprint:
            changed.append(refid)
    return {"created": created, "changed": changed, "closed": closed}


def _order(refid: str) -> tuple[int, str]:
    return (int(refid), "") if refid.isdigit() else (1 << 62, refid)
