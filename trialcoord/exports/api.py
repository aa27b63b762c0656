"""The sponsor package over HTTP: start a build (202, then poll it), list a study's packages, download one.

A build runs as a task of the web process, its state and progress in its database row, so any request (and any
page) sees how far it is; a build the process did not finish is failed at the next start, never offered half-made.
Who may: `export` on the study (sponsors, monitors, administrators; a site's staff for their own sites only);
`--unblinded` also needs `view_allocation` on every site of the study."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.response import File

from trialcoord.exports import packages
from trialcoord.exports.packages import Package
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.downloads import attachment
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, InstallationDep, StudyPath, Today, plausible
from trialcoord.kernel.web.schemas import Code

EXPORT = needs(Action.EXPORT, across_sites=True)


class PackageIn(msgspec.Struct, forbid_unknown_fields=True):
    as_of: date | None = None  # default today
    sites: Annotated[list[Code], msgspec.Meta(max_length=500)] = []  # noqa: RUF012 (msgspec copies defaults)
    privacy: Literal["coded", "safe-harbor"] = "coded"
    unblinded: bool = False
    transfer: Annotated[int, msgspec.Meta(ge=1)] | None = None  # rebuild this transfer


class PackageOut(msgspec.Struct):
    id: int
    study: str
    transfer: int
    rebuild_of: int | None
    as_of: str
    sites: list[str]
    privacy: str
    unblinded: bool
    state: str
    progress: float
    message: str
    made_by: str
    created_at: str
    finished_at: str | None
    sha256: str | None
    size: int | None
    url: str
    file_url: str | None


def package_out(package: Package) -> PackageOut:
    url = f"/api/studies/{package.study}/sponsor-packages/{package.id}"
    return PackageOut(
        package.id,
        package.study,
        package.transfer,
        package.rebuild_of,
        package.scope.as_of.isoformat(),
        list(package.scope.sites),
        str(package.scope.privacy),
        package.scope.unblinded,
        package.state,
        package.progress,
        package.message,
        package.made_by,
        package.created_at,
        package.finished_at,
        package.sha256,
        package.size,
        url,
        f"{url}/file" if package.state == "done" else None,
    )


class Builds:
    """The builds this web process runs (app state): tasks kept referenced until they end, cancelled at shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def run(self, package: Package, installation: Installation) -> None:
        async def build() -> None:
            # The row says failed, with why (a defect is logged by the build); the request has long answered.
            with contextlib.suppress(Exception):
                await packages.build(package, installation)

        task = asyncio.create_task(build(), name=f"sponsor-package-{package.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, wait: float = 60.0) -> None:
        """At shutdown: let running builds finish (seconds for most), then cancel what is left. A build cancelled
        midway is failed by its own handler, or judged stopped by the next start once its heartbeat is stale."""
        running = list(self.tasks)
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=wait)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def builds(app: Litestar) -> Builds:
    found = app.state.get("sponsor_builds")
    if found is None:
        found = app.state["sponsor_builds"] = Builds()
    return found


def shown(access: Access, package: Package, today: date) -> bool:
    """A package covers sites: a caller who works at some sites only sees the packages within them. An unblinded
    package shows participants' arms: only to who may view the allocation at every site it covers."""
    if package.scope.unblinded and not all(
        access.may(Action.VIEW_ALLOCATION, package.study, site, today) for site in package.scope.sites or (None,)
    ):
        return False
    if access.sites is None or access.sites.all_sites:
        return True
    return bool(package.scope.sites) and all(access.sites.includes(site) for site in package.scope.sites)


async def start_build(
    request: Request, study: str, body: PackageIn, access: Access, today: date, installation: Installation
) -> Package:
    """What the API and the page share: check who asks for what, record the build and start it."""
    sites = tuple(sorted(set(body.sites)))
    for site in sites:
        access.require_site(site, "make a sponsor package")
    if not sites and not (access.sites is None or access.sites.all_sites):
        sites = tuple(sorted(access.sites.sites))  # a site's staff: their own sites, never the whole study
    if body.unblinded and not access.may(Action.VIEW_ALLOCATION, study, None, today):
        raise PermissionDeniedException("an unblinded package needs view_allocation on every site of the study")
    installation.keys()  # 503 before anything is recorded when the system key is missing: nothing is made unsigned
    scope = Scope(study, plausible(body.as_of, "as_of") or today, sites, Privacy(body.privacy), body.unblinded)
    package = await packages.start(scope, actor=access.user_id, today=today, transfer=body.transfer)
    builds(request.app).run(package, installation)
    return package


class SponsorPackageController(Controller):
    path = "/api/studies/{study:str}/sponsor-packages"
    tags = ["sponsor packages"]

    @post("/", opt=EXPORT, status_code=202, responses=problem_responses(400, 401, 403, 404, 409, 422, 503))
    async def start(
        self,
        request: Request,
        study: StudyPath,
        data: PackageIn,
        access: AccessDep,
        today: Today,
        installation: InstallationDep,
    ) -> Response[PackageOut]:
        """Start building a package (the next transfer, or `transfer` to rebuild one with its parameters); poll
        its `url` until `state` is done, then fetch `file_url`. One build per study at a time (409 while one runs).
        Audited when made."""
        package = await start_build(request, study, data, access, today, installation)
        out = package_out(package)
        return Response(out, status_code=202, headers={"Location": out.url})

    @get("/", opt=EXPORT, responses=problem_responses(400, 401, 403, 404))
    async def list_packages(self, study: StudyPath, access: AccessDep, today: Today) -> list[PackageOut]:
        """The study's packages the caller may see, newest first, each with its SHA-256 and who made it (an unblinded
        package only to who may view the allocation)."""
        return [package_out(p) for p in await packages.packages_of(study) if shown(access, p, today)]

    @get("/{package_id:int}", opt=EXPORT, responses=problem_responses(400, 401, 403, 404))
    async def status(self, study: StudyPath, package_id: int, access: AccessDep, today: Today) -> PackageOut:
        """One package: its state and progress while it builds, its SHA-256 and size once done."""
        return package_out(await _visible(study, package_id, access, today))

    @get(
        "/{package_id:int}/file",
        opt=EXPORT,
        media_type="application/zip",
        responses=problem_responses(400, 401, 403, 404),
    )
    async def file(
        self, study: StudyPath, package_id: int, access: AccessDep, today: Today, installation: InstallationDep
    ) -> File:
        """The package's ZIP. Audited as downloaded, with its SHA-256."""
        await _visible(study, package_id, access, today)
        package, path = await packages.download(study, package_id, actor=access.user_id, installation=installation)
        return File(
            path,
            media_type="application/zip",
            headers={"Content-Disposition": attachment(package.file_name), "X-Content-SHA256": package.sha256 or ""},
        )


async def _visible(study: str, package_id: int, access: Access, today: date) -> Package:
    package = await packages.get(study, package_id)
    if not shown(access, package, today):
        raise NotFound(f"study {study} has no sponsor package {package_id}")  # as if it did not exist
    return package
