"""Row output: the contract's JSON keys, ISO dates, CSV cells that never run as spreadsheet formulas."""

import io
import json
from datetime import date

from trialcoord.scheduling.rows import write_csv, write_json, write_table
from trialcoord.scheduling.rules.schedule import VisitOccurrence

ROW = VisitOccurrence(
    "V2", "V2", 1, "Week 2", 2, date(2024, 3, 18), date(2024, 3, 15), None, date(2024, 3, 13), "early", -2, 15
)


def render(writer, pairs, with_participant=True) -> str:
    out = io.StringIO()
    writer(pairs, out, with_participant)
    return out.getvalue()


def test_json_has_the_contract_keys_and_iso_dates():
    [record] = json.loads(render(write_json, [("101-001", ROW)]))
    assert record == {
        "participant": "101-001",
        "visit": "V2",
        "occurrence": 1,
        "name": "Week 2",
        "target": "2024-03-18",
        "earliest": "2024-03-15",
        "latest": None,
        "actual": "2024-03-13",
        "status": "early",
        "days_outside": -2,
        "study_day": 15,
    }
    assert "participant" not in json.loads(render(write_json, [(None, ROW)], with_participant=False))[0]


def test_csv_guards_text_cells_against_formulas_but_not_numbers():
    evil = ROW._replace(visit="=HYPERLINK(1)", name="@SUM(A1)")
    lines = render(write_csv, [("+1-555", evil)]).splitlines()
    assert lines[0] == "participant,visit,occurrence,name,target,earliest,latest,actual,status,days_outside,study_day"
    assert lines[1] == "'+1-555,'=HYPERLINK(1),1,'@SUM(A1),2024-03-18,2024-03-15,,2024-03-13,early,-2,15"
    padded = render(write_csv, [(" =1+1", ROW)]).splitlines()[1]  # a spreadsheet skips the blank first
    assert padded.startswith("' =1+1,")


def test_table_aligns_columns():
    lines = render(write_table, [("101-001", ROW), ("9", ROW._replace(name="W"))]).splitlines()
    assert lines[0].split() == [
        "participant",
        "visit",
        "name",
        "target",
        "earliest",
        "latest",
        "actual",
        "status",
        "days_outside",
        "study_day",
    ]
    assert lines[1].index("V2") == lines[2].index("V2") == lines[0].index("visit")
