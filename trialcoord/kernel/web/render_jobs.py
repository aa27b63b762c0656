"""Documents rendered from the project's templates, as background jobs: a long render (over about 20
pages) must never hold a request or the event loop. A job belongs to whoever started it; another user
asking for it is told it does not exist, exactly as for an unknown ID.

The API follows a job by its JSON; people follow theirs on the Jobs page (`/jobs`, and `/jobs/ID` for one), which
shows each job's progress, reloads itself while one runs (no script needed) and offers the document once it is
done. A page link that starts a long render (a deviation log) answers a browser with the job's page (303) and an
API client with the job (202 JSON): `queued_answer`."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from typing import Annotated, Any, Optional

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import FromQuery, JSONBody, PathParameter
from litestar.response import Redirect, Template

from trialcoord.kernel.render.job_status import JobStatus
from trialcoord.kernel.render.jobs import JobNotDone, Kind, RenderJobs, TooManyJobs
from trialcoord.kernel.render.page_estimate import estimate_pages
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.downloads import attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import SIGNED_IN, needs
from trialcoord.kernel.web.openapi import files
from trialcoord.kernel.web.paging import page_in_memory, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath
from trialcoord.kernel.web.schemas import Code

RENDER = needs(Action.MANAGE_DOCUMENTS, across_sites=True)
# Following one's own jobs (they are kept per owner): also a long report download started by an exporter.
FOLLOW = needs(Action.EXPORT, across_sites=True)
JobId = Annotated[str, PathParameter(description="The job's ID, as its submission answered")]
JOB_TEMPLATES = frozenset({"consent_form", "delegation_log", "training_log", "deviation_log", "binder_cover"})
KINDS: dict[str, Kind] = {"pdf": "pdf", "docx": "docx"}  # the body's `kind`, which its pattern limits to these
MEDIA = {"pdf": "application/pdf", "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


class RenderIn(msgspec.Struct):
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    data: dict[str, Any]
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version_label: Code
    created_at: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")]
    kind: Annotated[str, msgspec.Meta(pattern="^(pdf|docx)$")] = "pdf"


class JobOut(msgspec.Struct):
    id: str
    kind: str
    template: str
    title: str
    state: str
    progress: float
    message: str
    pages_estimated: int
    pages: int | None
    created_at: datetime
    finished_at: datetime | None
    sha256: str | None
    size: int | None
    error: str | None
    long_document: bool


def render_jobs(app: Litestar) -> RenderJobs:
    """The app's job runner, made at first use: its worker process starts with the first job."""
    jobs = app.state.get("render_jobs")
    if jobs is None:
        jobs = app.state.render_jobs = RenderJobs(cache=app.state.installation.render_cache())
    return jobs


def _out(status: JobStatus, long_pages: int) -> JobOut:
    return JobOut(
        status.id,
        status.kind,
        status.template,
        status.title,
        str(status.state),
        status.progress,
        status.message,
        status.pages_estimated,
        status.pages,
        status.created_at,
        status.finished_at,
        status.sha256,
        status.size,
        status.error,
        status.pages_estimated >= long_pages,
    )


class RenderJobController(Controller):
    path = "/api/studies/{study:str}/render-jobs"
    tags = ["documents"]

    @post("/", opt=RENDER, status_code=202, responses=problem_responses(400, 401, 403, 422, 429))
    async def submit(self, request: Request, study: StudyPath, data: JSONBody[RenderIn], access: AccessDep) -> JobOut:
        """Start rendering; poll the job for its progress, then fetch the result. Inputs are checked first."""
        if data.template not in JOB_TEMPLATES:  # a signature page or binder index comes only from stored facts
            raise ValidationException(
                f"template {data.template!r} cannot be rendered from given data; one of"
                f" {', '.join(sorted(JOB_TEMPLATES))}",
                extra=[
                    {
                        "key": "template",
                        "message": "a signature page or binder index cannot be"
                        " rendered from given data; one of " + ", ".join(sorted(JOB_TEMPLATES)),
                    }
                ],
            )
        estimate_pages(data.template, data.data)
        try:
            job = render_jobs(request.app).submit(
                KINDS[data.kind],
                data.template,
                data.data,
                created_at=data.created_at,
                title=data.title,
                version_label=data.version_label,
                owner=access.user_id,
            )
        except TooManyJobs as error:
            raise HTTPException(status_code=429, detail=str(error)) from None
        jobs = render_jobs(request.app)
        return _out(jobs.status(job, owner=access.user_id), jobs.long_pages)

    @get("/", opt=FOLLOW, responses=problem_responses(400, 401, 403))
    async def mine(self, request: Request, study: StudyPath, access: AccessDep) -> list[JobOut]:
        """The caller's own jobs, newest first (finished ones are kept for an hour)."""
        jobs = render_jobs(request.app)
        return [_out(s, jobs.long_pages) for s in jobs.jobs_of(access.user_id)]

    @get("/{job_id:str}", opt=FOLLOW, responses=problem_responses(400, 401, 403, 404))
    async def status(self, request: Request, study: StudyPath, job_id: JobId, access: AccessDep) -> JobOut:
        """The job's state and progress (the share of the render done, by WeasyPrint's own steps)."""
        try:
            jobs = render_jobs(request.app)
            return _out(jobs.status(job_id, owner=access.user_id), jobs.long_pages)
        except KeyError:
            raise NotFoundException(f"there is no render job {job_id} of yours") from None

    @get(
        "/{job_id:str}/result",
        opt=FOLLOW,
        media_type="application/octet-stream",
        operation_class=files(*MEDIA.values()),
        responses=problem_responses(400, 401, 403, 404, 409),
    )
    async def result(self, request: Request, study: StudyPath, job_id: JobId, access: AccessDep) -> Response[bytes]:
        """The rendered document, once the job is done."""
        jobs = render_jobs(request.app)
        try:
            data = jobs.result(job_id, owner=access.user_id)
        except KeyError:
            raise NotFoundException(f"there is no render job {job_id} of yours") from None
        except JobNotDone as error:
            raise HTTPException(
                status_code=409,
                detail=f"render job {job_id} is {error.status.state}: {error.status.error or error.status.message}",
            ) from None
        status = jobs.status(job_id, owner=access.user_id)
        return Response(data, media_type=MEDIA[status.kind])


