"""The Jobs page: a long render a page link starts is followed on a page of its own (its progress, reloading itself
while it runs, then the document), a second click finds the same job, and API clients still get the job as JSON."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import SITE_A, signed_in
from trialcoord.kernel.render.jobs import RenderJobs

pytestmark = pytest.mark.anyio
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}
LOG = f"/api/studies/TST-1/deviations/log?site={SITE_A}"
REFRESH = '<meta http-equiv="refresh" content="2">'


@pytest.fixture
def jobs(app):
    """The app's render jobs, where every document is long (one page and more): each render is a job."""
    with RenderJobs(long_pages=1) as runner:
        app.state.render_jobs = runner
        yield runner


def _done(jobs: RenderJobs, job_id: str, owner: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while jobs.status(job_id, owner=owner).state in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


async def test_a_long_log_link_leads_a_browser_to_its_job_and_a_second_click_to_the_same_one(personas, anonymous, jobs):
    coord = await signed_in(anonymous, "coord-a")
    first = await coord.get(LOG, headers=BROWSER)
    assert first.status_code == 303 and first.headers["location"].startswith("/jobs/")
    job_page = first.headers["location"]
    job_id = job_page.removeprefix("/jobs/")
    again = await coord.get(LOG, headers=BROWSER)  # clicked again while it renders (the worker takes a second)
    assert again.status_code == 303 and again.headers["location"] == job_page
    api = await coord.get(LOG)  # an API client: the job as JSON, still the same one
    assert api.status_code == 202 and api.json()["job_id"] == job_id
    assert api.headers["location"] == f"/api/studies/TST-1/render-jobs/{job_id}"
    assert [s.id for s in jobs.jobs_of("coord-a")] == [job_id]

    running = await coord.get(job_page)
    assert running.status_code == 200 and REFRESH in running.text and "<progress" in running.text
    assert "Protocol deviation log TST-1 site 101" in running.text
    listed = await coord.get("/jobs")
    assert REFRESH in listed.text and f'href="/jobs/{job_id}"' in listed.text
    assert (await coord.get(f"{job_page}/result")).headers["location"] == job_page  # not done yet: its page

    _done(jobs, job_id, "coord-a")
    done = await coord.get(job_page)
    assert REFRESH not in done.text and "<progress" not in done.text
    assert f'href="/jobs/{job_id}/result"' in done.text
    result = await coord.get(f"{job_page}/result")
    assert result.status_code == 200 and result.content.startswith(b"%PDF-")
    assert result.headers["content-type"] == "application/pdf"
    assert 'filename="Protocol_deviation_log_TST-1_site_101.pdf"' in result.headers["content-disposition"]
    later = await coord.get(LOG, headers=BROWSER)  # done: asking again makes it again (from the cache, if any)
    assert later.headers["location"] != job_page


async def test_nobody_else_sees_a_job_and_an_unknown_one_is_not_found(personas, anonymous, jobs):
    coord = await signed_in(anonymous, "coord-a")
    job_page = (await coord.get(LOG, headers=BROWSER)).headers["location"]
    async with httpx.AsyncClient(transport=anonymous._transport, base_url="https://testserver") as other:
        monitor = await signed_in(other, "monitor")
        for path in (job_page, f"{job_page}/result", "/jobs/no-such-job"):
            assert (await monitor.get(path)).status_code == 404, path
        assert job_page not in (await monitor.get("/jobs")).text
        assert (await monitor.get("/jobs")).status_code == 200
    assert (await anonymous.get("/jobs")).status_code == 200  # the client is still coord-a's


async def test_the_jobs_page_without_any_job_says_so(personas, anonymous):
    coord = await signed_in(anonymous, "coord-a")
    page = await coord.get("/jobs")
    assert page.status_code == 200 and "No document is being made for you" in page.text and REFRESH not in page.text
    assert (await coord.get("/jobs?after=not-a-cursor")).status_code == 400
