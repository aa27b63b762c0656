"""The sponsor package as a ZIP: its members in a fixed order with timestamps from the package's instant, the
manifest that lists each with its SHA-256 and size, the manifest's detached Ed25519 signature by the system key,
the public key, and README.txt (how to check it all by hand). Same members, parameters and key: the same bytes."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.kernel import signing_keys
from trialcoord.kernel.rules.audit_entries import canonical_json

FORMAT = "trialcoord-sponsor-package/1"
MANIFEST, SIGNATURE, KEY_PEM, README = "manifest.json", "manifest.json.sig", "manifest-key.pem", "README.txt"
DEFINE, REPORT = "define.xml", "compliance-report.pdf"
UNLISTED = (MANIFEST, SIGNATURE, KEY_PEM)  # the manifest cannot list itself or what proves it
_STORED = {"application/pdf"}  # already compressed
# zlib's default: a quarter of level 9's time on the datasets for about 6% more bytes. The level is part of the
# bytes: a rebuild gives the same ZIP as long as it stays the same (as do zlib's version and its output).
LEVEL = 6


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    media_type: str
    data: bytes


def write(
    out: BinaryIO | Path,
    members: Sequence[Member],
    *,
    manifest: Mapping[str, Any],
    key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """Write the ZIP to `out` and return the manifest it signs: `manifest` (the package's facts) with `format`,
    the key's id and `files` (every member, README.txt included, with its SHA-256, size and media type)."""
    names = [m.name for m in members]
    if len(set(names)) != len(names) or set(names) & {*UNLISTED, README}:
        raise ValueError(f"package members must be distinct and not {', '.join((*UNLISTED, README))}: {names}")
    public = key.public_key()
    signed: dict[str, Any] = {**manifest, "format": FORMAT, "manifest_key_id": signing_keys.key_id(public)}
    text = readme(signed).encode("utf-8")
    listed = [*members, Member(README, "text/plain", text)]
    signed["files"] = [
        {"path": m.name, "sha256": hashlib.sha256(m.data).hexdigest(), "size": len(m.data), "media_type": m.media_type}
        for m in listed
    ]
    manifest_bytes = canonical_json(signed)
    when = _zip_time(str(signed["generated_at"]))
    with zipfile.ZipFile(out, "w") as archive:
        for member in listed:
            _put(archive, member.name, member.data, member.media_type, when)
        _put(archive, MANIFEST, manifest_bytes, "application/json", when)
        _put(archive, SIGNATURE, key.sign(manifest_bytes), "application/octet-stream", when)
        _put(archive, KEY_PEM, signing_keys.public_key_pem(public).encode("ascii"), "text/plain", when)
    return signed


def _zip_time(instant: str) -> tuple[int, int, int, int, int, int]:
    moment = datetime.strptime(instant[:19], "%Y-%m-%dT%H:%M:%S")
    return max(moment, datetime(1980, 1, 1)).timetuple()[:6]  # ZIP dates start in 1980


def _put(archive: zipfile.ZipFile, name: str, data: bytes, media_type: str, when: tuple[int, ...]) -> None:
    info = zipfile.ZipInfo(name, when)  # type: ignore[arg-type]  # ZipInfo takes any 6-tuple of ints
    info.create_system, info.external_attr = 3, 0o644 << 16  # not the writer's platform or umask
    stored = media_type in _STORED
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=None if stored else LEVEL)


def readme(manifest: Mapping[str, Any]) -> str:
    """How to check the package without trialcoord (OpenSSL 3 and GNU coreutils), and what it holds."""
    parameters = manifest["parameters"]
    sites = ", ".join(parameters["sites"]) or "all sites"
    arms = "shown" if parameters["arms_shown"] else "not shown (blinded)"
    return f"""Sponsor compliance package of study {manifest["study"]} ({sites}), transfer {parameters["transfer"]},
as of {parameters["as_of"]}, privacy mode {parameters["privacy"]}, participants' arms {arms}.
Made by trialcoord {manifest["trialcoord_version"]}.

Contents: SDTM datasets as SAS transport version 5 (*.xpt) and the same columns as CSV (*.csv), define.xml
(Define-XML 2.1 describing them), compliance-report.pdf (PDF/A-3b; the datasets are attached to it) and
manifest.json, which lists every file with its SHA-256 and size, the package's parameters and the DV records
created, changed and closed since the previous transfer. manifest.json.sig is the Ed25519 signature of
manifest.json's exact bytes by system key {manifest["manifest_key_id"]}; manifest-key.pem is that public key.

With trialcoord:   trialcoord verify THIS-FILE.zip   (add --registry FILE: the site's published signer registry)

By hand, in the unzipped folder:

1. The manifest signature. Expect "Signature Verified Successfully":

   openssl pkeyutl -verify -pubin -inkey manifest-key.pem -rawin -in manifest.json -sigfile manifest.json.sig

2. The key is the site's. This prints the raw public key in hex; it must equal the public_key of system key
   {manifest["manifest_key_id"]} in the signer registry the site publishes (ask the site for it; never trust
   only the key inside this package):

   openssl pkey -pubin -in manifest-key.pem -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \\n'; echo

3. Every file against the signed manifest. Expect one "OK" per file and no "FAILED":

   grep -o '"path":"[^"]*","sha256":"[0-9a-f]*"' manifest.json | sed -E 's/^"path":"(.*)","sha256":"(.*)"$/\\2  \\1/' | sha256sum -c -

4. Nothing else is in the ZIP: this lists every member the manifest does not; expect exactly manifest.json,
   manifest.json.sig and manifest-key.pem:

   unzip -Z1 THIS-FILE.zip | sort | comm -23 - <(grep -o '"path":"[^"]*"' manifest.json | cut -d'"' -f4 | sort)
"""
