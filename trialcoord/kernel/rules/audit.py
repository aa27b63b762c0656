"""The tamper-evident audit trail: entries, their canonical bytes, and an RFC 6962 Merkle tree over them.

Each entry is serialised to canonical JSON and hashed as a leaf; the leaves form a Merkle tree exactly as
RFC 6962 section 2.1 defines it. A tree (rather than a hash chain) because a checkpoint (size, root) of
an older tree can be proved a prefix of today's tree with a logarithmic consistency proof, so a copy
of a checkpoint held outside the database proves later that history was not rewritten.

Pure: no clock, no database. The design and its integration are in docs/audit-trail.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962: the hash of an empty tree is SHA-256 of nothing
CHECKPOINT_KIND = "trialcoord-audit-checkpoint/1"  # signed with the checkpoint, so a signature means one thing

_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to which record, when, and why.

    `old` and `new` hold the changed fields of a regulated record by name. Entries never hold raw
    personal data (names, dates of birth, contact details, medical record numbers): such a field is
    referenced, e.g. `{"identity": "participant_identity/42"}` or `{"name": "changed"}`, never copied
    or hashed, so redacting personal data never touches the trail. There is no field for it.
    """

    sequence: int  # 1, 2, 3, ... with no gaps: the position in the trail
    recorded_at: str  # UTC instant from the server clock, `utc_instant` form: 2026-11-27T09:30:00.000000Z
    actor: str  # user id, or "system"
    action: str  # create, update, delete, sign_in, sign_in_failed, grant, revoke, export, ...
    record_type: str  # participant, visit, grant, ...
    record_id: str
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    reason: str | None = None


class StoredEntry(NamedTuple):
    """An entry as the trail stores it: its fields plus the leaf hash computed when it was written."""

    entry: AuditEntry
    leaf_hash: bytes  # 32 bytes; verification recomputes it from the entry's fields
    old_text: str | None = None  # set by `seal`: the canonical JSON of `old` and `new`, as they are stored
    new_text: str | None = None


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
        if not isinstance(self.issued_at, str) or not _INSTANT.fullmatch(self.issued_at):
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


# --- canonical serialisation ------------------------------------------------------------------------


def _refuse(value: object) -> None:
    raise TypeError(
        f"{type(value).__name__} is not allowed in an audit entry: pass dates and times as UTC ISO-8601"
        " strings and numbers as int or finite float, so a database's rendering never enters the hash"
    )


# One encoder, built once: sorted keys, no whitespace, raw UTF-8 (ensure_ascii off), NaN and infinity
# refused (ValueError), anything that is not JSON refused (TypeError).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse)


def canonical_json(value: Any) -> bytes:
    """RFC 8785-like canonical JSON: keys sorted (by code point, not UTF-16 unit), no whitespace, UTF-8.

    Numbers are Python's shortest round-trip form; audit payloads should prefer ints and strings.
    """
    return _ENCODER.encode(value).encode()


def canonical_bytes(entry: AuditEntry) -> bytes:
    return canonical_json(
        {
            "action": entry.action,
            "actor": entry.actor,
            "new": entry.new,
            "old": entry.old,
            "reason": entry.reason,
            "record_id": entry.record_id,
            "record_type": entry.record_type,
            "recorded_at": entry.recorded_at,
            "sequence": entry.sequence,
        }
    )


_string = (  # the encoder's own, ensure_ascii off
    getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
)


def stored_bytes(
    sequence: int,
    recorded_at: str,
    actor: str,
    action: str,
    record_type: str,
    record_id: str,
    old: str | None,
    new: str | None,
    reason: str | None,
) -> bytes:
    """`canonical_bytes` of an entry from its stored columns, where `old`/`new` are the canonical JSON text
    `seal` wrote: the text is spliced in, not parsed and re-serialised (the slow part of verification).

    Equal to `canonical_bytes` for every sealed entry (tested); a stored text that differs in any byte, even
    one that parses to the same value, gives other bytes, so it is reported as altered, as it was.
    """
    return (
        f'{{"action":{_string(action)},"actor":{_string(actor)},"new":{"null" if new is None else new},'
        f'"old":{"null" if old is None else old},"reason":{"null" if reason is None else _string(reason)},'
        f'"record_id":{_string(record_id)},"record_type":{_string(record_type)},'
        f'"recorded_at":{_string(recorded_at)},"sequence":{int(sequence)}}}'
    ).encode()


