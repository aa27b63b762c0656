"""The regulatory binder as a ZIP for inspectors and sponsors, and its offline verification.

The package is checkable with the public signer registry alone (no database, no private key):
`manifest.json` (canonical JSON) lists every file with its SHA-256 and its electronic signatures, and
`manifest.json.sig` is a raw Ed25519 signature of its exact bytes by a system key from the registry, so
`openssl pkeyutl -rawin` and `sha256sum` verify it by hand (README.txt says how). `exchange.xml` repeats
the manifest in the spirit of the eTMF Exchange Mechanism Standard. Same inputs give the same ZIP bytes.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.accounts.rules.signers import SignerKey, parse_registry
from trialcoord.documents.rules.documents import DocumentKey, record_id
from trialcoord.documents.rules.signatures import Signature, Verdict, judge
from trialcoord.documents.rules.tmf import ARTIFACTS, Artifact
from trialcoord.kernel import signing_keys
from trialcoord.kernel.rules.audit_entries import canonical_json

FORMAT = "trialcoord-binder-manifest/1"
EXCHANGE_FORMAT = "trialcoord-binder-exchange/1"
MANIFEST, SIGNATURE, KEY_PEM = "manifest.json", "manifest.json.sig", "manifest-key.pem"
INDEX, REGISTRY, EXCHANGE, README = "index.pdf", "registry.json", "exchange.xml", "README.txt"
FIXED = (MANIFEST, SIGNATURE, KEY_PEM, INDEX, REGISTRY, EXCHANGE, README)
HASHED = {"index": INDEX, "registry": REGISTRY, "exchange": EXCHANGE, "readme": README}  # covered by the signature
KIND_SUFFIX = {"version": None, "signature_page": ".signature-page.pdf", "pades_signed": ".signed.pdf"}
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
_UNSAFE = set('/\\:*?"<>|')
_SEGMENT_BYTES = 150  # below the usual 255-byte file-name limit, leaving room for suffixes
_CHUNK = 1 << 20
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


@dataclass(frozen=True)
class PackageFile:
    path: str  # from `binder_path`
    sha256: str
    size: int
    media_type: str
    load: Callable[[], bytes]  # called once, while the file is written: one file in memory at a time
    meta: Mapping[str, Any]  # JSON-able: study, site, document, artifact, label, status, kind, signatures, ...


@dataclass(frozen=True)
class PackageReport:
    files_checked: int
    signatures_checked: int
    problems: tuple[str, ...]
    trust: str = ""  # which registry the manifest signature and the signatures were checked against
    valid_when_made: int = 0  # signatures whose key has since ended: not a problem (Part 11 keeps them)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- paths -------------------------------------------------------------------------------------------


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
    if KIND_SUFFIX[kind]:
        stem = name.rsplit(".", 1)[0] if "." in name else name
        name = _segment(stem[: _SEGMENT_BYTES - 20] + KIND_SUFFIX[kind])
    parts = (*artifact.folder, site or "study", document, label)
    return "/".join(("binder", *(_segment(p) for p in parts), name))


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path in FIXED or not parts[0] or any(p in ("", ".", "..") or p != _segment(p) for p in parts):
        raise ValueError(f"unsafe or reserved package path {path!r}: build it with binder_path")


# --- writing -----------------------------------------------------------------------------------------


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
) -> dict:
    """Write the package to `out` (a path, or a stream that need not seek) and return its manifest.

    Each file's bytes are checked against its stated SHA-256 and size before anything is signed:
    a package never signs bytes it did not see.
    """
    ordered = sorted(files, key=lambda f: f.path)
    for position, item in enumerate(ordered):
        _check_path(item.path)
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
            EXCHANGE: (_exchange_xml(manifest), "application/xml"),
        }
        extras[README] = (_readme(manifest, registry).encode(), "text/plain")
        for role, name in HASHED.items():
            manifest[role] = {"path": name, "sha256": hashlib.sha256(extras[name][0]).hexdigest()}
        for name, (data, media_type) in extras.items():
            _put(archive, name, data, media_type, when)
        manifest_bytes = canonical_json(manifest)
        _put(archive, MANIFEST, manifest_bytes, "application/json", when)
        _put(archive, SIGNATURE, manifest_key.sign(manifest_bytes), "application/octet-stream", when)
        _put(archive, KEY_PEM, signing_keys.public_key_pem(public).encode(), "text/plain", when)
    return manifest


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can carry: ElementTree escapes markup but would write control characters as they are."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "".join(
        c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000" else "\ufffd"
        for c in text
    )


def _attrs(**values: Any) -> dict[str, str]:
    return {k: _xml_text(v) for k, v in values.items() if v is not None}


def _exchange_xml(manifest: Mapping) -> bytes:
    scope = manifest["scope"]
    root = ET.Element(
        "etmf-exchange",
        _attrs(
            format=EXCHANGE_FORMAT,
            manifest=FORMAT,
            generated_at=manifest["generated_at"],
            manifest_key_id=manifest["manifest_key_id"],
        ),
    )
    ET.SubElement(root, "trial", _attrs(study=scope["study"], site=scope["site"]))
    listing = ET.SubElement(root, "files")
    for entry in manifest["files"]:
        art = dict(entry.get("artifact") or {})
        known = ARTIFACTS.get(str(art.get("unique_id")))
        element = ET.SubElement(
            listing,
            "file",
            _attrs(
                path=entry["path"],
                sha256=entry["sha256"],
                size=entry["size"],
                media_type=entry["media_type"],
                kind=entry.get("kind"),
            ),
        )
        ET.SubElement(
            element,
            "artifact",
            _attrs(
                unique_id=art.get("unique_id"),
                number=art.get("number"),
                name=art.get("name"),
                zone=art.get("zone") or (known.zone if known else None),
                section=art.get("section") or (known.section if known else None),
            ),
        )
        ET.SubElement(element, "location", _attrs(study=entry.get("study"), site=entry.get("site")))
        ET.SubElement(element, "document", _attrs(name=entry.get("document")))
        ET.SubElement(
            element,
            "version",
            _attrs(
                label=entry.get("label"),
                status=entry.get("status"),
                effective_on=entry.get("effective_on"),
                author=entry.get("author"),
                created_at=entry.get("created_at"),
            ),
        )
        signed = ET.SubElement(element, "signatures")
        for s in entry.get("signatures") or []:
            ET.SubElement(
                signed,
                "signature",
                _attrs(
                    signer_id=s.get("signer_id"),
                    printed_name=s.get("printed_name"),
                    meaning=s.get("meaning"),
                    instant=s.get("instant"),
                    key_id=s.get("key_id"),
                    version_sha256=s.get("version_sha256"),
                    record=s.get("record"),
                    value=s.get("signature"),
                ),
            )
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _readme(manifest: Mapping, registry: Mapping) -> str:
    key = next((k for k in registry.get("system_keys") or [] if k.get("key_id") == manifest["manifest_key_id"]), {})
    return f"""Regulatory binder of study {manifest["scope"]["study"]}, site {manifest["scope"]["site"] or "(all)"}
