"""`trialcoord protocol validate|load|import-usdm`: protocol definition files checked, stored, or written from a
USDM study."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import iso_date
from trialcoord.scheduling.protocol_files import load_protocol, validate_protocol_file


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
    for title, items in (("not_mapped", result.not_mapped), ("assumed", result.assumed)):
        for item in items:
            print(f"{title.replace('_', ' ')}: {item}", file=sys.stderr)
    print(
        f"{out}: {protocol.study} version {protocol.version}, {len(protocol.visits)} visits, events "
        f"{', '.join(protocol.events)}; {len(result.not_mapped)} not mapped, {len(result.assumed)} assumed "
        f"(listed above and at the end of the file); it passes protocol validate",
        file=sys.stderr if target is None else sys.stdout,
    )
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
    outcome = "stored" if result.created else "already loaded with the same text; nothing changed"
    print(f"{protocol.study} version {protocol.version}: {outcome} (sha256 {result.sha256})")
    return 0
