"""`trialcoord export sponsor`: the sponsor compliance package, made on the command line."""

from __future__ import annotations

from pathlib import Path

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError, iso_date


def register(commands) -> None:
    export = support.group(commands, "export", "packages for those outside the site")
    sponsor = export.add_parser(
        "sponsor",
        help="the sponsor compliance package: SDTM XPT and CSV, define.xml, a PDF/A report, a signed manifest",
    )
    sponsor.add_argument("study")
    sponsor.add_argument("--site", action="append", default=[], metavar="CODE", help="only this site (repeatable)")
    sponsor.add_argument("--as-of", type=iso_date, help="the study as it stood at the end of this day (default today)")
    sponsor.add_argument("--privacy", choices=("coded", "safe-harbor"), default="coded")
    sponsor.add_argument(
        "--unblinded", action="store_true", help="participants' arms in DM (a blinded study's packages omit them)"
    )
    sponsor.add_argument("--transfer", type=int, metavar="N", help="rebuild transfer N (same parameters and bytes)")
    sponsor.add_argument("--out", required=True, metavar="FILE.zip")
    sponsor.set_defaults(run=lambda a: export_sponsor(a))


def export_sponsor(args) -> int:
    from trialcoord.exports import packages
    from trialcoord.exports.rules.scope import Privacy, Scope

    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise UsageError(f"{out}: is a folder; name the ZIP file to write")
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: no such folder for --out")
    if args.transfer is not None and args.transfer < 1:
        raise UsageError("--transfer counts from 1")
    today = support.today()
    scope = Scope(args.study, args.as_of or today, tuple(sorted(set(args.site))), Privacy(args.privacy), args.unblinded)
    with support.progress(f"Sponsor package of {args.study}") as shown:
        made = support.database(
            lambda: packages.make(
                scope,
                actor=support.actor(),
                today=today,
                installation=support.installation(),
                transfer=args.transfer,
                out=out,
                progress=shown.advance if shown.on else None,
            )
        )
    again = f" (a rebuild of transfer {made.transfer})" if made.rebuild_of else ""
    print(f"{out}: transfer {made.transfer}{again} of {made.study}, {made.size} bytes, sha256 {made.sha256}")
    return 0
