"""Binder export of 500 documents vs copying their bytes into a ZIP; re-export after one document changed.

Set-up (not timed): one site, 500 site-level versions (CVs "087" and licences "090", 100-300 KB of random
bytes between `%PDF-1.7` and `%%EOF`), every tenth signed for approval by one investigator through the
password ceremony (each signature renders its signature page with WeasyPrint; random bytes are no PDF
pikepdf opens, so no signed copy or PAdES copy is made). For speed only: scrypt at MIN_SCRYPT_N and
argon2's cheapest profile. The render cache lives in a temporary directory.

1. `binder_export.export` with an empty render cache vs writing the same member bytes (the versions and the
   signature pages, held in memory) at the same paths into a ZIP_STORED file. Goal: at most 2x.
2. After one document gets a new version, `binder_export.export` again vs the first export. Goal: at most 0.2x.
The export is timed with light wrappers around its parts, which give the breakdown.

Run: `.venv/bin/python -m bench.binder_export [--quick]` (--quick: 50 documents, 5 signed).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from argon2 import profiles

from bench.common import PROTOCOL_TEXT, SITE, STUDY, atimed, on_each_engine, ratio_line, raw_sqlite_path, temp_database
from bench.compute import best_of
from trialcoord.accounts import signer_keys, signing, users
from trialcoord.accounts.passwords import PasswordHashing
from trialcoord.accounts.users import AccountRules
from trialcoord.documents import binder_checklist, binder_export, binder_index, documents, package_writing, signatures
from trialcoord.documents.rules.documents import DocumentKey
from trialcoord.kernel import signing_keys
from trialcoord.kernel.config import load_settings
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.render.signed_pdf import new_site_credentials
from trialcoord.kernel.system_keys import SystemKeys
from trialcoord.scheduling import protocols, sites
from trialcoord.scheduling.protocol_files import parse_protocol

RUNS = 2
PASSWORD = "bench horse battery staple"  # a throwaway account in a throwaway database
RULES = AccountRules(hashing=PasswordHashing(profiles.CHEAPEST))  # argon2 is not what this measures


def pdf_like(rng: random.Random) -> bytes:
    return b"%PDF-1.7\n" + rng.randbytes(rng.randint(100_000, 300_000)) + b"\n%%EOF\n"


def bench_installation(tmp: Path) -> Installation:
    """Keys made here (scrypt at its lowest accepted cost, for speed only) and a data directory, where an export
    keeps its last package for the next one to reuse and the render cache lives."""
    pades = new_site_credentials(
        "Bench Site", "trialcoord bench", datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)
    )
    keys = SystemKeys(b"bench passphrase", signing_keys.generate_key(), pades, scrypt_n=signing_keys.MIN_SCRYPT_N)
    settings = load_settings(
        {"TRIALCOORD_DATA_DIR": str(tmp / "data"), "TRIALCOORD_DATABASE_URL": "sqlite:///unused.sqlite3"}
    )
    return Installation(settings, keys)


async def set_up(count: int, installation: Installation) -> dict[str, bytes]:
    """The site and its documents; returns every version's bytes by SHA-256."""
    await protocols.load_protocol_version(parse_protocol(PROTOCOL_TEXT, "bench.yaml"), PROTOCOL_TEXT, "bench.yaml")
    await sites.create_site(STUDY, SITE, "Bench Clinic")
    await users.create_user("ivan", "Dr. Ivan Investigator", "ivan@example.org", PASSWORD, "bench", rules=RULES)
    await users.grant("ivan", "investigator", STUDY, SITE, date(2000, 1, 1), None, "bench")
    rng, blobs = random.Random(500), {}
    for i in range(count):
        data = pdf_like(rng)
        blobs[hashlib.sha256(data).hexdigest()] = data
        key = DocumentKey(STUDY, SITE, f"{'CV' if i % 2 else 'Licence'} person {i:04d}")
        await documents.add_version(key, "087" if i % 2 else "090", "1", data, f"doc-{i:04d}.pdf")
        if i % 10 == 0:
            await signatures.sign(
                key, "1", await signing.signing_by_password("ivan", "approval", PASSWORD, rules=RULES), installation
            )
    return blobs


INDEX, LOADS, WRITE = "index PDF (cache; WeasyPrint on a miss)", "blob reads (query, base64, thread hop)", "write"
PARTS = [  # (module, function, label); the export calls each through its module, so replacing it there is seen
    (binder_index, "index", INDEX),
    (binder_checklist, "document_rows", "document rows query"),
    (binder_export.signatures_store, "signatures_of_study", "signature queries (one per binder)"),
    (binder_export.signatures_store, "files_of_study", "signature-file queries (one per binder)"),
    (signatures, "manifest", "signature manifestation (made at signing)"),
    (signer_keys, "registry", "signer registry"),
    (binder_export.audit_log, "record", "audit record"),
    (package_writing, "write_package", WRITE),
]


class Parts:
    """Seconds spent in the export's parts, from wrappers installed around them (restore() removes them)."""

    def __init__(self):
        self.seconds, self.originals = defaultdict(float), [getattr(m, name) for m, name, _ in PARTS]
        for (module, name, label), original in zip(PARTS, self.originals):
            setattr(module, name, self.wrap(original, label))

    def wrap(self, original, label):
        if inspect.iscoroutinefunction(original):

            async def timed_async(*args, **kwargs):
                seconds, result = await atimed(original(*args, **kwargs))
                self.seconds[label] += seconds
                return result

            return timed_async

        def timed(*args, **kwargs):
            if label == WRITE:  # time each file's load apart: the rest is hashing and writing the ZIP
                args = (args[0], [replace(f, load=self.wrap(f.load, LOADS)) for f in args[1]])
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - began

        return timed

    def restore(self) -> None:
        for (module, name, _), original in zip(PARTS, self.originals):
            setattr(module, name, original)

    def take(self) -> dict[str, float]:
        taken, self.seconds = dict(self.seconds), defaultdict(float)
        if WRITE in taken:
            taken["ZIP write, SHA-256 checks, manifest"] = taken.pop(WRITE) - taken.get(LOADS, 0.0)
        return taken


