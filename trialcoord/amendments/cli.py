"""`trialcoord protocol apply|impact`: moving participants to a new protocol version, and its impact first."""

from __future__ import annotations

import sys
from datetime import date
from typing import TYPE_CHECKING

import msgspec

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, UsageError, iso_date

if TYPE_CHECKING:
    from trialcoord.amendments.impact import Impact


def register(commands) -> None:
    protocol = support.group(commands, "protocol", "validate or load protocol definitions")
    apply = protocol.add_parser(
        "apply",
        help="move every active participant of a study or site to a"
        " protocol version from a date (one audited change each)",
    )
    apply.add_argument("study")
    apply.add_argument("version")
    apply.add_argument("--effective", type=iso_date, required=True, help="the first day the version governs them")
    apply.add_argument("--reason", required=True)
    apply.add_argument("--site")
    apply.add_argument(
        "--confirm-downgrade",
        action="store_true",
        help="move participants back to an earlier version than the one they follow (audited)",
    )
    apply.set_defaults(
        run=lambda a: protocol_apply(a.study, a.version, a.effective, a.reason, a.site, a.confirm_downgrade)
    )
    impact = protocol.add_parser(
        "impact", help="what a new protocol version would change, before it takes effect (stores nothing)"
    )
    impact.add_argument("study")
    impact.add_argument("file", metavar="NEW.yaml")
    impact.add_argument("--effective", type=iso_date, help="default: the file's effective date, or today if past")
    impact.add_argument("--site")
    impact.add_argument("--format", choices=FORMATS + ("pdf",), default="table")
    impact.add_argument("--out", metavar="FILE", help="write to a file (required for pdf)")
    impact.set_defaults(run=lambda a: protocol_impact(a.study, a.file, a.effective, a.site, a.format, a.out))


def protocol_apply(
    study: str, version: str, effective: date, reason: str, site: str | None, confirm_downgrade: bool = False
) -> int:
    from trialcoord.amendments import applying
    from trialcoord.scheduling import version_changes

    today = support.today()
    moved = support.database(
        lambda: applying.apply_version(
            study,
            version,
            effective,
            reason,
            site=site,
            today=today,
            actor=support.actor(),
            confirm_downgrade=confirm_downgrade,
        )
    )
    where = f"site {site} of {study}" if site else study
    print(
        f"{where}: {len(moved.moved)} participants moved to protocol version {version} from {effective}"
        f" ({len(moved.skipped)} left as they are)"
    )
    if moved.deviations:
        print(
            f"  deviation detection run again for them: {moved.deviations['created']} created,"
            f" {moved.deviations['resolved']} resolved by the change, {moved.deviations['updated']} updated"
        )
    if moved.downgraded:
        print(f"  {len(moved.downgraded)} of them moved back from a later version (confirmed)")
    for subject, why in sorted(moved.skipped.items()):
        print(f"  {subject}: {why}")
    # nobody could be moved, and not merely because everyone already follows it or has ended (a re-run): a
    # conflict a script must notice
    harmless = (version_changes.ALREADY_ON, version_changes.SCHEDULE_ENDED)
    refused = not moved.moved and any(not why.startswith(harmless) for why in moved.skipped.values())
    return support.EXIT_CONFLICT if refused else 0


def protocol_impact(study: str, file: str, effective: date | None, site: str | None, fmt: str, out: str | None) -> int:
    from trialcoord.amendments import impact, impact_outputs
    from trialcoord.scheduling.protocol_files import parse_protocol

    if fmt == "pdf" and not out:
        raise UsageError("--format pdf writes a file: give --out FILE.pdf")
    text = support.read_text(file)
    protocol = parse_protocol(text, file=file)
    today = support.today()

    async def run() -> Impact:
        result = await impact.impact(study, protocol, text, effective, site=site, today=today)
        # a listing taken out: audited as an export
        await impact_outputs.record_impact_read(result, fmt, support.actor())
        return result

    result = support.database(run)
    if fmt == "pdf":
        if out is None:  # checked before the database was opened
            raise UsageError("--format pdf writes a file: give --out FILE.pdf")
        support.write_file(out, impact_outputs.impact_pdf(result, created_at=f"{today.isoformat()}T00:00:00Z"))
        print(f"{out}: one-page summary of protocol version {protocol.version}'s impact")
        return 0
    if fmt == "json":
        text = msgspec.json.format(msgspec.json.encode(impact_outputs.impact_dict(result)), indent=1).decode() + "\n"
    elif fmt == "csv":
        from trialcoord.kernel.render.tabular import csv_text

        text = csv_text(
            impact_outputs.IMPACT_COLUMNS, [r.cells() for r in impact_outputs.impact_rows(result, left=True)]
        )
    else:
        text = _impact_table(result)
    if out:
        support.write_file(out, text)
    else:
        sys.stdout.write(text)
    return 0


def _impact_table(result) -> str:
    from trialcoord.amendments import impact_outputs
    from trialcoord.kernel.render.tabular import text_table

    totals = impact_outputs.impact_summary(result).totals
    head = (
        f"{result.study} protocol version {result.version} from {result.effective} (as of {result.as_of}):"
        f" {totals.affected} of {totals.participants} active participants affected"
        + (f" ({len(result.skipped)} left out, listed below)" if result.skipped else "")
        + "; visits"
        f" {totals.visits_moving} move, {totals.visits_appearing} appear,"
        f" {totals.visits_disappearing} disappear; deviations {totals.deviations_resolved} resolved,"
        f" {totals.deviations_created} created; re-consent required {totals.reconsent_required}"
        + (
            f", unknown {totals.reconsent_unknown} (no consent version for {result.version})"
            if totals.reconsent_unknown
            else ""
        )
        + "\n"
    )
    rows = impact_outputs.impact_rows(result, left=True)
    table = (
        text_table(impact_outputs.IMPACT_COLUMNS, [r.cells() for r in rows])
        if rows
        else "nothing changes and no participant is left out\n"
    )
    differences = "".join(
        f"what {result.version} changes against {label}:\n"
        + "".join(f"  {line}\n" for line in lines or ["no visit definition changes"])
        for label, lines in sorted(result.differences.items())
    )
    return head + table + differences
