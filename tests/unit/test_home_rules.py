"""The home page's pure rules: where each role works, grant notices, lists cut to their first rows, when the
nightly run is due (time zones and daylight saving included), and the settings that schedule it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from trialcoord.home.rules.nightly import due_studies, latest_night, next_night, night_at
from trialcoord.home.rules.tasks import (
    SHOWN,
    GrantNotice,
    InStudy,
    Scope,
    administers,
    first,
    grant_notices,
    joined,
    listed,
    scopes,
)
from trialcoord.kernel.config import ConfigError, load_settings
from trialcoord.kernel.rules.access import Grant, Role

TODAY = date(2025, 3, 10)
NEW_YORK = ZoneInfo("America/New_York")


def grant(role: str, study: str | None, site: str | None, start=date(2025, 1, 1), end=None) -> Grant:
    return Grant("someone", role, study, site, start, end)


def test_scopes_gather_a_roles_sites_per_study_and_skip_grants_out_of_force():
    grants = [
        grant("coordinator", "S-2", "201"),
        grant("coordinator", "S-1", "101"),
        grant("coordinator", "S-1", "102"),
        grant("coordinator", "S-3", "301", end=date(2025, 3, 9)),  # ended yesterday
        grant("coordinator", "S-4", "401", start=date(2025, 3, 11)),  # begins tomorrow
        grant("monitor", "S-1", None),
    ]
    assert scopes(grants, Role.COORDINATOR, TODAY) == [
        Scope("S-1", frozenset({"101", "102"})),
        Scope("S-2", frozenset({"201"})),
    ]
    assert scopes(grants, Role.MONITOR, TODAY) == [Scope("S-1", None)]
    assert scopes([grant("administrator", None, None)], Role.ADMINISTRATOR, TODAY) == []
    assert administers([grant("administrator", None, None)], TODAY) and not administers(grants, TODAY)


def test_every_site_wins_over_some_and_scopes_of_roles_join_per_study():
    assert scopes([grant("monitor", "S-1", None), grant("monitor", "S-1", "101")], Role.MONITOR, TODAY) == [
        Scope("S-1", None)
    ]
    joined_scopes = joined([Scope("S-1", frozenset({"101"}))], [Scope("S-1", frozenset({"102"})), Scope("S-2", None)])
    assert joined_scopes == [Scope("S-1", frozenset({"101", "102"})), Scope("S-2", None)]
    assert joined([Scope("S-1", None)], [Scope("S-1", frozenset({"101"}))]) == [Scope("S-1", None)]
    assert Scope("S-1", frozenset({"101"})).includes(None)  # a study-level record
    assert not Scope("S-1", frozenset({"101"})).includes("102")


def test_a_grant_that_ended_names_its_last_day_and_one_to_begin_its_first():
    notices = grant_notices(
        [
            grant("monitor", "DEMO-001", None, end=date(2025, 2, 8)),
            grant(
                "monitor", "DEMO-001", None, start=date(2024, 6, 1), end=date(2024, 12, 31)
            ),  # the latest end is told
            grant("sponsor", "S-2", None, start=date(2025, 4, 1)),
            grant("coordinator", "S-3", "301", end=date(2025, 1, 31)),
            grant("coordinator", "S-3", "302"),  # in force: S-3 needs no notice
        ],
        TODAY,
    )
    assert notices == [
        GrantNotice("monitor", "DEMO-001", date(2025, 2, 8), True),
        GrantNotice("sponsor", "S-2", date(2025, 4, 1), False),
    ]
    assert notices[0].text == "Your monitor grant at DEMO-001 ended on 2025-02-08."
    assert notices[1].text == "Your sponsor grant at S-2 begins on 2025-04-01."
    assert grant_notices([grant("administrator", None, None), grant("monitor", "S-1", None, end=TODAY)], TODAY) == []


def test_a_list_keeps_its_first_rows_and_counts_per_study():
    rows = [InStudy("S-2" if n % 3 == 0 else "S-1", n) for n in range(25)]
    shown = listed(rows, key=lambda t: -t.row)
    assert [t.row for t in shown.rows] == list(range(24, 24 - SHOWN, -1))
    assert shown.total == 25 and shown.by_study == (("S-1", 16), ("S-2", 9)) and shown.more
    # Rows that are each study's first page, with the counts the source gave:
    paged = listed(rows[:3], key=lambda t: t.row, totals={"S-1": 40, "S-2": 2, "S-3": 0})
    assert paged.total == 42 and paged.by_study == (("S-1", 40), ("S-2", 2)) and paged.more
    assert first(["b", "a"], key=str).rows == ("a", "b") and not first(["a"], key=str).more
    assert first(["a"], key=str, total=12).total == 12


def test_the_night_is_due_from_its_time_until_the_next_day_only():
    at = time(2, 30)
    before = datetime(2025, 3, 12, 6, 29, tzinfo=UTC)  # 02:29 in New York (EDT, UTC-4)
    after = datetime(2025, 3, 12, 6, 31, tzinfo=UTC)
    assert latest_night(before, at, NEW_YORK) is None  # yesterday's night is not caught up the next morning
    assert latest_night(after, at, NEW_YORK) == datetime(2025, 3, 12, 6, 30, tzinfo=UTC)
    assert next_night(before, at, NEW_YORK) == datetime(2025, 3, 12, 6, 30, tzinfo=UTC)
    assert next_night(after, at, NEW_YORK) == datetime(2025, 3, 13, 6, 30, tzinfo=UTC)
    night = datetime(2025, 3, 12, 6, 30, tzinfo=UTC)
    ran = {"A": datetime(2025, 3, 12, 6, 30, tzinfo=UTC), "B": datetime(2025, 3, 12, 3, 0, tzinfo=UTC), "C": None}
    assert due_studies(ran, night) == ["B", "C"]  # A ran tonight (by the night's run or by hand)


def test_daylight_saving_nights_run_once_each():
    at = time(2, 30)
    # 2025-03-09: New York's clocks spring from 02:00 to 03:00; 02:30 does not exist and falls at 03:30 EDT.
    assert night_at(date(2025, 3, 9), at, NEW_YORK) == datetime(2025, 3, 9, 7, 30, tzinfo=UTC)
    assert night_at(date(2025, 3, 8), at, NEW_YORK) == datetime(2025, 3, 8, 7, 30, tzinfo=UTC)
    assert night_at(date(2025, 3, 10), at, NEW_YORK) == datetime(2025, 3, 10, 6, 30, tzinfo=UTC)
    # 2025-10-26: Berlin's clocks fall from 03:00 to 02:00; 02:30 happens twice and the first one is taken.
    berlin = ZoneInfo("Europe/Berlin")
    assert night_at(date(2025, 10, 26), at, berlin) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    after_first = datetime(2025, 10, 26, 0, 31, tzinfo=UTC)
    assert next_night(after_first, at, berlin) == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)
    nights = []
    moment = datetime(2025, 3, 7, 12, tzinfo=UTC)
    for _ in range(4):
        moment = next_night(moment, at, NEW_YORK)
        nights.append(moment.astimezone(NEW_YORK).date())
    assert nights == [date(2025, 3, 8), date(2025, 3, 9), date(2025, 3, 10), date(2025, 3, 11)]


def test_the_nightly_setting_is_read_and_named_when_wrong():
    assert load_settings({}).nightly_at == time(2, 30)
    assert load_settings({"TRIALCOORD_NIGHTLY_AT": "23:05"}).nightly_at == time(23, 5)
    assert load_settings({"TRIALCOORD_NIGHTLY": "off"}).nightly_at is None
    for wrong in ("25:00", "2:30", "02.30", "0230", "ab:cd"):
        with pytest.raises(ConfigError, match="TRIALCOORD_NIGHTLY_AT: .* HH:MM"):
            load_settings({"TRIALCOORD_NIGHTLY_AT": wrong})
    with pytest.raises(ConfigError, match="TRIALCOORD_NIGHTLY: 'sometimes'"):
        load_settings({"TRIALCOORD_NIGHTLY": "sometimes"})
