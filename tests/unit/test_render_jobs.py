"""Long documents render in a worker process: the event loop keeps ticking, progress shows, the bytes match."""

import asyncio
import hashlib
import io
import multiprocessing
import queue
import time
from datetime import UTC, datetime, timedelta

import pikepdf
import pytest

from tests.unit.test_document_rendering import DATA, META
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render import job_worker
from trialcoord.kernel.render.cache import RenderCache
from trialcoord.kernel.render.docx_documents import render_docx
from trialcoord.kernel.render.job_status import JobStatus
from trialcoord.kernel.render.jobs import JobNotDone, RenderJobs, TooManyJobs
from trialcoord.kernel.render.page_estimate import LONG_DOCUMENT_PAGES, estimate_pages
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.kernel.render.templates import TEMPLATES, Template

PROSE = "The participant attended the visit four days after the window closed because of illness and travel. " * 5


def log_of(rows: int, **item) -> dict:
    entry = DATA["deviation_log"]["entries"][0]
    return DATA["deviation_log"] | {"entries": [entry | {"participant": f"101-{n:03d}"} | item for n in range(rows)]}


def consent_of(sections: int) -> dict:
    return DATA["consent_form"] | {
        "sections": [{"heading": f"Part {n}", "paragraphs": [PROSE] * 3} for n in range(sections)]
    }


@pytest.fixture(scope="module")
def runner():
    """One worker process for the module's renders: starting one costs about a second."""
    with RenderJobs() as render_jobs:
        yield render_jobs


