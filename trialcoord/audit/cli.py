"""`trialcoord audit verify|reconcile|checkpoint|public-key`: proving the audit trail whole, now and against a
checkpoint exported earlier, and the current records the ones it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError
from trialcoord.kernel.config import get_settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trialcoord.kernel.rules.audit_verification import Checkpoint


def register(commands) -> None:
    audit = support.group(commands, "audit", "verify the audit trail, export signed checkpoints")
    verify = audit.add_parser("verify", help="recompute the trail; exit 1 naming the first entry that does not match")
    verify.add_argument(
        "--checkpoint", metavar="FILE", help="a checkpoint exported earlier: prove the trail extends it"
    )
    verify.add_argument(
        "--public-key", metavar="FILE", help="PEM public key to check the checkpoint with (default: the system key's)"
    )
    verify.set_defaults(run=lambda a: audit_verify(a.checkpoint, a.public_key))
    reconcile = audit.add_parser(
        "reconcile", help="compare every regulated table's rows with the values the trail recorded; exit 1 listing each"
    )
    reconcile.add_argument("--format", choices=("text", "json"), default="text")
    reconcile.set_defaults(run=lambda a: audit_reconcile(a.format))
    checkpoint = audit.add_parser("checkpoint", help="verify, then export a signed checkpoint")
    checkpoint.add_argument("--out", required=True, metavar="FILE")
    checkpoint.set_defaults(run=lambda a: audit_checkpoint(a.out))
    anchor = audit.add_parser(
        "anchor", help="write a checkpoint to TRIALCOORD_CHECKPOINT_DIR when the trail grew since the newest there"
    )
    anchor.set_defaults(run=lambda a: audit_anchor())
    public_key = audit.add_parser("public-key", help="print (or write) the checkpoint key's public key, PEM")
    public_key.add_argument("--out", metavar="FILE")
    public_key.set_defaults(run=lambda a: audit_public_key(a.out))


def audit_verify(checkpoint_file: str | None, public_key_file: str | None) -> int:
    from trialcoord.kernel import anchors, audit_log

    given = [_checked_checkpoint(checkpoint_file, public_key_file)] if checkpoint_file else []
    external, unanchored = _external_checkpoint(public_key_file)
    if isinstance(external, str):
        print(external, file=sys.stderr)
        return support.EXIT_TRAIL_BROKEN
    report = support.database(lambda: audit_log.verify(*given, external))
    for name in report.checked_against:
        print(f"compared with the {name}")
    if unanchored and not given:
        print(f"{anchors.UNANCHORED} ({unanchored})", file=sys.stderr)
    if report.ok:
        print(f"audit trail intact: {report.result.size} entries, root {report.result.root}")
        return 0
    if report.result.first_bad is None:
        raise AssertionError("a trail that did not verify names its first bad entry")
    sequence, why = report.result.first_bad
    print(f"audit trail BROKEN at entry {sequence}: {why}", file=sys.stderr)
    print(f"entries 1 to {report.result.size} verified", file=sys.stderr)
    return support.EXIT_TRAIL_BROKEN


def _external_checkpoint(public_key_file: str | None) -> tuple[Checkpoint | str | None, str]:
    """The newest external checkpoint, its signature verified (or the message why it does not verify), and why
    there is none ('' when there is one)."""
    from trialcoord.kernel import anchors
    from trialcoord.kernel.signing_keys import CheckpointError

    directory = get_settings().checkpoint_dir
    if directory is None:
        return None, "TRIALCOORD_CHECKPOINT_DIR is not set"
    found = anchors.newest(directory)
    if found is None:
        return None, f"no external checkpoint in {directory} yet"
    print(f"anchored by the external checkpoint {found}")
    try:
        return _checked_checkpoint(str(found), public_key_file), ""
    except CheckpointError as error:
        return f"the external checkpoint {found} does not verify: {error}", ""


def audit_reconcile(form: str) -> int:
    from trialcoord.audit import reconciling

    found = support.database(reconciling.reconcile)
    if form == "json":
        print(json.dumps(reconciling.as_json(found), ensure_ascii=False, indent=2, default=str))
    else:
        for difference in found.differences:
            print(difference, file=sys.stderr)
        print(reconciling.summary(found), file=sys.stderr if found.differences else sys.stdout)
    return 0 if found.ok else support.EXIT_TRAIL_BROKEN


def _checked_checkpoint(file: str, public_key_file: str | None) -> Checkpoint:
    from trialcoord.kernel import signing_keys

    signed = signing_keys.load_checkpoint(Path(file))
    if public_key_file:
        try:
            key = signing_keys.load_public_key(Path(public_key_file).read_text(encoding="utf-8"))
        except OSError as error:
            raise UsageError(f"{public_key_file}: cannot be read ({error.strerror})") from None
    else:
        key = _private_key().public_key()
    return signing_keys.verify_checkpoint(signed, key)


def _private_key() -> Ed25519PrivateKey:
    from trialcoord.kernel import signing_keys

    settings = get_settings()
    key_file = settings.audit_key_file
    if key_file is None or not key_file.exists():
        raise UsageError(f"{key_file}: no audit key; run `trialcoord setup` or set TRIALCOORD_AUDIT_KEY_FILE")
    passphrase = signing_keys.read_passphrase(file=settings.audit_passphrase_file)
    return signing_keys.load_private_key(key_file, passphrase)


def audit_checkpoint(out: str) -> int:
    from trialcoord.kernel import audit_log

    key = _private_key()
    signed = support.database(lambda: audit_log.checkpoint(key, Path(out)))
    print(f"checkpoint of {signed.size} entries, root {signed.root}, signed by key {signed.key_id}, written to {out}")
    return 0


def audit_anchor() -> int:
    """For cron where `serve` does not write them (PostgreSQL's nightly, a stopped server)."""
    from trialcoord.kernel import anchors

    settings = get_settings()
    if settings.checkpoint_dir is None:
        raise UsageError(f"TRIALCOORD_CHECKPOINT_DIR is not set: the audit trail is {anchors.UNANCHORED}")
    anchors.start_check(settings)
    key = _private_key()
    directory, every = settings.checkpoint_dir, settings.checkpoint_every
    try:
        written = support.database(lambda: anchors.write_if_due(directory, every, lambda: key, nightly=True))
    except OSError as error:
        raise UsageError(f"TRIALCOORD_CHECKPOINT_DIR {directory}: cannot be written ({error.strerror})") from None
    print(
        f"external checkpoint written: {written}"
        if written
        else f"nothing new to anchor since {anchors.newest(directory)}"
    )
    return 0


def audit_public_key(out: str | None) -> int:
    from trialcoord.kernel import signing_keys

    pem = signing_keys.public_key_pem(_private_key().public_key())
    if out:
        support.write_file(out, pem)
        print(f"public key written to {out}")
    else:
        print(pem, end="")
    return 0
