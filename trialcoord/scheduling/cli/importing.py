"""`trialcoord import events|sdtm`: events and actual visits from a CSV file or from SDTM datasets."""

from __future__ import annotations

import sys
from pathlib import Path

from trialcoord.kernel import command_support as support


def register(commands) -> None:
    what = support.group(commands, "import", "import data from another system", dest="what", metavar="WHAT")
    events = what.add_parser("events", help="events and actual visits from a CSV (participant,event,date[,arm][,site])")
    events.add_argument("study")
    events.add_argument("file", metavar="FILE.csv")
    events.add_argument("--site", help="where participants new to the study are enrolled when their rows name no site")
    events.add_argument(
        "--create-sites", action="store_true", help="add the sites the file names that the study lacks (a first load)"
    )
    events.set_defaults(run=lambda a: import_events(a.study, a.file, a.site, a.create_sites))
    sdtm = what.add_parser("sdtm", help="SDTM SV (visits), DS (disposition) and DM (sites, arms), XPT or CSV")
    sdtm.add_argument("study")
    sdtm.add_argument("--sv", required=True, metavar="SV.xpt")
    sdtm.add_argument("--ds", metavar="DS.xpt")
    sdtm.add_argument("--dm", metavar="DM.xpt")
    sdtm.add_argument(
        "--map",
        metavar="MAP.yaml",
        help="visits: {LABEL: CODE}, ds: {TERM: EVENT}, arms: {ARMCD: ARM}, events: {EVENT: {sv: VISIT}}",
    )
    sdtm.add_argument("--site", help="where new participants go when DM gives no SITEID")
    sdtm.add_argument("--create-sites", action="store_true")
    sdtm.add_argument(
        "--dry-run", action="store_true", help="print the mapping and every unmatched label; store nothing"
    )
    sdtm.add_argument("--format", choices=("table", "json"), default="table")
    sdtm.set_defaults(run=import_sdtm)


def import_events(study: str, file: str, site: str | None, create_sites: bool = False) -> int:
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.scheduling.importing import import_events as run_import

    text = support.read_text(file)

    async def run(shown: support.Progress):
        async with open_database(migrate=True):
            return await run_import(
                study,
                text,
                site=site,
                file=file,
                today=support.today(),
                actor=support.actor(),
                create_sites=create_sites,
                progress=shown if shown.on else None,
            )

    with support.progress(f"Importing {file} into {study}") as shown:
        result = support.run(run(shown))
    sites = f"sites {', '.join(result.created_sites)} created, " if result.created_sites else ""
    print(
        f"{file}: {sites}{result.created_participants} participants created, {result.events_recorded} events and "
        f"{result.visits_recorded} visits recorded, {result.unchanged} lines already present"
    )
    return 0


def import_sdtm(args) -> int:
    """`trialcoord import sdtm`: the datasets read first (bad files named), then one import, or a dry run."""
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.kernel.problems import InvalidInput
    from trialcoord.scheduling.importing import import_sdtm as run_import
    from trialcoord.scheduling.sdtm import Mapping
    from trialcoord.scheduling.sdtm.datasets import read_dataset
    from trialcoord.scheduling.sdtm.map_file import read_map

    sv = read_dataset(Path(args.sv), "SV")
    ds = read_dataset(Path(args.ds), "DS") if args.ds else None
    dm = read_dataset(Path(args.dm), "DM") if args.dm else None
    mapping = read_map(Path(args.map) if args.map else None)

    used = Mapping()

    async def run(shown: support.Progress):
        async with open_database(migrate=True):
            return await run_import(
                args.study,
                sv,
                ds,
                dm,
                mapping,
                site=args.site,
                today=support.today(),
                actor=support.actor(),
                create_sites=args.create_sites,
                dry_run=args.dry_run,
                progress=shown if shown.on else None,
                used=used,
            )

    try:
        with support.progress(f"Importing SDTM datasets into {args.study}") as shown:
            result, _ = support.run(run(shown))
    except InvalidInput:
        if args.dry_run:  # the mapping first, then the problems (exit 2)
            _print_mapping(used, None, args)
        raise
    return _print_mapping(used, result, args)


def _print_mapping(used, result, args) -> int:
    import msgspec

    rows = (
        [
            {"dataset": "SV", "label": label, "becomes": code, "rows": n}
            for label, (code, n) in sorted(used.visits.items())
        ]
        + [
            {"dataset": "SV", "label": label, "becomes": "unscheduled visit", "rows": n}
            for label, n in sorted(used.unscheduled.items())
        ]
        + [
            {"dataset": "DS", "label": term, "becomes": event or "not imported (no event)", "rows": n}
            for term, (event, n) in sorted(used.ds.items())
        ]
        + [{"dataset": "DM", "label": var, "becomes": event, "rows": n} for var, (event, n) in sorted(used.dm.items())]
        + [
            {
                "dataset": "DM",
                "label": f"ARMCD {armcd}" if armcd else "ARMCD (empty)",
                "becomes": f"arm {arm}" if arm else "no arm",
                "rows": n,
            }
            for armcd, (arm, n) in sorted(used.arms.items())
        ]
        + [
            {"dataset": "map", "label": entry, "becomes": "unused: no row has this label", "rows": 0}
            for entry in used.unused
        ]
    )
    if args.format == "json":
        body: dict = {"mapping": rows, "dry_run": args.dry_run}
        if result is not None:
            body["result"] = {
                "created_sites": list(result.created_sites),
                "created_participants": result.created_participants,
                "events_recorded": result.events_recorded,
                "visits_recorded": result.visits_recorded,
                "unchanged": result.unchanged,
            }
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(body), indent=1).decode() + "\n")
        return 0
    from trialcoord.kernel.render.tabular import text_table

    sys.stdout.write(text_table(["dataset", "label", "becomes", "rows"], rows))
    if result is not None:
        sites = f"sites {', '.join(result.created_sites)} created, " if result.created_sites else ""
        print(
            ("dry run, nothing stored; it would have: " if args.dry_run else "")
            + f"{sites}{result.created_participants} participants created, {result.events_recorded} events and"
            f" {result.visits_recorded} visits recorded, {result.unchanged} rows already stored or given twice"
            " (the same date)"
        )
    sys.stdout.flush()
    return 0
