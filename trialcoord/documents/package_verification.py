"""Verifying a binder package offline, with the public signer registry alone (no database, no private key):
the manifest's signature, every file's SHA-256 and size, exchange.xml against the manifest, and the electronic
signatures the manifest lists."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

from trialcoord.accounts.rules.signers import SignerKey, parse_registry
from trialcoord.documents import package_exchange
from trialcoord.documents.package_layout import (
    CHECKPOINT,
    EXCHANGE,
    FIXED,
    FORMAT,
    HASHED,
    KEY_PEM,
    MANIFEST,
    REGISTRY,
    SIGNATURE,
)
from trialcoord.documents.rules.documents import DocumentKey, record_id
from trialcoord.documents.rules.signatures import Signature, Verdict, judge
from trialcoord.kernel import signing_keys
from trialcoord.kernel.archives import JSON_BYTES, PACKAGE, BoundedZip, load_json
from trialcoord.kernel.problems import InvalidInput

_CHECKPOINT_LIMIT = 1 << 12  # a signed checkpoint is about 330 bytes of JSON
_XML_BYTES = 128 << 20  # exchange.xml, parsed whole: ~600 bytes a FILE, so room for 200,000 files


@dataclass(frozen=True)
class PackageReport:
    files_checked: int
    signatures_checked: int
    problems: tuple[str, ...]
    trust: str = ""  # which registry the manifest signature and the signatures were checked against
    valid_when_made: int = 0  # signatures whose key has since ended: not a problem (Part 11 keeps them)
    checkpoint: str = ""  # the audit checkpoint the package carries, once its signature verified

    @property
    def ok(self) -> bool:
        return not self.problems


def _said(error: InvalidInput) -> str:
    """The problems of a refused read, without the archive's name (the caller prefixes each line with it)."""
    return "; ".join(p.message for p in error.problems)


