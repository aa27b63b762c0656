"""The regulatory binder of a study or site: the expected-documents checklist and the signed export.

The checklist is the domain's (`tmf.checklist`) over what is filed now: effective versions (and, for
documents no IRB/IEC approves, approved ones), the people granted roles at the site (the delegation
log's staff), and the effective consent forms whose IRB/IEC approval letters must be filed. The export
is `binder_package.py`'s ZIP of every version with its signatures, signature page and PAdES
copy, a PDF index (rendered through the render cache, so an unchanged binder re-uses it), the registry,
and a manifest signed by the system key. Both are audited as exports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import BinaryIO

from anyio import from_thread, to_thread

from trialcoord.accounts import signer_keys, users
from trialcoord.documents import binder_package as package
from trialcoord.documents import documents, signatures, signatures_store
from trialcoord.documents import store as documents_store
from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus
from trialcoord.documents.rules.tmf import (
    ARTIFACTS,
    IRB_APPROVED,
    PRINCIPAL_INVESTIGATOR,
    SITE_CHECKLIST,
    FiledDocument,
    StaffMember,
    checklist,
)
from trialcoord.kernel import audit_log, system_keys
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.render_cache import render_cache
from trialcoord.kernel.rules.access import Role
from trialcoord.kernel.rules.audit import utc_instant
from trialcoord.scheduling import lookups

IN_FORCE = {DocumentStatus.EFFECTIVE}
STAFF_ROLES = {Role.INVESTIGATOR: PRINCIPAL_INVESTIGATOR, Role.COORDINATOR: "coordinator"}


async def _rows(study: str, site: str | None) -> list[dict]:
    async with read():
        found = await lookups.find_study(study)
        if found is None:
            raise NotFound(f"study {study} does not exist")
        if site is not None and await lookups.find_site(found["id"], site) is None:
            raise invalid(f"study {study} has no site {site}", field="site")
        return await documents_store.list_documents(study, site)


def _in_force(row: dict) -> bool:
    status = DocumentStatus(row["status"])
    return status in IN_FORCE or (status is DocumentStatus.APPROVED and row["artifact"] not in IRB_APPROVED)


async def site_checklist(study: str, site: str, today: date) -> list[dict]:
    """The site's expected documents: present, missing, expiring within 60 days, or expired."""
    rows = await _rows(study, site)
    filed = []
    consents = []
    for row in rows:
        if not _in_force(row):
            continue
        version = documents_store.version_of(row, DocumentKey(study, row["site"] or None, row["name"]))
        dated = version.entered(DocumentStatus.EFFECTIVE) or version.entered(DocumentStatus.APPROVED) or today
        expires = date.fromisoformat(row["expires_on"]) if row["expires_on"] else None
        filed.append(
            FiledDocument(
                row["artifact"],
                row["site"] or None,
                row["person"],
                f"{row['name']} {row['label']}",
                row["sha256"],
                dated,
                expires,
            )
        )
        if row["artifact"] == "040" and row["site"] == site:
            consents.append(version)
    # An approval letter counts wherever it is filed in the study (any site, any status), once, with its expiry.
    counted = {f.sha256 for f in filed if f.artifact_id == "066"}
    for row in await _rows(study, None):
        if row["artifact"] == "066" and row["sha256"] not in counted:
            counted.add(row["sha256"])
            filed.append(
                FiledDocument(
                    "066",
                    row["site"] or None,
                    None,
                    f"{row['name']} {row['label']}",
                    row["sha256"],
                    today,
                    date.fromisoformat(row["expires_on"]) if row["expires_on"] else None,
                )
            )
    staff = await _staff(study, site, today)
    items = checklist(SITE_CHECKLIST, filed, staff, consents, today)
    return [
        {
            "artifact": {"unique_id": i.artifact.unique_id, "number": i.artifact.number, "name": i.artifact.name},
            "scope": i.rule.scope,
            "person": i.person,
            "consent_version": i.consent_version,
            "state": str(i.state),
            "document": i.filed.label if i.filed else None,
            "expires_on": i.expires_on,
        }
        for i in items
    ]


