"""Use cases of studies and protocol versions: loading a version (refused when it renumbers a visit of an earlier
one), the studies and versions loaded, and the parsed protocol of a stored version, parsed once per process.

Studies are named by their codes. Each read runs on one connection (`reads`); `schedules` says how writes store
the schedules they change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import SYSTEM, Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.access import Blinding
from trialcoord.scheduling.rules.protocol import Protocol, renumbered
from trialcoord.scheduling.store import studies as studies_store

_protocols: dict[str, Protocol] = {}  # parsed protocol versions by sha256 of their source
_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Study:
    code: str
    title: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredStudy(Study):
    """A study with its row id, for the use cases that read its records."""

    id: int


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A loaded protocol version as stored (without its source text)."""

    id: int
    version: str
    effective: date
    source_name: str
    sha256: str
    loaded_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> StoredVersion:
        return cls(row["id"], row["version"], row["effective"], row["source_name"], row["sha256"], row["loaded_at"])


@dataclass(frozen=True, slots=True)
class ProtocolVersion:
    study: str
    version: str
    effective: date
    source_name: str
    sha256: str
    loaded_at: datetime


@dataclass(frozen=True, slots=True)
class LoadedVersion(ProtocolVersion):
    created: bool  # False: the same text was already loaded


def reads(use_case: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """A read use case: all its queries on one connection (see `engine.read`)."""

    @wraps(use_case)
    async def on_one_connection(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with read():
            return await use_case(*args, **kwargs)

    return on_one_connection


async def load_protocol_version(
    protocol: Protocol, source_text: str, source_name: str, actor: str = SYSTEM
) -> LoadedVersion:
    """Store a protocol version (creating its study); loading the same text again changes nothing."""
    sha256 = hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    about = f"study {protocol.study}, protocol version {protocol.version}"
    async with transaction(about):
        changes = []
        study = await studies_store.find_study(protocol.study)
        if study is None:
            study = await studies_store.insert_study(protocol.study, protocol.title)
            changes.append(Change("create", "study", protocol.study, None, {"title": protocol.title}))
        row = await studies_store.find_version(study["id"], protocol.version)
        created = row is None
        if row is None:
            await check_numbering(study["id"], protocol)
            row = await studies_store.insert_version(
                study["id"], protocol.version, protocol.effective, source_name, source_text, sha256
            )
            changes.append(
                Change(
                    "create",
                    "protocol_version",
                    f"{protocol.study}/protocol/{protocol.version}",
                    None,
                    {"effective": protocol.effective, "source_name": source_name, "sha256": sha256},
                )
            )
        elif row["sha256"] != sha256:
            raise Conflict(
                f"{about} is already loaded from {row['source_name']} with different content; "
                "an amendment needs a new version label"
            )
        await audit_log.record(actor, *changes)
    _protocols[sha256] = protocol
    return LoadedVersion(**_version_fields(protocol.study, row), created=created)


@reads
async def list_studies() -> list[Study]:
    return [_study(row) for row in await studies_store.list_studies()]


@reads
async def get_study(code: str) -> Study:
    found = await require_study(code)
    return Study(found.code, found.title, found.created_at)


@reads
async def list_protocol_versions(study: str) -> list[ProtocolVersion]:
    rows = await studies_store.list_versions((await require_study(study)).id)
    return [ProtocolVersion(**_version_fields(study, row)) for row in rows]


@reads
async def get_protocol(study: str, version: str | None = None) -> Protocol:
    """The given version, or the latest (by effective date) when none is given."""
    rows = await studies_store.list_versions((await require_study(study)).id)
    if version is None:
        if not rows:
            raise NotFound(f"study {study} has no protocol version loaded")
        row = StoredVersion.of(rows[-1])
    else:
        row = pick_version(study, rows, version)
    return await protocol_of(row.id, row.sha256)


@reads
async def study_blinding(study: str) -> Blinding:
    """The study's blinding: its current protocol version's `blinding:` (the latest by effective date, as
    `get_protocol` picks it); open while no version is loaded."""
    rows = await studies_store.list_versions((await require_study(study)).id)
    if not rows:
        return Blinding.OPEN
    row = StoredVersion.of(rows[-1])
    return (await protocol_of(row.id, row.sha256)).blinding


@reads
async def version_source(study: str, version: str) -> tuple[str, str]:
    """(source text, source name) of a loaded protocol version."""
    row = pick_version(study, await studies_store.list_versions((await require_study(study)).id), version)
    source = await studies_store.version_source(row.id)
    return source["source_text"], source["source_name"]


async def check_numbering(study_id: int, protocol: Protocol) -> None:
    """Refuse a version that renumbers a visit of an earlier one (the contract: codes keep their meaning)."""
    earlier = [await protocol_of(row["id"], row["sha256"]) for row in await studies_store.list_versions(study_id)]
    problems = renumbered(earlier, protocol)
    if problems:
        raise InvalidInput(
            [
                Problem(f"study {protocol.study}, protocol version {protocol.version}: {line}", field="visits")
                for line in problems
            ]
        )


async def protocol_of(version_id: int, sha256: str) -> Protocol:
    """The parsed protocol of a stored version, parsed once per process and source text."""
    if sha256 not in _protocols:
        from trialcoord.scheduling.protocol_files import parse_protocol  # only when not cached: it needs yaml

        source = await studies_store.version_source(version_id)
        _protocols[sha256] = parse_protocol(source["source_text"], file=source["source_name"])
    return _protocols[sha256]


async def require_study(code: str) -> StoredStudy:
    row = await studies_store.find_study(code)
    if row is None:
        raise NotFound(f"study {code} does not exist")
    return StoredStudy(row["code"], row["title"], row["created_at"], row["id"])


def pick_version(study: str, rows: Iterable[dict[str, Any]], version: str) -> StoredVersion:
    """The version labelled `version` among a study's version rows (`studies_store.list_versions`)."""
    rows = list(rows)
    for row in rows:
        if row["version"] == version:
            return StoredVersion.of(row)
    known = ", ".join(row["version"] for row in rows) or "none loaded"
    raise invalid(f"study {study} has no protocol version {version}; versions: {known}", field="version")


def _study(row: dict[str, Any]) -> Study:
    return Study(row["code"], row["title"], row["created_at"])


def _version_fields(study: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "study": study,
        "version": row["version"],
        "effective": row["effective"],
        "source_name": row["source_name"],
        "sha256": row["sha256"],
        "loaded_at": row["loaded_at"],
    }
