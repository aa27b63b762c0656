"""Rows of signers' keys, signatures of document versions and the files made from versions (migration 5)."""

from __future__ import annotations

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.documents.rules.signatures import Signature, Statement
from trialcoord.kernel.database.engine import fetch


async def insert_signature(version_id: int, signature: Signature) -> int:
    """The stored signature's row ID."""
    s = signature.statement
    rows = await fetch(
        "INSERT INTO document_signatures (version, signer_id, printed_name, meaning, instant, key_id, value)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING id",
        version_id,
        s.signer_id,
        signature.printed_name,
        str(s.meaning),
        s.instant,
        signature.key_id,
        signature.value,
    )
    return rows[0]["id"]


def signature_of(row: dict, sha256: str, record: str) -> Signature:
    """A stored signature, stated over `sha256` and `record` as they are stored now, so a signature row moved
    to another version or record, or a version pointed at other bytes, no longer verifies."""
    return Signature(
        Statement(sha256, row["signer_id"], Meaning(row["meaning"]), row["instant"], record),
        row["printed_name"],
        row["key_id"],
        row["value"],
    )


async def signatures_of(version_id: int) -> list[dict]:
    return await fetch(
        "SELECT signer_id, printed_name, meaning, instant, key_id, value FROM document_signatures"
        " WHERE version = {} ORDER BY instant, id",
        version_id,
    )


async def signatures_of_study(study: str) -> dict[int, list[dict]]:
    """Every signature of the study's versions, by version ID (one query for a whole binder)."""
    rows = await fetch(
        "SELECT s.version, s.signer_id, s.printed_name, s.meaning, s.instant, s.key_id, s.value"
        " FROM document_signatures s JOIN document_versions v ON v.id = s.version"
        " JOIN documents d ON d.id = v.document WHERE d.study = {} ORDER BY s.instant, s.id",
        study,
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row["version"], []).append(row)
    return found


async def files_of_study(study: str) -> dict[int, list[dict]]:
    """Every file made from the study's versions, by version ID, newest first within each kind."""
    rows = await fetch(
        "SELECT f.version, f.kind, f.signatures, f.sha256, f.size, f.media_type, f.created_at"
        " FROM document_files f JOIN document_versions v ON v.id = f.version"
        " JOIN documents d ON d.id = v.document WHERE d.study = {} ORDER BY f.kind, f.signatures DESC",
        study,
    )
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row["version"], []).append(row)
    return found


async def signed_for(version_id: int, meaning: str) -> bool:
    rows = await fetch(
        "SELECT 1 AS signed FROM document_signatures WHERE version = {} AND meaning = {}", version_id, meaning
    )
    return bool(rows)


async def all_signatures() -> list[dict]:
    """Every signature with its version's document and hash, for verification and exports."""
    return await fetch(
        "SELECT s.version, s.signer_id, s.printed_name, s.meaning, s.instant, s.key_id, s.value,"
        " v.sha256, v.label, d.study, d.site, d.name FROM document_signatures s"
        " JOIN document_versions v ON v.id = s.version JOIN documents d ON d.id = v.document"
        " ORDER BY s.id"
    )


async def insert_file(
    version_id: int, kind: str, signatures: int, sha256: str, size: int, media_type: str, at: str
) -> bool:
    """False when a concurrent manifestation stored this file first."""
    rows = await fetch(
        "INSERT INTO document_files (version, kind, signatures, sha256, size, media_type, created_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}) ON CONFLICT (version, kind, signatures) DO NOTHING"
        " RETURNING id",
        version_id,
        kind,
        signatures,
        sha256,
        size,
        media_type,
        at,
    )
    return bool(rows)


async def files_of(version_id: int) -> list[dict]:
    """The files made from a version, newest (most signatures) first within each kind."""
    return await fetch(
        "SELECT kind, signatures, sha256, size, media_type, created_at FROM document_files"
        " WHERE version = {} ORDER BY kind, signatures DESC",
        version_id,
    )


async def all_files() -> list[dict]:
    return await fetch(
        "SELECT f.version, f.kind, f.signatures, f.sha256, f.size, f.media_type, f.created_at,"
        " b.size AS blob_size FROM document_files f LEFT JOIN document_blobs b ON b.sha256 = f.sha256"
        " ORDER BY f.id"
    )