# The Jobs page ------------------------------------------------------------------------------------------------

RUNNING = ("queued", "running")
PageSize = FromQuery[Optional[int]]  # noqa: UP045 (read at run time by litestar's parameter parsing)


def wants_page(request: Request) -> bool:
    """A browser following a link asks for HTML first; an API client (JSON, or anything) gets JSON."""
    return request.accept.best_match(["application/json", "text/html"], default="application/json") == "text/html"


def job_page(job_id: str) -> str:
    return f"/jobs/{job_id}"


def to_job_page(job_id: str) -> Redirect:
    # A media type of its own: the routes that answer with it declare their document's (octet-stream).
    return Redirect(job_page(job_id), status_code=303, media_type="text/plain")


def queued_answer(request: Request, job_id: str, body: Any, url: str) -> Response:
    """A long render handed to a job: a browser goes to the job's page (303), an API client gets `body` (202) with
    the job's API address in Location."""
    if wants_page(request):
        return to_job_page(job_id)
    return Response(body, status_code=202, media_type="application/json", headers={"Location": url})


def _jobs_of(request: Request, owner: str) -> list[JobStatus]:
    jobs = request.app.state.get("render_jobs")  # none yet: nobody has started a job since the server started
    return jobs.jobs_of(owner) if jobs is not None else []


def _status(request: Request, job_id: str, owner: str) -> JobStatus:
    jobs = request.app.state.get("render_jobs")
    if jobs is not None:
        with suppress(KeyError):  # unknown, forgotten, or someone else's: the same answer
            return jobs.status(job_id, owner=owner)
    raise NotFoundException("There is no such document of yours: finished ones are kept for an hour.")


class RenderJobPages(Controller):
    """The signed-in user's own jobs: nobody else's are ever listed or found, so being signed in is the rule."""

    path = "/jobs"
    include_in_schema = False

    @get("/", opt=SIGNED_IN)
    async def jobs_page(
        self,
        request: Request,
        access: AccessDep,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: PageSize = None,
    ) -> Template:
        wanted = page_request(
            sort, order, after, size, sorts=("created",), default="created", key_width=2, descending_default=True
        )
        mine = _jobs_of(request, access.user_id)
        page = page_in_memory(mine, wanted, lambda s: (s.created_at.isoformat(), s.id))
        context = {"jobs": page.rows, "page": page, "job": None, "running": any(s.state in RUNNING for s in mine)}
        return Template("jobs.html", context=context)

    @get("/{job_id:str}", opt=SIGNED_IN)
    async def one_job(self, request: Request, job_id: JobId, access: AccessDep) -> Template:
        status = _status(request, job_id, access.user_id)
        return Template(
            "jobs.html", context={"job": status, "jobs": [], "page": None, "running": status.state in RUNNING}
        )

    @get("/{job_id:str}/result", opt=SIGNED_IN, media_type="application/octet-stream")
    async def job_result(self, request: Request, job_id: JobId, access: AccessDep) -> Response:
        """The document, once done (a job still running, or failed, is its page again)."""
        status = _status(request, job_id, access.user_id)
        try:
            data = request.app.state.render_jobs.result(job_id, owner=access.user_id)
        except (JobNotDone, KeyError):
            return to_job_page(job_id)
        name = f"{status.title}.{status.kind}"
        return Response(data, media_type=MEDIA[status.kind], headers={"Content-Disposition": attachment(name)})
