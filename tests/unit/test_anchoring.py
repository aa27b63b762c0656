"""When an external checkpoint is due and how its file is named (kernel/rules/anchoring.py)."""

from __future__ import annotations

from datetime import date

from trialcoord.kernel.rules.anchoring import Anchor, due, file_name, newest, parse

TODAY = date(2026, 12, 8)


def test_a_file_is_named_by_size_and_utc_instant_and_the_newest_is_the_largest_then_latest():
    name = file_name(1234, "2026-12-08T09:30:05.123456Z")
    assert name == "checkpoint-1234-20261208T093005Z.json"
    assert parse(name) == Anchor(1234, "20261208T093005Z") and parse(name).day == TODAY
    names = [
        "checkpoint-999-20261209T000000Z.json",
        "checkpoint-1234-20261207T000000Z.json",
        "checkpoint-1234-20261208T000000Z.json",
        ".checkpoint-abc.tmp",
        "checkpoint-01-20261208T000000Z.json",
        "notes.txt",
    ]
    assert newest(names) == (Anchor(1234, "20261208T000000Z"), "checkpoint-1234-20261208T000000Z.json")
    assert newest(["notes.txt"]) is None


def test_one_is_due_when_none_exists_a_multiple_of_n_was_crossed_or_a_day_passed_and_never_without_growth():
    today = Anchor(1000, "20261208T010000Z")
    assert not due(0, None, 1000, TODAY)
    assert due(1, None, 1000, TODAY)
    assert not due(1999, today, 1000, TODAY)  # grew, but crossed no multiple of 1000 today
    assert due(2000, today, 1000, TODAY)
    assert not due(1000, today, 1000, TODAY, nightly=True)  # nothing new to anchor
    assert due(1001, today, 1000, TODAY, nightly=True)
    yesterday = Anchor(1000, "20261207T230000Z")
    assert due(1001, yesterday, 1000, TODAY) and not due(1000, yesterday, 1000, TODAY)
