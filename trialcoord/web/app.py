"""The litestar application: `create_app(settings)` wires API, pages, errors, templates and the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from functools import partial
from pathlib import Path

from anyio import to_thread
from jinja2 import pass_context
from jinja2.runtime import Context
from litestar import Litestar, Request, Router, get
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from markupsafe import Markup, escape

from trialcoord.accounts import sessions
from trialcoord.accounts.api import CalendarFeedController, SessionController, UserController
from trialcoord.accounts.pages import AccountPages, session_timing
from trialcoord.accounts.users import AccountRules
from trialcoord.amendments.api import AmendmentController, ParticipantVersionController
from trialcoord.amendments.pages import AmendmentPages
from trialcoord.audit.api import AuditController
from trialcoord.audit.pages import AuditPages
from trialcoord.deviations.api.capa import CapaController
from trialcoord.deviations.api.deviation_reports import DeviationReportController
from trialcoord.deviations.api.queue import QueueController
from trialcoord.deviations.api.review import ReviewController
from trialcoord.deviations.api.window_exceptions import WindowExceptionController
from trialcoord.deviations.pages.bulk import BulkPages
from trialcoord.deviations.pages.capa import CapaPages
from trialcoord.deviations.pages.deviation_reports import ReportPages
from trialcoord.deviations.pages.extensions import ExtensionPages
from trialcoord.deviations.pages.manual import ManualDeviationPages
from trialcoord.deviations.pages.queue import QueuePages
from trialcoord.deviations.pages.review import ReviewPages
from trialcoord.documents.api.consent import ConsentController
from trialcoord.documents.api.documents import DocumentController
from trialcoord.documents.api.signatures import BinderController, SignatureController
from trialcoord.documents.pages.binder import BinderPages, VersionPages
from trialcoord.documents.pages.documents import DocumentPages
from trialcoord.exports import packages as sponsor_packages
from trialcoord.exports.api import SponsorPackageController
from trialcoord.exports.pages import SponsorPackagePages
from trialcoord.home import nightly
from trialcoord.home.pages import HomePages, count_tasks
from trialcoord.home.sources import SOURCES
from trialcoord.kernel import anchors
from trialcoord.kernel.config import Settings, get_settings
from trialcoord.kernel.database.opening import open_database
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.rules.access import Role, Viewer
from trialcoord.kernel.web.access_log import AccessLog
from trialcoord.kernel.web.error_summary import error_summary
from trialcoord.kernel.web.errors import EXCEPTION_HANDLERS
from trialcoord.kernel.web.guard import CSRF_FIELD, PUBLIC, Access, guard
from trialcoord.kernel.web.openapi import SECURITY_SCHEMES, DocumentedRoutes
from trialcoord.kernel.web.render_jobs import RenderJobController, RenderJobPages
from trialcoord.kernel.web.security_headers import add_security_headers
from trialcoord.overviews.pages.consent import ConsentPages
from trialcoord.overviews.pages.grid import GridPages
from trialcoord.overviews.pages.participants import ParticipantPages
from trialcoord.overviews.pages.search import SearchPages
from trialcoord.overviews.pages.studies import StudyPages
from trialcoord.scheduling import participants
from trialcoord.scheduling.api.participants import ParticipantController
from trialcoord.scheduling.api.studies import StudyController
from trialcoord.scheduling.api.worklists import WorklistController
from trialcoord.scheduling.timeline import STATUS_LABELS

HERE = Path(__file__).parent

# The JSON API under /api (OpenAPI at /schema), then the server-rendered pages (usable without JavaScript).
API_CONTROLLERS = [
    SessionController,
    UserController,
    CalendarFeedController,
    AuditController,
    StudyController,
    ParticipantController,
    WorklistController,
    DocumentController,
    SignatureController,
    BinderController,
    ConsentController,
    RenderJobController,
    QueueController,
    ReviewController,
    WindowExceptionController,
    CapaController,
    DeviationReportController,
    AmendmentController,
    ParticipantVersionController,
    SponsorPackageController,
]

PAGE_CONTROLLERS = [
    HomePages,
    AccountPages,
    AuditPages,
    DocumentPages,
    VersionPages,
    BinderPages,
    StudyPages,
    GridPages,
    ConsentPages,
    SearchPages,
    ParticipantPages,
    QueuePages,
    ReviewPages,
    BulkPages,
    CapaPages,
    ReportPages,
    ExtensionPages,
    ManualDeviationPages,
    AmendmentPages,
    SponsorPackagePages,
    RenderJobPages,
]


@get("/health", tags=["health"], opt=PUBLIC, sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    settings: Settings | None = None,
    *,
    account_rules: AccountRules | None = None,
    installation: Installation | None = None,
) -> Litestar:
    """The one wiring place: settings, the accounts' rules (password hashing, lock-out, inactivity) and the
    installation (the system keys, the render cache) are built here once and handed to routes (dependencies)
    and the guard (app state). Tests hand in cheaper rules and keys of their own."""
    settings = settings or get_settings()
    rules = account_rules or AccountRules.from_settings(settings)
    installation = installation or Installation(settings)

    def today() -> date:
        """Dates are calendar dates in the site's time zone, not in the server clock's."""
        return settings.today()

    def access(request: Request) -> Access:
        return request.state.access  # set by the guard, which runs first

    app = Litestar(
        route_handlers=[health, *API_CONTROLLERS, *PAGE_CONTROLLERS, _static()],
        guards=[guard],
        # Pages and answers may hold personal data: never kept in a (shared workstation's) cache.
        cache_control=CacheControlHeader(no_store=True),
        state=State(
            {
                "settings": settings,
                "installation": installation,
                # The inactivity limit pages warn of (accounts/pages.py); lock-outs the task count judges (home/).
                "account_rules": rules,
                "resolve_session": partial(sessions.resolve, rules=rules),  # for the guard, below the features
                "resolve_feed": sessions.resolve_feed,
                "participant_site": participants.ParticipantSites(),  # one cache per app
                "home_sources": SOURCES,  # the requests the home page lists (a test hands in its own)
            }
        ),
        before_request=count_tasks,
        before_send=[add_security_headers],  # every answer, errors and litestar's own 404s included
        dependencies={
            "today": Provide(today, sync_to_thread=False),
            "access": Provide(access, sync_to_thread=False),
            "account_rules": Provide(lambda: rules, sync_to_thread=False),
            "installation": Provide(lambda: installation, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[DocumentedRoutes()],  # the OpenAPI document's security and file answers, from the routes
        lifespan=[_database(settings), _nightly(settings, installation), _anchoring(settings, installation)],
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_template_globals
        ),
        openapi_config=OpenAPIConfig(
            title="trialcoord",
            version="1",
            description="Visit schedules and site compliance of clinical trials.",
            path="/schema",
            components=SECURITY_SCHEMES,  # each operation's `security` is derived from its route's rule
            # JSON only: the documentation UIs load scripts from a CDN, which the app never does.
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        ),
    )
    # Around litestar's whole handler (the exception handlers, the router's own 404s): every request is logged.
    access_log = AccessLog(app.asgi_handler, settings)
    app.asgi_handler = access_log
    app.on_shutdown.append(access_log.close)
    return app


def _database(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        async with open_database(settings, migrate=True):
            await sponsor_packages.fail_interrupted()  # a build this server did not finish is never offered
            try:
                yield
            finally:
                builds = _app.state.get("sponsor_builds")  # made at the first build (exports/api.py)
                if builds is not None:
                    await builds.close()
                jobs = _app.state.get("render_jobs")  # made at the first render job (kernel/web/render_jobs.py)
                if jobs is not None:
                    await to_thread.run_sync(jobs.close)

    return lifespan


def _nightly(settings: Settings, installation: Installation) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """On SQLite, the nightly schedule refresh and detection as a task of the app (home/nightly.py); started
    after the database is open, stopped before it closes."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        schedule = nightly.schedule_of(settings)
        if schedule is None:
            yield
            return
        task = app.state["nightly"] = nightly.Nightly(schedule, anchor=_nightly_anchor(settings, installation))
        task.start()
        try:
            yield
        finally:
            await task.close()

    return lifespan


