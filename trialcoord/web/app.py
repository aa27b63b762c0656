"""The litestar application: `create_app(settings)` wires API, pages, errors, templates and the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

from litestar import Litestar, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from trialcoord.adapters.persistence.engine import open_database
from trialcoord.config import Settings, get_settings
from trialcoord.web.api import API_CONTROLLERS
from trialcoord.web.errors import EXCEPTION_HANDLERS
from trialcoord.web.pages import PAGE_CONTROLLERS
from trialcoord.web.timeline import STATUS_LABELS

HERE = Path(__file__).parent


@get("/health", tags=["health"], sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()

    def today() -> date:
        """Dates are calendar dates in the site's time zone, not in the server clock's."""
        return settings.today()

    return Litestar(
        route_handlers=[health, *API_CONTROLLERS, *PAGE_CONTROLLERS, _static()],
        dependencies={"today": Provide(today, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[_database(settings)],
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_template_globals
        ),
        openapi_config=OpenAPIConfig(
            title="trialcoord",
            version="1",
            description="Visit schedules and site compliance of clinical trials.",
            path="/schema",
            # JSON only: the documentation UIs load scripts from a CDN, which the app never does.
            render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        ),
    )


def _database(settings: Settings):
    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        async with open_database(settings, migrate=True):
            yield

    return lifespan


def _static():
    return create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False)


def _template_globals(engine: JinjaTemplateEngine) -> None:
    engine.engine.globals["status_label"] = lambda status: STATUS_LABELS.get(status, status)
