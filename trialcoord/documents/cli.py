"""`trialcoord document add|list|status|sign` and `binder checklist|export`: the regulatory binder."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from trialcoord.documents.rules.documents import DocumentKey, IrbApproval
from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError, iso_date


def register(commands: argparse._SubParsersAction) -> None:
    document = support.group(commands, "document", "regulatory binder documents and their versions")
    add = document.add_parser("add", help="store a new version (a draft) of a document from a file")
    add.add_argument("study")
    add.add_argument("name", help="the document's name within the study (and site)")
    add.add_argument("file", metavar="FILE")
    add.add_argument("--label", required=True, help="version label, such as 2.0")
    add.add_argument("--artifact", required=True, help="TMF Reference Model unique ID, such as 040 (consent form)")
    add.add_argument("--site")
    add.add_argument("--summary", default="", help="what changed in this version")
    add.add_argument("--person", help="whose document it is (a CV, licence or training record): their user ID")
    add.add_argument("--expires-on", type=iso_date, help="the last day the document is valid, when it says so")
    add.set_defaults(
        run=lambda a: document_add(
            a.study, a.name, a.file, a.label, a.artifact, a.site, a.summary, a.person, a.expires_on
        )
    )
    listing = document.add_parser("list", help="every version with its status")
    listing.add_argument("study")
    listing.add_argument("--site")
    listing.set_defaults(run=lambda a: document_list(a.study, a.site))
    status = document.add_parser("status", help="move a version along its lifecycle")
    status.add_argument("study")
    status.add_argument("name")
    status.add_argument("label")
    status.add_argument("status", help="in_review, draft, approved, effective, superseded or expired")
    status.add_argument("--on", type=iso_date, required=True, help="the date it takes effect")
    status.add_argument("--site")
    status.add_argument("--reason")
    status.add_argument("--approval-reference")
    status.add_argument("--approval-date", type=iso_date)
    status.add_argument("--approval-letter-sha256")
    status.set_defaults(
        run=lambda a: document_status(
            a.study,
            a.name,
            a.label,
            a.status,
            a.on,
            a.site,
            a.reason,
            a.approval_reference,
            a.approval_date,
            a.approval_letter_sha256,
        )
    )
    sign = document.add_parser("sign", help="sign a version electronically (password from a terminal or stdin)")
    sign.add_argument("study")
    sign.add_argument("name")
    sign.add_argument("label")
    sign.add_argument("--meaning", required=True, help="authorship, review, approval, responsibility or consent")
    sign.add_argument("--user", required=True, help="the signer's user ID")
    sign.add_argument("--site")
    sign.set_defaults(run=lambda a: document_sign(a.study, a.name, a.label, a.meaning, a.site, a.user))

    binder = support.group(commands, "binder", "the regulatory binder: checklist and signed export")
    checklist = binder.add_parser("checklist", help="expected documents: present, missing, expiring, expired")
    checklist.add_argument("study")
    checklist.add_argument("--site", required=True)
    checklist.add_argument("--as-of", type=iso_date)
    checklist.add_argument("--pdf", metavar="FILE", help="write the checklist as a PDF/A report instead")
    checklist.set_defaults(run=lambda a: binder_checklist(a.study, a.site, a.as_of, a.pdf))
    export = binder.add_parser(
        "export", help="a signed ZIP of every version, with manifest, index and an eTMF EMS exchange.xml"
    )
    export.add_argument("study")
    export.add_argument("--site")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    export.set_defaults(run=lambda a: binder_export(a.study, a.site, a.out))


def document_add(
    study: str,
    name: str,
    file: str,
    label: str,
    artifact: str,
    site: str | None,
    summary: str,
    person: str | None = None,
    expires_on: date | None = None,
) -> int:
    from trialcoord.documents import documents

    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"{file}: cannot be read ({error.strerror})") from None
    key = DocumentKey(study, site, name)
    row = support.database(
        lambda: documents.add_version(
            key, artifact, label, data, Path(file).name, summary, support.actor(), person, expires_on
        )
    )
    whose = f" for {row.person}" if row.person else ""
    until = f", valid until {row.expires_on}" if row.expires_on else ""
    print(
        f"{name} version {row.label}: stored as {row.media_type}, {row.size} bytes,"
        f" sha256 {row.sha256}, filed under TMF {row.artifact.number} ({row.artifact.name}){whose}{until}, draft"
    )
    return 0


def document_list(study: str, site: str | None) -> int:
    from trialcoord.documents import documents

    for row in support.database(lambda: documents.list_documents(study, site)):
        where = f"site {row.site}" if row.site else "study"
        since = f" since {row.status_date}" if row.status_date else ""
        print(f"{where}\t{row.artifact.number}\t{row.name}\t{row.label}\t{row.status}{since}\t{row.sha256[:16]}")
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
    from trialcoord.documents import documents

    approval = None
    if approval_reference or approval_date or approval_letter:
        if not (approval_reference and approval_date and approval_letter):
            raise UsageError("an approval needs --approval-reference, --approval-date and --approval-letter-sha256")
        approval = IrbApproval(approval_reference, approval_date, approval_letter.strip().lower())
    key = DocumentKey(study, site, name)
    row = support.database(
        lambda: documents.change_status(key, label, status, on, reason, approval, support.actor(), support.today())
    )
    print(f"{name} version {label}: {row.status} from {row.status_date}")
    return 0


def document_sign(study: str, name: str, label: str, meaning: str, site: str | None, user_id: str) -> int:
    """Sign as `user_id`: both components every time (no session), the password from a terminal or stdin."""
    import getpass

    from trialcoord.accounts import signing
    from trialcoord.accounts.users import AccountRules
    from trialcoord.documents import signatures
    from trialcoord.kernel.config import get_settings

    password = (
        getpass.getpass(f"Password of {user_id}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    )
    key = DocumentKey(study, site, name)

    async def sign() -> signatures.SignatureRecord:
        return await signatures.sign(
            key,
            label,
            await signing.signing_by_password(
                user_id, meaning, password, rules=AccountRules.from_settings(get_settings())
            ),
            support.installation(),
        )

    made = support.database(sign)
    print(
        f"{name} version {label}: signed by {made.printed_name} ({made.signer_id}) for {made.meaning}"
        f" at {made.instant} with key {made.key_id}"
    )
    return 0


def binder_checklist(study: str, site: str, as_of: date | None, pdf: str | None = None) -> int:
    from trialcoord.documents.binder_checklist import checklist_report, site_checklist

    if pdf:
        support.write_file(pdf, support.database(lambda: checklist_report(study, site, as_of or support.today())))
        print(f"checklist of site {site} written to {pdf}")
        return 0
    items = support.database(lambda: site_checklist(study, site, as_of or support.today()))
    for item in items:
        who = item.person or (f"consent {item.consent_version}" if item.consent_version else "")
        until = f" until {item.expires_on}" if item.expires_on else ""
        print(f"{item.state}\t{item.artifact.number} {item.artifact.name}\t{who}\t{item.document or ''}{until}")
    return 0


def binder_export(study: str, site: str | None, out: str) -> int:
    from trialcoord.documents.binder_export import export

    target = Path(out)
    temporary = target.with_name(target.name + ".partial")
    try:
        manifest = support.database(lambda: export(study, site, temporary, support.actor(), support.installation()))
        temporary.replace(target)  # a failed export leaves no half-written package under the asked name
    except OSError as error:
        raise UsageError(f"{out}: cannot be written ({error.strerror})") from None
    finally:
        temporary.unlink(missing_ok=True)
    print(f"{len(manifest['files'])} files written to {out}, manifest signed by key {manifest['manifest_key_id']}")
    return 0