def _nightly_anchor(settings: Settings, installation: Installation) -> Callable[[], Awaitable[object]] | None:
    """The nightly run's external checkpoint (kernel/anchors.py), when a checkpoint directory is set."""
    directory = settings.checkpoint_dir
    if directory is None:
        return None
    return lambda: anchors.write_if_due(
        directory, settings.checkpoint_every, lambda: installation.keys().manifest_key, nightly=True
    )


def _anchoring(
    settings: Settings, installation: Installation
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """External audit checkpoints after each TRIALCOORD_CHECKPOINT_EVERY entries and daily, on both engines
    (kernel/anchors.py); nothing when no checkpoint directory is set (`serve` has warned)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.checkpoint_dir is None:
            yield
            return
        task = app.state["anchoring"] = anchors.Anchoring(
            settings.checkpoint_dir, settings.checkpoint_every, lambda: installation.keys().manifest_key
        )
        task.start()
        try:
            yield
        finally:
            await task.close()

    return lifespan


def _static() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[HERE / "static"],
        include_in_schema=False,
        opt=PUBLIC,
        cache_control=CacheControlHeader(max_age=3600),
    )


def _template_globals(engine: JinjaTemplateEngine) -> None:
    engine.engine.globals["status_label"] = lambda status: STATUS_LABELS.get(status, status)
    engine.engine.globals.update(csrf_field=_csrf_field, signed_in=_signed_in, is_admin=_is_admin, my_tasks=_my_tasks)
    engine.engine.globals.update(error_summary=error_summary, session_timing=session_timing)


def _access(context: Context) -> Access | None:
    request = context.get("request")
    return getattr(request.state, "access", None) if request is not None else None


@pass_context
def _csrf_field(context: Context) -> Markup:
    """The session's CSRF token as a hidden field: every form that posts carries it."""
    access = _access(context)
    token = access.viewer.csrf_token if access and access.viewer else ""
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{escape(token)}">')


@pass_context
def _signed_in(context: Context) -> Viewer | None:
    access = _access(context)
    return access.viewer if access else None


@pass_context
def _is_admin(context: Context) -> bool:
    access = _access(context)
    return bool(access and access.viewer and any(g.role is Role.ADMINISTRATOR for g in access.viewer.grants))


@pass_context
def _my_tasks(context: Context) -> int | None:
    """The navigation's task count, when the page's request counted one (home/pages.py's `count_tasks`)."""
    request = context.get("request")
    return getattr(request.state, "my_tasks", None) if request is not None else None