generated {manifest["generated_at"]} by trialcoord.

manifest.json lists every file with its SHA-256 and its electronic signatures; manifest.json.sig is the
Ed25519 signature of manifest.json's exact bytes by system key {manifest["manifest_key_id"]}.
Unzip the package, then in its folder (OpenSSL 3.0 or later, GNU coreutils):

1. The manifest signature. Expect "Signature Verified Successfully":

   openssl pkeyutl -verify -pubin -inkey manifest-key.pem -rawin -in manifest.json -sigfile manifest.json.sig

2. The key is the site's. This prints the raw public key in hex:

   openssl pkey -pubin -in manifest-key.pem -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \\n'; echo

   It must equal the public_key of system key {manifest["manifest_key_id"]} in the signer registry the
   site publishes; when this package was made that was
   {key.get("public_key", "(not in the registry given)")}
   Compare with the site's own copy of the registry, not only with registry.json inside this package.

3. Every file, index.pdf, registry.json, exchange.xml and this README against the signed manifest.
   Expect one "OK" per line and no "FAILED":

   grep -o '"path":"[^"]*","sha256":"[0-9a-f]*"' manifest.json | sed -E 's/^"path":"(.*)","sha256":"(.*)"$/\\2  \\1/' | sha256sum -c -

4. The electronic signatures inside manifest.json (each covers the SHA-256 of the version it signs)
   are checked against the signer registry by trialcoord's package verifier (verify_package).
