"""The SDTM domains' contents from hand-made records: study days without day 0, decimal VISITNUM for repeats and
unscheduled visits, TV's rows per arm and planned days, EPOCH, DS terms, blinding and Safe Harbor, and errors that
name the dataset, row, variable and the participant or deviation."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from trialcoord.exports.datasets import standing_on
from trialcoord.exports.rules import domains, privacy
from trialcoord.exports.rules.domains import (
    ConsentSigned,
    Design,
    DeviationRecord,
    EventRecorded,
    Subject,
    VisitDone,
)
from trialcoord.exports.rules.scope import Privacy
from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling.protocol_files import parse_protocol

PROTOCOL = """\
study: UT-1
title: Unit test study
version: "1.0"
effective: 2024-01-01
day_one: randomization
blinding: double
events:
  consent: {}
  randomization: {}
  first_dose: {}
  end_of_treatment: {ends_schedule: true}
  withdrawal: {ends_schedule: true, collection: stops}
  early_termination: {ends_schedule: true}
arms:
  - {code: A, name: Active}
  - {code: P, name: Placebo}
visits:
  - {code: SCR, name: Screening, from: randomization, offset: -7d, window: {early: 7d, late: 6d}}
  - {code: V2, name: Week 2, from: randomization, offset: 2w, window: {early: 3d, late: 3d}}
  - {code: V3, name: Week 4, from: V2, offset: 2w, window: {early: 3d, late: 3d}}
  - code: C{n}D1
    name: Cycle {n} Day 1
    from: randomization
    offset: 0d
    repeat: {every: 21d, count: open}
    window: {early: 0d, late: 3d}
  - {code: PK, number: 20, name: PK sampling, from: randomization, offset: 10d, window: {early: 2d, late: unbounded},
     arms: [A]}
  - {code: ET, number: 90, name: Early termination, from: early_termination, when: early_termination, offset: 0d,
     window: {early: 0d, late: 7d}}