async def checklist_report(study: str, site: str, today: date) -> bytes:
    """The site's checklist as a PDF/A report, dated today (same day, same checklist: same bytes)."""
    from trialcoord.kernel.render.documents import render_pdf

    items = await site_checklist(study, site, today)
    counts = {state: sum(1 for i in items if i["state"] == state) for state in ("missing", "expired", "expiring")}
    rows = [
        {
            "state": i["state"],
            "artifact": f"{i['artifact']['number']} {i['artifact']['name']}",
            "for": i["person"] or (f"consent version {i['consent_version']}" if i["consent_version"] else i["scope"]),
            "document": i["document"],
            "expires_on": i["expires_on"].isoformat() if i["expires_on"] else None,
        }
        for i in items
    ]
    data = {"study_code": study, "site": site, "as_of": today.isoformat(), "counts": counts, "items": rows}
    return await to_thread.run_sync(
        lambda: render_pdf(
            "binder_checklist",
            data,
            created_at=f"{today.isoformat()}T00:00:00.000000Z",
            title=f"Expected documents of site {site}",
            version_label=today.isoformat(),
        )
    )


async def _staff(study: str, site: str, today: date) -> list[StaffMember]:
    async with read():
        grants = await users.grants_at(study, site)
    return [
        StaffMember(g["user_id"], STAFF_ROLES[Role(g["role"])])
        for g in grants
        if g["role"] in {str(r) for r in STAFF_ROLES}
        and date.fromisoformat(str(g["valid_from"])) <= today
        and (g["valid_to"] is None or today <= date.fromisoformat(str(g["valid_to"])))
    ]


