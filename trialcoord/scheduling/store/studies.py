"""Studies and their protocol versions."""

from __future__ import annotations

from datetime import date
from typing import Any

from trialcoord.kernel.database.tables import ProtocolVersion, Study
from trialcoord.scheduling.store import now, stored

VERSION_FIELDS = (
    ProtocolVersion._meta.primary_key,
    ProtocolVersion.version,
    ProtocolVersion.effective,
    ProtocolVersion.source_name,
    ProtocolVersion.sha256,
    ProtocolVersion.loaded_at,
)


async def find_study(code: str) -> dict[str, Any] | None:
    return await Study.select().where(Study.code == code).first()


async def list_studies() -> list[dict[str, Any]]:
    return sorted(await Study.select(), key=lambda row: row["code"])


async def insert_study(code: str, title: str) -> dict[str, Any]:
    stamp = now()
    await Study.insert(Study(code=code, title=title, created_at=stamp, updated_at=stamp))
    return stored(await find_study(code), f"study {code}")


async def list_versions(study_id: int) -> list[dict[str, Any]]:
    """Oldest first: by effective date, then by loading order."""
    query = ProtocolVersion.select(*VERSION_FIELDS).where(ProtocolVersion.study == study_id)
    return await query.order_by(ProtocolVersion.effective).order_by(ProtocolVersion._meta.primary_key)


async def find_version(study_id: int, version: str) -> dict[str, Any] | None:
    query = ProtocolVersion.select(*VERSION_FIELDS, ProtocolVersion.source_text)
    return await query.where((ProtocolVersion.study == study_id) & (ProtocolVersion.version == version)).first()


async def version_source(version_id: int) -> dict[str, Any]:
    """The version's source_text and source_name."""
    query = ProtocolVersion.select(ProtocolVersion.source_text, ProtocolVersion.source_name)
    return stored(
        await query.where(ProtocolVersion._meta.primary_key == version_id).first(), f"protocol version #{version_id}"
    )


async def insert_version(
    study_id: int, version: str, effective: date, source_name: str, source_text: str, sha256: str
) -> dict[str, Any]:
    row = ProtocolVersion(
        study=study_id,
        version=version,
        effective=effective,
        source_name=source_name,
        source_text=source_text,
        sha256=sha256,
        loaded_at=now(),
    )
    await ProtocolVersion.insert(row)
    return stored(await find_version(study_id, version), f"protocol version {version}")
