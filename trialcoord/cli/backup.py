"""`trialcoord backup --to DIR` and `trialcoord restore DIR` (issue 17): the database (SQLite through its online
backup API, PostgreSQL through pg_dump and pg_restore), the system's keys and the signer registry, with a
manifest of every file's SHA-256 signed by the installation's manifest key. A restore checks every hash, refuses
a non-empty database and a trail older than the newest external checkpoint unless told, then verifies the
restored trail (against that checkpoint too)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trialcoord.cli import backup_database as database
from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError
from trialcoord.kernel.config import POSTGRES, Settings, get_settings

if TYPE_CHECKING:
    from trialcoord.kernel.rules.audit_verification import Checkpoint
    from trialcoord.kernel.system_keys import SystemKeys

FORMAT = "trialcoord-backup/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.json.sig"
DATABASE = {"sqlite": "database.sqlite3", POSTGRES: "database.pgdump"}


class Refused(Exception):
    """A restore that would lose or hide something: the message names it and the option that allows it."""


class NotVerified(Exception):
    """A backup or restored trail that does not verify (exit 1)."""


def register(commands) -> None:
    made = commands.add_parser("backup", help="copy the database, keys and signer registry, with a signed manifest")
    made.add_argument("--to", required=True, metavar="DIR", help="a new or empty folder")
    made.set_defaults(run=lambda a: backup(Path(a.to)))
    back = commands.add_parser("restore", help="check a backup's hashes, restore it and verify the audit trail")
    back.add_argument("directory", metavar="DIR")
    back.add_argument("--replace-database", action="store_true", help="overwrite a database that holds data")
    back.add_argument("--replace-keys", action="store_true", help="overwrite key files that differ from the backup's")
    back.add_argument(
        "--accept-older",
        action="store_true",
        help="restore a trail shorter than the newest external checkpoint (entries after it are then lost)",
    )
    back.set_defaults(run=lambda a: restore(Path(a.directory), a.replace_database, a.replace_keys, a.accept_older))


# backup --------------------------------------------------------------------------------------------


def backup(target: Path) -> int:
    from trialcoord.cli.system import private_directory
    from trialcoord.kernel import audit_log

    settings = get_settings()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target}: not empty; back up into a new or empty folder")
    keys = support.installation().keys()  # before anything is written: no key, no half-made backup
    report = support.database(audit_log.verify)  # the head recorded is at most the copy's (writes may follow)
    private_directory(target)
    private_directory(target / "keys")
    engine = settings.database_url.kind
    database.copy_database(settings, target / DATABASE[engine])
    files = [DATABASE[engine]]
    left_out = []
    for path in _key_files(settings):
        if path.exists():
            shutil.copyfile(path, target / "keys" / path.name)
            files.append(f"keys/{path.name}")
        else:
            left_out.append(str(path))
    registry = _own_registry(settings)
    if registry is not None:
        private_directory(target / "signatures")
        for name in ("registry.json", "pades-certificate.pem"):
            if (registry / name).exists():
                shutil.copyfile(registry / name, target / "signatures" / name)
                files.append(f"signatures/{name}")
    manifest = {
        "format": FORMAT,
        "engine": engine,
        "created_at": _now(),
        "audit": {"size": report.result.size, "root": report.result.root, "intact": report.ok},
        "files": {name: _sha256(target / name) for name in sorted(files)},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (target / MANIFEST).write_text(text, encoding="utf-8")
    signed_by = _sign(text.encode(), target, keys)
    print(
        f"backed up to {target}: the {engine} database with {report.result.size} audit entries"
        f" (root {report.result.root}), {len(files) - 1} key and registry files; manifest signed by key {signed_by}"
    )
    if left_out:
        print(f"not in the backup (keep them yourself): {', '.join(left_out)}")
    if not report.ok:
        print("warning: the audit trail did not verify when backed up (`trialcoord audit verify` says where)")
    return 0


def _sign(text: bytes, target: Path, keys: SystemKeys) -> str:
    from trialcoord.kernel import signing_keys

    (target / SIGNATURE).write_text(signing_keys.sign_bytes(text, keys.manifest_key) + "\n", encoding="utf-8")
    return keys.manifest_key_id


# restore -------------------------------------------------------------------------------------------


def restore(source: Path, replace_database: bool, replace_keys: bool, accept_older: bool) -> int:
    settings = get_settings()
    try:
        manifest = _checked_manifest(source)
        anchor = _newest_checkpoint(source)
        if anchor is not None and manifest["audit"]["size"] < anchor.size and not accept_older:
            raise NotVerified(_older(manifest["audit"]["size"], anchor))
        if manifest["engine"] != settings.database_url.kind:
            raise UsageError(f"{source}: a {manifest['engine']} backup; the configured database is not")
        if database.holds_data(settings) and not replace_database:
            raise Refused(f"{settings.database_url}: the database holds data; pass --replace-database to overwrite it")
        _restore_keys(source, manifest, settings, replace_keys)
        database.restore_database(source / DATABASE[manifest["engine"]], settings, replace_database)
        registry = _own_registry(settings)
        if registry is not None and (source / "signatures").is_dir():
            from trialcoord.cli.system import private_directory

            private_directory(registry)
            for name in ("registry.json", "pades-certificate.pem"):
                if (source / "signatures" / name).exists():
                    shutil.copyfile(source / "signatures" / name, registry / name)
        compare = anchor if anchor is not None and manifest["audit"]["size"] >= anchor.size else None
        return _verify_restored(source, anchor, compare)
    except Refused as refused:
        raise _conflict(str(refused)) from None
    except NotVerified as failed:
        print(f"error: {failed}", file=sys.stderr)
        return support.EXIT_TRAIL_BROKEN


def _checked_manifest(source: Path) -> dict[str, Any]:
    """The backup's manifest, once its signature and every file's SHA-256 check out; NotVerified names each fault."""
    from trialcoord.kernel import signing_keys

    try:
        text = (source / MANIFEST).read_bytes()
        manifest = json.loads(text)
        signature = (source / SIGNATURE).read_text(encoding="utf-8").strip()
    except FileNotFoundError as missing:
        raise UsageError(
            f"{source}: not a trialcoord backup ({Path(missing.filename or '').name} is missing)"
        ) from None
    except (OSError, ValueError) as error:
        raise UsageError(f"{source / MANIFEST}: not readable ({error})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
        or not isinstance((manifest.get("audit") or {}).get("size"), int)
        or manifest.get("engine") not in DATABASE
    ):
        raise UsageError(f"{source / MANIFEST}: not a trialcoord backup manifest ({FORMAT})")
    problems = []
    for name, digest in manifest["files"].items():
        path = source / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(path) != digest:
            problems.append(f"{name}: its SHA-256 differs from the manifest's: altered or damaged")
    public = _system_key_of(source / "signatures" / "registry.json") if not problems else None
    if public is not None and not signing_keys.verify_hex(public, text, signature):
        problems.append(f"{MANIFEST}: its signature does not verify under the backup's system key")
    if problems:
        raise NotVerified("; ".join(f"{source}/{problem}" for problem in problems))
    return manifest


def _restore_keys(source: Path, manifest: dict[str, Any], settings: Settings, replace: bool) -> None:
    wanted = [
        (source / name, path) for path in _key_files(settings) if (name := f"keys/{path.name}") in manifest["files"]
    ]
    differing = [str(path) for copy, path in wanted if path.exists() and path.read_bytes() != copy.read_bytes()]
    if differing and not replace:
        raise Refused(f"key files differ from the backup's: {', '.join(differing)}; pass --replace-keys to overwrite")
    from trialcoord.cli.system import private_directory

    for copy, path in wanted:
        private_directory(path.parent)
        if not path.exists() or path.read_bytes() != copy.read_bytes():
            shutil.copyfile(copy, path)
            path.chmod(0o600)


def _verify_restored(source: Path, anchor: _Anchor | None, compare: _Anchor | None) -> int:
    """The restored trail recomputed, and proved to extend the external checkpoint when it is not older."""
    from trialcoord.kernel import audit_log

    report = support.database(lambda: audit_log.verify(compare.checkpoint if compare else None))
    if not report.ok:
        sequence, why = report.result.first_bad or (0, "did not verify")
        raise NotVerified(f"restored from {source}, but the audit trail is BROKEN at entry {sequence}: {why}")
    print(f"restored from {source}; audit trail intact: {report.result.size} entries, root {report.result.root}")
    if anchor is None:
        print("unanchored: no external checkpoint (TRIALCOORD_CHECKPOINT_DIR) to compare the restored trail with")
    elif report.result.size < anchor.size:
        print(f"warning: restored a trail older than {anchor.name}: {_older(report.result.size, anchor)}")
    else:
        print(f"the restored trail extends the external checkpoint {anchor.name}")
    return 0


# the external checkpoint ---------------------------------------------------------------------------


class _Anchor:
    def __init__(self, path: Path, checkpoint: Checkpoint) -> None:
        self.name, self.checkpoint = str(path), checkpoint
        self.size, self.issued_at = checkpoint.size, checkpoint.issued_at


def _newest_checkpoint(source: Path) -> _Anchor | None:
    """The newest checkpoint in TRIALCOORD_CHECKPOINT_DIR (largest size, then latest instant), its signature
    checked with the backup's system key; None when the setting names no folder or it holds none."""
    from trialcoord.kernel import anchors, signing_keys

    folder = get_settings().checkpoint_dir
    path = anchors.newest(folder) if folder is not None else None
    if path is None:
        return None
    public = _system_key_of(source / "signatures" / "registry.json")
    try:
        signed = signing_keys.load_checkpoint(path)
        if public is None:
            raise signing_keys.CheckpointError("the backup holds no registry with the system key to check it with")
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
        checkpoint = signing_keys.verify_checkpoint(signed, key)
    except signing_keys.CheckpointError as error:
        raise NotVerified(f"{path}: {error}") from None
    return _Anchor(path, checkpoint)


def _older(size: int, anchor: _Anchor) -> str:
    return (
        f"the backup's trail ({size} entries) is older than the external checkpoint {anchor.name}"
        f" ({anchor.size} entries, issued {anchor.issued_at}): entries after the backup would be lost;"
        " restore a newer backup, or pass --accept-older (see docs/operations.md)"
    )


# shared --------------------------------------------------------------------------------------------


def _key_files(settings: Settings) -> list[Path]:
    found = [settings.audit_key_file, settings.audit_passphrase_file, settings.pii_key_file, settings.pades_file]
    return [path for path in found if path is not None]


def _own_registry(settings: Settings) -> Path | None:
    from trialcoord.kernel.installation import Installation

    return Installation(settings).registry_dir


def _system_key_of(registry: Path) -> str | None:
    try:
        return str(json.loads(registry.read_text(encoding="utf-8"))["system_keys"][0]["public_key"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    from trialcoord.kernel.audit_log import clock
    from trialcoord.kernel.rules.audit_entries import utc_instant

    return utc_instant(clock())


def _conflict(message: str) -> Exception:
    from trialcoord.kernel.problems import Conflict

    return Conflict(message)
