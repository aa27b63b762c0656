"""CSV import: every bad line reported, nothing imported from a bad file, a second import changes nothing."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import PROTOCOL_V1
from trialcoord.adapters.protocol_files import parse_protocol
from trialcoord.domain.problems import InvalidInput
from trialcoord.services import scheduling
from trialcoord.services.importing import ImportResult, import_events, parse_events_csv, read_events_file

TODAY = date(2024, 3, 25)
GOOD = """participant,event,date,arm
101-001,randomization,2024-03-04,A
101-001,V2,2024-03-18,A
101-001,first_dose,2024-03-04,
101-002,randomization,2024-03-11,P
101-002,UNSCHED1,2024-03-12,
"""


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
        ("participant,event,date,site\n", [(1, "site")]),
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
    assert where(problems) == [(3, "participant"), (4, "date"), (5, "date"), (5, "arm"), (6, "arm"), (7, "date"),
                               (8, "")]
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


@pytest.mark.anyio
@pytest.mark.db
async def test_a_file_with_problems_imports_nothing(study):
    text = GOOD + "101-003,randomization,2024-13-01,\n"
    with pytest.raises(InvalidInput) as error:
        await import_events(study, text, site="101", file="events.csv", today=TODAY)
    assert where(error.value.problems) == [(7, "date")] and str(error.value).startswith("events.csv:7: date:")
    with pytest.raises(InvalidInput) as error:
        await import_events(study, GOOD, site="999", file="events.csv", today=TODAY)
    assert where(error.value.problems) == [(None, "site")]
    with pytest.raises(InvalidInput) as error:
        await import_events(study, GOOD, file="events.csv", today=TODAY)  # new participants need a site
    assert where(error.value.problems) == [(line, "participant") for line in range(2, 7)]
    assert await scheduling.list_participants(study) == []


@pytest.mark.anyio
@pytest.mark.db
async def test_import_records_everything_once(study):
    first = await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    assert first == ImportResult(created_participants=2, events_recorded=3, visits_recorded=2, unchanged=0)
    again = await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    assert again == ImportResult(0, 0, 0, 5)
    people = {p["subject_id"]: p for p in await scheduling.list_participants(study)}
    assert (people["101-001"]["arm"], people["101-002"]["arm"]) == ("A", "P")
    schedule = {row.visit.visit: row.visit for row in await scheduling.participant_schedule(study, "101-001", TODAY)}
    assert (schedule["V2"].actual, schedule["V2"].status) == (date(2024, 3, 18), "on_time")
    assert schedule["C1D1"].target == date(2024, 3, 4)
    other = {row.visit.visit: row.visit for row in await scheduling.participant_schedule(study, "101-002", TODAY)}
    assert other["UNSCHED1"].status == "unscheduled"


@pytest.mark.anyio
@pytest.mark.db
async def test_import_refuses_to_change_recorded_dates(study):
    await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    changed = "participant,event,date,arm\n101-001,randomization,2024-03-05,\n101-002,randomization,2024-03-11,A\n"
    with pytest.raises(InvalidInput) as error:
        await import_events(study, changed, file="fix.csv", today=TODAY)
    assert where(error.value.problems) == [(2, "date"), (3, "arm")]
    assert "already recorded on 2024-03-04" in str(error.value)
