"""The nightly schedule refresh and deviation detection that `trialcoord serve` runs on SQLite: once a night at
its local time, never twice after a restart (the database says what ran), audited and logged as the commands
do, one study's failure kept from the others; started by the app's lifespan on SQLite only."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time

import pytest

from tests.conftest import PROTOCOL_V1, RANDOMIZED
from trialcoord.home import nightly
from trialcoord.home.rules.nightly import Schedule
from trialcoord.kernel.database.engine import fetch

pytestmark = [pytest.mark.anyio, pytest.mark.db]

SCHEDULE = Schedule(time(2, 30), "America/New_York")  # EDT from 2025-03-09: 02:30 is 06:30 UTC
NIGHT = datetime(2025, 3, 10, 6, 30, tzinfo=UTC)


@pytest.fixture
async def overdue(study):
    """TST-1's participant 1001, randomised a year before the nights below: every visit overdue."""
    from trialcoord.scheduling import participants
    from trialcoord.scheduling.visits import record_event

    await participants.enroll_participant(study, "1001", "101", arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED)
    await record_event(study, "1001", "randomization", RANDOMIZED, today=RANDOMIZED)
    return study


async def runs() -> list[dict]:
    return await fetch(
        "SELECT st.code, r.as_of, r.scope, r.created, r.ran_at FROM deviation_runs r JOIN studies st ON st.id = r.study"
        " ORDER BY r.id"
    )


async def test_it_runs_once_a_night_and_a_restart_runs_nothing_again(overdue, server_clock, caplog):
    caplog.set_level(logging.INFO, logger="trialcoord.home.nightly")
    server_clock.to(datetime(2025, 3, 10, 6, 29, tzinfo=UTC))  # 02:29 in New York
    assert await nightly.run_if_due(SCHEDULE) is None and await runs() == []
    server_clock.to(datetime(2025, 3, 10, 6, 31, tzinfo=UTC))
    done = await nightly.run_if_due(SCHEDULE)
    assert done is not None and done.night == NIGHT and done.refreshed == {"TST-1": 1} and done.failed == {}
    [run] = await runs()
    assert (run["code"], run["as_of"], run["scope"]) == ("TST-1", "2025-03-10", "full")
    # Audited as the commands do: the refresh's detection created the missed visits' records, as "system".
    deviations = (await fetch("SELECT COUNT(*) AS n FROM deviations"))[0]["n"]
    created = await fetch(
        "SELECT COUNT(*) AS n FROM audit_entries WHERE actor = 'system' AND action = 'create'"
        " AND record_type = 'deviation' AND recorded_at >= {}",
        "2025-03-10T06:31",
    )
    assert deviations > 0 and created[0]["n"] == deviations
    assert "TST-1: 1 participant re-evaluated as of 2025-03-10, deviation detection run for them" in caplog.text
    assert "TST-1 as of 2025-03-10 (full): 0 created, 0 updated, 0 resolved, 0 reopened" in caplog.text
    # A restart later that night: a new app, nothing in memory; the database says the night ran.
    server_clock.to(datetime(2025, 3, 10, 14, 0, tzinfo=UTC))
    assert await nightly.run_if_due(SCHEDULE) is None
    await _one_pass(nightly.Nightly(SCHEDULE, sleep=_stop))
    assert len(await runs()) == 1
    server_clock.to(datetime(2025, 3, 11, 6, 31, tzinfo=UTC))  # the next night
    assert (await nightly.run_if_due(SCHEDULE)) is not None
    assert [(r["as_of"], r["scope"]) for r in await runs()] == [
        ("2025-03-10", "full"),
        ("2025-03-11", "0 participants"),
    ]


class _Stopped(Exception):
    pass


async def _stop(seconds: float) -> None:
    raise _Stopped


async def _one_pass(task: nightly.Nightly) -> None:
    with pytest.raises(_Stopped):
        await task.keep()


async def test_the_task_sleeps_until_each_night(overdue, server_clock):
    server_clock.to(datetime(2025, 3, 10, 5, 0, tzinfo=UTC))  # 01:00 in New York
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            raise _Stopped
        server_clock.by(seconds=seconds)

    await _one_pass(nightly.Nightly(SCHEDULE, sleep=sleep, check_every=2 * 86400))
    assert waits == [5400, 86400, 86400, 86400]  # to 02:30, then a day at a time
    assert [r["as_of"] for r in await runs()] == ["2025-03-10", "2025-03-11", "2025-03-12"]
    assert [r["ran_at"][:19] for r in await runs()] == [f"2025-03-{d}T06:30:00" for d in (10, 11, 12)]
    looks: list[float] = []

    async def look(seconds: float) -> None:
        looks.append(seconds)
        raise _Stopped

    await _one_pass(nightly.Nightly(SCHEDULE, sleep=look))  # by default it looks at the clock every 10 minutes
    assert looks == [600]


