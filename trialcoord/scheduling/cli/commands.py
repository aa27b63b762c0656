"""`trialcoord protocol validate|load|import-usdm`, `schedule`, `check`, `import events|sdtm` and `visits`."""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import date
from pathlib import Path

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, UsageError, iso_date
from trialcoord.scheduling.protocol_files import load_protocol, validate_protocol_file
from trialcoord.scheduling.rows import WRITERS
from trialcoord.scheduling.rules.schedule import evaluate


def register(commands) -> None:
    protocol = support.group(commands, "protocol", "validate or load protocol definitions")
    validate = protocol.add_parser("validate", help="report every problem in protocol files")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(run=lambda a: validate_protocols(a.files))
    load = protocol.add_parser("load", help="validate and store a protocol version")
    load.add_argument("file", metavar="FILE")
    load.set_defaults(run=lambda a: load_protocol_file(a.file))
    usdm = protocol.add_parser(
        "import-usdm",
        help="write a protocol file from a CDISC USDM v4 study (JSON); what cannot be mapped is listed, never dropped",
    )
    usdm.add_argument("file", metavar="FILE.json")
    usdm.add_argument(
        "--out",
        required=True,
        metavar="protocols/STUDY/VERSION.yaml",
        help="the study code and version are taken from this path; '-' writes to standard output",
    )
    usdm.add_argument("--effective", type=iso_date, help="the version's first day (default: its USDM date)")
    usdm.add_argument("--replace", action="store_true", help="overwrite an existing file")
    usdm.add_argument("--format", choices=("table", "json"), default="table", help="the report's format")
    usdm.set_defaults(run=lambda a: import_usdm(a.file, a.out, a.effective, a.replace, a.format))

    one = commands.add_parser("schedule", help="one participant's schedule from event dates (no database)")
    one.add_argument("protocol", metavar="PROTOCOL")
    one.add_argument("--event", action="append", type=event_pair, default=[], metavar="NAME=DATE")
    one.add_argument("--arm")
    one.add_argument("--as-of", type=iso_date)
    one.add_argument("--format", choices=FORMATS + ("ics",), default="table")
    one.set_defaults(run=lambda a: schedule(a.protocol, dict(a.event), a.arm, a.as_of, a.format))

    many = commands.add_parser("check", help="visit statuses of many participants from a CSV (no database)")
    many.add_argument("protocol", metavar="PROTOCOL")
    many.add_argument("--events", required=True, metavar="FILE.csv")
    many.add_argument("--as-of", type=iso_date)
    many.add_argument("--format", choices=FORMATS, default="table")
    many.set_defaults(run=lambda a: check(a.protocol, a.events, a.as_of, a.format))

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

    stored = commands.add_parser("visits", help="a stored study's visit statuses")
    stored.add_argument("study")
    stored.add_argument("--site")
    stored.add_argument("--status", help="comma-separated statuses, such as missed,late")
    stored.add_argument("--as-of", type=iso_date)
    stored.add_argument("--format", choices=FORMATS, default="table")
    stored.set_defaults(run=lambda a: visits(a.study, a.site, a.status, a.as_of, a.format))


def event_pair(text: str) -> tuple[str, date]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' should be NAME=YYYY-MM-DD, such as randomization=2024-03-04")
    return name.strip(), iso_date(value.strip())


def _print_rows(pairs, fmt: str, with_participant: bool) -> None:
    WRITERS[fmt](pairs, sys.stdout, with_participant)


def validate_protocols(files: list[str]) -> int:
    invalid = 0
    for file in files:
        problems = validate_protocol_file(file)
        for problem in problems:
            print(f"{problem}", file=sys.stderr)
        if problems:
            invalid += 1
            print(f"{file}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
        else:
            print(f"{file}: valid")
    return 1 if invalid else 0


def import_usdm(file: str, out: str, effective: date | None, replace: bool, fmt: str) -> int:
    """`protocol import-usdm`: convert, check the result as `protocol validate` would, then write it whole."""
    import json
    import os
    import tempfile

    from trialcoord.kernel.problems import Conflict, InvalidInput, Problem
    from trialcoord.scheduling.protocol_files import parse_protocol
    from trialcoord.scheduling.usdm import convert, parse_usdm

    target = None if out == "-" else Path(out)
    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise InvalidInput([Problem(f"cannot read the file: {error.strerror or error}", file)]) from None
    if target is not None and target.is_dir():
        raise InvalidInput(
            [
                Problem(
                    "is a directory; give the protocol file's path, such as protocols/STUDY/1.0.yaml",
                    out,
                    field="--out",
                )
            ]
        )
    if target is not None and target.exists() and not replace:
        raise Conflict(f"{out} exists; choose another path, or give --replace to overwrite it")  # exit 3
    study = version = None
    if target is not None and target.suffix in (".yaml", ".yml") and target.resolve().parent.parent.name == "protocols":
        study, version = target.parent.name, target.stem  # the project's layout: protocols/STUDY/VERSION.yaml
    result = convert(
        parse_usdm(data, file), file, study=study, version=version, effective=effective, today=support.today()
    )
    try:
        protocol = parse_protocol(result.text, out)
    except (
        InvalidInput
    ) as error:  # a mapping this importer got wrong, or a file it cannot express: say so, write nothing
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"error: the protocol converted from {file} does not validate; nothing was written", file=sys.stderr)
        return 1  # as `protocol validate` of an invalid file
    if target is None:
        sys.stdout.write(result.text)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(result.text)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # as any file the user writes, not mkstemp's 0600
            os.replace(temporary, target)  # whole or not at all
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    report = {
        "file": file,
        "out": out,
        "study": protocol.study,
        "version": protocol.version,
        "visits": len(protocol.visits),
        "events": list(protocol.events),
        "not_mapped": result.not_mapped,
        "assumed": result.assumed,
    }
    if fmt == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False), file=sys.stdout if target else sys.stderr)
        return 0
    for title in ("not_mapped", "assumed"):
        for item in report[title]:
            print(f"{title.replace('_', ' ')}: {item}", file=sys.stderr)
    print(
        f"{out}: {protocol.study} version {protocol.version}, {len(protocol.visits)} visits, events "
        f"{', '.join(protocol.events)}; {len(result.not_mapped)} not mapped, {len(result.assumed)} assumed "
        f"(listed above and at the end of the file); it passes protocol validate",
        file=sys.stderr if target is None else sys.stdout,
    )
    return 0


