"""The sponsor package's datasets built from stored studies on both engines: the demo study (double-blind, with
made-up personal data) and a small study with repeated and unscheduled visits at two sites. Every dataset is
checked, written as XPT v5 and read back by pyreadstat; no personal value of the demo is anywhere in it."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pyreadstat
import pytest

from tests.conftest import RANDOMIZED, SITE_B
from trialcoord.demo.demo import DEMO_PERSONAL_VALUES, load_demo
from trialcoord.deviations import manual
from trialcoord.documents.participant_consents import record_paper_consent
from trialcoord.exports import datasets, transport
from trialcoord.exports.rules import domains
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.rules.sdtm import Dataset
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, sites
from trialcoord.scheduling.visits import record_event, record_visit

pytestmark = pytest.mark.anyio
TODAY = date.today()  # deviations carry the server clock's instant: the package's as-of date must reach it


def rows_of(data: Dataset) -> list[dict]:
    return [dict(zip(data.names, row)) for row in data.rows]


def by_name(built: datasets.StudyDatasets) -> dict[str, Dataset]:
    return {data.name: data for data in built.datasets}


def read_back(data: Dataset, tmp_path) -> list[dict]:
    """The XPT as pyreadstat reads it, nulls as None, compared by the caller with the rows built."""
    from datetime import datetime

    path = tmp_path / f"{data.name.lower()}.xpt"
    path.write_bytes(transport.xpt_bytes(data, datetime(2026, 1, 1, 12, 0, 0)))
    frame, meta = pyreadstat.read_xport(str(path))
    assert meta.table_name == data.name and meta.column_names == list(data.names)
    return [
        {
            name: (None if isinstance(value, float) and math.isnan(value) else value or None if value == "" else value)
            for name, value in zip(data.names, row)
        }
        for row in frame.itertuples(index=False)
    ]


def assert_round_trip(built: datasets.StudyDatasets, tmp_path) -> None:
    for data in built.datasets:
        assert read_back(data, tmp_path) == [
            {k: (float(v) if isinstance(v, int) else v) for k, v in row.items()} for row in rows_of(data)
        ], data.name


def no_personal_value(built: datasets.StudyDatasets) -> None:
    from datetime import datetime

    for data in built.datasets:
        for blob in (transport.xpt_bytes(data, datetime(2026, 1, 1)), transport.csv_bytes(data)):
            text = blob.decode("latin-1")
            found = [value for value in DEMO_PERSONAL_VALUES if value in text or value.encode() in blob]
            assert not found, (data.name, found)


@pytest.fixture
async def demo(db):
    assert await load_demo(TODAY)
    # 101-001 (arm A) had the PK sample, which only arm A has, and a deviation was recorded about it.
    await record_visit("DEMO-001", "101-001", "PK", TODAY - timedelta(days=1), reason="sampled early", today=TODAY)
    await manual.record_manual(
        "DEMO-001", "101", "assessments", "PK sample haemolysed", TODAY - timedelta(days=1), "cora",
        subject_id="101-001", visit="PK", subcategory="ASSESSMENT NOT PERFORMED", today=TODAY,
    )  # fmt: skip
    await manual.record_manual("DEMO-001", "101", "other", "Freezer alarm log missing", TODAY, "cora", today=TODAY)
    return "DEMO-001"


async def test_the_demo_studys_datasets_are_built_read_back_and_hold_no_personal_value(demo, tmp_path):
    seen: list[tuple[float, str]] = []
    built = await datasets.build(Scope("DEMO-001", TODAY), lambda fraction, what: seen.append((fraction, what)))
    assert [d.name for d in built.datasets] == ["TV", "TA", "SV", "DV", "SUPPDV", "DS", "DM"]
    assert (built.study, built.protocol, built.arms_shown) == ("DEMO-001", "DEMO-001 version 2.0", False)
    assert built.title.startswith("A 12-week randomised")
    assert seen[-1][0] == 1.0 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    named = by_name(built)
    dm = rows_of(named["DM"])
    assert [r["USUBJID"] for r in dm] == [
        f"DEMO-001-{s}" for s in ("101-001", "101-002", "101-003", "102-001", "102-002")
    ]
    assert all(r["ARMCD"] is None and r["ARM"] is None for r in dm)  # double-blind, not unblinded
    assert {r["SUBJID"]: r["AGE"] for r in dm}["101-002"] > 89 and all(r["AGEU"] == "YEARS" for r in dm)
    assert all(r["RFICDTC"] <= r["RFSTDTC"] for r in dm)
    # The PK visit and its deviation would reveal arm A; the site-level deviation has no USUBJID.
    assert built.withheld == {
        domains.WITHHELD_SV: 1,
        domains.WITHHELD_DV: 1,
        domains.WITHHELD_NO_SUBJECT: 1,
    }
    sv = rows_of(named["SV"])
    assert all(r["VISITNUM"] != 20 for r in sv) and {r["EPOCH"] for r in sv} == {"SCREENING", "TREATMENT"}
    dv = rows_of(named["DV"])
    assert dv and {d.refid for d in built.deviations} == {r["DVREFID"] for r in dv}
    assert all(len(d.fingerprint) == 64 and not d.closed for d in built.deviations)
    assert {r["QNAM"] for r in rows_of(named["SUPPDV"])} >= {"DVCLASS", "DVSTATE", "DVREAS"}
    ds = rows_of(named["DS"])
    assert {r["DSDECOD"] for r in ds} == {"INFORMED CONSENT OBTAINED", "RANDOMIZED", "OTHER"}
    assert_round_trip(built, tmp_path)
    no_personal_value(built)


async def test_an_unblinded_or_safe_harbor_package_of_the_demo(demo, tmp_path):
    unblinded = await datasets.build(Scope("DEMO-001", TODAY, unblinded=True))
    named = by_name(unblinded)
    assert unblinded.arms_shown and unblinded.withheld == {domains.WITHHELD_NO_SUBJECT: 1}
    assert {r["SUBJID"]: r["ARMCD"] for r in rows_of(named["DM"])} == {
        "101-001": "A", "101-002": "P", "101-003": "A", "102-001": "A", "102-002": "P"
    }  # fmt: skip
    assert any(r["VISITNUM"] == 20 for r in rows_of(named["SV"]))
    harbor = await datasets.build(Scope("DEMO-001", TODAY, privacy=Privacy.SAFE_HARBOR))
    for data in harbor.datasets:
        for row in rows_of(data):
            for name, value in row.items():
                if name.endswith("DTC") and value is not None:
                    assert len(value) == 4, (data.name, name, value)
    assert max(r["AGE"] for r in rows_of(by_name(harbor)["DM"])) == 90
    coded_terms = {r["DVTERM"] for r in rows_of(by_name(harbor)["DV"])}
    assert coded_terms <= set(
        domains.SUPP_QUALIFIERS and {"VISIT OUT OF WINDOW", "VISIT MISSED", "ASSESSMENT NOT PERFORMED"}
    )
    assert "DVREAS" not in {r["QNAM"] for r in rows_of(by_name(harbor)["SUPPDV"])}
    assert_round_trip(harbor, tmp_path)
    no_personal_value(harbor)
    no_personal_value(unblinded)


@pytest.fixture
async def small(study):
    """TST-1 (open arms, a repeating visit for arm A) at two sites: 1001 with repeats, two unscheduled visits and
    two paper consents; 2001 at site B; a visit done after the package's as-of date."""
    await sites.create_site(study, SITE_B, "Lakeside", "America/Chicago")
    today = RANDOMIZED + timedelta(days=60)
    for subject, site in (("1001", "101"), ("2001", SITE_B)):
        await participants.enroll_participant(study, subject, site, arm="A", enrolled_on=RANDOMIZED, today=today)
        await record_event(study, subject, "randomization", RANDOMIZED, today=today)
        await record_event(study, subject, "first_dose", RANDOMIZED, today=today)
    await record_paper_consent(
        study, "1001", RANDOMIZED - timedelta(days=10), "binder 3/12", "Dr Ito", today, label="1.0"
    )
    await record_paper_consent(
        study, "1001", RANDOMIZED + timedelta(days=30), "binder 3/13", "Dr Ito", today, label="2.0"
    )
    for code, days in (("SCR", -7), ("C1D1", 0), ("UNS", 3), ("UNS#2", 5), ("V2", 14), ("C2D1", 21), ("C3D1", 50)):
        late = "delayed for toxicity" if code == "C3D1" else None  # C3D1 (day 50): outside its window
        await record_visit(study, "1001", code, RANDOMIZED + timedelta(days=days), reason=late, today=today)
    await record_visit(study, "2001", "V2", RANDOMIZED + timedelta(days=15), today=today)
    return study


