"""Long documents rendered by background jobs in a worker process, with visible progress.

WeasyPrint lays out about five pages a second and holds the GIL while it does: a 600-row log takes
seconds, which inside a request would stall every other request the event loop serves. `estimate_pages`
tells, without rendering, whether a document is long (`LONG_DOCUMENT_PAGES`); a long one goes to
`RenderJobs`, which renders in a separate process and reports how far it has got.

The page estimate lives in `page_estimate.py`, the worker process's side in `job_worker.py`, and a job's status
with its progress in `job_status.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import secrets
import threading
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal

from trialcoord.kernel.render.cache import RenderCache
from trialcoord.kernel.render.document_data import canonical_json, validate
from trialcoord.kernel.render.job_status import JobStatus, advanced
from trialcoord.kernel.render.job_worker import Outcome, render_in_worker, start_worker
from trialcoord.kernel.render.page_estimate import LONG_DOCUMENT_PAGES, estimate_pages

Kind = Literal["pdf", "docx"]

log = logging.getLogger(__name__)


@dataclass
class _Job:
    status: JobStatus
    result: bytes | None = None
    asked: str = ""  # what was asked for (kind, template, data, meta), hashed: the same request finds this job


class JobNotDone(Exception):
    """The result of a job that is still queued or running, or has failed."""

    def __init__(self, status: JobStatus):
        self.status = status
        super().__init__(status.error or f"the document is {status.state}: {status.message}")


class TooManyJobs(Exception):
    """An owner has as many jobs queued or running as allowed."""


def _now() -> datetime:
    return datetime.now(UTC)


class RenderJobs:
    """Renders documents in a pool of worker processes; the web app owns one (lifespan: create, `close()`).

    The web process never runs WeasyPrint for a job, so neither its event loop nor its GIL waits on one.
    Workers start with 'spawn' (not fork: the web process has threads and an event loop a fork would copy
    mid-state), so the app's entry module must be import-safe (`if __name__ == "__main__"`).

    Results are kept in memory, for `keep` after they finish and never more than `max_finished` finished
    jobs (the oldest go first); after that `status` knows the job no more. A job is visible only to its
    owner: another owner's job ID raises the same KeyError as an unknown one. Each owner may have at most
    `max_pending_per_owner` jobs queued or running. With a `cache`, a rendering already cached is a job
    done at once, and a worker's rendering is cached.

    `submit` validates, estimates and hashes the data in the calling thread (milliseconds for a 700-row log)
    and, for the first job, starts the worker process (its imports take a second, in the worker). `close`
    waits for the renders already running, seconds at most: call it from a thread if that matters.
    """

    def __init__(
        self,
        *,
        max_workers: int = 1,
        cache: RenderCache | None = None,
        keep: timedelta = timedelta(hours=1),
        max_finished: int = 50,
        max_pending_per_owner: int = 3,
        start_method: str = "spawn",
        clock: Callable[[], datetime] = _now,
        long_pages: int = LONG_DOCUMENT_PAGES,
    ):
        self.long_pages = long_pages  # from this estimate on, a render is long: a job, never in a request
        self._context = multiprocessing.get_context(start_method)
        self._max_workers, self._cache, self._clock = max_workers, cache, clock
        self._keep, self._max_finished, self._max_pending = keep, max_finished, max_pending_per_owner
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._executor: ProcessPoolExecutor | None = None  # started by the first job that needs it
        self._closed = False
        self._progress = self._context.Queue()
        self._reader = threading.Thread(target=self._read_progress, name="render-jobs-progress", daemon=True)
        self._reader.start()

    def __enter__(self) -> RenderJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, kind: Kind, template: str, data: Mapping, *, created_at: str, title: str, version_label: str, owner: str
    ) -> str:
        """A new job's ID, or that of the owner's job for the same document still queued or running; InvalidInput
        for what render_pdf/render_docx would refuse, before anything is queued."""
        meta = dict(created_at=created_at, title=title, version_label=version_label)
        validate(kind, template, data, **meta)
        # What the worker gets is what data.json will say: plain dicts and lists, which always pickle.
        plain = json.loads(canonical_json(data))
        asked = hashlib.sha256(canonical_json({"kind": kind, "template": template, "data": plain, **meta})).hexdigest()
        now = self._clock()
        status = JobStatus(
            id=secrets.token_urlsafe(16),
            owner=owner,
            kind=kind,
            template=template,
            title=title,
            state="queued",
            progress=0.0,
            pages_estimated=estimate_pages(template, plain),
            pages=None,
            message="Waiting for a renderer",
            created_at=now,
            finished_at=None,
            sha256=None,
            size=None,
            error=None,
        )
        cached = self._cached(kind, template, plain, meta)
        with self._lock:
            if self._closed:
                raise RuntimeError("the render jobs are closed")
            self._purge()
            pending = [
                j for j in self._jobs.values() if j.status.owner == owner and j.status.state in ("queued", "running")
            ]
            same = next((j for j in pending if j.asked == asked), None)
            if same is not None:
                return same.status.id
            if cached is None and len(pending) >= self._max_pending:
                raise TooManyJobs(
                    f"{len(pending)} documents are already being rendered for you; wait for one to finish"
                )
            self._jobs[status.id] = _Job(status, asked=asked)
            if cached is not None:
                self._finish(self._jobs[status.id], cached, "Done (from the cache)")
                return status.id
        self._start(status.id, kind, template, plain, meta)
        return status.id

    def status(self, job_id: str, *, owner: str) -> JobStatus:
        with self._lock:
            return self._job(job_id, owner).status

    def result(self, job_id: str, *, owner: str) -> bytes:
        """The rendered bytes of a done job; JobNotDone (with its status) for any other state."""
        with self._lock:
            job = self._job(job_id, owner)
            if job.result is None:
                raise JobNotDone(job.status)
            return job.result

    def jobs_of(self, owner: str) -> list[JobStatus]:
        """The owner's jobs, newest first."""
        with self._lock:
            self._purge()
            mine = [j.status for j in self._jobs.values() if j.status.owner == owner]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)

    def close(self) -> None:
        """Stop taking jobs, fail the queued ones, wait for the running ones (seconds) and stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)  # cancelled jobs fail through _done
        with self._lock:
            for job in self._jobs.values():
                if job.status.state in ("queued", "running"):  # not reached by a callback: never lose a job
                    self._fail(job, "The server shut down before this document was rendered; please ask again.")
        self._progress.put(None)
        self._reader.join()
        self._progress.close()
        self._progress.join_thread()

    # -- internals: every _Job change happens under self._lock --

    def _job(self, job_id: str, owner: str) -> _Job:
        self._purge()
        job = self._jobs.get(job_id)
        if job is None or job.status.owner != owner:
            raise KeyError(job_id)  # the same for someone else's job: an ID reveals nothing
        return job

    def _cached(self, kind: str, template: str, data: Mapping, meta: dict) -> bytes | None:
        if self._cache is None:
            return None
        path = self._cache.directory / f"{self._cache.key(kind, template, data, **meta)}.{kind}"  # RenderCache's
        try:
            content = path.read_bytes()
            os.utime(path)  # a hit counts as a use for the cache's eviction
        except FileNotFoundError:  # not cached, or evicted a moment ago
            return None
        return content

    def _start(self, job_id: str, kind: str, template: str, data: dict, meta: dict) -> None:
        for attempt in (1, 2):
            with self._lock:
                if self._closed:
                    self._fail(self._jobs[job_id], "The server is shutting down; please ask again.")
                    return
                if self._executor is None:
                    self._executor = ProcessPoolExecutor(
                        self._max_workers,
                        mp_context=self._context,
                        initializer=start_worker,
                        initargs=(self._progress,),
                    )
                executor = self._executor
            try:
                future = executor.submit(render_in_worker, job_id, kind, template, data, meta, self._cache)
            except RuntimeError as error:  # BrokenProcessPool: a worker died earlier; or closed meanwhile
                with self._lock:
                    if self._executor is executor:
                        self._executor = None  # a broken pool takes no more jobs: the retry starts a new one
                    if attempt == 2 or not isinstance(error, BrokenProcessPool):
                        self._fail(
                            self._jobs[job_id],
                            "The server is shutting down; please ask again."
                            if self._closed
                            else "The renderer could not be started; please try again later.",
                        )
                        return
                continue
            # Outside the lock: a future already done runs the callback here, and the callback takes the lock.
            future.add_done_callback(partial(self._done, job_id, executor))  # this pool, bound now
            return

    def _done(self, job_id: str, executor: ProcessPoolExecutor, future: Future[Outcome]) -> None:
        outcome: Outcome | tuple[Literal["failed"], str, None]
        if future.cancelled():
            outcome = ("failed", "The server shut down before this document was rendered; please ask again.", None)
        elif isinstance(future.exception(), BrokenProcessPool):
            outcome = (
                "failed",
                "The renderer stopped unexpectedly (it may have run out of memory); "
                "please try again later or ask an administrator.",
                None,
            )
            with self._lock:
                if self._executor is executor:
                    self._executor = None  # the next job starts a new pool
            executor.shutdown(wait=False)
        elif future.exception() is not None:
            error = future.exception()
            outcome = ("error", type(error).__name__, "".join(traceback.format_exception(error)))
        else:
            outcome = future.result()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status.state in ("done", "failed"):
                return
            trace: str | None
            what, value, trace = outcome
            name = f"the {job.status.template.replace('_', ' ')}"
            if isinstance(value, bytes):  # what == "done"
                self._finish(job, value, "Done")
            elif what == "invalid":
                self._fail(job, f"The data cannot be rendered as {name}: {value}.")
            elif what == "error":
                log.error(
                    "render job %s… (%s, %s) failed:\n%s", job_id[:6], job.status.kind, job.status.template, trace
                )
                self._fail(
                    job,
                    f"{name.capitalize()} could not be rendered because of an internal error ({value}); "
                    "the server log has the details.",
                )
            else:
                self._fail(job, value)

    def _finish(self, job: _Job, content: bytes, message: str) -> None:
        pages = job.status.pages
        job.result = content
        job.status = replace(
            job.status,
            state="done",
            progress=1.0,
            finished_at=self._clock(),
            sha256=hashlib.sha256(content).hexdigest(),
            size=len(content),
            message=f"{message}: {pages} pages" if pages else message,
        )

    def _fail(self, job: _Job, error: str) -> None:
        job.status = replace(job.status, state="failed", finished_at=self._clock(), error=error, message="Failed")

    def _read_progress(self) -> None:
        while True:
            try:
                message = self._progress.get()
            except (EOFError, OSError):
                return
            if message is None:
                return
            job_id, step, page = message
            with self._lock:
                job = self._jobs.get(job_id)
                if job is not None and job.status.state in ("queued", "running"):
                    job.status = advanced(job.status, step, page)

    def _purge(self) -> None:
        finished = sorted(
            (j.status.finished_at, j.status.id) for j in self._jobs.values() if j.status.finished_at is not None
        )
        cutoff = self._clock() - self._keep
        excess = len(finished) - self._max_finished
        for n, (at, job_id) in enumerate(finished):
            if at < cutoff or n < excess:
                del self._jobs[job_id]
