"""Rows of documents, their versions and the bytes they name (migration 3).

A version row is written once; only its status, history and approval change afterwards (transitions).
Bytes are stored once per SHA-256 as base64 text and never rewritten.
"""

from __future__ import annotations

import base64
import json
from datetime import date

from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus, DocumentVersion, IrbApproval, StatusChange
from trialcoord.kernel.database.engine import fetch

VERSION_COLUMNS = (
    "v.id, v.label, v.sha256, v.size, v.media_type, v.file_name, v.author, v.change_summary,"
    " v.created_at, v.status, v.history, v.approval, v.expires_on"
)


async def find_document(study: str, site: str | None, name: str) -> dict | None:
    rows = await fetch(
        "SELECT id, study, site, name, artifact, person, created_at FROM documents"
        " WHERE study = {} AND site = {} AND name = {}",
        study,
        site or "",
        name,
    )
    return rows[0] if rows else None


async def insert_document(
    study: str, site: str | None, name: str, artifact: str, at: str, person: str | None = None
) -> dict:
    await fetch(
        "INSERT INTO documents (study, site, name, artifact, person, created_at) VALUES ({}, {}, {}, {}, {}, {})",
        study,
        site or "",
        name,
        artifact,
        person,
        at,
    )
    document = await find_document(study, site, name)
    if document is None:  # inserted just now, in the caller's transaction
        raise AssertionError(f"document {name} of study {study} was inserted but cannot be read back")
    return document


async def list_documents(study: str, site: str | None, artifact: str | None = None) -> list[dict]:
    condition, args = ("", [study]) if site is None else (" AND d.site IN ('', {})", [study, site])
    if artifact is not None:
        condition, args = condition + " AND d.artifact = {}", [*args, artifact]
    rows = await fetch(
        f"SELECT d.id AS document, d.site, d.name, d.artifact, d.person, {VERSION_COLUMNS} FROM documents d"
        f" JOIN document_versions v ON v.document = d.id WHERE d.study = {{}}{condition}",
        *args,
    )
    return sorted(rows, key=lambda row: (row["site"], row["name"], row["id"]))


# A list page's sort keys: names in any case, and each key ends in the version's ID, so that it is unique (keyset
# paging). The rows carry their key as k0, k1, k2: the database's own values, which the next page compares with.
SORT_KEYS = {
    "name": ("LOWER(d.name)", "d.site", "v.id"),
    "site": ("d.site", "LOWER(d.name)", "v.id"),
    "artifact": ("d.artifact", "LOWER(d.name)", "v.id"),
    "status": ("v.status", "LOWER(d.name)", "v.id"),
    "created": ("v.created_at", "LOWER(d.name)", "v.id"),
}


async def version_page(
    study: str,
    sort: str,
    descending: bool,
    after: tuple | None,
    limit: int,
    filters: dict[str, str | None],
) -> list[dict]:
    """Up to `limit` versions past the key `after`, in the order of `sort`; `filters` are the exact status,
    artifact and site ('' for study level) and a piece of the name (any case)."""
    columns = SORT_KEYS[sort]
    where, args = ["d.study = {}"], [study]
    for name, column in (("status", "v.status"), ("artifact", "d.artifact"), ("site", "d.site")):
        value = filters.get(name)
        if value is not None:
            where.append(f"{column} = {{}}")
            args.append(value)
    text = filters.get("text")
    if text:
        where.append("LOWER(d.name) LIKE {} ESCAPE '!'")
        args.append("%" + _like(text.lower()) + "%")
    if after is not None:
        marks = ", ".join("{}" for _ in columns)
        where.append(f"({', '.join(columns)}) {'<' if descending else '>'} ({marks})")
        args.extend(after)
    keys = ", ".join(f"{column} AS k{n}" for n, column in enumerate(columns))
    order = ", ".join(f"{column}{' DESC' if descending else ''}" for column in columns)
    return await fetch(
        f"SELECT d.id AS document, d.site, d.name, d.artifact, d.person, {VERSION_COLUMNS}, {keys}"
        f" FROM documents d JOIN document_versions v ON v.document = d.id WHERE {' AND '.join(where)}"
        f" ORDER BY {order} LIMIT {{}}",
        *args,
        limit,
    )


def page_key(row: dict) -> tuple:
    """A row's key in the order it was read by (`version_page`)."""
    return row["k0"], row["k1"], row["k2"]


def _like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


async def save_blob(sha256: str, data: bytes) -> None:
    """Once per content: the same bytes uploaded twice are stored once."""
    await fetch(
        "INSERT INTO document_blobs (sha256, size, data) VALUES ({}, {}, {}) ON CONFLICT (sha256) DO NOTHING",
        sha256,
        len(data),
        base64.b64encode(data).decode(),
    )