def schedule(protocol_file: str, events: dict[str, date], arm: str | None, as_of: date | None, fmt: str) -> int:
    from trialcoord.kernel.problems import InvalidInput, Problem

    protocol = load_protocol(protocol_file)
    problems = [
        Problem(
            f"'{name}' is not an event of {protocol.study} {protocol.version};"
            f" events are: {', '.join(protocol.events)}",
            field="--event",
        )
        for name in events
        if name not in protocol.events
    ]
    if arm is not None and protocol.arms and arm not in protocol.arm_codes:
        problems.append(
            Problem(f"'{arm}' is not an arm; arms are: {', '.join(sorted(protocol.arm_codes))}", field="--arm")
        )
    if problems:
        raise InvalidInput(problems)
    as_of = as_of or support.today()
    rows = evaluate(protocol, events, {}, as_of, arm=arm)
    if fmt == "ics":
        from trialcoord.scheduling.ics import visits_calendar

        sys.stdout.write(
            visits_calendar(f"{protocol.study} schedule", protocol.study, [("-", r) for r in rows], as_of).decode()
        )
    else:
        _print_rows([(None, row) for row in rows], fmt, with_participant=False)
    return 0


def check(protocol_file: str, events_file: str, as_of: date | None, fmt: str) -> int:
    from trialcoord.scheduling.events_csv import read_events_file

    protocol = load_protocol(protocol_file)
    as_of = as_of or support.today()
    # A batch of millions of short-lived objects that form no cycles: the cyclic collector only costs time.
    gc.disable()
    try:
        participants = read_events_file(Path(events_file), protocol)
        pairs = [
            (subject, row)
            for subject, record in sorted(participants.items())
            for row in evaluate(protocol, record.events, record.actuals, as_of, arm=record.arm)
        ]
        _print_rows(pairs, fmt, with_participant=True)
    finally:
        gc.enable()
    return 0


def load_protocol_file(file: str) -> int:
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.scheduling import protocols

    protocol = load_protocol(file)
    source = Path(file).read_text(encoding="utf-8")

    async def run():
        async with open_database(migrate=True):
            return await protocols.load_protocol_version(protocol, source, Path(file).name, actor=support.actor())

    result = support.run(run())
    outcome = "stored" if result["created"] else "already loaded with the same text; nothing changed"
    print(f"{protocol.study} version {protocol.version}: {outcome} (sha256 {result['sha256']})")
    return 0


def import_events(study: str, file: str, site: str | None, create_sites: bool = False) -> int:
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.scheduling.importing import import_events as run_import

    text = support.read_text(file)

    async def run():
        async with open_database(migrate=True):
            return await run_import(
                study,
                text,
                site=site,
                file=file,
                today=support.today(),
                actor=support.actor(),
                create_sites=create_sites,
                progress=support.progress() if sys.stderr.isatty() else None,
            )

    result = support.run(run())
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
    from trialcoord.scheduling.sdtm import Mapping, read_dataset, read_map

    sv = read_dataset(Path(args.sv), "SV")
    ds = read_dataset(Path(args.ds), "DS") if args.ds else None
    dm = read_dataset(Path(args.dm), "DM") if args.dm else None
    mapping = read_map(Path(args.map) if args.map else None)

    used = Mapping()

    async def run():
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
                progress=support.progress() if sys.stderr.isatty() else None,
                used=used,
            )

    try:
        result, _ = support.run(run())
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


def visits(study: str, site: str | None, status: str | None, as_of: date | None, fmt: str) -> int:
    from trialcoord.kernel.database.opening import open_database
    from trialcoord.scheduling import worklists

    statuses = _statuses(status)
    as_of = as_of or support.today()

    async def run():
        from trialcoord.kernel import audit_log

        async with open_database(migrate=True):
            rows = await worklists.study_visits(study, as_of, site=site, statuses=statuses)
            # A listing taken out of the system is an export: audited, as the app's downloads are.
            await audit_log.record_alone(
                support.actor(),
                audit_log.Change(
                    "export",
                    "schedule",
                    f"{study}/{site}" if site else study,
                    None,
                    {"format": fmt, "as_of": as_of.isoformat(), "statuses": sorted(statuses or []), "rows": len(rows)},
                ),
            )
            return rows

    _print_rows(support.run(run()), fmt, with_participant=True)
    return 0


def _statuses(text: str | None) -> set[str] | None:
    from trialcoord.scheduling.rules.schedule import STATUSES

    if not text:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        raise UsageError(f"--status: unknown status {', '.join(unknown)}; statuses are: {', '.join(STATUSES)}")
    return wanted
