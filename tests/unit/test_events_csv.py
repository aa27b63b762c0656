"""Event CSV files: every bad line reported with its line and field; good files grouped by participant."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import PROTOCOL_V1
from tests.integration.test_import import GOOD
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling.events_csv import parse_events_csv, read_events_file
from trialcoord.scheduling.protocol_files import parse_protocol


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(PROTOCOL_V1, "tst.yaml")


def where(problems) -> list[tuple[int | None, str]]:
    return [(p.line, p.field) for p in problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [(None, "")]),
        ("   \n", [(None, "")]),
        ("\x89PNG\x00\x00", [(None, "")]),
        ("participant,date\n101-001,2024-03-04\n", [(1, "event")]),
        ("participant,event,date,visitdy\n", [(1, "visitdy")]),
        ("participant,event,date\n", [(None, "")]),
        ('participant,event,date\n"101-001,randomization,2024-03-04\n', [(2, "")]),
    ],
)
def test_files_that_are_not_event_csv(protocol, text, expected):
    rows, problems = parse_events_csv(text, "events.csv", protocol)
    assert rows == [] and where(problems) == expected
    assert all(problem.file == "events.csv" for problem in problems)


def test_every_bad_line_is_reported_with_its_field(protocol):
    text = (
        "Participant,Event,Date,Arm\n"
        "101-001,randomization,2024-03-04,A\n"  # 2: fine
        ",randomization,2024-03-04,\n"  # 3: no participant
        "101-002,randomization,04/03/2024,\n"  # 4: not ISO
        "101-003,randomization,2024-02-30,X\n"  # 5: no such day, no such arm
        "101-001,V2,2024-03-18,P\n"  # 6: second arm for 101-001
        "101-001,randomization,2024-03-05,\n"  # 7: second date for the same event
        "101-004,consent\n"  # 8: too few fields
    )
    rows, problems = parse_events_csv(text, "events.csv", protocol)
    assert where(problems) == [
        (3, "participant"),
        (4, "date"),
        (5, "date"),
        (5, "arm"),
        (6, "arm"),
        (7, "date"),
        (8, ""),
    ]
    assert "has arm A on line 2 and P here" in str(problems[4])
    assert [(row.line, row.is_event) for row in rows] == [(2, True)]


def test_read_events_file_groups_dates_by_participant(protocol, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(GOOD, encoding="utf-8")
    facts = read_events_file(path, protocol)
    assert (facts["101-001"].arm, facts["101-001"].actuals) == ("A", {"V2": date(2024, 3, 18)})
    assert facts["101-002"].events == {"randomization": date(2024, 3, 11)}
    path.write_bytes(b"participant,event,date\n\xff\xfe\n")
    with pytest.raises(InvalidInput, match="events.csv: not a UTF-8 text file"):
        read_events_file(path, protocol)
    with pytest.raises(InvalidInput, match="missing.csv: cannot be read"):
        read_events_file(tmp_path / "missing.csv", protocol)


def test_a_date_must_be_written_in_full():
    protocol = parse_protocol(PROTOCOL_V1, "tst.yaml")
    rows, problems = parse_events_csv("participant,event,date\n101-001,randomization,20240304\n", "e.csv", protocol)
    assert rows == [] and where(problems) == [(2, "date")]


def test_blank_lines_are_skipped_and_fields_trimmed():
    protocol = parse_protocol(PROTOCOL_V1, "tst.yaml")
    rows, problems = parse_events_csv("participant,event,date\n\n 101-001 , V2 ,2024-03-18\n,,\n", "e.csv", protocol)
    assert problems == [] and [(r.line, r.participant, r.event, r.is_event) for r in rows] == [
        (3, "101-001", "V2", False)
    ]


def test_found_an_unscheduled_label_on_two_dates_is_two_visits(protocol, tmp_path):
    """Real SDTM data records "UNSCHEDULED 9.2" twice for one participant: both are kept, in date order."""
    path = tmp_path / "events.csv"
    path.write_text(
        "participant,event,date\n1001,randomization,2024-03-01\n1001,UNSCHEDULED 9.2,2024-05-02\n"
        "1001,UNSCHEDULED 9.2,2024-04-10\n1001,UNSCHEDULED 9.2,2024-04-10\n",
        encoding="utf-8",
    )
    facts = read_events_file(path, protocol)["1001"]
    assert facts.actuals == {"UNSCHEDULED 9.2": date(2024, 4, 10), "UNSCHEDULED 9.2#2": date(2024, 5, 2)}


def test_a_protocol_visit_or_event_on_two_dates_stays_a_problem_naming_both_lines(protocol):
    text = (
        "participant,event,date\n1001,V2,2024-03-15\n1001,V2,2024-03-16\n"
        "1001,randomization,2024-03-01\n1001,randomization,2024-03-02\n"
    )
    rows, problems = parse_events_csv(text, "e.csv", protocol)
    assert [(p.line, p.message) for p in problems] == [
        (3, "participant 1001: V2 is also given as 2024-03-15 on line 2"),
        (5, "participant 1001: randomization is also given as 2024-03-01 on line 4"),
    ]


def test_a_site_column_gives_each_participant_one_site(protocol):
    text = (
        "participant,event,date,site\n1001,randomization,2024-03-01,101\n2001,randomization,2024-03-01,\n"
        "1001,V2,2024-03-15,102\n"
    )
    rows, problems = parse_events_csv(text, "e.csv", protocol)
    assert [(r.participant, r.site) for r in rows] == [("1001", "101"), ("2001", None)]
    assert [(p.line, p.field, p.message) for p in problems] == [
        (4, "site", "participant 1001 is at site 101 on line 2 and at 102 here")
    ]


def test_unscheduled_dates_already_recorded_keep_their_codes():
    from trialcoord.scheduling.events_csv import EventRow, number_unscheduled

    proto = parse_protocol(PROTOCOL_V1, "tst.yaml")
    rows = [
        EventRow(2, "1001", "UNS", date(2024, 4, 1), None, False),
        EventRow(3, "1001", "UNS", date(2024, 3, 1), None, False),
    ]
    recorded = {"1001": {"UNS": date(2024, 4, 1)}}  # imported before: 04-01 is UNS, the new 03-01 is UNS#2
    assert [r.event for r in number_unscheduled(rows, proto, recorded)] == ["UNS", "UNS#2"]
    assert [r.event for r in number_unscheduled(rows, proto, {})] == ["UNS#2", "UNS"]  # by date
