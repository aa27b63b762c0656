"""SDTM datasets for the sponsor package: the limits of SAS transport v5, study days, and XPT files that an
independent reader (pyreadstat's, not ours) reads back row by row as the CSV holds them."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from datetime import UTC, date, datetime

import pyreadstat
import pytest

from trialcoord.exports.rules.sdtm import Kind, Origin, Variable, dataset, study_day
from trialcoord.exports.transport import csv_bytes, xpt_bytes
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.tabular import csv_text

SV = (
    Variable("STUDYID", "Study Identifier", origin=Origin.ASSIGNED),
    Variable("DOMAIN", "Domain Abbreviation", origin=Origin.ASSIGNED),
    Variable("USUBJID", "Unique Subject Identifier", origin=Origin.ASSIGNED),
    Variable("VISITNUM", "Visit Number", Kind.NUMBER, Origin.PROTOCOL),
    Variable("VISIT", "Visit Name", origin=Origin.PROTOCOL),
    Variable("SVSTDTC", "Start Date/Time of Visit"),
    Variable("SVSTDY", "Study Day of Start of Visit", Kind.NUMBER, Origin.DERIVED, "SVSTDTC - RFSTDTC (+1 from day 1)"),
)
ROWS = [
    {
        "STUDYID": "TST-1",
        "DOMAIN": "SV",
        "USUBJID": "TST-1-101-1001",
        "VISITNUM": 1,
        "VISIT": "SCREENING",
        "SVSTDTC": "2024-02-20",
        "SVSTDY": -13,
    },
    {
        "STUDYID": "TST-1",
        "DOMAIN": "SV",
        "USUBJID": "TST-1-101-1001",
        "VISITNUM": 2.1,
        "VISIT": "UNSCHEDULED 2.1",
        "SVSTDTC": "2024-03-20",
        "SVSTDY": 17,
    },
    {
        "STUDYID": "TST-1",
        "DOMAIN": "SV",
        "USUBJID": "TST-1-101-1002",
        "VISITNUM": 3,
        "VISIT": "=HYPERLINK()",
        "SVSTDTC": None,
        "SVSTDY": None,
    },
]
AT = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)


def test_study_days_have_no_day_zero():
    day_one = date(2024, 3, 4)
    assert [study_day(date(2024, 3, d), day_one) for d in (2, 3, 4, 5)] == [-2, -1, 1, 2]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"VISIT": "Visite de sécurité"}, "dataset SV, row 2, variable VISIT: 'Visite de sécurité' is not ASCII"),
        ({"VISIT": "X" * 201}, "dataset SV, row 2, variable VISIT: 201 bytes; at most 200 fit"),
        ({"VISITNUM": "two"}, "dataset SV, row 2, variable VISITNUM: 'two' is not a number"),
    ],
)
def test_a_value_that_does_not_fit_is_named_never_cut(change, named):
    rows = [ROWS[0], {**ROWS[1], **change}]
    with pytest.raises(InvalidInput) as refused:
        dataset("SV", "Subject Visits", SV, rows)
    assert named in str(refused.value)


def test_names_and_labels_outside_the_limits_are_named():
    bad = (Variable("svstdtc", "x" * 41), Variable("TOOLONGNAME", "Fine"))
    with pytest.raises(InvalidInput) as refused:
        dataset("sv", "Subject Visits", bad, [])
    text = str(refused.value)
    assert "dataset sv: the name must be 1-8 upper-case letters" in text
    assert "variable svstdtc: the name must be" in text and "the label has 41 characters; 1 to 40 fit" in text
    assert "variable TOOLONGNAME: the name must be" in text


def test_the_xpt_reads_back_row_by_row_as_the_csv_holds_it(tmp_path):
    sv = dataset("SV", "Subject Visits", SV, ROWS)
    content = xpt_bytes(sv, AT)
    assert content.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!")
    (tmp_path / "sv.xpt").write_bytes(content)
    frame, meta = pyreadstat.read_xport(str(tmp_path / "sv.xpt"))
    assert meta.table_name == "SV" and meta.file_label == "Subject Visits"
    assert meta.column_names == list(sv.names)
    assert meta.column_labels == [v.label for v in SV]
    assert meta.readstat_variable_types == {v.name: "double" if v.kind is Kind.NUMBER else "string" for v in SV}
    from_xpt = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    from_csv = list(csv.reader(io.StringIO(csv_bytes(sv).decode("utf-8"))))
    assert from_csv[0] == list(sv.names)
    assert [[parse(v, text) for v, text in zip(SV, row)] for row in from_csv[1:]] == from_xpt
    assert from_xpt[1][3] == 2.1 and from_xpt[0][6] == -13 and from_xpt[2][5] is None


def test_the_same_dataset_and_instant_give_the_same_bytes():
    sv = dataset("SV", "Subject Visits", SV, ROWS)
    first, again = xpt_bytes(sv, AT), xpt_bytes(sv, AT)
    assert first == again
    assert b"01JUN24:08:30:00" in first[:560]
    later = xpt_bytes(sv, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert later != first and b"02JAN25:03:04:05" in later[:560]
    assert len(later) == len(first)


def cell(value):
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return value or None  # SAS has no null text: blanks read back as ""


def parse(variable, text):
    if text == "":
        return None
    if variable.kind is Kind.NUMBER:
        return float(text)
    return text[1:] if text.startswith("'=") else text  # the CSV's formula guard


TRICKY = [  # the CSV guard's and the numbers' edge cases, in a text and a number column
    ("=1+1", 1.0),
    ("  +SUM(A1)", -2.0),
    ("\t-3", 2.5),
    ("@home", -13),
    ("plain, with a comma", 0.000001),
    ('a "quoted" word', None),
    ("line\rbreak", 1e20),
    ("", -0.0),
    (None, 4.001),
    ("-", 7),
]
PAIR = (Variable("QVAL", "Data Value"), Variable("VISITNUM", "Visit Number", Kind.NUMBER))


def tabular_csv(data):
    """What csv_bytes wrote before it went column by column: each value through tabular.csv_text."""
    rows = [[int(v) if isinstance(v, float) and v.is_integer() else v for v in row] for row in data.rows]
    return csv_text(list(data.names), rows).encode("utf-8")


@pytest.mark.parametrize("extra", [(), (("ok", math.nan), ("fine", -math.inf))])
def test_the_csv_holds_the_cells_tabular_writes_byte_for_byte(extra):
    data = dataset("QS", "Tricky Values", PAIR, [{"QVAL": t, "VISITNUM": n} for t, n in (*TRICKY, *extra)])
    written = csv_bytes(data)
    assert written == tabular_csv(data)
    lines = written.decode("ascii").split("\r\n")
    assert lines[1:5] == ["'=1+1,1", "'  +SUM(A1),-2", "'\t-3,2.5", "'@home,-13"]  # numbers never guarded
    assert '"line\rbreak",100000000000000000000' in written.decode("ascii")


def test_check_profiles_the_columns_once_and_a_changed_dataset_is_profiled_anew():
    sv = dataset("SV", "Subject Visits", SV, ROWS)
    profile = sv.profile()
    assert profile is sv.profile() and profile.typed
    assert profile.lengths["USUBJID"] == 14 and profile.lengths["VISIT"] == len("UNSCHEDULED 2.1")
    assert profile.values["SVSTDY"] == {-13, 17, None} and profile.values["STUDYID"] == {"TST-1"}
    fewer = replace(sv, rows=sv.rows[:1])
    assert fewer.profile().values["SVSTDY"] == {-13} and fewer.lengths()["VISIT"] == len("SCREENING")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ([1, True], "row 2, variable VISITNUM: True is not a number"),  # a set takes True for 1: not the check
        ([1, "1"], "row 2, variable VISITNUM: '1' is not a number"),
    ],
)
def test_every_value_is_checked_even_one_equal_to_another(values, named):
    rows = [{**ROWS[0], "VISITNUM": value} for value in values]
    with pytest.raises(InvalidInput) as refused:
        dataset("SV", "Subject Visits", SV, rows)
    assert [p.message for p in refused.value.problems] == [f"dataset SV, {named}"]
