"""What each `trialcoord` command does; `cli.py` parses arguments and maps errors to exit codes."""

from __future__ import annotations

import gc
import sys
from datetime import date
from pathlib import Path

from trialcoord import command_support as support
from trialcoord.adapters.protocol_files import load_protocol, validate_protocol_file
from trialcoord.adapters.render.rows import WRITERS
from trialcoord.command_support import UsageError
from trialcoord.domain.schedule import evaluate


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

    from trialcoord.adapters.protocol_files import parse_protocol
    from trialcoord.adapters.usdm import convert, parse_usdm
    from trialcoord.domain.problems import Conflict, InvalidInput, Problem

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
    from trialcoord.domain.problems import InvalidInput, Problem

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
        from trialcoord.web.ics import visits_calendar

        sys.stdout.write(
            visits_calendar(f"{protocol.study} schedule", protocol.study, [("-", r) for r in rows], as_of).decode()
        )
    else:
        _print_rows([(None, row) for row in rows], fmt, with_participant=False)
    return 0


def check(protocol_file: str, events_file: str, as_of: date | None, fmt: str) -> int:
    from trialcoord.adapters.events_csv import read_events_file

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


def migrate() -> int:
    from trialcoord.adapters.persistence.database import open_database

    async def run():
        async with open_database(migrate=True):
            pass

    support.run(run())
    print("database is up to date")
    return 0


def demo() -> int:
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.services.demo import load_demo

    async def run():
        async with open_database(migrate=True):
            return await load_demo(support.today())

    loaded = support.run(run())
    print("demo study loaded" if loaded else "demo study already present; nothing changed")
    return 0


def load_protocol_file(file: str) -> int:
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.services import scheduling

    protocol = load_protocol(file)
    source = Path(file).read_text(encoding="utf-8")

    async def run():
        async with open_database(migrate=True):
            return await scheduling.load_protocol_version(protocol, source, Path(file).name, actor=support.actor())

    result = support.run(run())
    outcome = "stored" if result["created"] else "already loaded with the same text; nothing changed"
    print(f"{protocol.study} version {protocol.version}: {outcome} (sha256 {result['sha256']})")
    return 0


def import_events(study: str, file: str, site: str | None, create_sites: bool = False) -> int:
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.services.importing import import_events as run_import

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
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.adapters.sdtm import Mapping, read_dataset, read_map
    from trialcoord.domain.problems import InvalidInput
    from trialcoord.services.importing import import_sdtm as run_import

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
    from trialcoord.adapters.tabular import text_table

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
    from trialcoord.adapters.persistence.database import open_database
    from trialcoord.services import scheduling

    statuses = _statuses(status)
    as_of = as_of or support.today()

    async def run():
        from trialcoord.services import audit_log

        async with open_database(migrate=True):
            rows = await scheduling.study_visits(study, as_of, site=site, statuses=statuses)
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
    from trialcoord.domain.schedule import STATUSES

    if not text:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(wanted - set(STATUSES))
    if unknown:
        raise UsageError(f"--status: unknown status {', '.join(unknown)}; statuses are: {', '.join(STATUSES)}")
    return wanted


def serve(host: str | None, port: int | None) -> int:
    import uvicorn

    from trialcoord.config import get_settings
    from trialcoord.web.app import create_app

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    print(f"trialcoord is running at http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    return 0
