"""The home page (`/`): what waits on the signed-in user, each list's first rows one click from their action and
a link to each study's full list; and the navigation's task count, computed once per page (`count_tasks`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from trialcoord.accounts.users import AccountRules
from trialcoord.home import counts, nightly, work
from trialcoord.home.rules.tasks import AWAITING_REVIEW, AWAITING_SITE, CLOSING_DAYS, MAX_CLOSING_DAYS
from trialcoord.home.work import Home, Setting
from trialcoord.kernel import audit_log
from trialcoord.kernel.web.forms import whole_number
from trialcoord.kernel.web.guard import SIGNED_IN
from trialcoord.kernel.web.params import AccessDep, QueryStr, Today

RulesDep = NamedDependency[AccountRules]  # provided by the app
_NOT_PAGES = ("/api/", "/static/", "/schema", "/health")


class HomePages(Controller):
    include_in_schema = False

    @get("/", opt=SIGNED_IN)
    async def home_page(
        self, request: Request, access: AccessDep, today: Today, account_rules: RulesDep, within: QueryStr = None
    ) -> Template:
        errors: dict[str, str] = {}
        days = CLOSING_DAYS
        if within:
            asked = whole_number(within, 2)
            if asked is None or not 1 <= asked <= MAX_CLOSING_DAYS:
                errors["within"] = f"Enter a whole number of days from 1 to {MAX_CLOSING_DAYS}, such as 7."
            else:
                days = asked
        settings = request.app.state.settings
        setting = Setting(
            today,
            audit_log.clock(),
            days,
            request.app.state.home_sources,
            account_rules.lockout,
            nightly.schedule_of(settings),
            nightly.not_run_because(settings),
        )
        viewer = access.signed_in
        page = await work.home(viewer, setting)
        context = {
            "home": page,
            "within": within if errors else str(days),
            "errors": errors,
            "today": today,
            "links": show_all_links(page),
        }
        return Template("index.html", context=context, status_code=400 if errors else 200)


async def count_tasks(request: Request) -> None:
    """Before a page's handler (the app's `before_request`): the navigation's count for a signed-in reader, kept
    in the request's state for `nav_tasks.html`. API calls, files and writes count nothing."""
    path = request.url.path
    if request.method != "GET" or path.startswith(_NOT_PAGES):
        return
    access = request.state.get("access")
    if access is None or access.viewer is None:
        return
    state = request.app.state
    request.state.my_tasks = await counts.my_tasks(
        access.viewer, state.settings.today(), audit_log.clock(), state.home_sources, state.account_rules.lockout
    )


def _study(code: str) -> str:
    return f"/studies/{quote(code, safe='')}"


def _query(path: str, params: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(params), quote_via=quote)
    return f"{path}?{query}" if query else path


def _list_page(path: str, *also: tuple[str, str]) -> Callable[[str], str]:
    """A list page of a study, narrowed to one site when the list's key is "STUDY/SITE"."""

    def link(key: str) -> str:
        study, _, site = key.partition("/")
        return _query(_study(study) + path, [*([("site", site)] if site else []), *also])

    return link


def show_all_links(page: Home) -> dict[str, dict[str, str]]:
    """Per list, per study (or site): the full, paged list whose first rows the home page shows."""
    since = page.monitoring.since[:10] if page.monitoring else ""
    links: dict[str, Callable[[str], str]] = {
        "booked": _list_page("", ("tab", "today")),
        "closing": _list_page("", ("tab", "week")),
        "overdue": _list_page("", ("tab", "overdue")),
        "awaiting_site": _list_page("/deviations", *(("state", x) for x in AWAITING_SITE)),
        "reconsent": lambda key: _study(key) + "#consent-heading",
        "binder": _list_page("/binder"),
        "signatures": _list_page("/documents"),
        "extensions": _list_page("/extensions"),
        "awaiting_review": _list_page("/deviations", *(("state", x) for x in AWAITING_REVIEW)),
        "trail": _list_page("/audit", ("since", since)),
        "documents": _list_page("/documents"),
        "packages": _list_page("/sponsor-packages"),
        "metrics": _list_page("/reports"),
        "builds": _list_page("/sponsor-packages"),
    }
    return {name: {key: links[name](key) for key, _ in listed.by_study} for name, listed in _lists(page).items()}


def _lists(page: Home) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if page.awaiting_site is not None:
        found["awaiting_site"] = page.awaiting_site
    if page.coordination:
        visits = page.coordination.visits
        found.update(
            booked=visits.booked,
            closing=visits.closing,
            overdue=visits.overdue,
            reconsent=page.coordination.reconsent,
            binder=page.coordination.binder,
        )
    found["signatures"] = page.signatures
    if page.investigation:
        found["extensions"] = page.investigation.extensions
    if page.monitoring:
        found.update(
            awaiting_review=page.monitoring.awaiting_review,
            trail=page.monitoring.trail,
            documents=page.monitoring.documents,
        )
    if page.sponsoring:
        found.update(packages=page.sponsoring.packages, metrics=page.sponsoring.metrics)
    if page.administering:
        found["builds"] = page.administering.jobs.builds
    return found
