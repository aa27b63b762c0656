"""Writing the binder package: every file, index.pdf, registry.json, exchange.xml and README.txt into one ZIP,
with the manifest that lists them and its signature by the system key. Same inputs give the same ZIP bytes."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.documents.package_exchange import exchange_xml
from trialcoord.documents.package_layout import (
    CHECKPOINT,
    EXCHANGE,
    FORMAT,
    HASHED,
    INDEX,
    KEY_PEM,
    MANIFEST,
    README,
    REGISTRY,
    SIGNATURE,
    PackageFile,
    check_path,
)
from trialcoord.documents.package_readme import readme
from trialcoord.kernel import signing_keys
from trialcoord.kernel.rules.audit_entries import canonical_json

STORED_MEDIA = {  # already compressed: deflating them again costs time and gains nothing
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/zip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _zip_time(instant: str) -> tuple[int, int, int, int, int, int]:
    moment = datetime.strptime(instant[:19], "%Y-%m-%dT%H:%M:%S")
    return max(moment, datetime(1980, 1, 1)).timetuple()[:6]  # ZIP dates start in 1980


def _put(archive: zipfile.ZipFile, name: str, data: bytes, media_type: str, when: tuple) -> None:
    info = zipfile.ZipInfo(name, when)
    info.create_system, info.external_attr = 3, 0o644 << 16  # not the writer's platform or umask
    stored = media_type in STORED_MEDIA
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=None if stored else 9)


def write_package(
    out: BinaryIO | Path,
    files: Sequence[PackageFile],
    *,
    index_pdf: bytes,
    registry: Mapping,
    manifest_key: Ed25519PrivateKey,
    generated_at: str,
    scope: Mapping,
    checkpoint: Mapping | None = None,
) -> dict:
    """Write the package to `out` (a path, or a stream that need not seek) and return its manifest.

    Each file's bytes are checked against its stated SHA-256 and size before anything is signed:
    a package never signs bytes it did not see. `checkpoint` (a signed audit checkpoint's JSON) is carried as
    audit-checkpoint.json, its SHA-256 in the manifest's `audit_checkpoint`.
    """
    ordered = sorted(files, key=lambda f: f.path)
    for position, item in enumerate(ordered):
        check_path(item.path)
        if position and ordered[position - 1].path == item.path:
            raise ValueError(f"two package files at {item.path}")
        if any("path" < key < "sha256" for key in item.meta):  # README's grep needs sha256 right after path
            raise ValueError(f"{item.path}: meta key sorting between 'path' and 'sha256'")
    when = _zip_time(generated_at)
    public = manifest_key.public_key()
    with zipfile.ZipFile(out, "w") as archive:
        for item in ordered:
            data = item.load()
            if hashlib.sha256(data).hexdigest() != item.sha256 or len(data) != item.size:
                raise ValueError(f"{item.path}: the loaded bytes are not the version stated (SHA-256 or size differ)")
            _put(archive, item.path, data, item.media_type, when)
        entries = [
            {**item.meta, "path": item.path, "sha256": item.sha256, "size": item.size, "media_type": item.media_type}
            for item in ordered
        ]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "generated_at": generated_at,
            "files": entries,
            "scope": {"study": scope.get("study"), "site": scope.get("site")},
            "manifest_key_id": signing_keys.key_id(public),
        }
        extras = {
            INDEX: (index_pdf, "application/pdf"),
            REGISTRY: (canonical_json(registry), "application/json"),
            EXCHANGE: (exchange_xml(manifest), "application/xml"),
        }
        extras[README] = (readme(manifest, registry).encode(), "text/plain")
        if checkpoint is not None:
            extras[CHECKPOINT] = (canonical_json(checkpoint), "application/json")
            manifest["audit_checkpoint"] = {
                "path": CHECKPOINT,
                "sha256": hashlib.sha256(extras[CHECKPOINT][0]).hexdigest(),
            }
        for role, name in HASHED.items():
            manifest[role] = {"path": name, "sha256": hashlib.sha256(extras[name][0]).hexdigest()}
        for name, (data, media_type) in extras.items():
            _put(archive, name, data, media_type, when)
        manifest_bytes = canonical_json(manifest)
        _put(archive, MANIFEST, manifest_bytes, "application/json", when)
        _put(archive, SIGNATURE, manifest_key.sign(manifest_bytes), "application/octet-stream", when)
        _put(archive, KEY_PEM, signing_keys.public_key_pem(public).encode(), "text/plain", when)
    return manifest