async def blob(sha256: str) -> bytes | None:
    rows = await fetch("SELECT data FROM document_blobs WHERE sha256 = {}", sha256)
    return base64.b64decode(rows[0]["data"]) if rows else None


async def blobs(sha256s: list[str]) -> dict[str, bytes]:
    """Several contents in one query (a binder export reads them in batches)."""
    if not sha256s:
        return {}
    marks = ", ".join("{}" for _ in sha256s)
    rows = await fetch(f"SELECT sha256, data FROM document_blobs WHERE sha256 IN ({marks})", *sha256s)
    return {row["sha256"]: base64.b64decode(row["data"]) for row in rows}


async def all_blobs() -> list[tuple[str, int, str]]:
    """(sha256, size, base64 data) of every stored content, for verification."""
    rows = await fetch("SELECT sha256, size, data FROM document_blobs ORDER BY sha256")
    return [(row["sha256"], row["size"], row["data"]) for row in rows]


async def insert_version(
    document_id: int, version: DocumentVersion, file_name: str, expires_on: date | None = None
) -> None:
    await fetch(
        "INSERT INTO document_versions (document, label, sha256, size, media_type, file_name, author,"
        " change_summary, created_at, status, history, approval, expires_on)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        document_id,
        version.label,
        version.sha256,
        version.size,
        version.media_type,
        file_name,
        version.author,
        version.change_summary,
        version.created_at,
        str(version.status),
        _history(version),
        _approval(version),
        expires_on.isoformat() if expires_on else None,
    )


async def find_version(document_id: int, label: str) -> dict | None:
    rows = await fetch(
        f"SELECT {VERSION_COLUMNS} FROM document_versions v WHERE v.document = {{}} AND v.label = {{}}",
        document_id,
        label,
    )
    return rows[0] if rows else None


async def statuses(document_id: int) -> set[str]:
    """The statuses the document's versions are in."""
    rows = await fetch("SELECT DISTINCT status FROM document_versions WHERE document = {}", document_id)
    return {row["status"] for row in rows}


async def update_status(version_id: int, version: DocumentVersion) -> None:
    """The only change a version row takes: its status, with the history and approval that go with it."""
    await fetch(
        "UPDATE document_versions SET status = {}, history = {}, approval = {} WHERE id = {}",
        str(version.status),
        _history(version),
        _approval(version),
        version_id,
    )


def version_of(row: dict, key: DocumentKey) -> DocumentVersion:
    approval = json.loads(row["approval"]) if row["approval"] else None
    return DocumentVersion(
        key,
        row["label"],
        row["sha256"],
        row["author"],
        row["change_summary"],
        row["created_at"],
        row["size"],
        row["media_type"],
        row["status"],
        tuple(
            StatusChange(DocumentStatus(c["status"]), date.fromisoformat(c["on"]), c["reason"])
            for c in json.loads(row["history"])
        ),
        IrbApproval(approval["reference"], date.fromisoformat(approval["approved_on"]), approval["letter_sha256"])
        if approval
        else None,
    )


def _history(version: DocumentVersion) -> str:
    return json.dumps([{"status": str(c.status), "on": c.on.isoformat(), "reason": c.reason} for c in version.history])


def _approval(version: DocumentVersion) -> str | None:
    a = version.approval
    return (
        json.dumps(
            {"reference": a.reference, "approved_on": a.approved_on.isoformat(), "letter_sha256": a.letter_sha256}
        )
        if a
        else None
    )


async def approval_letter(study: str, sha256: str) -> dict | None:
    """A stored version of the study filed as an IRB/IEC approval (TMF 066) with these bytes."""
    rows = await fetch(
        "SELECT d.name, v.label FROM document_versions v JOIN documents d ON d.id = v.document"
        " WHERE d.study = {} AND d.artifact = '066' AND v.sha256 = {}",
        study,
        sha256,
    )
    return rows[0] if rows else None


async def effective_versions(document_id: int) -> list[dict]:
    return await fetch(
        f"SELECT {VERSION_COLUMNS} FROM document_versions v WHERE v.document = {{}} AND v.status = 'effective'",
        document_id,
    )


async def all_versions() -> list[dict]:
    """Every version with its document, for verification."""
    return await fetch(
        f"SELECT d.study, d.site, d.name, {VERSION_COLUMNS}, b.size AS blob_size FROM document_versions v"
        " JOIN documents d ON d.id = v.document LEFT JOIN document_blobs b ON b.sha256 = v.sha256"
    )
