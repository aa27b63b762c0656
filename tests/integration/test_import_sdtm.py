"""SDTM in (issue 12): SV visits, DS milestones and DM sites and arms, as SAS transport v5 files written by
pyreadstat (as an EDC or a CRO would send them) or CSV; default mapping, a --map, a dry run, and every problem
naming the dataset, row and variable, nothing stored after one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, sites, worklists
from trialcoord.scheduling.importing import import_sdtm
from trialcoord.scheduling.sdtm.datasets import read_dataset
from trialcoord.scheduling.sdtm.map_file import read_map

pytestmark = [pytest.mark.anyio, pytest.mark.db]
TODAY = date(2024, 6, 1)
A, B = "TST1-101-001", "TST1-205-001"
SV = [  # USUBJID, VISITNUM, VISIT, SVSTDTC
    (A, 1.0, "SCREENING", "2024-02-26"),
    (A, 1.5, "BASELINE", "2024-03-04"),
    (A, 3.0, "WEEK 2", "2024-03-18T10:30"),
    (A, 9.2, "UNSCHEDULED 9.2", "2024-03-20"),
    (A, 9.2, "UNSCHEDULED 9.2", "2024-03-25"),
    (B, 1.0, "Screening", "2024-03-01"),
    (B, 4.0, "week  4", "2024-04-12"),
]
DS = [
    (A, "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", "2024-02-20"),
    (A, "RANDOMIZED", "PROTOCOL MILESTONE", "2024-03-04"),
    (A, "COMPLETED", "DISPOSITION EVENT", "2024-05-20"),
    (B, "RANDOMIZED", "PROTOCOL MILESTONE", "2024-03-08"),
]
DM = [(A, "101", "Pbo"), (B, "205", "SCRNFAIL")]
MAP = "arms: {Pbo: P}\nevents: {first_dose: {sv: BASELINE}}\n"


def xpt(path: Path, name: str, columns: list[str], rows: list[tuple]) -> Path:
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(0, "STUDYID", "TST-1")
    frame.insert(1, "DOMAIN", name)
    pyreadstat.write_xport(frame, str(path), file_format_version=5, table_name=name)
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    (tmp_path / "map.yaml").write_text(MAP, encoding="utf-8")
    return {
        "sv": xpt(tmp_path / "sv.xpt", "SV", ["USUBJID", "VISITNUM", "VISIT", "SVSTDTC"], SV),
        "ds": xpt(tmp_path / "ds.xpt", "DS", ["USUBJID", "DSDECOD", "DSCAT", "DSSTDTC"], DS),
        "dm": xpt(tmp_path / "dm.xpt", "DM", ["USUBJID", "SITEID", "ARMCD"], DM),
        "map": tmp_path / "map.yaml",
    }


def datasets(files):
    return (
        read_dataset(files["sv"], "SV"),
        read_dataset(files["ds"], "DS"),
        read_dataset(files["dm"], "DM"),
        read_map(files["map"]),
    )


async def test_sdtm_datasets_go_in_with_the_default_mapping_and_a_map(study, files):
    sv, ds, dm, mapping = datasets(files)
    dry, used = await import_sdtm(study, sv, ds, dm, mapping, today=TODAY, dry_run=True, create_sites=True)
    assert (dry.created_sites, dry.created_participants) == (("205",), 2)  # what it would do, all checks run
    # names matched ignoring case and spacing ("week  4" is Week 4, V3); BASELINE (VISITNUM 1.5) is no visit
    assert used.visits == {"SCREENING": ("SCR", 1), "Screening": ("SCR", 1), "WEEK 2": ("V2", 1), "week  4": ("V3", 1)}
    assert used.unscheduled == {"BASELINE": 1, "UNSCHEDULED 9.2": 2}
    assert used.ds == {
        "INFORMED CONSENT OBTAINED": ("consent", 1),
        "RANDOMIZED": ("randomization", 2),
        "COMPLETED": (None, 1),
    }  # no event for it: listed, not imported
    assert await participants.list_participants(study) == []  # a dry run stores nothing
    assert [s.code for s in await sites.list_sites(study)] == ["101"]
    with pytest.raises(InvalidInput) as dry_no_site:  # a dry run reports what the import would refuse
        await import_sdtm(study, sv, ds, dm, mapping, today=TODAY, dry_run=True)
    assert [(p.file, p.line, p.field) for p in dry_no_site.value.problems] == [("dm.xpt", 2, "SITEID")]
    with pytest.raises(InvalidInput) as no_site:
        await import_sdtm(study, sv, ds, dm, mapping, today=TODAY)
    assert [(p.file, p.line, p.field) for p in no_site.value.problems] == [("dm.xpt", 2, "SITEID")]
    assert await participants.list_participants(study) == []
    result, _ = await import_sdtm(study, sv, ds, dm, mapping, today=TODAY, create_sites=True)
    assert result.created_sites == ("205",) and result.created_participants == 2
    people = {p.subject_id: (p.site, p.arm) for p in await participants.list_participants(study)}
    assert people == {A: ("101", "P"), B: ("205", None)}
    schedule = {r.visit.visit: r for r in await worklists.participant_schedule(study, A, TODAY)}
    assert schedule["V2"].visit.actual == date(2024, 3, 18) and schedule["SCR"].visit.actual == date(2024, 2, 26)
    assert schedule["UNSCHEDULED 9.2#2"].visit.actual == date(2024, 3, 25)
    participant = await participants.get_participant(study, A)
    assert participant.events == {
        "consent": date(2024, 2, 20),
        "randomization": date(2024, 3, 4),
        "first_dose": date(2024, 3, 4),
    }
    again, _ = await import_sdtm(study, sv, ds, dm, mapping, today=TODAY)
    assert (again.created_participants, again.events_recorded, again.visits_recorded) == (0, 0, 0)


async def test_every_sdtm_problem_names_dataset_row_and_variable(study, files, tmp_path):
    bad_sv = xpt(
        tmp_path / "bad_sv.xpt",
        "SV",
        ["USUBJID", "VISITNUM", "VISIT", "SVSTDTC"],
        [*SV, (A, 3.0, "WEEK 2", "2024-03-19"), (A, 5.0, "WEEK 8", "2024-05")],
    )
    bad_dm = xpt(tmp_path / "bad_dm.xpt", "DM", ["USUBJID", "SITEID", "ARMCD"], DM)
    with pytest.raises(InvalidInput) as error:
        await import_sdtm(
            study, read_dataset(bad_sv, "SV"), None, read_dataset(bad_dm, "DM"), {}, today=TODAY, create_sites=True
        )
    found = [(p.file, p.line, p.field) for p in error.value.problems]
    assert found == [("bad_dm.xpt", 1, "ARMCD"), ("bad_sv.xpt", 8, "SVSTDTC"), ("bad_sv.xpt", 9, "SVSTDTC")]
    messages = [p.message for p in error.value.problems]
    assert "ARMCD 'Pbo' is not an arm of protocol version" in messages[0] and "map it with arms:" in messages[0]
    assert "V2 is also given as 2024-03-18 in bad_sv.xpt row 3" in messages[1]
    assert "SVSTDTC '2024-05' is not a full date" in messages[2]
    assert await participants.list_participants(study) == [] and len(await sites.list_sites(study)) == 1
    with pytest.raises(InvalidInput, match="lacks the variable SVSTDTC"):
        read_dataset(xpt(tmp_path / "no_date.xpt", "SV", ["USUBJID", "VISIT"], [(A, "WEEK 2")]), "SV")
    not_xpt = tmp_path / "sv2.xpt"
    not_xpt.write_bytes(b"this is no transport file")
    with pytest.raises(InvalidInput, match="sv2.xpt: is not a SAS transport"):
        read_dataset(not_xpt, "SV")


async def test_csv_with_the_same_variables_and_the_command_line(study, db, files, tmp_path):
    csv_sv = tmp_path / "sv.csv"
    csv_sv.write_text(
        "USUBJID,VISITNUM,VISIT,SVSTDTC\n" + "".join(f"{u},{n},{v},{d}\n" for u, n, v, d in SV), encoding="utf-8"
    )
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    command = [
        sys.executable,
        "-m",
        "trialcoord.cli.main",
        "import",
        "sdtm",
        study,
        "--sv",
        str(csv_sv),
        "--dm",
        str(files["dm"]),
        "--ds",
        str(files["ds"]),
        "--map",
        str(files["map"]),
    ]
    dry = subprocess.run(
        [*command, "--dry-run", "--format", "json", "--create-sites"], env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    body = json.loads(dry.stdout)
    mapping = {(m["dataset"], m["label"]): (m["becomes"], m["rows"]) for m in body["mapping"]}
    assert mapping[("SV", "UNSCHEDULED 9.2")] == ("unscheduled visit", 2)
    assert mapping[("DS", "COMPLETED")] == ("not imported (no event)", 1)
    assert body["result"]["created_sites"] == ["205"] and body["result"]["created_participants"] == 2
    dry_refused = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True)
    assert dry_refused.returncode == 2 and "UNSCHEDULED 9.2" in dry_refused.stdout  # the mapping, then the problem
    assert "dm.xpt:2: SITEID: study TST-1 has no site 205" in dry_refused.stderr
    assert await participants.list_participants(study) == []
    refused = subprocess.run(command, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "dm.xpt:2: SITEID: study TST-1 has no site 205" in refused.stderr
    done = subprocess.run([*command, "--create-sites"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sites 205 created, 2 participants created" in done.stdout


async def test_csv_visitnum_numeric_subjects_and_map_shapes(study, tmp_path):
    from trialcoord.scheduling.sdtm.datasets import Dataset

    sv = Dataset(
        "sv.csv",
        "SV",
        [
            {"USUBJID": "S-1", "VISITNUM": "3", "VISIT": "", "SVSTDTC": "2024-03-18"},
            {"USUBJID": 1001.0, "VISITNUM": float("nan"), "VISIT": "EXTRA", "SVSTDTC": "2024-03-20"},
            {"USUBJID": "S-1", "VISITNUM": "", "VISIT": "", "SVSTDTC": "2024-03-21"},
        ],
    )
    with pytest.raises(InvalidInput) as error:
        await import_sdtm(study, sv, site="101", today=TODAY)
    assert [(p.line, p.field) for p in error.value.problems] == [(3, "VISIT")]  # neither VISIT nor VISITNUM
    sv = Dataset("sv.csv", "SV", sv.rows[:2])
    await import_sdtm(study, sv, site="101", today=TODAY)
    by_subject = {p.subject_id for p in await participants.list_participants(study)}
    assert by_subject == {"S-1", "1001"}  # a whole-number float read from XPT is written as an integer
    first = {r.visit.visit: r.visit.actual for r in await worklists.participant_schedule(study, "S-1", TODAY)}
    assert first["V3"] == date(2024, 3, 18)  # VISITNUM "3" from CSV is visit number 3 (Week 4)
    bad_map = tmp_path / "map.yaml"
    for text, field in (
        ("arms: {X: [1]}\n", "arms.X"),
        ("events: {x: 3}\n", "events.x"),
        ("visits: {Q: null}\n", "visits.Q"),
    ):
        bad_map.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInput) as shape:
            read_map(bad_map)
        assert [p.field for p in shape.value.problems] == [field]
    with pytest.raises(
        InvalidInput,
        match=r"visits.L: 'L' maps to V99, which is no visit of protocol version 2.0"
        r" \(visits: SCR, V2",
    ):
        await import_sdtm(study, sv, mapping={"visits": {"L": "V99"}}, site="101", today=TODAY)


async def test_dm_reference_dates_date_day_one_and_consent(study, tmp_path):
    """DM RFSTDTC is Study Day 1 (the protocol's day_one event), RFICDTC the consent; a date that contradicts
    DS names both rows; `dm:` in the map drops or redirects either."""
    from trialcoord.scheduling.sdtm.datasets import Dataset

    sv = Dataset(
        "sv.xpt",
        "SV",
        [
            {"USUBJID": "P-1", "VISIT": "WEEK 2", "SVSTDTC": "2024-03-18"},
            {"USUBJID": "P-2", "VISIT": "SCREENING", "SVSTDTC": "2024-02-27"},
        ],
    )
    dm = Dataset(
        "dm.xpt",
        "DM",
        [
            {"USUBJID": "P-1", "SITEID": "101", "ARMCD": "A", "RFSTDTC": "2024-03-04", "RFICDTC": "2024-02-20T09:00"},
            {"USUBJID": "P-2", "SITEID": "101", "ARMCD": "", "RFSTDTC": "", "RFICDTC": "2024-02-26"},
        ],
    )  # a screen failure: no reference start
    ds = Dataset("ds.xpt", "DS", [{"USUBJID": "P-1", "DSDECOD": "RANDOMIZED", "DSSTDTC": "2024-03-05"}])
    with pytest.raises(InvalidInput) as error:
        await import_sdtm(study, sv, ds, dm, today=TODAY)
    assert [(p.file, p.line, p.field) for p in error.value.problems] == [("dm.xpt", 1, "RFSTDTC")]
    assert "also given as 2024-03-05 in ds.xpt row 1" in str(error.value)
    result, used = await import_sdtm(study, sv, None, dm, today=TODAY)
    assert used.dm == {"RFSTDTC": ("randomization", 1), "RFICDTC": ("consent", 2)}
    assert result.created_participants == 2
    rows = {r.visit.visit: r.visit for r in await worklists.participant_schedule(study, "P-1", TODAY)}
    assert rows["V2"].target == date(2024, 3, 18) and rows["V2"].status == "on_time"  # counted from RFSTDTC
    partial = Dataset("dm.csv", "DM", [{"USUBJID": "P-3", "SITEID": "101", "RFSTDTC": "2024-03"}])
    with pytest.raises(InvalidInput) as error:
        await import_sdtm(
            study,
            Dataset("sv.csv", "SV", [{"USUBJID": "P-3", "VISIT": "X", "SVSTDTC": "2024-03-09"}]),
            None,
            partial,
            today=TODAY,
        )
    assert [(p.line, p.field) for p in error.value.problems] == [(1, "RFSTDTC")]
    _, dropped = await import_sdtm(
        study,
        Dataset("sv.csv", "SV", [{"USUBJID": "P-3", "VISIT": "X", "SVSTDTC": "2024-03-09"}]),
        None,
        partial,
        {"dm": {"RFSTDTC": None}},
        today=TODAY,
    )
    assert dropped.dm == {}
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("dm: {BRTHDTC: consent}\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as shape:
        read_map(bad_map)
    assert [p.field for p in shape.value.problems] == ["dm.BRTHDTC"]


async def test_disposition_events_of_participation_and_treatment(study):
    """Real DS holds two disposition rows per participant, one for STUDY TREATMENT and one for STUDY
    PARTICIPATION, often on different days: only participation ends the schedule (as the protocol's early
    termination, or the term's own event); a treatment disposition needs an end_of_treatment event."""
    from trialcoord.scheduling.sdtm.datasets import Dataset

    sv = Dataset(
        "sv.xpt",
        "SV",
        [
            {"USUBJID": s, "VISIT": v, "SVSTDTC": d}
            for s, v, d in (
                ("D-1", "WEEK 2", "2024-03-18"),
                ("D-1", "EARLY DISCONTINUATION", "2024-03-22"),
                ("D-2", "WEEK 2", "2024-03-18"),
                ("D-3", "SCREENING", "2024-02-27"),
            )
        ],
    )
    dm = Dataset(
        "dm.xpt",
        "DM",
        [{"USUBJID": s, "SITEID": "101", "RFSTDTC": "2024-03-04"} for s in ("D-1", "D-2")]
        + [{"USUBJID": "D-3", "SITEID": "101", "RFSTDTC": ""}],
    )
    ds = Dataset(
        "ds.xpt",
        "DS",
        [
            {"USUBJID": s, "DSDECOD": t, "DSCAT": "DISPOSITION EVENT", "DSSCAT": c, "DSSTDTC": d}
            for s, t, c, d in (
                ("D-1", "ADVERSE EVENT", "STUDY TREATMENT", "2024-03-19"),
                ("D-1", "ADVERSE EVENT", "STUDY PARTICIPATION", "2024-03-20"),
                ("D-2", "WITHDRAWAL BY SUBJECT", "STUDY PARTICIPATION", "2024-03-21"),
                ("D-3", "SCREEN FAILURE", "STUDY PARTICIPATION", "2024-02-28"),
            )
        ],
    )
    result, used = await import_sdtm(
        study, sv, ds, dm, {"arms": {"ZZZ": "A"}, "ds": {"TYPO": "withdrawal"}}, today=TODAY
    )
    assert used.ds == {
        "ADVERSE EVENT (STUDY TREATMENT)": (None, 1),  # the test protocol has no end_of_treatment
        "ADVERSE EVENT": ("early_termination", 1),
        "WITHDRAWAL BY SUBJECT": ("withdrawal", 1),
        "SCREEN FAILURE": (None, 1),
    }
    assert used.arms == {"": (None, 3)}
    assert used.unused == ["ds.TYPO", "arms.ZZZ"]  # a typo in a map is said, not silently ignored
    people = {p.subject_id: p for p in await participants.list_participants(study)}
    assert people["D-1"].status == people["D-2"].status == "ended"
    assert people["D-3"].status == "active"
    later = {r.visit.visit: r.visit.status for r in await worklists.participant_schedule(study, "D-1", TODAY)}
    assert later["V3"] == "not_applicable"  # after the early termination on 2024-03-20


def test_an_early_discontinuation_visit_is_the_early_termination_visit():
    from trialcoord.scheduling.protocol_files import parse_protocol
    from trialcoord.scheduling.sdtm import to_rows
    from trialcoord.scheduling.sdtm.datasets import Dataset

    protocol = parse_protocol("""study: T\ntitle: T\nversion: "1"\neffective: 2024-01-01\nday_one: dose
events: {dose: {}, early_termination: {ends_schedule: true}}
visits:
  - {code: W2, name: Week 2, from: dose, offset: 2w}
  - {code: ET, name: Early Termination, from: early_termination, when: early_termination, offset: 0d}
""")
    sv = Dataset(
        "sv.csv",
        "SV",
        [
            {"USUBJID": "X", "VISIT": "EARLY DISCONTINUATION", "SVSTDTC": "2024-03-22"},
            {"USUBJID": "X", "VISIT": "EARLY DISCONTINUATION RETRIEVAL", "SVSTDTC": "2024-05-22"},
        ],
    )
    rows, problems, used = to_rows(protocol, sv, None, None, {})
    assert problems == [] and used.visits == {"EARLY DISCONTINUATION": ("ET", 1)}
    assert used.unscheduled == {"EARLY DISCONTINUATION RETRIEVAL": 1}


async def test_checks_against_the_database_name_the_sdtm_variable(study):
    """A date after today names its --DTC variable; a site or arm that contradicts the stored participant names
    DM's row and SITEID / ARMCD (not the SV row and the event file's column names)."""
    from trialcoord.scheduling.sdtm.datasets import Dataset

    sv = Dataset("sv.xpt", "SV", [{"USUBJID": "Q-1", "VISIT": "WEEK 2", "SVSTDTC": "2024-03-18"}])
    await import_sdtm(
        study, sv, None, Dataset("dm.xpt", "DM", [{"USUBJID": "Q-1", "SITEID": "101", "ARMCD": "A"}]), today=TODAY
    )
    moved = Dataset(
        "dm2.xpt", "DM", [{"USUBJID": "X", "SITEID": "101"}, {"USUBJID": "Q-1", "SITEID": "205", "ARMCD": "P"}]
    )
    future = Dataset("sv2.xpt", "SV", [{"USUBJID": "Q-1", "VISIT": "WEEK 4", "SVSTDTC": "2099-01-01"}])
    with pytest.raises(InvalidInput) as error:
        await import_sdtm(study, future, None, moved, today=TODAY, create_sites=True)
    assert sorted((p.file, p.line, p.field) for p in error.value.problems) == [
        ("dm2.xpt", 2, "ARMCD"),
        ("dm2.xpt", 2, "SITEID"),
        ("sv2.xpt", 1, "SVSTDTC"),
    ]


def test_a_csv_line_of_empty_values_is_a_row_with_its_problem(tmp_path):
    """Only an empty line is skipped (as csv.DictReader skips it); a line of commas is a row, and reported."""
    from tests.conftest import PROTOCOL_V1
    from trialcoord.scheduling.protocol_files import parse_protocol
    from trialcoord.scheduling.sdtm import to_rows

    path = tmp_path / "sv.csv"
    path.write_text("USUBJID,VISIT,SVSTDTC\nS-1,WEEK 2,2024-03-18\n\n,,\nS-1,WEEK 4,2024-04-01\n", encoding="utf-8")
    sv = read_dataset(path, "SV")
    assert len(sv.rows) == 3
    _, problems, _ = to_rows(parse_protocol(PROTOCOL_V1), sv, None, None, {})
    assert [(p.line, p.field, p.message) for p in problems] == [(2, "USUBJID", "USUBJID is missing")]