@dataclass
class _Verifier:
    bounded: BoundedZip
    now: str
    problems: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    digests: dict[str, str] = field(default_factory=dict)  # member -> SHA-256 of its bytes, as read
    system: Mapping[str, Any] = field(default_factory=dict)  # the trusted registry's system keys, by key ID

    @property
    def archive(self) -> zipfile.ZipFile:
        return self.bounded.archive

    def read(self, name: str, limit: int | None = None) -> bytes | None:
        try:
            return self.bounded.read(name, limit)  # a CRC mismatch raises at the end of the member
        except KeyError:
            self.problems.append(f"{name}: missing from the package")
        except InvalidInput as error:
            self.problems.append(_said(error))
        return None

    def run(self, registry: Mapping | None) -> PackageReport:
        names = self.archive.namelist()
        self.names = set(names)
        for name, count in Counter(names).items():
            if count > 1:  # tools disagree on which copy they extract
                self.problems.append(f"{name}: stored {count} times in the archive")
        raw = self.read(MANIFEST, JSON_BYTES)
        manifest: dict[str, Any] | None = None
        if raw is not None:
            try:
                manifest = load_json(raw, MANIFEST)
            except InvalidInput as error:
                self.problems.append(f"{MANIFEST}: does not parse ({error.problems[0].message})")
            if manifest is not None and (not isinstance(manifest, dict) or manifest.get("format") != FORMAT):
                self.problems.append(f"{MANIFEST}: does not parse (not a {FORMAT} manifest)")
                manifest = None
        if raw is None or manifest is None:
            return PackageReport(0, 0, tuple(self.problems))
        trust, signers = self.check_manifest_signature(raw, manifest, registry)
        listed_files = manifest.get("files")
        files: list[Any] = listed_files if isinstance(listed_files, list) else []
        entries = [e for e in files if isinstance(e, dict)]
        if len(entries) != len(files) or not isinstance(manifest.get("files"), list):
            self.problems.append(f"{MANIFEST}: its file list is malformed")
        listed = {str(e.get("path")) for e in entries}
        for entry in entries:
            self.check_member(entry.get("path"), entry.get("sha256"), entry.get("size"))
        for role, name in HASHED.items():
            stated_value = manifest.get(role)
            stated: dict[str, Any] = stated_value if isinstance(stated_value, dict) else {}
            if stated.get("path") != name:
                self.problems.append(f"{MANIFEST}: does not state the SHA-256 of {name}")
            else:
                self.check_member(name, stated.get("sha256"), None)
        for info in self.archive.infolist():
            name = info.filename
            if info.is_dir() and not info.file_size:
                continue  # an empty folder entry, as a re-zipping tool adds: no content to vouch for
            carried = name == CHECKPOINT and manifest.get("audit_checkpoint") is not None  # checked below
            if name not in listed and name not in FIXED and not carried:
                self.problems.append(f"{name}: in the archive but not listed in the manifest")
        self.check_exchange(entries)
        anchored = self.check_checkpoint(manifest.get("audit_checkpoint"))
        checked = made = 0
        for entry in entries:
            for data in entry.get("signatures") or []:
                checked += 1
                made += self.check_signature(entry, data, signers) is Verdict.VALID_WHEN_MADE
        return PackageReport(len(entries), checked, tuple(self.problems), trust, made, anchored)

    def check_manifest_signature(
        self, raw: bytes, manifest: Mapping, registry: Mapping | None
    ) -> tuple[str, dict[str, SignerKey] | None]:
        """Verify manifest.json.sig; return the trust statement and the signer keys to judge with."""
        trust = "the given signer registry"
        if registry is None:  # all that is left: the package vouches for itself
            trust = "the package's own registry.json only: compare its system key with the site's registry"
            data = self.read(REGISTRY, JSON_BYTES)
            try:
                registry = load_json(data, REGISTRY) if data is not None else {}
            except InvalidInput:
                registry = {}
        try:
            signers, system = parse_registry(registry)
        except ValueError as error:
            self.problems.append(f"{SIGNATURE}: no usable signer registry ({error})")
            return trust, None
        self.system = system
        key_id = str(manifest.get("manifest_key_id"))
        signature = self.read(SIGNATURE, 1 << 16)
        key = system.get(key_id)
        if key is None:
            self.problems.append(f"{SIGNATURE}: signed by key {key_id}, which is not a system key in {trust}")
        elif signature is not None and (
            len(signature) != 64 or not signing_keys.verify_hex(str(key["public_key"]), raw, signature.hex())
        ):
            self.problems.append(
                f"{SIGNATURE}: does not verify under system key {key_id}: {MANIFEST} or its signature was altered"
            )
        pem = self.read(KEY_PEM, 1 << 16)
        if key is not None and pem is not None:
            try:
                same = signing_keys.public_key_hex(signing_keys.load_public_key(pem.decode())) == key["public_key"]
            except (signing_keys.SigningKeyError, UnicodeDecodeError):
                same = False
            if not same:
                self.problems.append(f"{KEY_PEM}: is not system key {key_id} of the registry")
        return trust, signers

    def check_checkpoint(self, stated: Any) -> str:
        """The audit checkpoint the manifest states (packages made before issue 17 carry none): its bytes are the
        ones stated and its Ed25519 signature verifies under a system key of the trusted registry."""
        if stated is None:
            return ""
        if not isinstance(stated, dict) or stated.get("path") != CHECKPOINT:
            self.problems.append(f"{MANIFEST}: its audit_checkpoint does not name {CHECKPOINT}")
            return ""
        before = len(self.problems)
        self.check_member(CHECKPOINT, stated.get("sha256"), None)
        if len(self.problems) > before:
            return ""
        if self.archive.getinfo(CHECKPOINT).file_size > _CHECKPOINT_LIMIT:  # never read whole what is not one
            self.problems.append(f"{CHECKPOINT}: larger than a checkpoint ({_CHECKPOINT_LIMIT} bytes at most)")
            return ""
        data = self.read(CHECKPOINT, _CHECKPOINT_LIMIT)
        if data is None:
            return ""
        try:
            signed = signing_keys.SignedCheckpoint.from_json(load_json(data, CHECKPOINT))
            key = self.system.get(signed.key_id)
            if key is None:
                raise signing_keys.CheckpointError(f"signed by key {signed.key_id}, not a system key of the registry")
            signing_keys.verify_checkpoint(signed, signing_keys.load_public_key(str(key["public_key"])))
        except (
            ValueError,
            TypeError,
            AttributeError,
            RecursionError,
            signing_keys.CheckpointError,
            signing_keys.SigningKeyError,
        ) as error:
            self.problems.append(f"{CHECKPOINT}: {error}")
            return ""
        except InvalidInput as error:  # not JSON, or nested past the bound
            self.problems.append(_said(error))
            return ""
        return f"audit checkpoint of {signed.size} entries, root {signed.root}, issued at {signed.issued_at}"

    def check_member(self, name: Any, sha256: Any, size: Any) -> None:
        if name not in self.names:
            self.problems.append(f"{name}: listed in the manifest but missing from the package")
            return
        digest = hashlib.sha256()
        try:
            actual_size = self.bounded.stream(name, digest.update)
        except InvalidInput as error:
            self.problems.append(_said(error))
            return
        actual = self.digests[name] = digest.hexdigest()
        if actual != sha256:
            self.problems.append(f"{name}: SHA-256 {actual[:12]}... differs from the manifest's: altered")
        elif size is not None and actual_size != size:
            self.problems.append(f"{name}: {actual_size} bytes, the manifest says {size}")

    def check_exchange(self, entries: list[dict]) -> None:
        """exchange.xml is an EMS BATCH whose FILEs are exactly the manifest's files, each FILE's INTEGRITY that
        of the member's bytes (a member altered since the manifest is reported once, by `check_member`)."""
        data = self.read(EXCHANGE, _XML_BYTES)
        if data is None:
            return
        try:
            root = ET.fromstring(data)
        except ET.ParseError as error:
            self.problems.append(f"{EXCHANGE}: not well-formed XML ({error})")
            return
        ns = f"{{{package_exchange.NAMESPACE}}}"
        if root.tag != f"{ns}BATCH":
            self.problems.append(f"{EXCHANGE}: not an eTMF EMS BATCH (its root is {root.tag})")
            return
        listed = {e.get("path"): e.get("sha256") for e in entries}
        seen: set[str] = set()
        for element in root.iter(f"{ns}FILE"):
            path = unquote(element.findtext(f"{ns}CONTENTURL") or "")
            integrity = element.findtext(f"{ns}INTEGRITY") or ""
            seen.add(path)
            if path not in listed:
                self.problems.append(f"{EXCHANGE}: {path}: not a file {MANIFEST} lists")
            elif package_exchange.sri_hex(integrity) != listed[path] and self.digests.get(path) == listed[path]:
                self.problems.append(f"{EXCHANGE}: {path}: INTEGRITY {integrity[:19]}... is not that of its bytes")
        for missing in sorted(set(listed) - seen, key=str):
            self.problems.append(f"{EXCHANGE}: {missing}: listed in {MANIFEST} but has no FILE")

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
    name = str(path_or_file) if isinstance(path_or_file, str | Path) else "archive"
    try:
        bounded = BoundedZip(path_or_file, name, PACKAGE)
    except InvalidInput as error:
        return PackageReport(0, 0, (f"archive: {_said(error)}",))
    with bounded:
        try:  # what the directory declares past the limits: nothing of it is unpacked
            bounded.check()
        except InvalidInput as error:
            return PackageReport(0, 0, (_said(error),))
        return _Verifier(bounded, now).run(registry)
