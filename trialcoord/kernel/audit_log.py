"""Writing, browsing and proving the audit trail (Part 11 11.10(e); design in docs/audit-trail.md).

`record(actor, *changes)` appends entries inside the caller's transaction, so a regulated change and its
entry exist together or not at all. `verify` and `checkpoint` recompute the whole trail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trialcoord.kernel import audit_store as store
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.rules.audit_entries import AuditEntry, seal, utc_instant
from trialcoord.kernel.rules.audit_verification import Checkpoint, TrailVerifier, VerificationResult

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trialcoord.kernel.signing_keys import SignedCheckpoint

SYSTEM = "system"


def clock() -> datetime:
    """The server clock, in UTC (tests move it with every other clock through conftest's `server_clock`)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Change:
    """One audited action on one record. `old`/`new` hold the changed fields only, never personal data."""

    action: str  # create, update, delete, sign_in, sign_in_failed, grant, revoke, export, ...
    record_type: str
    record_id: str
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None
    reason: str | None = None


_BATCH = 5_000


async def record(actor: str, *changes: Change) -> None:
    """Append `changes` in the caller's transaction (call it last in the unit of work: it locks the head)."""
    await record_each(actor, len(changes), changes)


async def record_each(actor: str, count: int, changes: Iterable[Change]) -> None:
    """`record` of `count` changes made as they are consumed, a batch at a time (an import's million entries
    are never all in memory, neither as changes nor as sealed entries)."""
    if not count:
        return
    first, at, written = await store.allocate(count), utc_instant(clock()), 0
    iterator = iter(changes)
    while batch := list(islice(iterator, _BATCH)):
        await store.insert(
            [
                seal(
                    AuditEntry(
                        first + written + i,
                        at,
                        actor,
                        c.action,
                        c.record_type,
                        c.record_id,
                        _plain(c.old),
                        _plain(c.new),
                        c.reason,
                    )
                )
                for i, c in enumerate(batch)
            ]
        )
        written += len(batch)
    if written != count:
        raise ValueError(f"record_each was told {count} changes and given {written}")


async def record_alone(actor: str, *changes: Change) -> None:
    """`record` in a unit of work of its own: sign-ins, exports."""
    async with transaction("audit trail"):
        await record(actor, *changes)


def _plain(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Dates become ISO text: the trail hashes text, never a driver's rendering of a date."""
    if values is None:
        return None
    return {key: value.isoformat() if isinstance(value, date) else value for key, value in values.items()}


# Browsing --------------------------------------------------------------------------------------


async def browse(
    where: AuditFilter,
    before: int | None = None,
    limit: int = 100,
    *,
    after: int | None = None,
    newest_first: bool = True,
) -> list[TrailEntry]:
    async with read():
        return await store.browse(where, before=before, after=after, limit=limit, newest_first=newest_first)


async def export_rows(where: AuditFilter, limit: int) -> list[TrailEntry]:
    """Oldest first, for the CSV and PDF copies."""
    async with read():
        return await store.browse(where, after=0, limit=limit, newest_first=False)


async def latest_root() -> tuple[int, str]:
    """(size, root) of the newest stored checkpoint, for printed copies; (head size, '') before the first."""
    async with read():
        signed = await store.latest_checkpoint()
        if signed:
            return signed["size"], signed["root"]
        return await store.head_size(), ""


# Verification and checkpoints --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrailReport:
    result: VerificationResult
    checked_against: tuple[str, ...]  # which checkpoints were compared, for the message

    @property
    def ok(self) -> bool:
        return self.result.ok


async def verify(*given: Checkpoint | None) -> TrailReport:
    """Recompute every entry and the tree; compare with the `given` checkpoints (one exported earlier, the
    newest external one), the newest stored checkpoint and the head.

    The head row counts every entry ever appended (in the same transaction as the entry): the entries up
    to the head as read first must all be there, and none may be numbered above the head. Entries the
    application appends during the check lie above the first head read, so they are left for the next run.
    """
    async with read():
        head = await store.head_size()
        stored = await store.latest_checkpoint()
    candidates = list({(c.size, c.root): c for c in (*given, _unsigned(stored)) if c is not None}.values())
    checkpoint = max(candidates, key=lambda c: c.size) if candidates else None
    result = await _verify_against(checkpoint, head)
    if result.ok and result.size < head:
        result = _failed(result, result.size + 1, f"missing: {head} entries were appended, {result.size} remain")
    if result.ok:
        async with read():
            now_head, beyond = await store.entries_beyond_head()
        if beyond:
            result = _failed(
                result,
                now_head + 1,
                f"appended outside the application: {beyond} entries are"
                f" numbered above the {now_head} the application appended",
            )
    # The smaller checkpoint is implied by the larger only if both verify: check the other one too.
    for other in candidates:
        if result.ok and other is not checkpoint:
            again = await _verify_against(other, head)
            if not again.ok:
                result = again
    names = tuple(f"checkpoint of {c.size} entries issued at {c.issued_at}" for c in candidates)
    return TrailReport(result, names)


def _failed(result: VerificationResult, sequence: int, why: str) -> VerificationResult:
    return VerificationResult(False, result.size, result.root, (sequence, why))


async def _verify_against(checkpoint: Checkpoint | None, head: int) -> VerificationResult:
    async with read():
        verifier = TrailVerifier(checkpoint)
        async for rows in store.stream_batches(head):
            if not verifier.feed_rows(rows):
                break
    return verifier.result()


def _unsigned(signed: Mapping[str, Any] | None) -> Checkpoint | None:
    """A stored checkpoint: its signature was checked when it was issued; the file copy is what proves."""
    if signed is None:
        return None
    return Checkpoint(signed["size"], signed["root"], signed["issued_at"])


async def checkpoint(private_key: Ed25519PrivateKey, out: Path | None = None) -> SignedCheckpoint:
    """Verify, then sign (size, root, now) with the system key, store it, and write it to `out`."""
    from trialcoord.kernel.signing_keys import save_checkpoint, sign_checkpoint

    report = await verify()
    if not report.ok:
        raise TrailBroken(*(report.result.first_bad or (0, "the trail did not verify")))
    if report.result.size == 0:
        raise TrailBroken(1, "the trail is empty: there is nothing to checkpoint yet")
    made = report.result.checkpoint(utc_instant(clock()))
    signed = sign_checkpoint(made, private_key)
    async with transaction("audit checkpoint"):
        if (await store.latest_checkpoint() or {}).get("size") != made.size:
            await store.insert_checkpoint(made.size, made.root, made.issued_at, signed.to_json())
    if out is not None:
        save_checkpoint(signed, out)
    return signed


class TrailBroken(Exception):
    def __init__(self, sequence: int, why: str):
        super().__init__(f"audit entry {sequence}: {why}")
        self.sequence, self.why = sequence, why
