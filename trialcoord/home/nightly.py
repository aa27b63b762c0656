"""The nightly run `trialcoord serve` starts on SQLite: each study's schedule refresh with detection for whom it
re-evaluates (`schedules refresh`), then an incremental detection run (`deviations detect`), once a night at
TRIALCOORD_NIGHTLY_AT in the configured time zone; logged as the commands print, audited as they audit.

Whether a night's run happened is read from the database, not kept in memory: a study whose last detection run
is older than tonight's time is due (so a restart never runs a night twice, and a night missed while the server
was down runs at start-up). On PostgreSQL `serve` does not run it: a job queue will (issue 18); until then cron
or a systemd timer runs the commands (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from trialcoord.deviations import detection
from trialcoord.deviations.detection import DetectionRun
from trialcoord.home import store
from trialcoord.home.rules.nightly import Schedule, due_studies, latest_night, next_night
from trialcoord.kernel import audit_log
from trialcoord.kernel.config import SQLITE, Settings
from trialcoord.kernel.database.engine import read

log = logging.getLogger(__name__)
ACTOR = audit_log.SYSTEM  # who the audit trail names for what the nightly run changes, as for `schedules refresh`
CHECK_EVERY = 600.0  # seconds between looks at the clock: a clock set forward or a suspended host is noticed


def schedule_of(settings: Settings) -> Schedule | None:
    """The nightly run's schedule, when this server runs it: on SQLite, unless TRIALCOORD_NIGHTLY=off."""
    if settings.database_url.kind != SQLITE or settings.nightly_at is None:
        return None
    return Schedule(settings.nightly_at, settings.time_zone)


def not_run_because(settings: Settings) -> str | None:
    """Why this server does not run the nightly jobs (None: it does)."""
    if settings.nightly_at is None:
        return "TRIALCOORD_NIGHTLY is off"
    if settings.database_url.kind != SQLITE:
        return "the database is PostgreSQL: schedule the nightly commands with cron or a systemd timer"
    return None


@dataclass(frozen=True, slots=True)
class NightlyRun:
    """What one night's run did: participants re-evaluated and detection run per study, and the studies it
    could not run (why)."""

    night: datetime
    refreshed: dict[str, int]
    detected: list[DetectionRun]
    failed: dict[str, str]


async def last_runs() -> dict[str, datetime | None]:
    """Each study's last detection run (None: never)."""
    async with read():
        rows = await store.last_detection_runs()
    return {row["study"]: _instant(row["ran_at"]) if row["ran_at"] else None for row in rows}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def run_if_due(
    schedule: Schedule, now: datetime | None = None, anchor: Callable[[], Awaitable[object]] | None = None
) -> NightlyRun | None:
    """Tonight's run of every study that has not had it, once tonight's time has come; None when nothing was due.
    Then `anchor`, the night's external audit checkpoint (kernel/anchors.py), over what the night appended."""
    now = now or audit_log.clock()
    night = latest_night(now, schedule.at, schedule.tz)
    if night is None:
        return None
    due = due_studies(await last_runs(), night)
    if not due:
        return None
    today = now.astimezone(schedule.tz).date()
    refreshed: dict[str, int] = {}
    detected: list[DetectionRun] = []
    failed: dict[str, str] = {}
    for study in due:
        try:
            for code, count in (await detection.refresh_schedules(study, today, today=today)).items():
                refreshed[code] = count
                log.info(
                    "%s: %d participant%s re-evaluated as of %s, deviation detection run for them",
                    code,
                    count,
                    "" if count == 1 else "s",
                    today,
                )
            run = await detection.detect(study, today, actor=ACTOR, today=today)
        except Exception as error:  # one study's trouble never keeps the others from their run
            log.exception("nightly run of study %s failed", study)
            failed[study] = str(error)
            continue
        detected.append(run)
        log.info(
            "%s as of %s (%s): %d created, %d updated, %d resolved, %d reopened",
            run.study,
            run.as_of,
            run.scope,
            run.created,
            run.updated,
            run.resolved,
            run.reopened,
        )
    if anchor is not None:
        try:
            await anchor()
        except Exception as error:  # never the night's work: the anchoring task tries again at its next look
            log.error("no external audit checkpoint written tonight: %s", error)
    return NightlyRun(night, refreshed, detected, failed)


class Nightly:
    """The nightly run as a task of the web app (its lifespan starts and closes it). It looks at the clock at
    most every `check_every` seconds and at each run's time; a run under way at shutdown is let finish (up to
    `wait` seconds) before the task is cancelled, so no transaction is cut midway."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        check_every: float = CHECK_EVERY,
        anchor: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.schedule, self.sleep, self.check_every, self.anchor = schedule, sleep, check_every, anchor
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.keep(), name="nightly")

    async def keep(self) -> None:
        while True:
            self.idle.clear()
            try:
                await run_if_due(self.schedule, anchor=self.anchor)
            except Exception:  # the database away for a moment: try again at the next look
                log.exception("the nightly run could not start")
            finally:
                self.idle.set()
            now = audit_log.clock()
            wait = (next_night(now, self.schedule.at, self.schedule.tz) - now).total_seconds()
            await self.sleep(max(1.0, min(wait, self.check_every)))

    async def close(self, wait: float = 60.0) -> None:
        if self.task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), wait)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
