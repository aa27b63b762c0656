"""The page a monitor or coordinator records a deviation someone found on (issue 15), on both engines."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.conftest import RANDOMIZED, SITE_A, SITE_B, SUBJECT_A, signed_in
from tests.integration.test_pages import error_next_to
from trialcoord.deviations import queue
from trialcoord.kernel import audit_log
from trialcoord.scheduling import visits

pytestmark = [pytest.mark.anyio, pytest.mark.db]
FOUND = "/studies/TST-1/deviations/found"
GOOD = {
    "site": SITE_A,
    "subject_id": SUBJECT_A,
    "visit": "V2",
    "occurred_on": "2024-03-18",
    "category": "assessments",
    "subcategory": "ASSESSMENT NOT PERFORMED",
    "classification": "important",
    "description": "ECG not done: machine broken",
}


@pytest.fixture
async def randomized(personas):
    await visits.record_event("TST-1", SUBJECT_A, "randomization", RANDOMIZED, today=RANDOMIZED)
    return personas


async def test_a_monitor_records_a_deviation_found_at_a_visit(anonymous, randomized):
    monitor = await signed_in(anonymous, "monitor")
    form = await monitor.get(FOUND, params={"participant": SUBJECT_A, "visit": "V2"})
    assert form.status_code == 200 and f'value="{SUBJECT_A}"' in form.text and 'value="V2"' in form.text
    assert f'<option value="{SITE_B}">' in form.text  # a monitor records at every site of the study
    made = await monitor.post(FOUND, data=GOOD)
    assert made.status_code == 303 and made.headers["location"].endswith("?saved=recorded")
    page = await monitor.get(made.headers["location"])
    assert "Deviation recorded." in page.text and "ECG not done" in page.text
    [row] = (await queue.listing("TST-1"))[0]
    assert (row.source, row.participant, row.visit, row.category, row.classification, row.state) == (
        "manual",
        SUBJECT_A,
        "V2",
        "assessments",
        "important",
        "detected",
    )
    [entry] = await audit_log.browse(audit_log.AuditFilter(record_type="deviation", action="create"), None, 5)
    assert entry.actor == "monitor"
    assert "Record a deviation someone found" in (await monitor.get("/studies/TST-1/deviations")).text


async def test_mistakes_are_shown_next_to_their_field(anonymous, randomized):
    coord = await signed_in(anonymous, "coord-a")
    form = await coord.get(FOUND)
    assert f'<option value="{SITE_B}">' not in form.text  # only the sites where one records
    future = (date.today() + timedelta(days=2)).isoformat()
    empty = await coord.post(FOUND, data={**GOOD, "description": ""})
    assert empty.status_code == 422 and "description" in error_next_to(empty.text, "found-description")
    bad = await coord.post(FOUND, data={**GOOD, "occurred_on": future, "category": "catering"})
    assert bad.status_code == 422
    assert "still to come" in error_next_to(bad.text, "found-occurred_on")
    assert "category" in error_next_to(bad.text, "found-category")
    wrong_visit = await coord.post(FOUND, data={**GOOD, "visit": "V99"})
    assert wrong_visit.status_code == 422 and "no visit V99" in error_next_to(wrong_visit.text, "found-visit")
    nobody = await coord.post(FOUND, data={**GOOD, "subject_id": "9999", "visit": ""})
    assert nobody.status_code == 422 and "no participant 9999" in error_next_to(nobody.text, "found-subject_id")
    visit_alone = await coord.post(FOUND, data={**GOOD, "subject_id": ""})
    assert visit_alone.status_code == 422 and "participant" in error_next_to(visit_alone.text, "found-visit")
    assert (await coord.post(FOUND, data={**GOOD, "site": SITE_B})).status_code == 403
    assert (await queue.listing("TST-1"))[1] == 0  # nothing half-written
    sponsor = await signed_in(anonymous, "sponsor")
    assert (await sponsor.get(FOUND)).status_code == 403