async def export(
    study: str,
    site: str | None,
    out: Path | BinaryIO,
    actor: str,
    personal_at: Callable[[str | None], bool] = lambda site: True,
    only_sites: set[str] | None = None,
) -> dict:
    """Write the binder ZIP of the study (and one site, given one) to `out`; returns its manifest.
    Subject logs (they link codes to people) are left out at sites where `personal_at(site)` is false;
    `only_sites` keeps the study-level documents and those sites' only."""
    keys = system_keys.current()
    rows = [
        row
        for row in await _rows(study, site)
        if (row["artifact"] not in documents.PERSONAL_ARTIFACTS or personal_at(row["site"] or None))
        and (only_sites is None or not row["site"] or row["site"] in only_sites)
    ]
    personal_sites = sorted({row["site"] for row in rows if row["artifact"] in documents.PERSONAL_ARTIFACTS})
    async with read():
        signature_rows = await signatures_store.signatures_of_study(study)
        made_files = await signatures_store.files_of_study(study)
    for row in rows:  # a signature whose page was never printed (a failed render) is printed now
        count = len(signature_rows.get(row["id"], []))
        if count and not any(
            f["kind"] == "signature_page" and f["signatures"] == count for f in made_files.get(row["id"], [])
        ):
            await signatures.manifest_safely(DocumentKey(study, row["site"] or None, row["name"]), row["label"])
            async with read():
                made_files = await signatures_store.files_of_study(study)
    files, index_entries = [], []
    for row in rows:
        key = DocumentKey(study, row["site"] or None, row["name"])
        found = ARTIFACTS[row["artifact"]]
        version = documents_store.version_of(row, key)
        record = documents.record_id(key, row["label"])
        sigs = [
            signatures_store.signature_of(s, row["sha256"], record).as_dict() for s in signature_rows.get(row["id"], [])
        ]
        meta = {
            "study": study,
            "site": key.site,
            "document": key.name,
            "label": row["label"],
            "artifact": {
                "unique_id": found.unique_id,
                "number": found.number,
                "name": found.name,
                "dating": found.dating,
            },
            "status": row["status"],
            "status_history": [
                {"status": str(c.status), "on": c.on.isoformat(), "reason": c.reason} for c in version.history
            ],
            "effective_on": _iso(version.entered(DocumentStatus.EFFECTIVE)),
            "author": row["author"],
            "created_at": row["created_at"],
            "kind": "version",
            "signatures": sigs,
        }
        files.append(
            package.PackageFile(
                package.binder_path(found, key.site, key.name, row["label"], row["file_name"], "version"),
                row["sha256"],
                row["size"],
                row["media_type"],
                _unread,
                meta,
            )
        )
        for kind in ("signature_page", "pades_signed"):
            latest = next((f for f in made_files.get(row["id"], []) if f["kind"] == kind), None)
            if latest is not None:
                files.append(
                    package.PackageFile(
                        package.binder_path(found, key.site, key.name, row["label"], row["file_name"], kind),
                        latest["sha256"],
                        latest["size"],
                        latest["media_type"],
                        _unread,
                        {
                            **{k: meta[k] for k in ("study", "site", "document", "label", "artifact")},
                            "kind": kind,
                            "of_version": row["sha256"],
                            "signature_count": latest["signatures"],
                        },
                    )
                )
        changed = max([row["created_at"], *(s["instant"] for s in sigs)])
        index_entries.append(
            (
                {
                    "zone": found.number[:2],
                    "section": found.number[3:5],
                    "artifact": found.number[6:],
                    "unique_id": found.unique_id,
                    "document": key.name + (f" ({key.site})" if key.site else ""),
                    "version": row["label"],
                    "status": row["status"],
                    "effective": _iso(version.entered(DocumentStatus.EFFECTIVE)),
                },
                changed,
            )
        )
    index_entries.sort(
        key=lambda pair: tuple(pair[0][k] for k in ("zone", "section", "artifact", "document", "version"))
    )
    index_pdf = await to_thread.run_sync(_index, study, site, index_entries)
    kept = _kept_export(study, site, personal_sites, only_sites)
    files = _distinct_paths(files)
    contents = _Contents(files, kept)
    files = [
        package.PackageFile(f.path, f.sha256, f.size, f.media_type, contents.loader(f.path, f.sha256), f.meta)
        for f in files
    ]
    generated_at = utc_instant(audit_log.clock())
    registry = await signer_keys.registry()
    try:
        manifest = await to_thread.run_sync(
            lambda: package.write_package(
                out,
                files,
                index_pdf=index_pdf,
                registry=registry,
                manifest_key=keys.manifest_key,
                generated_at=generated_at,
                scope={"study": study, "site": site},
            )
        )
    finally:
        contents.close()
    if kept is not None and isinstance(out, Path):
        await to_thread.run_sync(_keep, out, kept)
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


def _unread() -> bytes:
    raise AssertionError("replaced by a _Contents loader before writing")


INDEX_PART = 32  # documents per index part, on average (content-defined boundaries)


def _index_parts(entries: list[tuple[dict, str]]) -> list[list[tuple[dict, str]]]:
    """The index in parts whose boundaries depend on the rows themselves (as rsync chunks files), so a new
    version changes the one part it falls in and every other part is a render-cache hit."""
    parts, current = [], []
    for entry, changed in entries:
        current.append((entry, changed))
        mark = f"{entry['unique_id']}/{entry['document']}/{entry['version']}".encode()
        if int.from_bytes(hashlib.sha256(mark).digest()[:4], "big") % INDEX_PART == 0:
            parts.append(current)
            current = []
    return parts + ([current] if current or not parts else [])


