"""The regulatory binder as a ZIP for inspectors and sponsors, and its offline verification.

The package is checkable with the public signer registry alone (no database, no private key):
`manifest.json` (canonical JSON) lists every file with its SHA-256 and its electronic signatures, and
`manifest.json.sig` is a raw Ed25519 signature of its exact bytes by a system key from the registry, so
`openssl pkeyutl -rawin` and `sha256sum` verify it by hand (README.txt says how). `exchange.xml` lists the
same versions and files as an eTMF Exchange Mechanism Standard batch, for another eTMF to import. Same inputs
give the same ZIP bytes.

This module holds the package's layout: its formats, the names of its fixed files, `PackageFile` and the paths
of the files inside. `package_writing.py` writes the package (with `package_exchange.py`'s exchange.xml and
`package_readme.py`'s README.txt); `package_verification.py` checks one offline.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trialcoord.documents.rules.tmf import Artifact

FORMAT = "trialcoord-binder-manifest/1"
MANIFEST, SIGNATURE, KEY_PEM = "manifest.json", "manifest.json.sig", "manifest-key.pem"
INDEX, REGISTRY, EXCHANGE, README = "index.pdf", "registry.json", "exchange.xml", "README.txt"
FIXED = (MANIFEST, SIGNATURE, KEY_PEM, INDEX, REGISTRY, EXCHANGE, README)
CHECKPOINT = "audit-checkpoint.json"  # the site's newest signed audit checkpoint, an anchor receivers hold (issue 17)
HASHED = {"index": INDEX, "registry": REGISTRY, "exchange": EXCHANGE, "readme": README}  # covered by the signature
KIND_SUFFIX: dict[str, str | None] = {
    "version": None,
    "signature_page": ".signature-page.pdf",
    "pades_signed": ".signed.pdf",
}
_UNSAFE = set('/\\:*?"<>|')
_SEGMENT_BYTES = 150  # below the usual 255-byte file-name limit, leaving room for suffixes


@dataclass(frozen=True)
class PackageFile:
    path: str  # from `binder_path`
    sha256: str
    size: int
    media_type: str
    load: Callable[[], bytes]  # called once, while the file is written: one file in memory at a time
    meta: Mapping[str, Any]  # JSON-able: study, site, document, artifact, label, status, kind, signatures, ...


def _segment(text: str) -> str:
    """One safe path segment: Unicode letters kept (NFC, so one name is one path on every system)."""
    text = unicodedata.normalize("NFC", str(text))
    text = "".join(
        "_" if c in _UNSAFE or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp") else c
        for c in text[:_SEGMENT_BYTES]
    )
    while len(text.encode()) > _SEGMENT_BYTES:
        text = text[:-1]
    return text.strip(" .") or "_"  # Windows drops trailing dots and spaces; leading dots hide files


def binder_path(artifact: Artifact, site: str | None, document: str, label: str, file_name: str, kind: str) -> str:
    """binder/<zone>/<section>/<artifact>/<site or study>/<document>/<label>/<file name>."""
    if kind not in KIND_SUFFIX:
        raise ValueError(f"unknown package file kind {kind!r} (one of {', '.join(KIND_SUFFIX)})")
    name = _segment(file_name)
    suffix = KIND_SUFFIX[kind]
    if suffix:
        stem = name.rsplit(".", 1)[0] if "." in name else name
        name = _segment(stem[: _SEGMENT_BYTES - 20] + suffix)
    parts = (*artifact.folder, site or "study", document, label)
    return "/".join(("binder", *(_segment(p) for p in parts), name))


def check_path(path: str) -> None:
    parts = path.split("/")
    if path in FIXED or not parts[0] or any(p in ("", ".", "..") or p != _segment(p) for p in parts):
        raise ValueError(f"unsafe or reserved package path {path!r}: build it with binder_path")
