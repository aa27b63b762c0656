"""A second click on a long document's link while its job runs finds that job instead of starting another."""

from __future__ import annotations

from tests.unit.test_document_rendering import DATA, META
from tests.unit.test_render_jobs import wait
from trialcoord.kernel.render.jobs import RenderJobs


def test_asking_again_for_a_document_being_made_gives_the_same_job():
    log = DATA["deviation_log"]
    with RenderJobs(max_pending_per_owner=2) as jobs:
        first = jobs.submit("pdf", "deviation_log", log, owner="cora", **META)
        assert jobs.submit("pdf", "deviation_log", dict(log), owner="cora", **META) == first  # equal data
        assert jobs.status(first, owner="cora").state in ("queued", "running")
        other_kind = jobs.submit("docx", "deviation_log", log, owner="cora", **META)
        someone_else = jobs.submit("pdf", "deviation_log", log, owner="mona", **META)
        assert len({first, other_kind, someone_else}) == 3
        # At the limit of jobs running for cora, the same document is still found (not refused).
        assert jobs.submit("pdf", "deviation_log", log, owner="cora", **META) == first
        assert wait(jobs, first, "cora").state == "done"
        assert jobs.submit("pdf", "deviation_log", log, owner="cora", **META) != first  # done: made again
        assert len(jobs.jobs_of("cora")) == 3
