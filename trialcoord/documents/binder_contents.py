"""The files' bytes of a binder export: from the last export of the same scope, kept in the data directory
(data/exports/), when it holds the same bytes at the same path, else from the database."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from anyio import from_thread

from trialcoord.documents import package_layout
from trialcoord.documents import store as documents_store


class Contents:
    """Files' bytes for write_package, which runs in a worker thread and reads them in path order: from the
    last export of the same scope when it holds the same bytes at the same path (write_package checks every
    file's SHA-256 again), else from the database, a batch of up to 32 MiB per round trip to the event loop."""

    BATCH = 32 * 1024 * 1024

    def __init__(self, files: list[package_layout.PackageFile], kept: Path | None):
        self.order = [(f.path, f.sha256, f.size) for f in sorted(files, key=lambda f: f.path)]
        self.position = {path: n for n, (path, _, _) in enumerate(self.order)}
        self.batch: dict[str, bytes] = {}
        self.archive, self.known = _kept_members(kept)

    def loader(self, path: str, sha256: str) -> Callable[[], bytes]:
        return lambda: self._load(path, sha256)

    def _load(self, path: str, sha256: str) -> bytes:
        if self.archive is not None and self.known.get(path) == sha256:  # known is empty without an archive
            try:
                data = self.archive.read(path)
                if hashlib.sha256(data).hexdigest() == sha256:
                    return data
            except (zipfile.BadZipFile, zlib.error, OSError, KeyError):
                pass
            self.known = {}  # a damaged or altered copy: the database has the bytes, for this file and the rest
        if sha256 not in self.batch:
            wanted: list[str] = []
            size = 0
            for later_path, later_sha, later_size in self.order[self.position[path] :]:
                if self.known.get(later_path) == later_sha:
                    continue  # read from the kept export
                if wanted and size + later_size > self.BATCH:
                    break
                wanted.append(later_sha)
                size += later_size
            self.batch = from_thread.run(documents_store.blobs, sorted(set(wanted)))
        found = self.batch.get(sha256)
        if found is None:
            raise ValueError(f"{path}: content {sha256} is missing from the database")
        return found

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def kept_export(
    data_dir: Path | None, study: str, site: str | None, personal_sites: list[str], only_sites: set[str] | None
) -> Path | None:
    """Where the installation keeps its last export of the scope (data/exports/), or None without a data directory."""
    if data_dir is None:
        return None
    scope = repr((study, site, personal_sites, sorted(only_sites) if only_sites is not None else None))
    return data_dir / "exports" / f"{hashlib.sha256(scope.encode()).hexdigest()[:24]}.zip"


def _kept_members(kept: Path | None) -> tuple[zipfile.ZipFile | None, dict[str, str]]:
    """The kept export and its {path: sha256}, from its manifest; nothing when absent or unreadable."""
    if kept is None or not kept.exists():
        return None, {}
    try:
        archive = zipfile.ZipFile(kept)
        manifest = json.loads(archive.read(package_layout.MANIFEST))
        return archive, {f["path"]: f["sha256"] for f in manifest["files"]}
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError):
        return None, {}


def keep(out: Path, kept: Path) -> None:
    kept.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=kept.parent, suffix=".tmp")  # concurrent exports never share it
    os.close(handle)
    try:
        shutil.copyfile(out, name)
        os.replace(name, kept)
    finally:
        Path(name).unlink(missing_ok=True)
