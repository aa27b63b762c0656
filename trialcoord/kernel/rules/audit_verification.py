"""Checkpoints of the audit trail, and the verification of a stored trail against its leaf hashes and a
checkpoint: a deleted, inserted, reordered or altered entry, and a rewritten or truncated history.

Pure: no clock, no database. docs/audit-trail.md describes what is checked and why.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from trialcoord.kernel.rules.audit_entries import (
    UTC_INSTANT_PATTERN,
    AuditEntry,
    StoredEntry,
    canonical_bytes,
    canonical_json,
    json_string,
    stored_bytes,
)
from trialcoord.kernel.rules.merkle_tree import CompactTree, leaf_hash

CHECKPOINT_KIND = "trialcoord-audit-checkpoint/1"  # signed with the checkpoint, so a signature means one thing

_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The trail's first `size` entries have Merkle root `root` (hex), as issued at `issued_at` (UTC)."""

    size: int
    root: str
    issued_at: str

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 1:
            raise ValueError(f"checkpoint size must be a positive integer, not {self.size!r}")
        if not isinstance(self.root, str) or not re.fullmatch(r"[0-9a-f]{64}", self.root):
            raise ValueError(f"checkpoint root must be 64 lower-case hex digits, not {self.root!r}")
        if not isinstance(self.issued_at, str) or not UTC_INSTANT_PATTERN.fullmatch(self.issued_at):
            raise ValueError(
                f"checkpoint issued_at must be a UTC instant like 2026-11-27T09:30:00.000000Z, not {self.issued_at!r}"
            )

    def canonical_bytes(self) -> bytes:
        """The bytes a signature covers."""
        return canonical_json(
            {"issued_at": self.issued_at, "kind": CHECKPOINT_KIND, "root": self.root, "size": self.size}
        )


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """`size` and `root` describe the prefix that verified; `first_bad` names where it stopped, if it did."""

    ok: bool
    size: int
    root: str  # hex
    first_bad: tuple[int, str] | None = None  # (sequence, reason)

    def checkpoint(self, issued_at: str) -> Checkpoint:
        """A checkpoint of this trail; refused unless it verified, so a checkpoint never blesses tampering."""
        if not self.ok:
            sequence, reason = self.first_bad or (0, "unknown")
            raise ValueError(f"the trail did not verify, entry {sequence}: {reason}")
        return Checkpoint(self.size, self.root, issued_at)


def verify_entries(stored: Iterable[StoredEntry], checkpoint: Checkpoint | None = None) -> VerificationResult:
    """Recompute the whole trail from the entries' fields, in the order given (ascending sequence).

    Detects a deleted, inserted or reordered entry (sequence not contiguous from 1), an altered one
    (fields no longer give the stored leaf hash) and, given a checkpoint, a rewritten or truncated
    history (the first `checkpoint.size` entries no longer give its root). Stops at the first problem.
    """
    verifier = TrailVerifier(checkpoint)
    for item in stored:
        if not verifier.feed(item):
            break
    return verifier.result()