def wait(render_jobs: RenderJobs, job_id: str, owner: str, timeout: float = 60.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while (status := render_jobs.status(job_id, owner=owner)).state in ("queued", "running"):
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return status


def test_the_estimate_grows_with_rows_and_text_and_calls_a_long_log_long():
    assert {name: estimate_pages(name, DATA[name]) for name in DATA} == dict.fromkeys(DATA, 1)
    sizes = [estimate_pages("deviation_log", log_of(n)) for n in (0, 100, 300, 700)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] >= LONG_DOCUMENT_PAGES
    assert estimate_pages("deviation_log", log_of(100, description=PROSE)) > 2 * estimate_pages(
        "deviation_log", log_of(100)
    )  # five-line rows take more room than one-line rows
    assert estimate_pages("consent_form", consent_of(2)) < estimate_pages("consent_form", consent_of(40))
    with pytest.raises(InvalidInput) as raised:
        estimate_pages("deviation", {})
    assert [p.field for p in raised.value.problems] == ["template"]


@pytest.mark.anyio
async def test_a_long_render_leaves_the_event_loop_free_and_shows_its_progress(runner):
    data = log_of(600)
    assert estimate_pages("deviation_log", data) >= LONG_DOCUMENT_PAGES
    # The loop's own order of events, never a wall-clock threshold (that fails on a loaded machine): while the
    # render runs, other coroutines keep running, so ticks interleave with the polled states.
    timeline: list[str] = []

    async def tick():
        while True:
            timeline.append("tick")
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    job_id = runner.submit("pdf", "deviation_log", data, owner="alice", **META)
    seen = [runner.status(job_id, owner="alice")]
    while seen[-1].state in ("queued", "running"):
        assert time.perf_counter() - started < 90, seen[-1]  # a guard against a hung job, not a measure
        await asyncio.sleep(0.02)
        seen.append(runner.status(job_id, owner="alice"))
        timeline.append(seen[-1].state)
    ticker.cancel()
    first, last = timeline.index("running"), timeline.index("done")
    assert timeline[first:last].count("tick") >= 10, "the event loop did not run other work during the render"
    done = seen[-1]
    assert seen[0].state == "queued" and done.state == "done" and done.progress == 1.0
    assert {s.state for s in seen} <= {"queued", "running", "done"}
    progress = [s.progress for s in seen]
    assert progress == sorted(progress) and 0 <= progress[0] < 0.05
    assert len({p for p in progress if 0 < p < 1}) >= 10  # it moved page by page, not just queued -> done
    assert any(s.message == f"Laid out page 10 of about {done.pages_estimated}" for s in seen)
    content = runner.result(job_id, owner="alice")
    with pikepdf.open(io.BytesIO(content)) as pdf:
        assert done.pages == len(pdf.pages)
    assert abs(done.pages - done.pages_estimated) <= 2
    assert (done.sha256, done.size) == (hashlib.sha256(content).hexdigest(), len(content))
    assert done.finished_at >= done.created_at and done.error is None
    assert content == render_pdf("deviation_log", data, **META)  # byte for byte what a request would render


def test_a_docx_job_gives_what_render_docx_gives(runner):
    job_id = runner.submit("docx", "consent_form", DATA["consent_form"], owner="bob", **META)
    status = wait(runner, job_id, "bob")
    assert (status.state, status.message, status.pages) == ("done", "Done", None)
    assert runner.result(job_id, owner="bob") == render_docx("consent_form", DATA["consent_form"], **META)


def test_input_render_pdf_refuses_is_refused_at_submit_and_queues_nothing():
    never_started = RenderJobs()  # validation needs no worker: none is started
    try:

        def fields(kind, template, data, **meta) -> list[str]:
            with pytest.raises(InvalidInput) as raised:
                never_started.submit(kind, template, data, owner="carol", **META | meta)
            return [p.field for p in raised.value.problems]

        assert fields("pdf", "deviation", {}) == ["template"]
        assert fields("docx", "training_log", DATA["training_log"]) == ["template"]
        assert fields("xlsx", "deviation_log", log_of(1)) == ["kind"]
        entries = [{k: v for k, v in DATA["deviation_log"]["entries"][0].items() if k != "status"}]
        assert fields("pdf", "deviation_log", DATA["deviation_log"] | {"entries": entries}) == ["entries[0].status"]
        assert fields("pdf", "binder_cover", DATA["binder_cover"], created_at="yesterday") == ["created_at"]
        assert fields("pdf", "binder_cover", DATA["binder_cover"] | {"sponsor": {1}}) == ["data"]
        assert never_started.jobs_of("carol") == [] and never_started._executor is None
    finally:
        never_started.close()


def test_a_render_that_breaks_fails_with_a_sentence_and_logs_the_traceback(runner, caplog):
    # Valid by the schema (tasks has no type), but the template joins it: an int makes Jinja raise TypeError.
    data = DATA["delegation_log"] | {"entries": [DATA["delegation_log"]["entries"][0] | {"tasks": 5}]}
    job_id = runner.submit("pdf", "delegation_log", data, owner="dave", **META)
    status = wait(runner, job_id, "dave")
    assert status.state == "failed" and status.message == "Failed"
    assert status.error == (
        "The delegation log could not be rendered because of an internal error (TypeError); "
        "the server log has the details."
    )
    assert "Traceback" in caplog.text and "not iterable" in caplog.text  # the details are for the operator
    with pytest.raises(JobNotDone) as raised:
        runner.result(job_id, owner="dave")
    assert raised.value.status == status


def test_a_name_the_template_uses_beyond_its_schema_comes_back_as_a_problem(monkeypatch):
    # In-process: a test cannot change the templates a spawned worker sees.
    cover = TEMPLATES["binder_cover"]
    monkeypatch.setitem(
        TEMPLATES,
        "binder_cover",
        Template(cover.kinds, cover.unique_id, tuple(f for f in cover.fields if f != "sponsor"), cover.rows),
    )
    monkeypatch.setattr(job_worker, "_worker_queue", queue.SimpleQueue())
    data = {k: v for k, v in DATA["binder_cover"].items() if k != "sponsor"}
    what, problems, trace = job_worker.render_in_worker("job", "pdf", "binder_cover", data, META, None)
    assert (what, trace) == ("invalid", None) and problems.startswith("sponsor: is required")
    assert job_worker._worker_queue.get_nowait() == ("job", 0, None)


def test_a_job_is_invisible_to_anyone_but_its_owner(runner):
    job_id = runner.submit("pdf", "binder_cover", DATA["binder_cover"], owner="erin", **META)
    wait(runner, job_id, "erin")
    for call in (runner.status, runner.result):
        with pytest.raises(KeyError) as other:
            call(job_id, owner="mallory")
        with pytest.raises(KeyError) as unknown:
            call(job_id[::-1], owner="erin")
        assert (other.value.args, unknown.value.args) == ((job_id,), (job_id[::-1],))  # nothing else to tell apart
    assert runner.jobs_of("mallory") == [] and [s.id for s in runner.jobs_of("erin")] == [job_id]


def test_a_cached_rendering_is_done_at_submit_and_a_worker_fills_the_cache(tmp_path):
    cache = RenderCache(tmp_path)
    with RenderJobs(cache=cache) as render_jobs:
        first = render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="frank", **META)
        assert wait(render_jobs, first, "frank").state == "done"
        assert [p.suffix for p in tmp_path.iterdir()] == [".pdf"]
        again = render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="frank", **META)
        status = render_jobs.status(again, owner="frank")
        assert (status.state, status.progress, status.message) == ("done", 1.0, "Done (from the cache)")
        assert render_jobs.result(again, owner="frank") == render_jobs.result(first, owner="frank")


