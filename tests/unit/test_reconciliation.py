"""The fold of the trail into the values each record holds now, and the comparison with the current rows."""

from __future__ import annotations

import pytest

from trialcoord.kernel.rules.reconciliation import (
    CREATED_OUTSIDE,
    DELETED_OUTSIDE,
    DIFFERS,
    PRESENT_THOUGH_DELETED,
    Reconciler,
    RecordKind,
    marker_presence,
)

EVENT = RecordKind("participant_event", "recorded_events", ("date",))
VISIT = RecordKind("visit", "visits", ("actual", "appointment"), defaults={"actual": None, "appointment": None})
CLOSURE = RecordKind("site", "site_closures", ("first_day",), shape=lambda rid: "/closure/" in rid)


def _reconciled(entries, rows):
    reconciler = Reconciler((EVENT, VISIT, CLOSURE))
    for entry in entries:
        reconciler.feed(*entry)
    found = [d for kind, kind_rows in rows for d in reconciler.compare(kind, kind_rows)]
    return found + list(reconciler.unmatched())


def test_the_latest_entry_setting_a_field_is_the_value_expected_and_named():
    entries = [
        (1, "cora", "create", "participant_event", "S/1/A/consent", {"date": "2024-03-01"}, None),
        (2, "cora", "update", "participant_event", "S/1/A/consent", {"date": "2024-03-02"}, None),
        (3, "cora", "update", "visit", "S/1/A/V2", {"appointment": "2024-03-10"}, None),
    ]
    rows = [
        (EVENT, [("S/1/A/consent", ("2024-03-02",))]),
        (VISIT, [("S/1/A/V2", (None, "2024-03-10")), ("S/1/A/V3", (None, None))]),
    ]
    assert _reconciled(entries, rows) == []
    rows[0] = (EVENT, [("S/1/A/consent", ("2024-03-01",))])
    rows[1] = (VISIT, [("S/1/A/V2", ("2024-03-09", "2024-03-10"))])
    found = _reconciled(entries, rows)
    assert [(d.record_id, d.field, d.current, d.expected, d.sequence, d.what) for d in found] == [
        ("S/1/A/consent", "date", "2024-03-01", "2024-03-02", 2, DIFFERS),
        ("S/1/A/V2", "actual", "2024-03-09", None, None, DIFFERS),  # no entry ever set it
    ]


def test_rows_without_entries_and_entries_without_rows_are_named():
    entries = [
        (1, "cora", "create", "participant_event", "S/1/A/consent", {"date": "2024-03-01"}, None),
        (2, "cora", "create", "site", "S/1/closure/2024-07-01", {"first_day": "2024-07-01"}, None),
        (3, "cora", "delete", "site", "S/1/closure/2024-07-01", None, None),
        (4, "cora", "create", "site", "S/1", {"name": "x"}, None),  # a site, not a closure: not this table's
    ]
    rows = [
        (EVENT, [("S/1/A/randomization", ("2024-03-04",))]),
        (VISIT, [("S/1/A/V9", (None, None))]),  # nothing recorded: matches the defaults
        (CLOSURE, [("S/1/closure/2024-07-01", ("2024-07-01",))]),
    ]
    found = [(d.table, d.record_id, d.sequence, d.what) for d in _reconciled(entries, rows)]
    assert found == [
        ("recorded_events", "S/1/A/randomization", None, CREATED_OUTSIDE),
        ("site_closures", "S/1/closure/2024-07-01", 3, PRESENT_THOUGH_DELETED),
        ("recorded_events", "S/1/A/consent", 1, DELETED_OUTSIDE),
    ]


def test_defaults_name_every_field_compared():
    with pytest.raises(ValueError, match="visits: defaults must name every field"):
        RecordKind("visit", "visits", ("actual", "appointment"), defaults={"actual": None})


def test_a_change_marker_is_compared_as_the_presence_of_the_value():
    assert marker_presence("update", "cora", {"name": "set", "mrn": "cleared", "contact": "changed"}, None) == {
        "name": "present",
        "mrn": "absent",
        "contact": "present",
    }