"""
DAY1 = date(2024, 3, 4)
WHO = Subject("001", "UT-1-001", "101", "A", reference_start=DAY1, treatment_end=date(2024, 5, 1), age=93)


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(PROTOCOL, "ut.yaml")


def design(protocol, privacy: Privacy = Privacy.CODED, arms_shown: bool = True) -> Design:
    return Design("UT-1", protocol, (protocol,), privacy, arms_shown)


def visit(code: str, day: date, number: float | None, occurrence: int = 1, name: str = "") -> VisitDone:
    return VisitDone(code, occurrence, name or code, number, day)


def deviation(did: int = 1, **changes) -> DeviationRecord:
    values = dict(
        id=did,
        refid=f"UT-1/101/001/deviation/{did}",
        site="101",
        subject_id="001",
        visit="V2",
        rule="visit_late",
        description="V2: visit after its window (2 days after the window)",
        category="visit schedule",
        subcategory="VISIT OUT OF WINDOW",
        classification="important",
        state="closed",
        occurred_on=date(2024, 3, 24),
        closed_on=date(2024, 4, 2),
        site_reason="Participant travelling",
    )
    values.update(changes)
    return DeviationRecord(**values)


def test_study_days_have_no_day_0_and_epochs_follow_rfstdtc_and_the_end_of_treatment(protocol):
    rows = domains.sv_rows(
        design(protocol),
        WHO,
        [
            visit("SCR", date(2024, 3, 3), 1),
            visit("V2", DAY1, 2),
            visit("V3", date(2024, 5, 1), 3),
            visit("ET", date(2024, 5, 2), 90),
        ],
        Counter(),
    )
    assert [(r["VISITNUM"], r["SVSTDY"], r["EPOCH"]) for r in rows] == [
        (1.0, -1, "SCREENING"),
        (2.0, 1, "TREATMENT"),
        (3.0, 59, "TREATMENT"),  # the day treatment ended is still treatment
        (90.0, 60, "FOLLOW-UP"),
    ]
    assert rows[0]["SVSTDTC"] == rows[0]["SVENDTC"] == "2024-03-03"
    no_reference = Subject("002", "UT-1-002", "101")
    (row,) = domains.sv_rows(design(protocol), no_reference, [visit("SCR", date(2024, 3, 3), 1)], Counter())
    assert row["SVSTDY"] is None and row["EPOCH"] == "SCREENING"


def test_repeats_and_unscheduled_visits_get_decimal_visit_numbers_in_date_order(protocol):
    rows = domains.sv_rows(
        design(protocol),
        WHO,
        [
            visit("C1D1", DAY1, 4, 1, "Cycle 1 Day 1"),
            visit("UNS", date(2024, 3, 10), None),
            visit("UNS#2", date(2024, 3, 12), None),
            visit("C2D1", date(2024, 3, 25), 4, 2, "Cycle 2 Day 1"),
            visit("chest pain", date(2024, 3, 26), None),
            visit("early", date(2024, 3, 1), None),  # before any scheduled visit
        ],
        Counter(),
    )
    assert [(r["VISITNUM"], r["VISIT"], r["VISITDY"]) for r in rows] == [
        (0.000001, "early", None),
        (4.0, "Cycle 1 Day 1", 1),
        (4.000001, "UNS", None),
        (4.000002, "UNS", None),  # an import's second date of one label (UNS#2) keeps the label
        (4.001, "Cycle 2 Day 1", 22),
        (4.001001, "chest pain", None),
    ]


def test_two_visits_that_would_share_a_visit_number_are_an_error_naming_the_participant(protocol):
    many = [visit(f"U{i:03d}", date(2024, 3, 5), None) for i in range(1000)]  # 999 fit between two visits
    with pytest.raises(InvalidInput) as raised:
        domains.sv_rows(
            design(protocol), WHO, [visit("C1D1", DAY1, 4), visit("C2D1", date(2024, 4, 1), 4, 2), *many], Counter()
        )
    assert "participant UT-1-001" in str(raised.value) and "VISITNUM 4.001" in str(raised.value)


def test_tv_lists_arm_limited_visits_per_arm_planned_days_and_the_window_in_words(protocol):
    tv = domains.trial_visits(design(protocol), {"C{n}D1": 3})
    rows = [dict(zip(tv.names, row)) for row in tv.rows]
    assert [(r["VISITNUM"], r["VISIT"], r["VISITDY"], r["ARMCD"]) for r in rows] == [
        (1.0, "Screening", -7, None),
        (2.0, "Week 2", 15, None),
        (3.0, "Week 4", 29, None),  # through V2's planned day
        (4.0, "Cycle 1 Day 1", 1, None),
        (4.001, "Cycle 2 Day 1", 22, None),
        (4.002, "Cycle 3 Day 1", 43, None),  # open-ended: up to the highest occurrence done
        (20.0, "PK sampling", 11, "A"),  # only arm A has it: one row for A, none for P
        (90.0, "Early termination", None, None),  # from another event: no fixed day
    ]
    assert rows[2]["TVSTRL"] == "Target 14 days after visit V2 (actual date); window opens 3 days before the target"
    assert rows[2]["TVENRL"] == "window closes 3 days after the target"
    assert rows[6]["TVENRL"] == "no latest date" and rows[6]["ARM"] == "Active"
    assert "only when early_termination is recorded" in str(rows[7]["TVSTRL"])
    ta = domains.trial_arms(design(protocol))
    assert ta is not None and [row[2:6] + row[7:] for row in ta.rows] == [
        ("A", "Active", 1, "SCRN", "SCREENING"),
        ("A", "Active", 2, "A", "TREATMENT"),
        ("A", "Active", 3, "FU", "FOLLOW-UP"),
        ("P", "Placebo", 1, "SCRN", "SCREENING"),
        ("P", "Placebo", 2, "P", "TREATMENT"),
        ("P", "Placebo", 3, "FU", "FOLLOW-UP"),
    ]


def test_ds_has_a_consent_per_version_randomization_and_ending_events(protocol):
    consents = [ConsentSigned(date(2024, 2, 20), "1.0"), ConsentSigned(date(2024, 4, 1), "2.0")]
    events = [
        EventRecorded("consent", date(2024, 2, 20)),
        EventRecorded("randomization", DAY1),
        EventRecorded("first_dose", DAY1),
        EventRecorded("withdrawal", date(2024, 5, 1)),
    ]
    rows = domains.ds_rows(design(protocol), WHO, consents, events)
    assert [(r["DSSEQ"], r["DSDECOD"], r["DSCAT"], r["DSSCAT"], r["DSSTDY"]) for r in rows] == [
        (1, "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", "1.0", -13),
        (2, "RANDOMIZED", "PROTOCOL MILESTONE", None, 1),
        (3, "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", "2.0", 29),
        (4, "WITHDRAWAL BY SUBJECT", "DISPOSITION EVENT", "STUDY PARTICIPATION", 59),
    ]
    only_event = domains.ds_rows(design(protocol), WHO, [], [EventRecorded("consent", date(2024, 2, 20))])
    assert [(r["DSDECOD"], r["DSSCAT"]) for r in only_event] == [("INFORMED CONSENT OBTAINED", None)]
    ending = domains.ds_rows(design(protocol), WHO, [], [EventRecorded("early_termination", date(2024, 5, 1))])
    assert [(r["DSTERM"], r["DSDECOD"]) for r in ending] == [("EARLY TERMINATION", "OTHER")]
    treatment = domains.ds_rows(design(protocol), WHO, [], [EventRecorded("end_of_treatment", date(2024, 5, 1))])
    assert treatment[0]["DSSCAT"] == "STUDY TREATMENT"


def test_a_subjects_reference_dates_and_age_at_first_consent(protocol):
    who = domains.subject(
        design(protocol),
        "001",
        "101",
        "A",
        [EventRecorded("randomization", DAY1), EventRecorded("consent", date(2024, 2, 21))],
        [ConsentSigned(date(2024, 2, 20), "1.0")],
        born=date(1934, 2, 21),
    )
    assert (who.reference_start, who.first_consent, who.age, who.usubjid) == (DAY1, date(2024, 2, 20), 89, "UT-1-001")
    assert privacy.years_between(date(2000, 2, 29), date(2024, 2, 28)) == 23


def test_dv_carries_the_terms_and_suppdv_the_classification_state_closure_and_reason(protocol):
    withheld: Counter[str] = Counter()
    records = [deviation(2), deviation(1, state="resolved_by_data_correction"), deviation(5, visit=None, rule=None)]
    ((dv, supp), (dv2, _)) = domains.dv_rows(design(protocol), WHO, records, withheld)
    assert (dv["DVSEQ"], dv["DVREFID"], dv["DVTERM"], dv["DVDECOD"], dv["DVCAT"], dv["DVSCAT"]) == (
        1,
        "UT-1/101/001/deviation/2",
        "V2: visit after its window (2 days after the window)",
        "VISIT OUT OF WINDOW",
        "VISIT SCHEDULE",
        "VISIT LATE",
    )
    assert (dv["DVSTDTC"], dv["DVSTDY"], dv["EPOCH"]) == ("2024-03-24", 21, "TREATMENT")
    assert dv2["DVSEQ"] == 2 and dv2["DVSCAT"] is None
    assert {(r["QNAM"], r["QVAL"], r["IDVARVAL"]) for r in supp} == {
        ("DVCLASS", "IMPORTANT", "1"),
        ("DVSTATE", "CLOSED", "1"),
        ("DVCLSDTC", "2024-04-02", "1"),
        ("DVREAS", "Participant travelling", "1"),
    }
    assert all(len(str(r["QNAM"])) <= 8 and r["IDVAR"] == "DVSEQ" and r["RDOMAIN"] == "DV" for r in supp)
    assert withheld == {domains.NOT_STANDING: 1}
    assert domains.fingerprint(dv, supp) != domains.fingerprint(dv, supp[:-1])


def test_a_blinded_package_withholds_what_reveals_the_arm_and_dm_shows_no_arm(protocol):
    withheld: Counter[str] = Counter()
    blind = design(protocol, arms_shown=False)
    rows = domains.sv_rows(blind, WHO, [visit("V2", DAY1, 2), visit("PK", date(2024, 3, 14), 20)], withheld)
    assert [r["VISITNUM"] for r in rows] == [2.0]
    kept = domains.dv_rows(blind, WHO, [deviation(1, visit="PK"), deviation(2)], withheld)
    assert [dv["DVREFID"] for dv, _ in kept] == ["UT-1/101/001/deviation/2"]
    assert kept[0][0]["DVSEQ"] == 1
    assert withheld == {domains.WITHHELD_SV: 1, domains.WITHHELD_DV: 1}
    dm = domains.dm_row(blind, WHO)
    assert dm["ARMCD"] is None and dm["ARM"] is None
    shown = domains.dm_row(design(protocol), WHO)
    assert (shown["ARMCD"], shown["ARM"], shown["AGE"], shown["AGEU"]) == ("A", "Active", 93, "YEARS")
    assert "BRTHDTC" not in shown  # no birth date, name, contact or record number variable at all
    assert not {"BRTHDTC", "INVNAM"} & {v.name for v in domains.dm_variables(Privacy.CODED)}


def test_a_blinded_package_numbers_visits_without_the_withheld_ones_so_visitnum_does_not_reveal_the_arm(protocol):
    blind, withheld = design(protocol, arms_shown=False), Counter[str]()
    placebo = Subject("002", "UT-1-002", "101", "P", reference_start=DAY1)
    shared = [visit("V2", DAY1, 2), visit("UNS", date(2024, 3, 20), None)]
    active = domains.sv_rows(blind, WHO, [*shared, visit("PK", date(2024, 3, 14), 20)], withheld)
    assert [r["VISITNUM"] for r in active] == [r["VISITNUM"] for r in domains.sv_rows(blind, placebo, shared, withheld)]
    assert [r["VISITNUM"] for r in active] == [2.0, 2.000001] and withheld == {domains.WITHHELD_SV: 1}
    shown = domains.sv_rows(design(protocol), WHO, [*shared, visit("PK", date(2024, 3, 14), 20)], Counter())
    assert [r["VISITNUM"] for r in shown] == [2.0, 20.0, 20.000001]  # an open package numbers as before


def test_safe_harbor_keeps_years_groups_ages_and_replaces_free_text_with_coded_terms(protocol):
    harbor = design(protocol, Privacy.SAFE_HARBOR)
    ((dv, supp),) = domains.dv_rows(harbor, WHO, [deviation(1)], Counter())
    assert dv["DVTERM"] == "VISIT OUT OF WINDOW" and dv["DVSTDTC"] == "2024" and dv["DVSTDY"] == 21
    assert {r["QNAM"]: r["QVAL"] for r in supp} == {"DVCLASS": "IMPORTANT", "DVSTATE": "CLOSED", "DVCLSDTC": "2024"}
    ((manual, _),) = domains.dv_rows(harbor, WHO, [deviation(1, subcategory=None, category="other")], Counter())
    assert manual["DVTERM"] == "OTHER"
    sv = domains.sv_rows(harbor, WHO, [visit("chest pain", date(2024, 3, 26), None)], Counter())
    assert (sv[0]["VISIT"], sv[0]["SVSTDTC"], sv[0]["SVSTDY"]) == ("UNSCHEDULED", "2024", 23)
    dm = domains.dm_row(harbor, WHO)
    assert (dm["AGE"], dm["RFSTDTC"], dm["SITEID"]) == (90, "2024", "101")
    rules = {v.name: v.rule or "" for v in domains.dm_variables(Privacy.SAFE_HARBOR)}
    assert "90 or older" in rules["AGE"] and "year only" in rules["RFSTDTC"]
    dv_rules = {v.name: v.rule or "" for v in domains.dv_variables(Privacy.SAFE_HARBOR)}
    assert "Safe Harbor" in dv_rules["DVTERM"] and "intervals" in dv_rules["DVSTDY"]
    ds = domains.build("DV", "Protocol Deviations", domains.dv_variables(Privacy.SAFE_HARBOR), [dv])
    assert ds.rows[0][ds.names.index("DVSTDTC")] == "2024"


@pytest.mark.parametrize(
    ("description", "why"),
    [("Visite manquée à cause de la grève", "not ASCII"), ("x" * 201, "201 bytes; at most 200 fit")],
)
def test_a_value_that_does_not_fit_names_dataset_row_variable_participant_and_deviation(protocol, description, why):
    rows = domains.dv_rows(design(protocol), WHO, [deviation(1), deviation(7, description=description)], Counter())
    collector = domains.collectors(Privacy.CODED)["DV"]
    for dv, _ in rows:
        collector.add(dv)
    with pytest.raises(InvalidInput) as raised:
        collector.dataset()
    (problem,) = raised.value.problems
    assert "dataset DV, row 2, variable DVTERM" in problem.message and why in problem.message
    assert "participant UT-1-001" in problem.message and "deviation UT-1/101/001/deviation/7" in problem.message
    assert problem.message.endswith("or make the package in safe-harbor mode (free text becomes its code)")
    # Safe Harbor replaces the description with its coded term, so the same record fits.
    harbor = domains.dv_rows(
        design(protocol, Privacy.SAFE_HARBOR), WHO, [deviation(7, description=description)], Counter()
    )
    domains.build("DV", "Protocol Deviations", domains.dv_variables(Privacy.SAFE_HARBOR), [harbor[0][0]])


def test_a_deviations_review_values_on_an_earlier_day_undo_the_later_steps():
    current = {
        "state": "closed",
        "classification": "important",
        "category": "visit schedule",
        "subcategory": "VISIT OUT OF WINDOW",
        "site_reason": "Travelling",
        "closed_at": "2024-04-10T10:00:00Z",
    }
    steps = [
        (1, "respond", "detected", "site_response", "2024-03-25T09:00:00Z", '{"site_reason": "Travelling"}'),
        (1, "acknowledge", "site_response", "under_review", "2024-03-26T09:00:00Z", "{}"),
        (1, "classify", "under_review", "classified", "2024-04-01T09:00:00Z",
         '{"classification": "important", "category": "visit schedule", "subcategory": "VISIT OUT OF WINDOW"}'),
        (1, "close", "classified", "closed", "2024-04-10T10:00:00Z", '{"closed_at": "2024-04-10T10:00:00Z"}'),
    ]  # fmt: skip
    assert standing_on(current, steps, date(2024, 4, 10)) == current
    earlier = standing_on(current, steps, date(2024, 3, 25))
    assert (earlier["state"], earlier["site_reason"], earlier["closed_at"]) == ("site_response", "Travelling", None)
    before = standing_on(current, steps, date(2024, 3, 24))
    assert (before["state"], before["site_reason"]) == ("detected", None)


def test_sv_records_are_the_sv_rows_as_tuples_in_the_variables_order(protocol):
    visits = [visit("V2", DAY1, 2), visit("SCR", date(2024, 3, 3), 1), visit("chest pain", date(2024, 3, 26), None)]
    harbor = design(protocol, Privacy.SAFE_HARBOR)
    records = domains.sv_records(harbor, WHO, visits, Counter())
    assert domains.SV_NAMES == tuple(v.name for v in domains.sv_variables(Privacy.SAFE_HARBOR))
    assert [dict(zip(domains.SV_NAMES, r)) for r in records] == domains.sv_rows(harbor, WHO, visits, Counter())
    assert records[0] == ("UT-1", "SV", "UT-1-001", 1.0, "SCR", -7, "SCREENING", "2024", "2024", -1)
    assert records[2][4] == "UNSCHEDULED"


def test_a_collector_takes_rows_by_name_a_missing_name_null_and_tuples_as_they_are():
    collector = domains.collectors(Privacy.CODED)["DM"]
    full = dict.fromkeys(collector.names, None) | {"STUDYID": "UT-1", "DOMAIN": "DM", "USUBJID": "UT-1-001"}
    collector.add(full)
    collector.add({"STUDYID": "UT-1", "DOMAIN": "DM", "USUBJID": "UT-1-002", "SUBJID": "002", "SITEID": "101"})
    collector.extend([("UT-1", "DM", "UT-1-003", "003", None, None, "101", 40, "YEARS", None, None)])
    dm = collector.dataset()
    assert [row[2] for row in dm.rows] == ["UT-1-001", "UT-1-002", "UT-1-003"]
    assert dm.rows[1] == ("UT-1", "DM", "UT-1-002", "002", None, None, "101", None, None, None, None)
    assert dm.profile().values["AGE"] == {None, 40}


def test_text_drops_its_trailing_blanks_as_sas_transport_does_so_xpt_csv_and_define_agree():
    variables = [domains.Variable("STUDYID", "Study Identifier"), domains.Variable("DVTERM", "Protocol Deviation Term")]
    collector = domains.Collector("DV", "Protocol Deviations", variables)
    for term in ("Visit missed  ", "Visit missed", "   ", "Late"):
        collector.add({"STUDYID": "UT-1", "DVTERM": term})
    built = collector.dataset()
    assert [row[1] for row in built.rows] == ["Visit missed", "Visit missed", None, "Late"]
    assert built.lengths()["DVTERM"] == len("Visit missed")
