"""iCalendar output: all-day events, stable UIDs, reproducible bytes, no personal data."""

from datetime import date

from icalendar import Calendar

from tests.unit.builders import Row
from trialcoord.scheduling.ics import visits_calendar

STAMP = date(2024, 3, 20)


def events(data: bytes):
    return [c for c in Calendar.from_ical(data).walk("VEVENT")]


def test_one_all_day_event_per_dated_visit_on_actual_else_appointment_else_target():
    rows = [
        Row("V1", "on_time", date(2024, 3, 4), date(2024, 3, 1), date(2024, 3, 7), actual=date(2024, 3, 5)),
        Row("V2", "upcoming", date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21), appointment=date(2024, 3, 19)),
        Row("V3", "upcoming", date(2024, 4, 1), date(2024, 3, 29), date(2024, 4, 4)),
        Row("V4", "pending"),
        Row("V5", "not_applicable", date(2024, 4, 8)),
    ]
    found = events(visits_calendar("S-001", "DEMO-001", [("S-001", r, None) for r in rows], STAMP))
    starts = {str(e["uid"]): e.decoded("dtstart") for e in found}
    assert starts == {
        "DEMO-001/S-001/V1@trialcoord": date(2024, 3, 5),
        "DEMO-001/S-001/V2@trialcoord": date(2024, 3, 19),
        "DEMO-001/S-001/V3@trialcoord": date(2024, 4, 1),
    }
    for event in found:
        assert event.decoded("dtend") - event.decoded("dtstart") == date(2024, 1, 2) - date(2024, 1, 1)


def test_uids_survive_a_change_of_date_and_output_is_reproducible():
    before = [("S-001", Row("V2", "upcoming", date(2024, 3, 18)), None)]
    after = [("S-001", Row("V2", "upcoming", date(2024, 3, 18), appointment=date(2024, 3, 20)), None)]
    uid = lambda data: [str(e["uid"]) for e in events(data)]  # noqa: E731
    assert uid(visits_calendar("t", "DEMO-001", before, STAMP)) == uid(visits_calendar("t", "DEMO-001", after, STAMP))
    assert visits_calendar("t", "DEMO-001", after, STAMP) == visits_calendar("t", "DEMO-001", after, STAMP)


def test_summary_names_subject_and_visit_and_description_the_window():
    data = visits_calendar(
        "Site 01",
        "DEMO-001",
        [("S-007", Row("V2", "due", date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21), name="Week 2"), None)],
        STAMP,
    )
    event = events(data)[0]
    assert str(event["summary"]) == "S-007: V2 Week 2"
    assert "2024-03-15 to 2024-03-21" in str(event["description"])
    assert b"X-WR-CALNAME:Site 01" in data


def test_the_parts_of_a_calendar_make_the_calendar_icalendar_writes_whole():
    """The feed is sent in parts; joined, they are byte for byte the calendar icalendar writes in one go."""
    from icalendar import Event

    from trialcoord.scheduling import ics

    rows = [
        (f"S-{n:03d}", Row("V2", "upcoming", date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21)), None)
        for n in range(7)
    ]
    rows.append(("S-999", Row("V5", "not_applicable", date(2024, 4, 8)), None))
    parts = list(ics.calendar_parts("t", "DEMO-001", rows, STAMP, size=3))
    assert len(parts) == 1 + 3 + 1  # the header, three batches of events (3, 3, 2 entries), the end
    whole = Calendar()
    for name, value in (("prodid", ics.PRODID), ("version", "2.0"), ("calscale", "GREGORIAN"), ("x-wr-calname", "t")):
        whole.add(name, value)
    unstored = ics.Revision(1, ics.datetime.combine(STAMP, ics.time(), tzinfo=ics.UTC))
    for subject, row, _ in rows[:7]:
        event = ics._event("DEMO-001", subject, row, unstored, (None, None))
        assert isinstance(event, Event)
        whole.add_component(event)
    assert b"".join(parts) == whole.to_ical() == visits_calendar("t", "DEMO-001", rows, STAMP)
    assert len(events(b"".join(parts))) == 7


def _rfc_properties_present(data: bytes) -> list:
    """Every VEVENT as icalendar's parser reads it back, each checked for RFC 5545's required and our revision
    properties."""
    found = events(data)
    for event in found:
        for name in ("UID", "DTSTAMP", "SEQUENCE", "LAST-MODIFIED", "DTSTART"):
            assert name in event, f"{name} missing from {event.get('UID')}"
    return found


def test_a_stored_row_gives_sequence_from_its_row_version_and_last_modified_from_its_change():
    from datetime import UTC, datetime

    from trialcoord.scheduling.ics import Revision

    changed = datetime(2024, 3, 19, 14, 5, 6, 789, tzinfo=UTC)
    data = visits_calendar(
        "t", "DEMO-001", [("S-001", Row("V2", "upcoming", date(2024, 3, 18)), Revision(3, changed))], STAMP
    )
    (event,) = _rfc_properties_present(data)
    assert event.decoded("sequence") == 2  # row version 1 is the first revision: SEQUENCE 0
    assert event.decoded("last-modified") == event.decoded("dtstamp") == changed.replace(microsecond=0)


def test_a_visit_not_stored_has_sequence_0_and_the_as_of_midnight():
    from datetime import UTC, datetime

    (event,) = _rfc_properties_present(
        visits_calendar("t", "DEMO-001", [("S-001", Row("V2", "upcoming", date(2024, 3, 18)), None)], STAMP)
    )
    assert event.decoded("sequence") == 0
    assert event.decoded("last-modified") == datetime(2024, 3, 20, tzinfo=UTC)


def test_days_keep_only_the_events_from_and_to_them():
    rows = [("S-001", Row(f"V{n}", "upcoming", date(2024, 3, n)), None) for n in range(1, 10)]
    data = visits_calendar("t", "DEMO-001", rows, STAMP, days=(date(2024, 3, 3), date(2024, 3, 5)))
    assert sorted(e.decoded("dtstart").day for e in events(data)) == [3, 4, 5]


def test_uids_differ_across_participants_and_cannot_be_confused_by_separators():
    from trialcoord.scheduling.ics import uid

    assert uid("A.B", "C", "V1") != uid("A", "B.C", "V1")
    assert uid("A/B", "C", "V1") != uid("A", "B/C", "V1")
    rows = [
        (subject, Row(visit, "upcoming", date(2024, 3, 18)), None)
        for subject in ("S-001", "S-002")
        for visit in ("V1", "C1D1", "C2D1", "UNS1")
    ]
    uids = [str(e["uid"]) for e in _rfc_properties_present(visits_calendar("t", "DEMO-001", rows, STAMP))]
    assert len(uids) == len(set(uids)) == 8
