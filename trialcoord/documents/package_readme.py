"""The package's `README.txt`: how to verify the package by hand with OpenSSL and GNU coreutils.

Its shell commands are each one line to copy, so this module's lines may run past the line length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def readme(manifest: Mapping[str, Any], registry: Mapping[str, Any]) -> str:
    key: Mapping[str, Any] = next(
        (k for k in registry.get("system_keys") or [] if k.get("key_id") == manifest["manifest_key_id"]), {}
    )
    checkpoint = (
        "\naudit-checkpoint.json is the site's signed audit checkpoint (tree size, Merkle root, instant) as the trail\n"
        "stood when this package was made, signed by the same system key: keep it. Later, `trialcoord audit verify\n"
        "--checkpoint audit-checkpoint.json` at the site proves that its trail still extends this one, so history\n"
        "before it was not rewritten. Step 3 checks its bytes against the signed manifest.\n"
        if manifest.get("audit_checkpoint")
        else ""
    )
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

exchange.xml lists the same versions and files as an eTMF Exchange Mechanism Standard (EMS) batch
(namespace https://tmfrefmodel.com/ems) for another eTMF to import; each FILE's INTEGRITY is the
Subresource Integrity value (sha256-, then base64) of that file's bytes.
{checkpoint}"""
