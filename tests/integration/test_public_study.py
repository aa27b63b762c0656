"""Done-when of issue 12: a public multi-site study goes in with its own files and two commands, and what is
stored equals `trialcoord check` of the same data.

The protocol is CDISC's public USDM v4 example of the CDISC pilot study (LZZT, `tests/data/usdm/devices.json`),
imported with `protocol import-usdm`. The visit data are SDTM SV, DS and DM as SAS transport v5 files shaped like
the pilot's published SDTM (CDISCPILOT01: sites 701-718, ARMCD ZAN_LOW / ZAN_HIGH / PLACEBO, "WEEK 4:
UNSCHEDULED 01" visits, early discontinuations with a treatment and a participation disposition on different
days, a screen failure without RFSTDTC). They are generated here rather than copied, because the pilot data's terms
of use forbid altering them and the product must not carry demographics; the shape is the published one.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from tests.integration.test_cli import run

pytestmark = [pytest.mark.db]
USDM = Path(__file__).resolve().parents[1] / "data" / "usdm" / "devices.json"
STUDY, AS_OF = "CDISCPILOT01", "2015-06-30"
SITES = ("701", "704", "708", "710", "711", "718")
ARMS = {"PLACEBO": "PLACEBO", "ZAN_LOW": "XANOMELINE_LOW_DOSE", "ZAN_HIGH": "XANOMELINE_HIGH_DOSE"}
WEEKS = (2, 4, 6, 8, 12, 16, 20, 24, 26)
CODES = {
    "SCREENING 1": "SCREEN1",
    "SCREENING 2": "SCREEN2",
    "BASELINE": "DOSE",
    "EARLY DISCONTINUATION": "ET",
    **{f"WEEK {w}": f"WK{w}" for w in WEEKS},
}


def pilot_shaped(participants: int = 40, seed: int = 2013):
    """SV, DS and DM rows, and the same facts as an event file for `check` (participant,event,date,arm)."""
    rng = random.Random(seed)
    sv, ds, dm, facts = [], [], [], []
    for n in range(1, participants + 1):
        subject, site = f"01-{SITES[n % len(SITES)]}-{n:04d}", SITES[n % len(SITES)]
        consent = date(2012, 8, 1) + timedelta(days=rng.randrange(500))
        armcd = rng.choice(sorted(ARMS))
        visits = [("SCREENING 1", 1.0, consent)]
        ds.append((subject, "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", "", consent))
        if n % 13 == 0:  # a screen failure: no Day 1, no arm
            ds.append((subject, "SCREEN FAILURE", "DISPOSITION EVENT", "STUDY PARTICIPATION", consent))
            dm.append((subject, site, "SCRNFAIL", "", consent))
            facts += [(subject, "consent", consent, ""), (subject, "SCREEN1", consent, "")]
            sv += [(subject, num, label, day) for label, num, day in visits]
            continue
        day_one = consent + timedelta(days=rng.randint(8, 20))
        visits += [("SCREENING 2", 2.0, day_one - timedelta(days=2)), ("BASELINE", 3.0, day_one)]
        stops = rng.choice(WEEKS[2:]) if n % 4 == 0 else None
        for number, week in enumerate(WEEKS, 4):
            if stops and week >= stops:
                break
            done = day_one + timedelta(weeks=week, days=rng.randint(-4, 4))
            visits.append((f"WEEK {week}", float(number), done))
            if week == 4 and n % 3 == 0:
                visits.append(("WEEK 4: UNSCHEDULED 01", 5.01, done + timedelta(days=2)))
        if stops:
            left = day_one + timedelta(weeks=stops, days=-3)
            ds += [
                (subject, "ADVERSE EVENT", "DISPOSITION EVENT", "STUDY TREATMENT", left - timedelta(days=1)),
                (subject, "ADVERSE EVENT", "DISPOSITION EVENT", "STUDY PARTICIPATION", left),
            ]
            visits.append(("EARLY DISCONTINUATION", 101.0, left + timedelta(days=rng.randint(0, 9))))
            facts.append((subject, "early_termination", left, ARMS[armcd]))
        else:
            ds.append((subject, "COMPLETED", "DISPOSITION EVENT", "STUDY PARTICIPATION", visits[-1][2]))
        dm.append((subject, site, armcd, day_one, consent))
        sv += [(subject, num, label, day) for label, num, day in visits]
        facts += [(subject, "dose", day_one, ARMS[armcd]), (subject, "consent", consent, ARMS[armcd])]
        facts += [(subject, CODES.get(label, label), day, ARMS[armcd]) for label, _, day in visits]
    return sv, ds, dm, facts


def write_xpt(path: Path, name: str, columns: list[str], rows: list[tuple]) -> Path:
    frame = pd.DataFrame([[v.isoformat() if isinstance(v, date) else v for v in row] for row in rows], columns=columns)
    frame.insert(0, "STUDYID", STUDY)
    frame.insert(1, "DOMAIN", name)
    pyreadstat.write_xport(frame, str(path), file_format_version=5, table_name=name)
    return path


def test_the_cdisc_pilot_goes_in_with_two_commands_and_equals_check(db, tmp_path):
    env = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}
    protocol = tmp_path / "protocols" / STUDY / "1.0.yaml"
    done = run("protocol", "import-usdm", str(USDM), "--out", str(protocol), env=env)
    assert done.returncode == 0, done.stderr
    assert run("protocol", "load", str(protocol), env=env).returncode == 0
    sv, ds, dm, facts = pilot_shaped()
    files = [
        write_xpt(tmp_path / "sv.xpt", "SV", ["USUBJID", "VISITNUM", "VISIT", "SVSTDTC"], sv),
        write_xpt(tmp_path / "ds.xpt", "DS", ["USUBJID", "DSDECOD", "DSCAT", "DSSCAT", "DSSTDTC"], ds),
        write_xpt(tmp_path / "dm.xpt", "DM", ["USUBJID", "SITEID", "ARMCD", "RFSTDTC", "RFICDTC"], dm),
    ]
    mapping = tmp_path / "map.yaml"
    mapping.write_text("arms: {ZAN_LOW: XANOMELINE_LOW_DOSE, ZAN_HIGH: XANOMELINE_HIGH_DOSE}\n", encoding="utf-8")
    command = [
        "import",
        "sdtm",
        STUDY,
        "--sv",
        str(files[0]),
        "--ds",
        str(files[1]),
        "--dm",
        str(files[2]),
        "--map",
        str(mapping),
    ]
    refused = run(*command, env=env)  # the sites are not there yet: nothing stored, each named where DM gives it
    assert refused.returncode == 2 and "dm.xpt:1: SITEID: study CDISCPILOT01 has no site 704" in refused.stderr
    imported = run(*command, "--create-sites", "--format", "json", env=env)
    assert imported.returncode == 0, imported.stderr
    body = json.loads(imported.stdout)
    assert sorted(body["result"]["created_sites"]) == sorted(SITES)
    becomes = {(m["dataset"], m["label"]): m["becomes"] for m in body["mapping"]}
    assert becomes[("SV", "EARLY DISCONTINUATION")] == "ET"
    assert becomes[("SV", "WEEK 4: UNSCHEDULED 01")] == "unscheduled visit"
    assert becomes[("DS", "ADVERSE EVENT")] == "early_termination"
    assert becomes[("DS", "ADVERSE EVENT (STUDY TREATMENT)")] == "not imported (no event)"
    assert becomes[("DM", "RFSTDTC")] == "dose" and becomes[("DM", "ARMCD ZAN_LOW")] == "arm XANOMELINE_LOW_DOSE"

    stored = run("visits", STUDY, "--as-of", AS_OF, "--format", "json", env=env)
    assert stored.returncode == 0, stored.stderr
    events = tmp_path / "same-data.csv"
    with events.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["participant", "event", "date", "arm"])
        writer.writerows((s, e, d.isoformat(), a) for s, e, d, a in facts)
    checked = run("check", str(protocol), "--events", str(events), "--as-of", AS_OF, "--format", "json", env=env)
    assert checked.returncode == 0, checked.stderr

    def statuses(text: str) -> set[tuple]:
        return {(r["participant"], r["visit"], r["status"], r["actual"]) for r in json.loads(text)}

    assert statuses(stored.stdout) == statuses(checked.stdout)
    by_status = {row[2] for row in statuses(stored.stdout)}
    assert {"on_time", "not_applicable", "unscheduled"} <= by_status  # early terminations end schedules
    again = run(*command, "--create-sites", env=env)  # a second import of the same files changes nothing
    assert again.returncode == 0 and " 0 events and 0 visits recorded" in again.stdout
