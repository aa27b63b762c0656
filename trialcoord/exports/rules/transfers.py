"""Transfers: what changed in DV since the previous package a sponsor received, so deliveries reconcile. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A delivered DV record: its fingerprint (the SHA-256 of its values as delivered) and whether it was closed.
Delivered = Mapping[str, Sequence[Any]]


def changes_since(previous: Delivered | None, current: Delivered) -> dict[str, list[str]]:
    """DVREFIDs created (not delivered before), changed (delivered with other values, not newly closed), closed
    (closed now, open or absent before) and removed (delivered before, not now: classified as no deviation,
    resolved by a data correction, or withheld), each in record order. The previous package is one of the same
    scope, so a record missing now left the data, not the scope. The first transfer has everything created."""
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
    removed = sorted((refid for refid in before if refid not in current), key=_order)
    return {"created": created, "changed": changed, "closed": closed, "removed": removed}


def _order(refid: str) -> tuple[str, int, str]:
    """Record order: a DVREFID ends in its record's number (STUDY/SITE/SUBJECT/deviation/ID), 9 before 10."""
    head, _, last = refid.rpartition("/")
    return (head, int(last), "") if last.isdigit() else (head, 1 << 62, last)