def zip_copy(path: Path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            archive.writestr(name, data)


async def raw_reads(kind: str, url: str, hashes: list[str]) -> list[bytes]:
    """The same contents through the raw driver, one query each as the export does."""
    sql = "SELECT data FROM document_blobs WHERE sha256 = {}"
    if kind == "sqlite":
        with closing(sqlite3.connect(raw_sqlite_path(url))) as connection:
            return [base64.b64decode(connection.execute(sql.format("?"), (h,)).fetchone()[0]) for h in hashes]
    connection = await asyncpg.connect(url)
    try:
        return [base64.b64decode(await connection.fetchval(sql.format("$1"), h)) for h in hashes]
    finally:
        await connection.close()


async def run(kind: str, count: int) -> None:
    async with temp_database(kind) as url:
        with tempfile.TemporaryDirectory(prefix="trialcoord-bench-binder-") as tmp:
            tmp, began = Path(tmp), time.perf_counter()
            installation = bench_installation(tmp)
            blobs = await set_up(count, installation)
            print(f"  {kind:<8}  set-up {time.perf_counter() - began:.0f} s", flush=True)
            parts = Parts()
            try:
                await measure(kind, url, tmp, installation, parts, blobs)
            finally:
                parts.restore()


async def measure(kind: str, url: str, tmp: Path, installation: Installation, parts: Parts, blobs: dict) -> None:
    cache = installation.render_cache()
    assert cache is not None  # the installation has a data directory
    out, members = tmp / "binder.zip", None
    first = base = from_db = again = float("inf")
    for _ in range(RUNS):  # alternating: an export with an empty cache, then the two baselines
        shutil.rmtree(cache.directory, ignore_errors=True)
        shutil.rmtree(tmp / "data" / "exports", ignore_errors=True)  # nor a kept package: a first export
        parts.take()
        seconds, manifest = await atimed(binder_export.export(STUDY, SITE, out, "bench", installation))
        if seconds < first:
            first, first_parts = seconds, parts.take()
        if members is None:  # the versions' bytes as generated; signature pages' bytes from the database
            files = [(f["path"], f["sha256"]) for f in manifest["files"]]
            pages = dict(zip(hashes := [s for _, s in files if s not in blobs], await raw_reads(kind, url, hashes)))
            members = [(path, blobs.get(sha) or pages[sha]) for path, sha in files]
        base = min(base, best_of(5, zip_copy, tmp / "copy.zip", members))  # short: more runs
        began = time.perf_counter()
        zip_copy(tmp / "copy.zip", list(zip([p for p, _ in files], await raw_reads(kind, url, [s for _, s in files]))))
        from_db = min(from_db, time.perf_counter() - began)
    hashing = best_of(1, lambda: [hashlib.sha256(data).digest() for _, data in members])
    hit = hit_index = float("inf")
    for _ in range(RUNS):
        parts.take()
        seconds, _ = await atimed(binder_export.export(STUDY, SITE, out, "bench", installation))
        hit, hit_index = min(hit, seconds), min(hit_index, parts.take()[INDEX])
    rng = random.Random(7)
    for run_number in range(RUNS):  # each run, one more document gets a new version
        key = DocumentKey(STUDY, SITE, f"Licence person {2 * run_number:04d}")
        await documents.add_version(key, "090", f"2.{run_number}", pdf_like(rng), "doc-new.pdf")
        parts.take()
        seconds, _ = await atimed(binder_export.export(STUDY, SITE, out, "bench", installation))
        if seconds < again:
            again, again_parts = seconds, parts.take()
    size = sum(len(data) for _, data in members)
    print(f"  {'':<8}  {len(members)} files, {size / 1e6:.1f} MB (best of {RUNS})")
    print(f"  {'':<8}  ZIP_STORED copy, bytes in memory             {base:7.3f} s")
    print(f"  {'':<8}  same, bytes read by the raw driver           {from_db:7.3f} s")
    print(f"  {'':<8}  export, empty render cache                   {first:7.3f} s")
    for name, seconds in first_parts.items():
        print(f"  {'':<8}    {name:<42} {seconds:7.3f} s")
    print(f"  {'':<8}    {'the rest: metadata, thread hand-offs':<42} {first - sum(first_parts.values()):7.3f} s")
    print(f"  {'':<8}    {'(SHA-256 of the member bytes alone)':<42} {hashing:7.3f} s")
    print(f"  {'':<8}  re-export, nothing changed (cache hit)       {hit:7.3f} s  (index {hit_index:.3f} s)")
    print(f"  {'':<8}  re-export after one new version              {again:7.3f} s  (index {again_parts[INDEX]:.3f} s)")
    print(ratio_line(f"{kind} export vs ZIP copy", first / base, "<= 2x", first / base <= 2))
    print(f"  {kind} export vs ZIP copy from the database: ratio {first / from_db:.2f}x")
    print(ratio_line(f"{kind} re-export vs first export", again / first, "<= 0.2x", again / first <= 0.2))


def main(quick: bool = False) -> None:
    count = 50 if quick else 500
    print(f"binder: export of {count} documents ({count // 10} signed), 100-300 KB each")
    on_each_engine(run, count)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
