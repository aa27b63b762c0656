"""`trialcoord document ...` and `trialcoord verify`: the binder's documents from the command line."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from trialcoord import command_support as support
from trialcoord.command_support import UsageError
from trialcoord.domain.documents import DocumentKey, IrbApproval


def document_add(study: str, name: str, file: str, label: str, artifact: str, site: str | None, summary: str) -> int:
    from trialcoord.services import documents

    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"{file}: cannot be read ({error.strerror})") from None
    key = DocumentKey(study, site, name)
    row = support.database(
        lambda: documents.add_version(key, artifact, label, data, Path(file).name, summary, support.actor())
    )
    print(
        f"{name} version {row['label']}: stored as {row['media_type']}, {row['size']} bytes,"
        f" sha256 {row['sha256']}, filed under TMF {row['artifact']['number']} ({row['artifact']['name']}), draft"
    )
    return 0


def document_list(study: str, site: str | None) -> int:
    from trialcoord.services import documents

    for row in support.database(lambda: documents.list_documents(study, site)):
        where = f"site {row['site']}" if row["site"] else "study"
        since = f" since {row['status_date']}" if row["status_date"] else ""
        print(
            f"{where}\t{row['artifact']['number']}\t{row['name']}\t{row['label']}\t{row['status']}{since}"
            f"\t{row['sha256'][:16]}"
        )
    return 0


def document_status(
    study: str,
    name: str,
    label: str,
    status: str,
    on: date,
    site: str | None,
    reason: str | None,
    approval_reference: str | None,
    approval_date: date | None,
    approval_letter: str | None,
) -> int:
    from trialcoord.services import documents

    approval = None
    if approval_reference or approval_date or approval_letter:
        if not (approval_reference and approval_date and approval_letter):
            raise UsageError("an approval needs --approval-reference, --approval-date and --approval-letter-sha256")
        approval = IrbApproval(approval_reference, approval_date, approval_letter)
    key = DocumentKey(study, site, name)
    row = support.database(lambda: documents.change_status(key, label, status, on, reason, approval, support.actor()))
    print(f"{name} version {label}: {row['status']} from {row['status_date']}")
    return 0


def document_sign(study: str, name: str, label: str, meaning: str, site: str | None, user_id: str) -> int:
    """Sign as `user_id`: both components every time (no session), the password from a terminal or stdin."""
    import getpass

    from trialcoord.services import accounts, signatures

    password = (
        getpass.getpass(f"Password of {user_id}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    )
    key = DocumentKey(study, site, name)

    async def sign():
        return await signatures.sign(key, label, await accounts.signing_by_password(user_id, meaning, password))

    made = support.database(sign)
    print(
        f"{name} version {label}: signed by {made['printed_name']} ({made['signer_id']}) for {made['meaning']}"
        f" at {made['instant']} with key {made['key_id']}"
    )
    return 0


def signer_revoke(user_id: str, reason: str) -> int:
    """End a signer's key (lost, compromised, left): later signatures need a new key, older ones stay
    verifiable as valid when made."""
    from trialcoord.domain.accounts import normalize_user_id
    from trialcoord.services import accounts, signatures

    user_id = normalize_user_id(user_id)

    async def revoke():
        await accounts.get_user(user_id)  # an unknown user ID is an error, not "no key in force"
        return await signatures.end_signer_keys(user_id, reason, support.actor())

    ended = support.database(revoke)
    print(
        f"{user_id}: "
        + (
            f"key {', '.join(ended)} ended; signatures made with it stay valid when made"
            if ended
            else "no signing key in force"
        )
    )
    return 0


def binder_checklist(study: str, site: str, as_of: date | None, pdf: str | None = None) -> int:
    from trialcoord.services import binder

    if pdf:
        support.write_file(
            pdf, support.database(lambda: binder.checklist_report(study, site, as_of or support.today()))
        )
        print(f"checklist of site {site} written to {pdf}")
        return 0
    items = support.database(lambda: binder.site_checklist(study, site, as_of or support.today()))
    for item in items:
        who = item["person"] or (f"consent {item['consent_version']}" if item["consent_version"] else "")
        until = f" until {item['expires_on']}" if item["expires_on"] else ""
        print(
            f"{item['state']}\t{item['artifact']['number']} {item['artifact']['name']}\t{who}\t"
            f"{item['document'] or ''}{until}"
        )
    return 0


def binder_export(study: str, site: str | None, out: str) -> int:
    from trialcoord.services import binder

    target = Path(out)
    temporary = target.with_name(target.name + ".partial")
    try:
        manifest = support.database(lambda: binder.export(study, site, temporary, support.actor()))
        temporary.replace(target)  # a failed export leaves no half-written package under the asked name
    except OSError as error:
        raise UsageError(f"{out}: cannot be written ({error.strerror})") from None
    finally:
        temporary.unlink(missing_ok=True)
    print(f"{len(manifest['files'])} files written to {out}, manifest signed by key {manifest['manifest_key_id']}")
    return 0


def verify(paths: list[str], registry_file: str | None) -> int:
    """No paths: every stored content, version, signature and file made from a version. Paths: binder or
    export ZIPs, offline, against the public signer registry."""
    if paths:
        return _verify_packages(paths, registry_file)
    from trialcoord.services import documents, verification

    async def both():
        stored = await documents.verify_stored()
        signed = await verification.verify_all()
        return stored[0] + signed[0], stored[1] + signed[1]

    checked, problems = support.database(both)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problems in {checked} stored contents, versions and signatures", file=sys.stderr)
        return 1
    print(f"all {checked} stored contents, versions and signatures verify")
    return 0


def _verify_packages(paths: list[str], registry_file: str | None) -> int:
    import json

    from trialcoord.adapters.binder_package import verify_package
    from trialcoord.config import get_settings
    from trialcoord.domain.audit import utc_instant
    from trialcoord.services.audit_log import clock

    # Trust comes from the site's published registry, never from the package: a forged package carries its
    # own registry, keys and all.
    source = Path(registry_file) if registry_file else get_settings().signatures_dir / "registry.json"
    if not source.exists():
        raise UsageError(
            f"{source}: no signer registry to trust; pass --registry FILE, the registry the site"
            " publishes (signatures/registry.json), not the copy inside the package"
        )
    try:
        registry = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{source}: not a readable signer registry ({error})") from None
    if not isinstance(registry, dict):
        raise UsageError(f"{source}: not a signer registry (a JSON object is expected)")
    failed = 0
    for path in paths:
        report = verify_package(path, registry, now=utc_instant(clock()))
        for problem in report.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        trust = f"; {report.trust}" if report.trust else ""
        if report.ok:
            print(f"{path}: {report.files_checked} files and {report.signatures_checked} signatures verify{trust}")
        else:
            failed += 1
            print(f"{path}: {len(report.problems)} problems{trust}", file=sys.stderr)
    return 1 if failed else 0
