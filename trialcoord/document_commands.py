"""`trialcoord document ...` and `trialcoord verify`: the binder's documents from the command line."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from trialcoord.admin_commands import _database, actor
from trialcoord.commands import UsageError
from trialcoord.domain.documents import DocumentKey, IrbApproval


def document_add(study: str, name: str, file: str, label: str, artifact: str, site: str | None,
                 summary: str) -> int:
    from trialcoord.services import documents

    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise UsageError(f"{file}: cannot be read ({error.strerror})") from None
    key = DocumentKey(study, site, name)
    row = _database(lambda: documents.add_version(key, artifact, label, data, Path(file).name, summary, actor()))
    print(f"{name} version {row['label']}: stored as {row['media_type']}, {row['size']} bytes,"
          f" sha256 {row['sha256']}, filed under TMF {row['artifact']['number']} ({row['artifact']['name']}), draft")
    return 0


def document_list(study: str, site: str | None) -> int:
    from trialcoord.services import documents

    for row in _database(lambda: documents.list_documents(study, site)):
        where = f"site {row['site']}" if row["site"] else "study"
        since = f" since {row['status_date']}" if row["status_date"] else ""
        print(f"{where}\t{row['artifact']['number']}\t{row['name']}\t{row['label']}\t{row['status']}{since}"
              f"\t{row['sha256'][:16]}")
    return 0


def document_status(study: str, name: str, label: str, status: str, on: date, site: str | None,
                    reason: str | None, approval_reference: str | None, approval_date: date | None,
                    approval_letter: str | None) -> int:
    from trialcoord.services import documents

    approval = None
    if approval_reference or approval_date or approval_letter:
        if not (approval_reference and approval_date and approval_letter):
            raise UsageError("an approval needs --approval-reference, --approval-date and --approval-letter-sha256")
        approval = IrbApproval(approval_reference, approval_date, approval_letter)
    key = DocumentKey(study, site, name)
    row = _database(lambda: documents.change_status(key, label, status, on, reason, approval, actor()))
    print(f"{name} version {label}: {row['status']} from {row['status_date']}")
    return 0


def verify_documents() -> int:
    from trialcoord.services import documents

    checked, problems = _database(documents.verify_stored)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} of {checked} stored contents do NOT verify", file=sys.stderr)
        return 1
    print(f"all {checked} stored document contents match their SHA-256")
    return 0