def utc_instant(moment: datetime) -> str:
    """The one text form of an instant in the trail: UTC, microseconds, `Z`."""
    if moment.utcoffset() is None:
        raise ValueError("an audit instant needs a time zone; naive datetimes are ambiguous")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def seal(entry: AuditEntry) -> StoredEntry:
    """Check an entry about to be written and compute its leaf hash.

    Refuses anything whose JSON would not come back from the database with the same canonical bytes
    (such as non-string keys, which sort differently once they are strings), so a sound entry can
    never raise a false alarm later.
    """
    _check_fields(entry)
    old, new = _payload(entry.old, entry.sequence), _payload(entry.new, entry.sequence)
    # Each payload is encoded once and spliced in, as verification splices the stored text (`stored_bytes`).
    data = stored_bytes(
        entry.sequence,
        entry.recorded_at,
        entry.actor,
        entry.action,
        entry.record_type,
        entry.record_id,
        old,
        new,
        entry.reason,
    )
    return StoredEntry(entry, leaf_hash(data), old, new)


def _payload(value: Mapping[str, Any] | None, sequence: int) -> str | None:
    if value is None:
        return None
    if not _string_keys(value):  # an int key comes back from the database as a string, sorted differently
        raise ValueError(f"audit entry {sequence}: old and new must use string keys only")
    return _ENCODER.encode(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _string_keys(value: Any) -> bool:
    """Whether every mapping key inside is text, as the database's JSON gives it back (an int key would come back
    as a string and sort elsewhere). Exact types first: `isinstance` against an ABC costs more than sealing."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, abc.Mapping)):
        for key, item in value.items():  # a loop, not all(): the payloads are small and this runs per entry
            if not isinstance(key, str) or (type(item) not in _SCALARS and not _string_keys(item)):
                return False
        return True
    if isinstance(value, (list, tuple)):  # subclasses too (a NamedTuple is encoded as a list)
        return all(type(item) in _SCALARS or _string_keys(item) for item in value)
    return True  # anything else, the encoder refuses with its own message


def _check_fields(entry: AuditEntry) -> None:
    at = f"audit entry {entry.sequence!r}"
    if type(entry.sequence) is not int or entry.sequence < 1:
        raise ValueError(f"{at}: sequence must be a positive integer")
    if not isinstance(entry.recorded_at, str) or not _INSTANT.fullmatch(entry.recorded_at):
        raise ValueError(f"{at}: recorded_at must be a utc_instant string, not {entry.recorded_at!r}")
    for name in ("actor", "action", "record_type", "record_id"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{at}: {name} must be a non-empty string, not {value!r}")
    for name in ("old", "new"):
        value = getattr(entry, name)
        if value is not None and type(value) is not dict and not isinstance(value, abc.Mapping):
            raise ValueError(f"{at}: {name} must be a mapping of field names to values, or None")
    if entry.reason is not None and not isinstance(entry.reason, str):
        raise ValueError(f"{at}: reason must be a string or None")


# --- RFC 6962 Merkle tree ----------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class CompactTree:
    """The roots of the perfect subtrees that make up a tree of `size` leaves, largest first.

    Appending is amortised one node hash (O(log n) at worst), the root O(log n), memory O(log n), so
    a million-entry trail streams through it.
    """

    __slots__ = ("size", "_peaks")

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def of(cls, leaves: Iterable[bytes]) -> CompactTree:
        tree = cls()
        for leaf in leaves:
            tree.append(leaf)
        return tree

    def append(self, leaf: bytes) -> None:
        # Each trailing 1 bit of size is a perfect subtree the new leaf completes: merge them.
        node, size, peaks = leaf, self.size, self._peaks
        while size & 1:
            node = node_hash(peaks.pop(), node)
            size >>= 1
        peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        # RFC 6962 splits at the largest power of two below n: fold the peaks from the right.
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of RFC 6962 2.1 over leaf hashes."""
    return CompactTree.of(leaves).root()


def consistency_proof(leaves: Sequence[bytes], m: int, n: int) -> list[bytes]:
    """RFC 6962 2.1.2 PROOF(m, D[n]): that the tree of the first m leaves is a prefix of the first n."""
    if not 1 <= m <= n <= len(leaves):
        raise ValueError(f"a consistency proof needs 1 <= m <= n <= {len(leaves)}, not m={m}, n={n}")
    return _subproof(leaves, m, 0, n, True)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    if m == hi - lo:
        return [] if whole else [merkle_root(leaves[lo:hi])]
    k = _largest_power_of_two_below(hi - lo)
    if m <= k:
        return _subproof(leaves, m, lo, lo + k, whole) + [merkle_root(leaves[lo + k : hi])]
    return _subproof(leaves, m - k, lo + k, hi, False) + [merkle_root(leaves[lo : lo + k])]


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (the verifier for RFC 6962 proofs): does the tree of size n extend the one of size m?"""
    if not 1 <= m <= n:
        raise ValueError(f"consistency needs 1 <= m <= n, not m={m}, n={n}")
    if m == n:
        return not proof and old_root == new_root
    path = [old_root, *proof] if m & (m - 1) == 0 else list(proof)
    if not path:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(sibling, fr), node_hash(sibling, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, sibling)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


# --- verification ------------------------------------------------------------------------------------


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
        sha256, string, tree = _sha256, _string, self.tree
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