"""


# --- verification ------------------------------------------------------------------------------------


def _digest(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with archive.open(name) as member:  # a CRC mismatch raises at the end of the member
        while chunk := member.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass
class _Verifier:
    archive: zipfile.ZipFile
    now: str
    problems: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def read(self, name: str) -> bytes | None:
        try:
            return self.archive.read(name)
        except KeyError:
            self.problems.append(f"{name}: missing from the package")
        except _READ_ERRORS as error:
            self.problems.append(f"{name}: unreadable ({error})")
        return None

    def run(self, registry: Mapping | None) -> PackageReport:
        names = self.archive.namelist()
        self.names = set(names)
        for name, count in Counter(names).items():
            if count > 1:  # tools disagree on which copy they extract
                self.problems.append(f"{name}: stored {count} times in the archive")
        raw = self.read(MANIFEST)
        try:
            manifest = json.loads(raw) if raw is not None else None
            if manifest is not None and (not isinstance(manifest, dict) or manifest.get("format") != FORMAT):
                raise ValueError(f"not a {FORMAT} manifest")
        except ValueError as error:
            self.problems.append(f"{MANIFEST}: does not parse ({error})")
            manifest = None
        if manifest is None:
            return PackageReport(0, 0, tuple(self.problems))
        trust, signers = self.check_manifest_signature(raw, manifest, registry)
        files = manifest.get("files") if isinstance(manifest.get("files"), list) else []
        entries = [e for e in files if isinstance(e, dict)]
        if len(entries) != len(files) or not isinstance(manifest.get("files"), list):
            self.problems.append(f"{MANIFEST}: its file list is malformed")
        listed = {str(e.get("path")) for e in entries}
        for entry in entries:
            self.check_member(entry.get("path"), entry.get("sha256"), entry.get("size"))
        for role, name in HASHED.items():
            stated = manifest.get(role) if isinstance(manifest.get(role), dict) else {}
            if stated.get("path") != name:
                self.problems.append(f"{MANIFEST}: does not state the SHA-256 of {name}")
            else:
                self.check_member(name, stated.get("sha256"), None)
        for info in self.archive.infolist():
            name = info.filename
            if info.is_dir() and not info.file_size:
                continue  # an empty folder entry, as a re-zipping tool adds: no content to vouch for
            if name not in listed and name not in FIXED:
                self.problems.append(f"{name}: in the archive but not listed in the manifest")
        self.check_exchange(entries)
        checked = made = 0
        for entry in entries:
            for data in entry.get("signatures") or []:
                checked += 1
                made += self.check_signature(entry, data, signers) is Verdict.VALID_WHEN_MADE
        return PackageReport(len(entries), checked, tuple(self.problems), trust, made)

    def check_manifest_signature(
        self, raw: bytes, manifest: Mapping, registry: Mapping | None
    ) -> tuple[str, dict[str, SignerKey] | None]:
        """Verify manifest.json.sig; return the trust statement and the signer keys to judge with."""
        trust = "the given signer registry"
        if registry is None:  # all that is left: the package vouches for itself
            trust = "the package's own registry.json only: compare its system key with the site's registry"
            data = self.read(REGISTRY)
            try:
                registry = json.loads(data) if data is not None else {}
            except ValueError:
                registry = {}
        try:
            signers, system = parse_registry(registry)
        except ValueError as error:
            self.problems.append(f"{SIGNATURE}: no usable signer registry ({error})")
            return trust, None
        key_id = str(manifest.get("manifest_key_id"))
        signature = self.read(SIGNATURE)
        key = system.get(key_id)
        if key is None:
            self.problems.append(f"{SIGNATURE}: signed by key {key_id}, which is not a system key in {trust}")
        elif signature is not None and (
            len(signature) != 64 or not signing_keys.verify_hex(str(key["public_key"]), raw, signature.hex())
        ):
            self.problems.append(
                f"{SIGNATURE}: does not verify under system key {key_id}: {MANIFEST} or its signature was altered"
            )
        pem = self.read(KEY_PEM)
        if key is not None and pem is not None:
            try:
                same = signing_keys.public_key_hex(signing_keys.load_public_key(pem.decode())) == key["public_key"]
            except (signing_keys.SigningKeyError, UnicodeDecodeError):
                same = False
            if not same:
                self.problems.append(f"{KEY_PEM}: is not system key {key_id} of the registry")
        return trust, signers

    def check_member(self, name: Any, sha256: Any, size: Any) -> None:
        if name not in self.names:
            self.problems.append(f"{name}: listed in the manifest but missing from the package")
            return
        try:
            actual, actual_size = _digest(self.archive, name)
        except _READ_ERRORS as error:
            self.problems.append(f"{name}: unreadable ({error})")
            return
        if actual != sha256:
            self.problems.append(f"{name}: SHA-256 {actual[:12]}... differs from the manifest's: altered")
        elif size is not None and actual_size != size:
            self.problems.append(f"{name}: {actual_size} bytes, the manifest says {size}")

    def check_exchange(self, entries: list[dict]) -> None:
        data = self.read(EXCHANGE)
        if data is None:
            return
        try:
            stated = {(f.get("path"), f.get("sha256")) for f in ET.fromstring(data).iter("file")}
        except ET.ParseError as error:
            self.problems.append(f"{EXCHANGE}: not well-formed XML ({error})")
            return
        expected = {(e.get("path"), e.get("sha256")) for e in entries}
        for path, sha256 in sorted(stated ^ expected, key=str):
            self.problems.append(f"{EXCHANGE}: {path} with SHA-256 {str(sha256)[:12]}... disagrees with {MANIFEST}")

    def check_signature(self, entry: Mapping, data: Any, signers: dict[str, SignerKey] | None) -> Verdict | None:
        path = entry.get("path")
        who = data.get("signer_id") if isinstance(data, dict) else None
        try:
            signature = Signature.from_dict(data)
        except (ValueError, TypeError, AttributeError) as error:
            self.problems.append(f"{path}: a signature by {who} is malformed ({error})")
            return None
        if signers is None:
            return None  # already reported: no registry to judge with
        expected = _record(entry)
        if expected is not None and signature.statement.record != expected:  # copied from another entry
            self.problems.append(
                f"{path}: signature by {signature.statement.signer_id} states the record"
                f" {signature.statement.record!r}, not this entry's {expected!r}"
            )
            return Verdict.INVALID
        check = judge(signature, signers, entry.get("sha256"), signing_keys.verify_hex, self.now)
        if not check.ok:
            self.problems.append(
                f"{path}: signature by {signature.statement.signer_id}"
                f" ({signature.printed_name}, {signature.statement.meaning}): {check.reason}"
            )
        return check.verdict


def _record(entry: Mapping) -> str | None:
    """The record a version entry's signatures must state (as `trialcoord.documents.rules.documents.record_id`)."""
    if not all(isinstance(entry.get(k), str) for k in ("study", "document", "label")):
        return None
    site = entry.get("site")
    return record_id(
        DocumentKey(entry["study"], site if isinstance(site, str) and site else None, entry["document"]), entry["label"]
    )


def verify_package(path_or_file: str | Path | BinaryIO, registry: Mapping | None = None, *, now: str) -> PackageReport:
    """Check a package offline. `registry` is the site's public signer registry (`signatures/`); without it
    the package's own registry.json is used, and the report's `trust` says so."""
    try:
        archive = zipfile.ZipFile(path_or_file)
    except _READ_ERRORS as error:
        return PackageReport(0, 0, (f"archive: not a readable ZIP ({error})",))
    with archive:
        return _Verifier(archive, now).run(registry)
