"""Long documents rendered by background jobs in a worker process, with visible progress.

WeasyPrint lays out about five pages a second and holds the GIL while it does: a 600-row log takes
seconds, which inside a request would stall every other request the event loop serves. `estimate_pages`
tells, without rendering, whether a document is long (`LONG_DOCUMENT_PAGES`); a long one goes to
`RenderJobs`, which renders in a separate process and reports how far it has got.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import secrets
import threading
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render import documents
from trialcoord.kernel.render.documents import TEMPLATES, RenderCache

LONG_DOCUMENT_PAGES = 20  # at or above this estimate a render goes to a job (about 4 s of WeasyPrint)

Kind = Literal["pdf", "docx"]
State = Literal["queued", "running", "done", "failed"]

log = logging.getLogger(__name__)

# --- Page estimate -------------------------------------------------------------------------------------------
# A row's height is its padding plus one text line per wrapped line of its tallest cell, so a log of long
# descriptions counts for more pages than one of short ones. Constants measured once (WeasyPrint 70, DejaVu
# Sans, `_document.css`): 150 deviation rows whose description wraps to 1, 2, 3, 4 and 10 lines took 6, 9,
# 13, 17 and 38 pages, a row being 5.5pt plus 10.8pt a line in a 471pt page body. With English prose the
# estimate then came within a page of the rendering: deviation log of 700 sample rows 25 (24 rendered), of
# 100 rows with 400-character descriptions 20 (21), binder index of 200 long titles 11 (12), consent form of
# 40 sections of three 500-character paragraphs 15 (15), of 20 sections of six 900-character ones 23 (23).
_LINE_8PT = 10.8  # pt: table text is 8pt at line-height 1.35
_CHAR_8PT = 4.1  # pt: mean advance of a character of English prose at 8pt, word-wrapping losses included
_CELL_PADDING = 6.0  # pt: 3pt left and right
_ROW_EXTRA = 5.5  # pt: a row's 2pt top and bottom padding and its border
_LANDSCAPE = (757.0, 487.0)  # pt: the page box of A4 landscape less the 15mm side and 18/20mm top/bottom margins
_PORTRAIT = (510.0, 734.0)


@dataclass(frozen=True)
class _Table:
    rows: str  # the list in the data that becomes the table's rows
    page: tuple[float, float]  # width, height of the page box, pt
    head: float  # pt taken from every page: the table header repeated on it
    fixed: float  # pt the rest of the document takes: title and facts before the table, anything after it
    columns: Mapping[tuple[str, ...], float]  # the items' keys shown in a column -> its share of the width
    others: tuple[str, ...] = ()  # further lists shown as short tables after it: each item two lines


# Shares mirror the <colgroup> of each template; columns holding only codes and dates never wrap and are left out.
_TABLES: dict[str, _Table] = {
    "delegation_log": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        190.0,
        {  # 190: the PI statement and signature block
            ("staff",): 0.15,
            ("role",): 0.12,
            ("tasks",): 0.25,
            ("pi_signoff",): 0.10,
        },
    ),
    "training_log": _Table(
        "entries",
        _LANDSCAPE,
        27.1,
        70.0,
        {  # two-line header: "Material version"
            ("staff",): 0.15,
            ("role",): 0.11,
            ("training",): 0.24,
            ("material_version",): 0.08,
            ("trainer", "method"): 0.13,
        },
    ),
    # 70: title and facts; its charts (`charts`, two to a row) add _CHART_ROW a row
    "deviation_log": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        70.0,
        {
            ("participant",): 0.09,
            ("visit",): 0.07,
            ("category",): 0.12,
            ("description",): 0.28,
            ("classification",): 0.11,
            ("status",): 0.09,
        },
    ),
    # 200: facts, the site status table, three headings and the CAPA table's head
    "monitoring_visit_report": _Table(
        "entries",
        _LANDSCAPE,
        16.3,
        200.0,
        {
            ("participant",): 0.09,
            ("visit",): 0.07,
            ("category",): 0.12,
            ("description",): 0.30,
            ("classification",): 0.11,
            ("status",): 0.10,
        },
        others=("capas",),
    ),
    "binder_index": _Table(
        "entries",
        _PORTRAIT,
        16.3,
        70.0,
        {("document",): 0.36, ("version",): 0.10, ("status",): 0.16, ("effective",): 0.16},
    ),
}
# The consent form is flowing text at 10pt: each paragraph its wrapped lines, each section its heading.
_LINE_10PT, _CHAR_10PT, _PARAGRAPH_GAP = 13.5, 5.1, 5.0
_HEADING_12PT, _CHAR_12PT = 32.0, 6.2  # pt: an h2 with its margins; the mean advance of its characters
_CONSENT_FIXED = 520.0  # pt: title and facts, and the signature section (four blocks)
_CHART_ROW = 215.0  # pt: a row of two charts at 48% of the landscape width (a 600-unit SVG about 330 high)
_ROWS_PER_PAGE = 15  # any other template with a list: a cautious guess, as no layout is modelled for it


def _text(value: Any) -> str:
    if value is None:
        return ""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _lines(text: str, width: float, char: float) -> int:
    per_line = max(1, int(width / char))
    return max(1, sum(math.ceil(len(part) / per_line) or 1 for part in text.split("\n")))


def estimate_pages(template: str, data: Mapping) -> int:
    """About how many pages the PDF of `template` with `data` will have, from the data alone (no rendering).

    Meant to decide whether a render is long (`>= LONG_DOCUMENT_PAGES`), not to be exact: text that wraps
    more or less than average shifts it by a page or two per twenty. Data that would not validate estimates
    as whatever part of it can be read; an unknown template is refused like `render_pdf` refuses it.
    """
    if template not in TEMPLATES:
        documents._template(template, "pdf")  # raises the same InvalidInput, naming the known templates
    if not isinstance(data, Mapping):
        return 1
    if template == "consent_form":
        return _consent_pages(data)
    table = _TABLES.get(template)
    if table is None:
        rows = sum(len(v) for v in data.values() if isinstance(v, list))
        return 1 + rows // _ROWS_PER_PAGE
    width, height = table.page
    items = [item for item in _list(data, table.rows) if isinstance(item, Mapping)]
    total = table.fixed + _CHART_ROW * math.ceil(len(_list(data, "charts")) / 2)
    total += sum(_ROW_EXTRA + 2 * _LINE_8PT for key in table.others for _ in _list(data, key))
    for item in items:
        tallest = max(
            (
                _lines(" ".join(_text(item.get(k)) for k in keys), width * share - _CELL_PADDING, _CHAR_8PT)
                for keys, share in table.columns.items()
            ),
            default=1,
        )
        total += _ROW_EXTRA + _LINE_8PT * tallest
    return max(1, math.ceil(total / (height - table.head)))


def _consent_pages(data: Mapping) -> int:
    width, height = _PORTRAIT
    total = _CONSENT_FIXED
    for section in _list(data, "sections"):
        if not isinstance(section, Mapping):
            continue
        total += _HEADING_12PT + _LINE_10PT * (_lines(_text(section.get("heading")), width, _CHAR_12PT) - 1)
        for paragraph in _list(section, "paragraphs"):
            total += _PARAGRAPH_GAP + _LINE_10PT * _lines(_text(paragraph), width, _CHAR_10PT)
    return max(1, math.ceil(total / height))


def _list(data: Mapping, key: str) -> list:
    value = data.get(key)
    return value if isinstance(value, list) else []


# --- Validation ----------------------------------------------------------------------------------------------


def validate(kind: str, template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> None:
    """Raise the InvalidInput `render_pdf`/`render_docx` would raise for these inputs, without rendering."""
    if kind not in ("pdf", "docx"):
        raise InvalidInput([Problem(f"must be pdf or docx, not {kind!r}", field="kind")])
    documents._prepare(kind, template, data, created_at, title, version_label)


# --- The worker process --------------------------------------------------------------------------------------
# WeasyPrint reports each rendering step on its `weasyprint.progress` logger ("Step 5 - Creating layout -
# Page 12"); the worker forwards them to the web process as (job ID, step, page) on a multiprocessing queue.
# Step 0 is ours: the worker has taken the job.
_STEP = re.compile(r"Step (\d+) - (?:Creating layout - Page (\d+))?")
_worker_queue: Any = None
_worker_job: str | None = None


class _ForwardProgress(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        found = _STEP.match(record.getMessage())
        if found and _worker_job is not None:
            _worker_queue.put((_worker_job, int(found[1]), int(found[2]) if found[2] else None))


def _start_worker(queue: Any) -> None:
    global _worker_queue
    _worker_queue = queue
    progress = logging.getLogger("weasyprint.progress")
    progress.setLevel(logging.INFO)
    progress.addHandler(_ForwardProgress())
    progress.propagate = False  # the web process shows progress; the worker's stderr stays quiet
    import weasyprint  # noqa: F401  -- paid once by the worker, not by its first job


def _render_in_worker(
    job_id: str, kind: str, template: str, data: dict, meta: dict, cache: RenderCache | None
) -> tuple[str, Any, str | None]:
    """("done", bytes, None), ("invalid", problems, None) or ("error", exception name, traceback).

    Exceptions come back as values: InvalidInput would not unpickle intact (it is built from its problems).
    """
    global _worker_job
    _worker_job = job_id
    _worker_queue.put((job_id, 0, None))
    try:
        if cache is not None:
            return "done", cache.render(kind, template, data, **meta), None
        render = documents.render_pdf if kind == "pdf" else documents.render_docx
        return "done", render(template, data, **meta), None
    except InvalidInput as error:  # a name the template uses beyond its schema
        return "invalid", "; ".join(map(str, error.problems)), None
    except Exception as error:  # noqa: BLE001 -- reported to the web process, which logs the traceback
        return "error", type(error).__name__, traceback.format_exc()
    finally:
        _worker_job = None


# --- Progress ------------------------------------------------------------------------------------------------
# Progress is the share of the render time that has passed when WeasyPrint starts each step, timed on logs of
# 150 to 700 rows: parsing ~3%, applying CSS ~15%, building boxes ~8%, layout ~40% (the pages laid out so far
# against the estimate), drawing the PDF ~20%, then metadata and fonts. It moves only when WeasyPrint reports
# a step or a page, never on a timer; it never goes back, and it is 1.0 only once the bytes are there.
_PHASES = {
    0: (0.01, "Rendering started"),
    1: (0.02, "Reading the document"),
    2: (0.03, "Reading the stylesheet"),
    3: (0.05, "Applying the stylesheet"),
    4: (0.20, "Building the page structure"),
    5: (0.28, "Laying out pages"),
    6: (0.68, "Drawing the pages into the PDF"),
    7: (0.86, "Adding the PDF metadata and fonts"),
}
_LAYOUT_END = 0.66


@dataclass(frozen=True)
class JobStatus:
    id: str
    owner: str
    kind: str
    template: str
    title: str
    state: State
    progress: float  # 0 queued .. 1.0 done; see _PHASES for what it measures
    pages_estimated: int
    pages: int | None  # pages laid out so far (PDF), the page count once done; None for DOCX
    message: str  # what is happening, for a person
    created_at: datetime  # when the job was submitted (not the document's created_at)
    finished_at: datetime | None
    sha256: str | None  # of the result, once done
    size: int | None
    error: str | None  # once failed: a sentence for the person who asked, never a traceback


@dataclass
class _Job:
    status: JobStatus
    result: bytes | None = None


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
    ):
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
        """A new job's ID; InvalidInput for what render_pdf/render_docx would refuse, before anything is queued."""
        meta = dict(created_at=created_at, title=title, version_label=version_label)
        validate(kind, template, data, **meta)
        # What the worker gets is what data.json will say: plain dicts and lists, which always pickle.
        plain = json.loads(documents.canonical_json(data))
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
            pending = sum(
                1 for j in self._jobs.values() if j.status.owner == owner and j.status.state in ("queued", "running")
            )
            if cached is None and pending >= self._max_pending:
                raise TooManyJobs(f"{pending} documents are already being rendered for you; wait for one to finish")
            self._jobs[status.id] = _Job(status)
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
                        initializer=_start_worker,
                        initargs=(self._progress,),
                    )
                executor = self._executor
            try:
                future = executor.submit(_render_in_worker, job_id, kind, template, data, meta, self._cache)
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
            future.add_done_callback(lambda f, pool=executor: self._done(job_id, pool, f))  # this pool, bound now
            return

    def _done(self, job_id: str, executor: ProcessPoolExecutor, future: Future) -> None:
        outcome: tuple[str, Any, str | None]
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
            what, value, trace = outcome
            name = f"the {job.status.template.replace('_', ' ')}"
            if what == "done":
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
                    job.status = _advanced(job.status, step, page)

    def _purge(self) -> None:
        finished = sorted(
            (j.status.finished_at, j.status.id) for j in self._jobs.values() if j.status.finished_at is not None
        )
        cutoff = self._clock() - self._keep
        excess = len(finished) - self._max_finished
        for n, (at, job_id) in enumerate(finished):
            if at < cutoff or n < excess:
                del self._jobs[job_id]


def _advanced(status: JobStatus, step: int, page: int | None) -> JobStatus:
    """The status after the worker reported `step` (and, laying out, `page`); progress never goes back."""
    progress, message = _PHASES.get(step, (status.progress, status.message))
    pages = status.pages
    if status.kind == "docx":
        progress, message = 0.05, "Filling the Word template"  # python-docx reports nothing until it is done
    elif step == 5 and page is not None:
        pages = max(pages or 0, page)
        expected = status.pages_estimated
        progress += (_LAYOUT_END - progress) * min(page / expected, 1.0)
        message = (
            f"Laid out page {page} of about {expected}"
            if page <= expected
            else f"Laid out page {page} (about {expected} were expected)"
        )
    elif step == 5:
        message = "Laying out the pages again: page references changed"
    elif step == 6 and pages:
        message = f"Drawing {pages} pages into the PDF"
    if progress < status.progress:
        return status
    return replace(status, state="running", progress=progress, message=message, pages=pages)
