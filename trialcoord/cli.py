"""`trialcoord` command line: parse arguments, call one use case, print the result.

Exit status: 0 success, 1 a protocol, audit trail or stored document that does not verify,
2 bad input or arguments (named by file, line and field), 3 a conflict with what is stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

EXIT_INVALID_PROTOCOL, EXIT_BAD_INPUT, EXIT_CONFLICT = 1, 2, 3
EXIT_TRAIL_BROKEN = 1
FORMATS = ("table", "json", "csv")


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date; write it as YYYY-MM-DD") from None


def _event_pair(text: str) -> tuple[str, date]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"'{text}' should be NAME=YYYY-MM-DD, such as randomization=2024-03-04")
    return name.strip(), _iso_date(value.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trialcoord", description="Visit schedules and compliance for a trial site.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    protocol = commands.add_parser("protocol", help="validate or load protocol definitions")
    protocol_commands = protocol.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = protocol_commands.add_parser("validate", help="report every problem in protocol files")
    validate.add_argument("files", nargs="+", metavar="FILE")
    load = protocol_commands.add_parser("load", help="validate and store a protocol version")
    load.add_argument("file", metavar="FILE")
    apply = protocol_commands.add_parser(
        "apply",
        help="move every active participant of a study or site to a"
        " protocol version from a date (one audited change each)",
    )
    apply.add_argument("study")
    apply.add_argument("version")
    apply.add_argument("--effective", type=_iso_date, required=True, help="the first day the version governs them")
    apply.add_argument("--reason", required=True)
    apply.add_argument("--site")
    usdm = protocol_commands.add_parser(
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
    usdm.add_argument("--effective", type=_iso_date, help="the version's first day (default: its USDM date)")
    usdm.add_argument("--replace", action="store_true", help="overwrite an existing file")
    usdm.add_argument("--format", choices=("table", "json"), default="table", help="the report's format")
    impact = protocol_commands.add_parser(
        "impact", help="what a new protocol version would change, before it takes effect (stores nothing)"
    )
    impact.add_argument("study")
    impact.add_argument("file", metavar="NEW.yaml")
    impact.add_argument("--effective", type=_iso_date, help="default: the file's effective date, or today if past")
    impact.add_argument("--site")
    impact.add_argument("--format", choices=FORMATS + ("pdf",), default="table")
    impact.add_argument("--out", metavar="FILE", help="write to a file (required for pdf)")

    schedules = commands.add_parser("schedules", help="stored schedules").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    refresh = schedules.add_parser(
        "refresh",
        help="re-evaluate participants whose stored schedule ends too soon"
        " (open-ended repeats); idempotent, for a nightly job",
    )
    refresh.add_argument("study", nargs="?")
    refresh.add_argument("--as-of", type=_iso_date)

    site = commands.add_parser("site", help="a study's sites, their calendars and closures").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add_site = site.add_parser("add", help="add a site to a study (audited; exit 3 if it exists)")
    add_site.add_argument("study")
    add_site.add_argument("code", metavar="CODE")
    add_site.add_argument("--name", default="")
    add_site.add_argument("--time-zone", default="UTC", help="IANA name, such as Europe/Berlin")
    add_site.add_argument("--calendar", help="business-us, weekdays or holidays:<country>[-<region>]")
    list_sites = site.add_parser("list", help="a study's sites")
    list_sites.add_argument("study")
    list_sites.add_argument("--format", choices=("table", "json"), default="table")
    calendar = site.add_parser("calendar", help="the calendar a site's business days follow")
    calendar.add_argument("study")
    calendar.add_argument("code", metavar="SITE")
    calendar.add_argument(
        "calendar",
        nargs="?",
        help="business-us, weekdays or holidays:<country>[-<region>] to"
        " set it; omitted: show it, with closed days ahead",
    )
    calendar.add_argument("--protocol", action="store_true", help="go back to the protocol's calendar")
    close = site.add_parser("close", help="days a site is closed (business days skip them)")
    close.add_argument("study")
    close.add_argument("code", metavar="SITE")
    close.add_argument("first_day", type=_iso_date, metavar="FROM")
    close.add_argument("last_day", type=_iso_date, nargs="?", metavar="TO")
    close.add_argument("--reason", required=True)
    reopen = site.add_parser("reopen", help="withdraw a closure recorded by mistake (the one starting FROM)")
    reopen.add_argument("study")
    reopen.add_argument("code", metavar="SITE")
    reopen.add_argument("first_day", type=_iso_date, metavar="FROM")
    reopen.add_argument("--reason", required=True)

    schedule = commands.add_parser("schedule", help="one participant's schedule from event dates (no database)")
    schedule.add_argument("protocol", metavar="PROTOCOL")
    schedule.add_argument("--event", action="append", type=_event_pair, default=[], metavar="NAME=DATE")
    schedule.add_argument("--arm")
    schedule.add_argument("--as-of", type=_iso_date)
    schedule.add_argument("--format", choices=FORMATS + ("ics",), default="table")

    check = commands.add_parser("check", help="visit statuses of many participants from a CSV (no database)")
    check.add_argument("protocol", metavar="PROTOCOL")
    check.add_argument("--events", required=True, metavar="FILE.csv")
    check.add_argument("--as-of", type=_iso_date)
    check.add_argument("--format", choices=FORMATS, default="table")

    db = commands.add_parser("db", help="database maintenance")
    db.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "migrate", help="create or upgrade tables"
    )

    commands.add_parser("demo", help="load the demo study and participants when the database is empty")

    serve = commands.add_parser("serve", help="serve the web app")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    imports = commands.add_parser("import", help="import data from another system")
    what = imports.add_subparsers(dest="what", required=True, metavar="WHAT")
    import_events = what.add_parser(
        "events", help="events and actual visits from a CSV (participant,event,date[,arm][,site])"
    )
    import_events.add_argument("study")
    import_events.add_argument("file", metavar="FILE.csv")
    import_events.add_argument(
        "--site", help="where participants new to the study are enrolled when their rows name no site"
    )
    import_events.add_argument(
        "--create-sites", action="store_true", help="add the sites the file names that the study lacks (a first load)"
    )
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

    visits = commands.add_parser("visits", help="a stored study's visit statuses")
    visits.add_argument("study")
    visits.add_argument("--site")
    visits.add_argument("--status", help="comma-separated statuses, such as missed,late")
    visits.add_argument("--as-of", type=_iso_date)
    visits.add_argument("--format", choices=FORMATS, default="table")

    setup = commands.add_parser("setup", help="first-time set-up: database, keys, first administrator, demo")
    setup.add_argument("--no-demo", action="store_true", help="do not load the demo study")
    _user_commands(commands)
    _audit_commands(commands)
    keys = commands.add_parser("keys", help="personal-data key rotation").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    rotate = keys.add_parser("rotate", help="add a new current key and re-encrypt stored personal data with it")
    rotate.add_argument("new_key_id")
    retire = keys.add_parser("retire", help="remove a key that no stored value uses any more")
    retire.add_argument("old_key_id")
    _document_commands(commands)
    _deviation_commands(commands)
    verify = commands.add_parser(
        "verify", help="check stored documents and signatures, or binder ZIPs offline (exit 1 naming each failure)"
    )
    verify.add_argument(
        "paths", nargs="*", metavar="ZIP", help="binder or export ZIPs to check with the public registry"
    )
    verify.add_argument("--registry", metavar="FILE", help="the signer registry (default signatures/registry.json)")
    signer = commands.add_parser("signer", help="signers' keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    revoke = signer.add_parser("revoke", help="end a signer's key; their signatures stay valid when made")
    revoke.add_argument("user_id")
    revoke.add_argument("--reason", required=True)
    binder = commands.add_parser("binder", help="the regulatory binder: checklist and signed export").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    check = binder.add_parser("checklist", help="expected documents: present, missing, expiring, expired")
    check.add_argument("study")
    check.add_argument("--site", required=True)
    check.add_argument("--as-of", type=_iso_date)
    check.add_argument("--pdf", metavar="FILE", help="write the checklist as a PDF/A report instead")
    export = binder.add_parser("export", help="a signed ZIP of every version, with manifest, index and exchange.xml")
    export.add_argument("study")
    export.add_argument("--site")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    return parser


def _document_commands(commands) -> None:
    document = commands.add_parser("document", help="regulatory binder documents and their versions").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = document.add_parser("add", help="store a new version (a draft) of a document from a file")
    add.add_argument("study")
    add.add_argument("name", help="the document's name within the study (and site)")
    add.add_argument("file", metavar="FILE")
    add.add_argument("--label", required=True, help="version label, such as 2.0")
    add.add_argument("--artifact", required=True, help="TMF Reference Model unique ID, such as 040 (consent form)")
    add.add_argument("--site")
    add.add_argument("--summary", default="", help="what changed in this version")
    listing = document.add_parser("list", help="every version with its status")
    listing.add_argument("study")
    listing.add_argument("--site")
    status = document.add_parser("status", help="move a version along its lifecycle")
    status.add_argument("study")
    status.add_argument("name")
    status.add_argument("label")
    status.add_argument("status", help="in_review, draft, approved, effective, superseded or expired")
    status.add_argument("--on", type=_iso_date, required=True, help="the date it takes effect")
    status.add_argument("--site")
    status.add_argument("--reason")
    status.add_argument("--approval-reference")
    status.add_argument("--approval-date", type=_iso_date)
    status.add_argument("--approval-letter-sha256")
    sign = document.add_parser("sign", help="sign a version electronically (password from a terminal or stdin)")
    sign.add_argument("study")
    sign.add_argument("name")
    sign.add_argument("label")
    sign.add_argument("--meaning", required=True, help="authorship, review, approval, responsibility or consent")
    sign.add_argument("--user", required=True, help="the signer's user ID")
    sign.add_argument("--site")


def _deviation_commands(commands) -> None:
    deviations = commands.add_parser("deviations", help="protocol deviations: detection and listing").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    detect = deviations.add_parser(
        "detect", help="create, update, resolve and reopen the automatic deviation records (incremental unless --full)"
    )
    detect.add_argument("study")
    detect.add_argument("--as-of", type=_iso_date)
    detect.add_argument("--full", action="store_true", help="look at every participant, not only what changed")
    listing = deviations.add_parser("list", help="the study's deviations, oldest first")
    listing.add_argument("study")
    listing.add_argument("--state", help="comma-separated states, such as detected,site_response")
    listing.add_argument("--site")
    listing.add_argument("--format", choices=FORMATS, default="table")


def _user_commands(commands) -> None:
    user = commands.add_parser("user", help="accounts and grants").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = user.add_parser("create", help="create an account (password typed twice, from stdin, or --generate)")
    create.add_argument("user_id")
    create.add_argument("--name", required=True, help="printed name, shown with signatures")
    create.add_argument("--email", required=True)
    create.add_argument("--generate", action="store_true", help="generate a password and print it once")
    disable = user.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("user_id")
    disable.add_argument("--reason", required=True)
    reset = user.add_parser("reset-password", help="set a new password and end every session of the account")
    reset.add_argument("user_id")
    reset.add_argument("--generate", action="store_true")
    grant = user.add_parser("grant", help="give a role in a study (and site)")
    grant.add_argument("user_id")
    grant.add_argument("role", help="administrator, coordinator, investigator, monitor or sponsor")
    grant.add_argument("--study")
    grant.add_argument("--site")
    grant.add_argument("--from", dest="valid_from", type=_iso_date)
    grant.add_argument("--to", dest="valid_to", type=_iso_date)
    grant.add_argument("--personal-data", action="store_true", help="monitors only: may view personal data")
    revoke = user.add_parser("revoke", help="revoke a grant")
    revoke.add_argument("grant_id", type=int)
    revoke.add_argument("--reason", required=True)
    user.add_parser("list", help="accounts and their grants")
    token = user.add_parser("token", help="issue an API bearer token for a program")
    token.add_argument("user_id")
    token.add_argument("--days", type=int, default=30)


def _audit_commands(commands) -> None:
    audit = commands.add_parser("audit", help="verify the audit trail, export signed checkpoints").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    verify = audit.add_parser("verify", help="recompute the trail; exit 1 naming the first entry that does not match")
    verify.add_argument(
        "--checkpoint", metavar="FILE", help="a checkpoint exported earlier: prove the trail extends it"
    )
    verify.add_argument(
        "--public-key", metavar="FILE", help="PEM public key to check the checkpoint with (default: the system key's)"
    )
    checkpoint = audit.add_parser("checkpoint", help="verify, then export a signed checkpoint")
    checkpoint.add_argument("--out", required=True, metavar="FILE")
    public_key = audit.add_parser("public-key", help="print (or write) the checkpoint key's public key, PEM")
    public_key.add_argument("--out", metavar="FILE")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from trialcoord.command_support import UsageError
    from trialcoord.config import ConfigError
    from trialcoord.domain.problems import InvalidInput

    try:
        return _dispatch(args)
    except InvalidInput as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UsageError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _service_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFLICT if type(error).__name__ == "Conflict" else EXIT_BAD_INPUT
    except _key_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _trail_broken() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_TRAIL_BROKEN
    except KeyboardInterrupt:
        return 130


def _service_errors() -> tuple[type[Exception], ...]:
    from trialcoord.domain.problems import Conflict, Forbidden, NotConfigured, NotFound

    return (Conflict, NotFound, Forbidden, NotConfigured)


def _key_errors() -> tuple[type[Exception], ...]:
    from trialcoord.adapters.pii import PiiError
    from trialcoord.adapters.signing_keys import CheckpointError, SigningKeyError

    return (CheckpointError, SigningKeyError, PiiError)


def _trail_broken() -> tuple[type[Exception], ...]:
    from trialcoord.services.audit_log import TrailBroken

    return (TrailBroken,)


def _dispatch(args) -> int:
    from trialcoord import admin_commands as admin
    from trialcoord import commands
    from trialcoord import deviation_commands as deviations
    from trialcoord import document_commands as docs
    from trialcoord import schedule_commands as schedules

    if args.command == "protocol" and args.action == "validate":
        return commands.validate_protocols(args.files)
    handlers = {
        ("protocol", "load"): lambda: commands.load_protocol_file(args.file),
        ("protocol", "import-usdm"): lambda: commands.import_usdm(
            args.file, args.out, args.effective, args.replace, args.format
        ),
        ("protocol", "apply"): lambda: schedules.protocol_apply(
            args.study, args.version, args.effective, args.reason, args.site
        ),
        ("protocol", "impact"): lambda: schedules.protocol_impact(
            args.study, args.file, args.effective, args.site, args.format, args.out
        ),
        ("schedules", "refresh"): lambda: schedules.schedules_refresh(args.study, args.as_of),
        ("site", "add"): lambda: schedules.site_add(args.study, args.code, args.name, args.time_zone, args.calendar),
        ("site", "list"): lambda: schedules.site_list(args.study, args.format),
        ("site", "calendar"): lambda: schedules.site_calendar(args.study, args.code, args.calendar, args.protocol),
        ("site", "reopen"): lambda: schedules.site_reopen(args.study, args.code, args.first_day, args.reason),
        ("site", "close"): lambda: schedules.site_close(
            args.study, args.code, args.first_day, args.last_day, args.reason
        ),
        ("schedule", None): lambda: commands.schedule(
            args.protocol, dict(args.event), args.arm, args.as_of, args.format
        ),
        ("check", None): lambda: commands.check(args.protocol, args.events, args.as_of, args.format),
        ("db", "migrate"): commands.migrate,
        ("demo", None): commands.demo,
        ("serve", None): lambda: commands.serve(args.host, args.port),
        ("import", None): lambda: (
            commands.import_sdtm(args)
            if args.what == "sdtm"
            else commands.import_events(args.study, args.file, args.site, args.create_sites)
        ),
        ("visits", None): lambda: commands.visits(args.study, args.site, args.status, args.as_of, args.format),
        ("setup", None): lambda: admin.setup(demo=not args.no_demo),
        ("user", "create"): lambda: admin.user_create(args.user_id, args.name, args.email, args.generate),
        ("user", "disable"): lambda: admin.user_disable(args.user_id, args.reason),
        ("user", "reset-password"): lambda: admin.user_reset_password(args.user_id, args.generate),
        ("user", "grant"): lambda: admin.user_grant(
            args.user_id, args.role, args.study, args.site, args.valid_from, args.valid_to, args.personal_data
        ),
        ("user", "revoke"): lambda: admin.user_revoke(args.grant_id, args.reason),
        ("user", "list"): admin.user_list,
        ("user", "token"): lambda: admin.user_token(args.user_id, args.days),
        ("audit", "verify"): lambda: admin.audit_verify(args.checkpoint, args.public_key),
        ("audit", "checkpoint"): lambda: admin.audit_checkpoint(args.out),
        ("audit", "public-key"): lambda: admin.audit_public_key(args.out),
        ("keys", "rotate"): lambda: admin.keys_rotate(args.new_key_id),
        ("keys", "retire"): lambda: admin.keys_retire(args.old_key_id),
        ("document", "add"): lambda: docs.document_add(
            args.study, args.name, args.file, args.label, args.artifact, args.site, args.summary
        ),
        ("document", "list"): lambda: docs.document_list(args.study, args.site),
        ("document", "status"): lambda: docs.document_status(
            args.study,
            args.name,
            args.label,
            args.status,
            args.on,
            args.site,
            args.reason,
            args.approval_reference,
            args.approval_date,
            args.approval_letter_sha256,
        ),
        ("document", "sign"): lambda: docs.document_sign(
            args.study, args.name, args.label, args.meaning, args.site, args.user
        ),
        ("signer", "revoke"): lambda: docs.signer_revoke(args.user_id, args.reason),
        ("binder", "checklist"): lambda: docs.binder_checklist(args.study, args.site, args.as_of, args.pdf),
        ("binder", "export"): lambda: docs.binder_export(args.study, args.site, args.out),
        ("verify", None): lambda: docs.verify(args.paths, args.registry),
        ("deviations", "detect"): lambda: deviations.detect(args.study, args.as_of, args.full),
        ("deviations", "list"): lambda: deviations.listing(args.study, args.state, args.site, args.format),
    }
    return handlers[(args.command, getattr(args, "action", None))]()


if __name__ == "__main__":
    sys.exit(main())