async def test_one_studys_failure_keeps_no_other_from_its_run(overdue, server_clock, monkeypatch, caplog):
    from trialcoord.deviations import detection
    from trialcoord.scheduling import protocols
    from trialcoord.scheduling.protocol_files import parse_protocol

    text = PROTOCOL_V1.replace("study: TST-1", "study: TST-2")
    await protocols.load_protocol_version(parse_protocol(text, "tst2.yaml"), text, "tst2.yaml")
    detect = detection.detect

    async def failing(study, *args, **kwargs):
        if study == "TST-1":
            raise RuntimeError("the disk is full")
        return await detect(study, *args, **kwargs)

    monkeypatch.setattr(detection, "detect", failing)
    server_clock.to(datetime(2025, 3, 10, 6, 31, tzinfo=UTC))
    done = await nightly.run_if_due(SCHEDULE)
    assert done is not None and done.failed == {"TST-1": "the disk is full"}
    assert [r.study for r in done.detected] == ["TST-2"]
    assert "nightly run of study TST-1 failed" in caplog.text
    monkeypatch.setattr(detection, "detect", detect)
    server_clock.by(minutes=10)  # the next look the same night runs what did not run
    again = await nightly.run_if_due(SCHEDULE)
    assert again is not None and [r.study for r in again.detected] == ["TST-1"]
    assert await nightly.run_if_due(SCHEDULE) is None


async def test_the_app_runs_it_on_sqlite_unless_turned_off(db, tmp_path, overdue):
    from tests.conftest import account_rules
    from trialcoord.cli.system import nightly_notice
    from trialcoord.kernel.config import load_settings
    from trialcoord.web.app import create_app

    environ = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}
    on = load_settings({**environ, "TRIALCOORD_TIME_ZONE": "America/New_York"})
    off = load_settings({**environ, "TRIALCOORD_NIGHTLY": "off"})
    assert nightly_notice(off) == "no nightly schedule refresh and deviation detection here: TRIALCOORD_NIGHTLY is off"
    app = create_app(on, account_rules=account_rules())
    async with app.lifespan():
        task = app.state.get("nightly")
        if db.kind == "sqlite":
            assert isinstance(task, nightly.Nightly) and not task.task.done()
        else:
            assert task is None  # PostgreSQL: a job queue will run it (issue 18); cron until then
    if db.kind == "sqlite":
        assert task.task.done()  # stopped with the app, after its first look (which ran tonight's run, if due)
        assert nightly_notice(on) == (
            "schedule refresh and deviation detection run every night at 02:30 (America/New_York);"
            " TRIALCOORD_NIGHTLY=off stops them"
        )
    else:
        assert nightly_notice(on) == (
            "no nightly schedule refresh and deviation detection here: the database is PostgreSQL:"
            " schedule the nightly commands with cron or a systemd timer"
        )
    quiet = create_app(off, account_rules=account_rules())
    async with quiet.lifespan():
        assert quiet.state.get("nightly") is None


async def test_the_night_ends_with_an_external_checkpoint_over_what_it_appended(overdue, server_clock, tmp_path):
    from trialcoord.kernel import anchors, audit_store, signing_keys
    from trialcoord.kernel.database.engine import read

    key, outside = signing_keys.generate_key(), tmp_path / "anchors"
    anchor = lambda: anchors.write_if_due(outside, 1_000_000, lambda: key, nightly=True)  # noqa: E731
    server_clock.to(datetime(2025, 3, 10, 6, 29, tzinfo=UTC))
    assert await nightly.run_if_due(SCHEDULE, anchor=anchor) is None and not outside.exists()  # not yet tonight
    server_clock.to(datetime(2025, 3, 10, 6, 31, tzinfo=UTC))
    assert await nightly.run_if_due(SCHEDULE, anchor=anchor) is not None
    async with read():
        size = await audit_store.head_size()
    assert [p.name for p in outside.iterdir()] == [f"checkpoint-{size}-20250310T063100Z.json"]
    signed = signing_keys.load_checkpoint(outside / f"checkpoint-{size}-20250310T063100Z.json")
    assert signing_keys.verify_checkpoint(signed, key.public_key()).size == size