def test_finished_jobs_are_kept_an_hour_and_at_most_max_finished(tmp_path):
    cache = RenderCache(tmp_path)
    cache.render("pdf", "binder_cover", DATA["binder_cover"], **META)  # cache hits: no worker needed
    now = [datetime(2026, 11, 27, 10, 0, tzinfo=UTC)]
    with RenderJobs(cache=cache, max_finished=2, clock=lambda: now[0]) as render_jobs:
        ids = []
        for _ in range(3):
            ids.append(render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="gina", **META))
            now[0] += timedelta(minutes=1)
        assert [s.id for s in render_jobs.jobs_of("gina")] == ids[:0:-1]  # the oldest went beyond two
        now[0] += timedelta(minutes=58, seconds=30)  # the second finished 60.5 min ago, the third 59.5
        assert [s.id for s in render_jobs.jobs_of("gina")] == [ids[2]]
        with pytest.raises(KeyError):
            render_jobs.status(ids[1], owner="gina")
        assert render_jobs._executor is None


def test_close_fails_what_is_queued_and_stops_the_workers():
    before = set(multiprocessing.active_children())
    render_jobs = RenderJobs()
    ids = {
        owner: [
            render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"] | {"sponsor": f"S{n}"}, owner=owner, **META)
            for n in range(3)
        ]
        for owner in ("hal", "ivy")
    }
    with pytest.raises(TooManyJobs):
        render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="hal", **META)
    workers = set(multiprocessing.active_children()) - before
    assert workers  # started by the first job
    render_jobs.close()
    assert not any(worker.is_alive() for worker in workers)
    statuses = [render_jobs.status(job_id, owner=owner) for owner, mine in ids.items() for job_id in mine]
    assert {s.state for s in statuses} <= {"done", "failed"}
    failed = [s for s in statuses if s.state == "failed"]
    assert failed and {s.error for s in failed} == {
        "The server shut down before this document was rendered; please ask again."
    }
    with pytest.raises(RuntimeError):
        render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="jay", **META)
    render_jobs.close()  # a second close does nothing


def test_a_worker_that_dies_fails_its_job_and_the_next_job_gets_a_new_one():
    before = set(multiprocessing.active_children())
    with RenderJobs() as render_jobs:
        job_id = render_jobs.submit("pdf", "deviation_log", log_of(300), owner="kim", **META)
        deadline = time.monotonic() + 30
        while render_jobs.status(job_id, owner="kim").state == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        [worker] = set(multiprocessing.active_children()) - before
        worker.kill()  # as the kernel's OOM killer would
        status = wait(render_jobs, job_id, "kim")
        assert status.state == "failed" and status.error.startswith("The renderer stopped unexpectedly")
        again = render_jobs.submit("pdf", "binder_cover", DATA["binder_cover"], owner="kim", **META)
        assert wait(render_jobs, again, "kim").state == "done"
