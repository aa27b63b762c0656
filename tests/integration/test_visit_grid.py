"""The participant x visit grid: a keyset page of participants, one column per visit definition of every version
(a repeat's occurrences in one cell), each cell a status badge linking to the participant; the viewer's sites
only; visits only some arms have hidden from who may not know the arm; CSV and XLSX through the exporter,
audited."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import openpyxl
import pytest

from tests.conftest import RANDOMIZED, add_user, signed_in
from tests.integration.test_study_lists import next_link
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import AuditFilter
from trialcoord.scheduling import importing, sites
from trialcoord.scheduling.visits import record_visit

pytestmark = [pytest.mark.anyio, pytest.mark.db]

GRID = "/studies/TST-1/grid"
AS_OF = "2024-04-30"
TODAY = date(2024, 4, 30)
PEOPLE = [f"{site}-{n:03d}" for site in ("101", "102") for n in range(1, 31)]
COLUMNS = ["SCR", "V2", "V3", "C{n}D1", "PK", "V4", "unscheduled"]  # by visit number; V4 from version 2.0


@pytest.fixture
async def gridded(study):
    await sites.create_site(study, "102", "Lakeside", "America/Chicago")
    lines = [f"{subject},randomization,{RANDOMIZED},{subject[:3]},A" for subject in PEOPLE]
    lines += ["101-001,first_dose,2024-03-04,101,A", "101-001,AE-FOLLOW-UP,2024-03-20,101,A"]
    text = "participant,event,date,site,arm\n" + "\n".join(lines) + "\n"
    await importing.import_events(study, text, today=TODAY)
    await record_visit(study, "101-001", "V2", date(2024, 3, 23), reason="travelling", today=TODAY)  # late
    await record_visit(study, "101-001", "C1D1", date(2024, 3, 4), today=TODAY)  # on time
    return study


def headers(text: str) -> list[str]:
    head = re.search(r'<table id="visit-grid">.*?<thead>(.*?)</thead>', text, re.S)
    assert head, "no grid on the page"
    cells = re.findall(r"<th[^>]*>(.*?)</th>", head.group(1), re.S)
    return [re.sub(r"<[^>]+>|[▲▼]", "", cell).strip() for cell in cells]  # without the sort's arrow


def row_of(text: str, subject: str) -> str:
    found = re.search(rf'<tr>\s*<th scope="row"><a href="[^"]*">{subject}</a></th>(.*?)</tr>', text, re.S)
    assert found, f"no row for {subject}"
    return found.group(1)


async def test_a_page_of_participants_with_a_column_per_visit_definition(client, gridded):
    first = await client.get(GRID, params={"as_of": AS_OF})
    assert first.status_code == 200
    assert headers(first.text) == ["Participant", "Site", *COLUMNS]
    assert 'title="Cycle {n} Day 1"' in first.text  # the visit's name on its code
    cells = row_of(first.text, "101-001")
    person = "/studies/TST-1/participants/101-001?as_of=2024-04-30"
    assert f'<a href="{person}#visit-V2"><span class="badge late">Late</span></a>' in cells
    # C1D1 done on time, C2D1 and C3D1 missed (day 21 and 42, windows closed): one cell, the most pressing first.
    assert (
        f'<a href="{person}"><span class="badge missed">Missed</span><span class="hint"> ×2</span></a>'
        f' <a href="{person}"><span class="badge on_time">On time</span></a>'
    ) in cells
    assert f'<a href="{person}"><span class="badge unscheduled">Unscheduled</span></a>' in cells
    rows = [cells[0] for cells in _rows(first.text)]
    assert rows == sorted(PEOPLE)[:50]
    rest = await client.get(next_link(first.text) or "")
    assert [cells[0] for cells in _rows(rest.text)] == sorted(PEOPLE)[50:]
    assert next_link(rest.text) is None


def _rows(text: str) -> list[list[str]]:
    """Each row's participant and site (the row's header cell and first cell)."""
    return [
        [subject, site]
        for subject, site in re.findall(r'<th scope="row"><a href="[^"]*">([^<]+)</a></th>\s*<td>([^<]*)</td>', text)
    ]


async def test_sorted_by_site_either_way_and_filtered(client, gridded):
    descending = await client.get(GRID, params={"as_of": AS_OF, "sort": "site", "order": "desc"})
    assert [site for _, site in _rows(descending.text)][:30] == ["102"] * 30
    narrowed = await client.get(GRID, params={"as_of": AS_OF, "site": "101", "q": "-01"})
    assert [subject for subject, _ in _rows(narrowed.text)] == [f"101-01{n}" for n in range(10)]
    bad = await client.get(GRID, params={"sort": "V2"})
    assert bad.status_code == 400 and "sort: &#39;V2&#39; is not a column of this list" in bad.text


async def test_the_grid_exports_as_csv_and_xlsx_audited(client, gridded):
    response = await client.get(f"{GRID}.csv", params={"as_of": AS_OF})
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="visit-grid-TST-1-2024-04-30.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["participant", "site", *COLUMNS] and len(rows) == 60
    mine = next(row for row in rows if row["participant"] == "101-001")
    assert (mine["V2"], mine["C{n}D1"], mine["V4"], mine["unscheduled"]) == (
        "late",
        "missed 2; on_time 1",
        "",
        "unscheduled",
    )
    assert next(row for row in rows if row["participant"] == "102-030")["V2"] == "missed"
    workbook = openpyxl.load_workbook(io.BytesIO((await client.get(f"{GRID}.xlsx", params={"as_of": AS_OF})).content))
    sheet = workbook.active
    assert [cell.value for cell in sheet[1]] == ["participant", "site", *COLUMNS] and sheet.max_row == 61
    entries = await audit_log.browse(AuditFilter(record_type="visit_grid"), None, 5)
    assert [(e.action, e.record_id, e.new["format"], e.new["participants"]) for e in entries] == [
        ("export", "TST-1", "xlsx", 60),
        ("export", "TST-1", "csv", 60),
    ]


async def test_each_viewer_sees_their_sites_only(anonymous, gridded):
    await add_user("coord-b", ("coordinator", "TST-1", "102"))
    client = await signed_in(anonymous, "coord-b")
    page = await client.get(GRID, params={"as_of": AS_OF})
    assert {site for _, site in _rows(page.text)} == {"102"}
    exported = list(csv.DictReader(io.StringIO((await client.get(f"{GRID}.csv")).text)))
    assert len(exported) == 30 and {row["site"] for row in exported} == {"102"}
    assert (await client.get(GRID, params={"site": "101"})).status_code == 403
    assert (await client.get(f"{GRID}.csv", params={"site": "101"})).status_code == 403


@pytest.fixture
async def demo(db):
    from trialcoord.demo.demo import load_demo

    assert await load_demo(date.today())
    await add_user("cora", ("coordinator", "DEMO-001", "101"))
    await add_user("paula", ("unblinded_pharmacist", "DEMO-001", "101"))
    await add_user("root", ("administrator", None, None))
    return "DEMO-001"


async def test_a_visit_only_some_arms_have_is_hidden_from_who_may_not_know_the_arm(anonymous, demo):
    """DEMO-001 is double-blind and only arm A has PK sampling: its statuses would tell who is on placebo."""
    grid = "/studies/DEMO-001/grid"
    cora = await signed_in(anonymous, "cora")
    blinded = await cora.get(grid)
    assert blinded.status_code == 200 and "PK" not in headers(blinded.text) and "V3" in headers(blinded.text)
    assert "PK" not in next(csv.reader(io.StringIO((await cora.get(f"{grid}.csv")).text)))
    paula = await signed_in(anonymous, "paula")  # sees the allocation at site 101, the only site she sees
    assert "PK" in headers((await paula.get(grid)).text)
    root = await signed_in(anonymous, "root")
    assert "PK" in headers((await root.get(grid)).text)
    assert "PK" in headers((await root.get(grid, params={"site": "102"})).text)


async def test_the_study_page_links_to_the_grid(client, gridded):
    assert 'href="/studies/TST-1/grid"' in (await client.get("/studies/TST-1")).text
