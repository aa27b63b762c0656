"""Audit trail verification over 1,000,000 entries vs raw SHA-256 of the same canonical bytes.

Two verifiers: `TrailVerifier.feed_row` over rows as the database returns them (what `trialcoord audit
verify` runs: canonical bytes spliced from the stored canonical text, leaf hash, comparison, RFC 6962 tree),
and `verify_entries` over parsed entries (canonical JSON re-serialised from the fields).

Goal: at most 3x. Run: `.venv/bin/python -m bench.audit_verify [--quick]` (--quick: 100,000 entries).
"""

from __future__ import annotations

import hashlib
import random
import sys

from bench.compute import best_of
from trialcoord.kernel.rules.audit_entries import AuditEntry, StoredEntry, canonical_bytes, canonical_json
from trialcoord.kernel.rules.audit_verification import TrailVerifier, verify_entries
from trialcoord.kernel.rules.merkle_tree import leaf_hash

FULL = 1_000_000
RUNS = 3


def make_entry(sequence: int, rng: random.Random) -> AuditEntry:
    """A site's mix: mostly visit updates (old and new values, a reason when a date changes), some
    creates, sign-ins and grants; about 300 bytes of canonical JSON on average."""
    day = f"2026-{1 + sequence % 12:02d}-{1 + sequence % 28:02d}"
    at = f"{day}T{sequence % 24:02d}:{sequence % 60:02d}:07.{sequence % 10**6:06d}Z"
    actor = f"user-{rng.randint(1, 40):03d}"
    subject = f"101-{rng.randint(1, 5000):06d}"
    kind = rng.random()
    if kind < 0.6:
        day = rng.randint(1, 28)
        return AuditEntry(
            sequence,
            at,
            actor,
            "update",
            "visit",
            f"{subject}/V{rng.randint(1, 20)}",
            old={"actual_date": None if day % 3 else f"2026-03-{day:02d}", "status": "scheduled", "row_version": day},
            new={"actual_date": f"2026-03-{day:02d}", "status": "done", "row_version": day + 1},
            reason="visit date entered from source document" if day % 3 == 0 else None,
        )
    if kind < 0.8:
        return AuditEntry(
            sequence,
            at,
            actor,
            "create",
            "participant",
            subject,
            new={
                "site": "101",
                "study": "DEMO-001",
                "arm": rng.choice("AP"),
                "identity": f"participant_identity/{sequence}",
                "status": "screening",
            },
        )
    if kind < 0.9:
        return AuditEntry(sequence, at, actor, "sign_in", "session", f"s-{sequence}")
    return AuditEntry(
        sequence,
        at,
        "user-001",
        "grant",
        "grant",
        f"g-{sequence}",
        new={
            "user": actor,
            "role": "monitor",
            "study": "DEMO-001",
            "site": "101",
            "from": "2026-01-01",
            "until": "2026-12-31",
        },
    )


def build(count: int) -> tuple[list[StoredEntry], list[bytes]]:
    rng = random.Random(6962)
    stored, blobs = [], []
    for sequence in range(1, count + 1):
        entry = make_entry(sequence, rng)
        data = canonical_bytes(entry)
        stored.append(StoredEntry(entry, leaf_hash(data)))
        blobs.append(data)
    return stored, blobs


def as_rows(stored: list[StoredEntry]) -> list[tuple]:
    """As `audit_store.stream_batches` yields them: old/new as the canonical text stored, the hash as hex."""
    text = lambda value: None if value is None else canonical_json(value).decode()  # noqa: E731
    return [
        (
            e.sequence,
            e.recorded_at,
            e.actor,
            e.action,
            e.record_type,
            e.record_id,
            text(e.old),
            text(e.new),
            e.reason,
            digest.hex(),
        )
        for e, digest, *_ in stored
    ]


def verify_rows(rows: list[tuple]) -> None:
    verifier = TrailVerifier()
    for start in range(0, len(rows), 10_000):  # the batches audit_store.stream_batches reads
        verifier.feed_rows(rows[start : start + 10_000])
    if not verifier.result().ok:
        raise SystemExit("audit_verify: the generated rows did not verify")


def raw_sha256(blobs: list[bytes]) -> None:
    sha256 = hashlib.sha256
    for data in blobs:
        sha256(data).digest()


def serialise_only(stored: list[StoredEntry]) -> None:
    for entry, *_ in stored:
        canonical_bytes(entry)


def verify(stored: list[StoredEntry]) -> None:
    if not verify_entries(stored).ok:
        raise SystemExit("audit_verify: the generated trail did not verify")


def main(quick: bool = False) -> None:
    count = FULL // 10 if quick else FULL
    stored, blobs = build(count)
    size = sum(map(len, blobs)) / count
    rows = as_rows(stored)
    base = best_of(RUNS, raw_sha256, blobs)
    by_rows = best_of(RUNS, verify_rows, rows)
    serial = best_of(RUNS, serialise_only, stored)
    ours = best_of(RUNS, verify, stored)
    print(f"audit_verify: {count:,} entries, {size:.0f} bytes of canonical JSON each on average (best of {RUNS})")
    print(f"  raw SHA-256 of the canonical bytes  {base:7.3f} s  {count / base / 1e6:5.2f} M entries/s")
    print(
        f"  stored rows (audit verify)          {by_rows:7.3f} s  {count / by_rows / 1e6:5.2f} M entries/s"
        f"  ratio {by_rows / base:.2f}x (goal <= 3x)"
    )
    print(
        f"  verify_entries (parsed entries)     {ours:7.3f} s  {count / ours / 1e6:5.2f} M entries/s"
        f"  ratio {ours / base:.2f}x"
    )
    print(f"    of which canonical JSON alone     {serial:7.3f} s  ({serial / ours:.0%} of verification)")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
