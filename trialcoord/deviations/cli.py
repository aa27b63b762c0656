"""`trialcoord deviations detect|list` and `schedules refresh`, which runs detection for whom it re-evaluates."""

from __future__ import annotations

import sys
from datetime import date

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import FORMATS, UsageError, iso_date


def register(commands) -> None:
    schedules = support.group(commands, "schedules", "stored schedules")
    refresh = schedules.add_parser(
        "refresh",
        help="re-evaluate participants whose stored schedule ends too soon"
        " (open-ended repeats); idempotent, for a nightly job",
    )
    refresh.add_argument("study", nargs="?")
    refresh.add_argument("--as-of", type=iso_date)
    refresh.set_defaults(run=lambda a: schedules_refresh(a.study, a.as_of))

    deviations = support.group(commands, "deviations", "protocol deviations: detection and listing")
    run_detection = deviations.add_parser(
        "detect", help="create, update, resolve and reopen the automatic deviation records (incremental unless --full)"
    )
    run_detection.add_argument("study")
    run_detection.add_argument("--as-of", type=iso_date)
    run_detection.add_argument("--full", action="store_true", help="look at every participant, not only what changed")
    run_detection.set_defaults(run=lambda a: detect(a.study, a.as_of, a.full))
    listed = deviations.add_parser("list", help="the study's deviations, oldest first")
    listed.add_argument("study")
    listed.add_argument("--state", help="comma-separated states, such as detected,site_response")
    listed.add_argument("--site")
    listed.add_argument("--format", choices=FORMATS, default="table")
    listed.set_defaults(run=lambda a: listing(a.study, a.state, a.site, a.format))


def schedules_refresh(study: str | None, as_of: date | None) -> int:
    from trialcoord.deviations import detection

    today = support.today()
    with support.progress(f"Re-evaluating schedules as of {as_of or today}, with deviation detection"):
        refreshed = support.database(lambda: detection.refresh_schedules(study, as_of, today=today))
    for code, count in refreshed.items():
        print(
            f"{code}: {count} participant{'' if count == 1 else 's'} re-evaluated as of {as_of or today},"
            " deviation detection run for them"
        )
    return 0


def detect(study: str, as_of: date | None, full: bool) -> int:
    from trialcoord.deviations import detection

    today = support.today()  # in TRIALCOORD_TIME_ZONE, for the default date and the check against days to come
    scope = "every participant" if full else "what changed since the last run"
    with support.progress(f"Detecting deviations of {study} as of {as_of or today} ({scope})"):
        result = support.database(
            lambda: detection.detect(study, as_of or today, actor=support.actor(), full=full, today=today)
        )
    print(
        f"{result.study} as of {result.as_of} ({result.scope}): {result.created} created, "
        f"{result.updated} updated, {result.resolved} resolved, {result.reopened} reopened"
    )
    return 0


def listing(study: str, states: str | None, site: str | None, fmt: str) -> int:
    from trialcoord.deviations.listings import QueueListing

    wanted = _states(states)
    # A listing taken out of the system is an export: audited, as `visits` and the app's downloads are.
    export = support.database(lambda: QueueListing(study, wanted, site).take_out(fmt, support.actor()))
    sys.stdout.write(export.data.decode())
    return 0


def _states(text: str | None) -> list[str] | None:
    from trialcoord.deviations.queue import STATES

    if not text:
        return None
    wanted = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in wanted if s not in STATES]
    if unknown:
        raise UsageError(f"--state: unknown state {', '.join(unknown)}; states are: {', '.join(STATES)}")
    return wanted