async def test_a_small_study_with_repeats_unscheduled_visits_and_two_sites(small, tmp_path):
    as_of = RANDOMIZED + timedelta(days=40)  # C3D1 (day 50) is after it
    built = await datasets.build(Scope(small, as_of))
    named = by_name(built)
    assert built.arms_shown and built.protocol == "TST-1 version 1.0"  # 2.0 is effective 2024-06-01
    sv = [(r["USUBJID"], r["VISITNUM"], r["VISIT"], r["SVSTDY"]) for r in rows_of(named["SV"])]
    assert sv == [
        ("TST-1-1001", 1.0, "Screening", -7),
        ("TST-1-1001", 2.0, "Week 2", 15),
        ("TST-1-1001", 4.0, "Cycle 1 Day 1", 1),
        ("TST-1-1001", 4.000001, "UNS", 4),
        ("TST-1-1001", 4.000002, "UNS", 6),
        ("TST-1-1001", 4.001, "Cycle 2 Day 1", 22),
        ("TST-1-2001", 2.0, "Week 2", 16),
    ]
    tv = rows_of(named["TV"])
    assert [(r["VISITNUM"], r["ARMCD"]) for r in tv if str(r["VISIT"]).startswith("Cycle")] == [
        (4.0, "A"),
        (4.001, "A"),
        (4.002, "A"),  # count 3
    ]
    ds = [(r["DSDECOD"], r["DSSCAT"]) for r in rows_of(named["DS"]) if r["USUBJID"] == "TST-1-1001"]
    assert ds == [("INFORMED CONSENT OBTAINED", "1.0"), ("RANDOMIZED", None), ("INFORMED CONSENT OBTAINED", "2.0")]
    dm = {r["SUBJID"]: r for r in rows_of(named["DM"])}
    assert dm["1001"]["RFICDTC"] == (RANDOMIZED - timedelta(days=10)).isoformat() and dm["1001"]["ARMCD"] == "A"
    assert dm["2001"]["SITEID"] == SITE_B and dm["2001"]["RFICDTC"] is None
    assert_round_trip(built, tmp_path)

    one_site = await datasets.build(Scope(small, as_of, sites=(SITE_B,)))
    assert {r["SITEID"] for r in rows_of(by_name(one_site)["DM"])} == {SITE_B}
    assert {r["USUBJID"] for r in rows_of(by_name(one_site)["SV"])} == {"TST-1-2001"}
    with pytest.raises(InvalidInput, match="no site 999"):
        await datasets.build(Scope(small, as_of, sites=("999",)))


async def test_a_free_text_that_does_not_fit_names_the_participant_and_deviation(small):
    today = RANDOMIZED + timedelta(days=60)
    await manual.record_manual(
        small, "101", "other", "Étiquette illisible", RANDOMIZED + timedelta(days=2), "cora", subject_id="1001",
        today=today,
    )  # fmt: skip
    with pytest.raises(InvalidInput) as raised:  # recorded at the server clock's instant: as of today
        await datasets.build(Scope(small, TODAY))
    message = str(raised.value)
    assert "dataset DV, row 1, variable DVTERM" in message and "not ASCII" in message
    assert "participant TST-1-1001" in message and "deviation TST-1/101/1001/deviation/" in message
    harbor = await datasets.build(Scope(small, TODAY, privacy=Privacy.SAFE_HARBOR))
    assert [r["DVTERM"] for r in rows_of(by_name(harbor)["DV"])] == ["OTHER"]