def _index(study: str, site: str | None, entries: list[tuple[dict, str]]) -> bytes:
    """The index PDF: each part dated by its own rows' newest change, rendered through the cache, joined."""
    from trialcoord.kernel.render.documents import render_pdf
    from trialcoord.kernel.render.signed_pdf import append_pages

    title = f"Binder index {study}" + (f" site {site}" if site else "")
    cache = render_cache()
    joined = None
    for part in _index_parts(entries):
        as_of = max((changed for _, changed in part), default="2000-01-01T00:00:00.000000Z")
        data = {"study_code": study, "site_code": site or "all sites", "entries": [entry for entry, _ in part]}
        meta = {"created_at": as_of, "title": title, "version_label": as_of[:10]}
        pdf = cache.render("pdf", "binder_index", data, **meta) if cache else render_pdf("binder_index", data, **meta)
        joined = pdf if joined is None else append_pages(joined, pdf)
    return joined


class _Contents:
    """Files' bytes for write_package, which runs in a worker thread and reads them in path order: from the
    last export of the same scope when it holds the same bytes at the same path (write_package checks every
    file's SHA-256 again), else from the database, a batch of up to 32 MiB per round trip to the event loop."""

    BATCH = 32 * 1024 * 1024

    def __init__(self, files: list[package.PackageFile], kept: Path | None):
        self.order = [(f.path, f.sha256, f.size) for f in sorted(files, key=lambda f: f.path)]
        self.position = {path: n for n, (path, _, _) in enumerate(self.order)}
        self.batch: dict[str, bytes] = {}
        self.archive, self.known = _kept_members(kept)

    def loader(self, path: str, sha256: str):
        return lambda: self._load(path, sha256)

    def _load(self, path: str, sha256: str) -> bytes:
        if self.known.get(path) == sha256:
            try:
                data = self.archive.read(path)
                if hashlib.sha256(data).hexdigest() == sha256:
                    return data
            except (zipfile.BadZipFile, zlib.error, OSError, KeyError):
                pass
            self.known = {}  # a damaged or altered copy: the database has the bytes, for this file and the rest
        if sha256 not in self.batch:
            wanted, size = [], 0
            for later_path, later_sha, later_size in self.order[self.position[path] :]:
                if self.known.get(later_path) == later_sha:
                    continue  # read from the kept export
                if wanted and size + later_size > self.BATCH:
                    break
                wanted.append(later_sha)
                size += later_size
            self.batch = from_thread.run(documents_store.blobs, sorted(set(wanted)))
        data = self.batch.get(sha256)
        if data is None:
            raise ValueError(f"{path}: content {sha256} is missing from the database")
        return data

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _distinct_paths(files: list[package.PackageFile]) -> list[package.PackageFile]:
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
        out.append(package.PackageFile(path, f.sha256, f.size, f.media_type, f.load, f.meta))
    return out


def _kept_export(study: str, site: str | None, personal_sites: list[str], only_sites: set[str] | None) -> Path | None:
    """Where this installation keeps its last export of the scope (data/exports/), or None without settings."""
    settings = system_keys._settings
    if settings is None:
        return None
    scope = repr((study, site, personal_sites, sorted(only_sites) if only_sites is not None else None))
    return Path(settings.data_dir) / "exports" / f"{hashlib.sha256(scope.encode()).hexdigest()[:24]}.zip"


def _kept_members(kept: Path | None) -> tuple[zipfile.ZipFile | None, dict[str, str]]:
    """The kept export and its {path: sha256}, from its manifest; nothing when absent or unreadable."""
    if kept is None or not kept.exists():
        return None, {}
    try:
        archive = zipfile.ZipFile(kept)
        manifest = json.loads(archive.read(package.MANIFEST))
        return archive, {f["path"]: f["sha256"] for f in manifest["files"]}
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError):
        return None, {}


def _keep(out: Path, kept: Path) -> None:
    kept.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=kept.parent, suffix=".tmp")  # concurrent exports never share it
    os.close(handle)
    try:
        shutil.copyfile(out, name)
        os.replace(name, kept)
    finally:
        Path(name).unlink(missing_ok=True)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