class TrailVerifier:
    """`verify_entries` fed one entry at a time, for a caller that reads the trail in batches."""

    def __init__(self, checkpoint: Checkpoint | None = None):
        self.checkpoint, self.tree = checkpoint, CompactTree()
        self.problem: tuple[int, str] | None = None
        self._check_at = checkpoint.size if checkpoint else 0

    def feed(self, stored: StoredEntry) -> bool:
        """False once a problem was found (then feeding more changes nothing)."""
        if self.problem:
            return False
        entry, stored_hash = stored.entry, stored.leaf_hash
        self.problem = _entry_problem(entry, stored_hash, self.tree.size + 1)
        if self.problem:
            return False
        return self._accept(stored_hash)

    def feed_row(self, row: Sequence[Any]) -> bool:
        """`feed` for a stored row: (sequence, recorded_at, actor, action, record_type, record_id, old text,
        new text, reason, leaf hash hex), as the database returns it."""
        if self.problem:
            return False
        expected = self.tree.size + 1
        if row[0] != expected:
            self.problem = _sequence_problem(row[0], expected)
            return False
        try:
            digest = _sha256(b"\x00" + stored_bytes(*row[:9])).digest()
            stored_hash = bytes.fromhex(row[9])
        except (TypeError, ValueError, AttributeError) as error:
            self.problem = (expected, f"its stored fields cannot be read: {error}")
            return False
        if digest != stored_hash:
            self.problem = (expected, "altered: its fields do not give its stored leaf hash")
            return False
        return self._accept(stored_hash)

    def _accept(self, stored_hash: bytes) -> bool:
        """Add a verified leaf; at the checkpoint's size, compare the root with the checkpoint's."""
        self.tree.append(stored_hash)
        checkpoint = self.checkpoint
        if checkpoint is not None and self.tree.size == self._check_at and self.tree.root().hex() != checkpoint.root:
            self.problem = (
                self._check_at,
                f"entries 1 to {self._check_at} no longer give the root of the checkpoint"
                f" issued at {checkpoint.issued_at}: history was rewritten",
            )
            return False
        return True

    def feed_rows(self, rows: Iterable[Sequence[Any]]) -> bool:
        """`feed_row` over a batch, with the per-entry work inlined (the loop is the cost of `audit verify`).

        An entry whose checks need more than the fast path (the checkpoint's size, any problem) goes
        through `feed_row`, so both give the same result."""
        if self.problem:
            return False
        sha256, string, tree = _sha256, json_string, self.tree
        peaks, check_at = tree._peaks, self._check_at
        for row in rows:
            sequence, recorded_at, actor, action, record_type, record_id, old, new, reason, stored = row
            size = tree.size
            if sequence != size + 1 or size + 1 == check_at or type(sequence) is not int:
                if not self.feed_row(row):
                    return False
                continue
            try:
                digest = sha256(
                    f'\x00{{"action":{string(action)},"actor":{string(actor)},"new":{"null" if new is None else new},'
                    f'"old":{"null" if old is None else old},"reason":{"null" if reason is None else string(reason)},'
                    f'"record_id":{string(record_id)},"record_type":{string(record_type)},'
                    f'"recorded_at":{string(recorded_at)},"sequence":{sequence}}}'.encode()
                ).digest()
                if digest.hex() != stored:
                    raise ValueError
            except (TypeError, ValueError, AttributeError):
                return self.feed_row(row)  # names the problem
            # CompactTree.append, inlined
            node = digest
            while size & 1:
                node = sha256(b"\x01" + peaks.pop() + node).digest()
                size >>= 1
            peaks.append(node)
            tree.size += 1
        return True

    def result(self) -> VerificationResult:
        if self.problem is None and self.checkpoint is not None and self.tree.size < self._check_at:
            self.problem = (
                self.tree.size + 1,
                f"missing: the checkpoint issued at {self.checkpoint.issued_at} covers"
                f" {self._check_at} entries, the trail has {self.tree.size}",
            )
        if self.problem:
            return _failed(self.tree, self.problem)
        return VerificationResult(True, self.tree.size, self.tree.root().hex())


def _entry_problem(entry: AuditEntry, stored_hash: bytes, expected: int) -> tuple[int, str] | None:
    if entry.sequence != expected:
        return _sequence_problem(entry.sequence, expected)
    try:
        data = canonical_bytes(entry)
    except (TypeError, ValueError) as error:
        return expected, f"its fields cannot be serialised: {error}"
    if leaf_hash(data) != stored_hash:
        return expected, "altered: its fields do not give its stored leaf hash"
    return None


def _sequence_problem(found: object, expected: int) -> tuple[int, str]:
    if isinstance(found, int) and found > expected:
        return expected, f"missing or out of order: entry {found} stands where entry {expected} belongs"
    if isinstance(found, int) and found >= 1:
        return (
            found,
            f"out of place: entry {found} appears again where entry {expected} belongs (inserted or reordered)",
        )
    return expected, f"invalid sequence {found!r} where entry {expected} belongs"


def _failed(tree: CompactTree, problem: tuple[int, str]) -> VerificationResult:
    return VerificationResult(False, tree.size, tree.root().hex(), problem)
