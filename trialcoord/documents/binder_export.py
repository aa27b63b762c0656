"""The signed export of a study's or site's regulatory binder.

The export is `package_writing.py`'s ZIP of every version with its signatures, signature page and PAdES
copy, a PDF index (rendered through the render cache, so an unchanged binder re-uses it: `binder_index.py`),
the registry, and a manifest signed by the system key; the files' bytes come from the last export or the
database (`binder_contents.py`). Both the export and the checklist (`binder_checklist.py`) are audited as exports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread

from trialcoord.accounts import signer_keys
from trialcoord.documents import (
    binder_checklist,
    binder_index,
    documents,
    package_layout,
    package_writing,
    signatures,
    signatures_store,
)
from trialcoord.documents.binder_contents import Contents, keep, kept_export
from trialcoord.documents.rules.documents import DocumentStatus, Reader
from trialcoord.documents.rules.tmf import ARTIFACTS
from trialcoord.kernel import anchors, audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.audit_store import AuditFilter, TrailEntry
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.rules.audit_entries import utc_instant

_TRAIL_PAGE = 1000


async def export(
    study: str,
    site: str | None,
    out: Path | BinaryIO,
    actor: str,
    installation: Installation,
    personal_at: Callable[[str | None], bool] = lambda site: True,
    only_sites: set[str] | None = None,
    reader: Reader | None = None,
) -> dict[str, Any]:
    """Write the binder ZIP of the study (and one site, given one) to `out`; returns its manifest (the JSON
    document the package signs).
    Subject logs (they link codes to people) are left out at sites where `personal_at(site)` is false;
    `only_sites` keeps the study-level documents and those sites' only; a `reader` (given one) gets the
    versions they see (no draft or version in review for a monitor or a sponsor)."""
    keys = installation.keys()
    rows = [
        row
        for row in await binder_checklist.document_rows(study, site, reader)
        if (row.artifact not in documents.PERSONAL_ARTIFACTS or personal_at(row.version.key.site))
        and (only_sites is None or not row.version.key.site or row.version.key.site in only_sites)
    ]
    personal_sites = sorted(
        {row.version.key.site or "" for row in rows if row.artifact in documents.PERSONAL_ARTIFACTS}
    )
    async with read():
        signature_rows = await signatures_store.signatures_of_study(study)
        made_files = await signatures_store.files_of_study(study)
    trail = await _trail(study)
    for row in rows:  # a signature whose page was never printed (a failed render) is printed now
        count = len(signature_rows.get(row.id, []))
        if count and not any(
            f["kind"] == "signature_page" and f["signatures"] == count for f in made_files.get(row.id, [])
        ):
            await signatures.manifest_safely(row.version.key, row.version.label, installation)
            async with read():
                made_files = await signatures_store.files_of_study(study)
    files: list[package_layout.PackageFile] = []
    index_entries: list[binder_index.IndexEntry] = []
    for row in rows:
        version = row.version
        key = version.key
        found = ARTIFACTS[row.artifact]
        record = documents.record_id(key, version.label)
        sigs = [
            signatures_store.signature_of(s, version.sha256, record).as_dict() for s in signature_rows.get(row.id, [])
        ]
        meta = {
            "study": study,
            "site": key.site,
            "document": key.name,
            "label": version.label,
            "artifact": {
                "unique_id": found.unique_id,
                "number": found.number,
                "name": found.name,
                "dating": found.dating,
            },
            "status": str(version.status),
            "status_history": [
                {"status": str(c.status), "on": c.on.isoformat(), "reason": c.reason} for c in version.history
            ],
            "effective_on": _iso(version.entered(DocumentStatus.EFFECTIVE)),
            "author": version.author,
            "created_at": version.created_at,
            "kind": "version",
            "signatures": sigs,
            "audit": trail.get(record, []),
        }
        files.append(
            package_layout.PackageFile(
                package_layout.binder_path(found, key.site, key.name, version.label, row.file_name, "version"),
                version.sha256,
                version.size,
                version.media_type,
                _unread,
                meta,
            )
        )
        for kind in ("signature_page", "pades_signed"):
            latest = next((f for f in made_files.get(row.id, []) if f["kind"] == kind), None)
            if latest is not None:
                files.append(
                    package_layout.PackageFile(
                        package_layout.binder_path(found, key.site, key.name, version.label, row.file_name, kind),
                        latest["sha256"],
                        latest["size"],
                        latest["media_type"],
                        _unread,
                        {
                            **{k: meta[k] for k in ("study", "site", "document", "label", "artifact")},
                            "kind": kind,
                            "of_version": version.sha256,
                            "signature_count": latest["signatures"],
                        },
                    )
                )
        changed = max([version.created_at, *(s["instant"] for s in sigs)])
        index_entries.append(
            (
                {
                    "zone": found.number[:2],
                    "section": found.number[3:5],
                    "artifact": found.number[6:],
                    "unique_id": found.unique_id,
                    "document": key.name + (f" ({key.site})" if key.site else ""),
                    "version": version.label,
                    "status": str(version.status),
                    "effective": _iso(version.entered(DocumentStatus.EFFECTIVE)),
                },
                changed,
            )
        )
    index_entries.sort(
        key=lambda pair: tuple(pair[0][k] or "" for k in ("zone", "section", "artifact", "document", "version"))
    )
    index_pdf = await to_thread.run_sync(binder_index.index, study, site, index_entries, installation.render_cache())
    kept = kept_export(installation.data_dir, study, site, personal_sites, only_sites)
    files = _distinct_paths(files)
    contents = Contents(files, kept)
    files = [
        package_layout.PackageFile(f.path, f.sha256, f.size, f.media_type, contents.loader(f.path, f.sha256), f.meta)
        for f in files
    ]
    generated_at = utc_instant(audit_log.clock())
    registry = await signer_keys.registry(installation)
    anchor = await anchors.latest(lambda: keys.manifest_key, installation.checkpoint_dir)
    try:
        manifest = await to_thread.run_sync(
            lambda: package_writing.write_package(
                out,
                files,
                index_pdf=index_pdf,
                registry=registry,
                manifest_key=keys.manifest_key,
                generated_at=generated_at,
                scope={"study": study, "site": site},
                checkpoint=anchor.to_json(),
            )
        )
    finally:
        contents.close()
    if kept is not None and isinstance(out, Path):
        await to_thread.run_sync(keep, out, kept)
    digest = hashlib.sha256(repr(sorted((f["path"], f["sha256"]) for f in manifest["files"])).encode()).hexdigest()
    async with transaction("binder export"):
        await audit_log.record(
            actor,
            Change(
                "export",
                "binder",
                f"{study}/{site}" if site else study,
                None,
                {"files": len(files), "generated_at": generated_at, "files_digest": digest},
            ),
        )
    return manifest


async def _trail(study: str) -> dict[str, list[dict[str, Any]]]:
    """Each version's audit trail entries (filed, status steps, signed), oldest first: exchange.xml's audit
    records. Read a page at a time; the trail's sequence number is each record's id."""
    where = AuditFilter(record_type="document_version", record_id=f"{study}/")
    found: dict[str, list[dict[str, Any]]] = {}
    after = 0
    while page := await audit_log.browse(where, after=after, limit=_TRAIL_PAGE, newest_first=False):
        for e in page:
            found.setdefault(e.record_id, []).append(
                {"id": str(e.sequence), "at": e.recorded_at, "actor": e.actor, "action": e.action, "event": _event(e)}
            )
        after = page[-1].sequence
    return found


def _event(entry: TrailEntry) -> str:
    """What happened, in a line: the action and the status or meaning it recorded, with its reason."""
    new = entry.new or {}
    said = new.get("status") or new.get("meaning")
    return f"{entry.action}{f': {said}' if said else ''}{f' ({entry.reason})' if entry.reason else ''}"


def _unread() -> bytes:
    raise AssertionError("replaced by a Contents loader before writing")


def _distinct_paths(files: list[package_layout.PackageFile]) -> list[package_layout.PackageFile]:
    """Names that meet at one path once unsafe characters are replaced ("Lab cert: 2026", "Lab cert_ 2026"),
    or that differ only in case (one file on Windows and macOS), each get a short hash of their own record
    before the extension, the name shortened to keep the path part within its limit."""
    seen: dict[str, int] = {}
    for f in files:
        seen[f.path.casefold()] = seen.get(f.path.casefold(), 0) + 1
    out = []
    for f in files:
        path = f.path
        if seen[path.casefold()] > 1:
            folder, _, name = path.rpartition("/")
            stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
            mark = f"{f.meta.get('document')}/{f.meta.get('label')}/{f.meta.get('kind')}/{f.sha256}"
            tag = f" ({hashlib.sha256(mark.encode()).hexdigest()[:8]})"
            room = 140 - len((tag + dot + ext).encode())
            stem = stem.encode()[:room].decode(errors="ignore")
            path = f"{folder}/{stem}{tag}{dot}{ext}"
        out.append(package_layout.PackageFile(path, f.sha256, f.size, f.media_type, f.load, f.meta))
    return out


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
