"""Who is asking, and may they: one guard in front of every route (docs/access-control.md).

Every route handler declares its rule in `opt`: `needs(Action.X)` (with `across_sites=True` when a
study-wide page or list is shown to anyone working at one of its sites, filtered to theirs), `SIGNED_IN`, or
`PUBLIC`; a calendar feed's `feed(Action.X)`. A route without a rule is refused, so a new route cannot be open by
accident; the route x role matrix test walks the app's own route table. The API takes bearer tokens (and the
session cookie for GET, so pages can link downloads) and the pages the session cookie, so a page form is the only
cookie-authenticated write, and each carries a CSRF token.

Who a token stands for and where a participant is come from the features, handed to the guard by `create_app`
(app state `resolve_session`, `resolve_feed`, `participant_site`): the guard sits below every feature's routes.

A calendar feed's route takes neither header nor cookie (a calendar app sends none): the token in its address
stands for the feed's owner, for that one calendar, and the route's action is decided on the owner's grants as
they are at each fetch. Anything else answers 404, a grant that no longer covers it 403, both without data.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import date
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler

from trialcoord.kernel.rules.access import Action, SiteScope, Viewer, authorize, visible_sites

SESSION_COOKIE = "trialcoord_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
API_PREFIX = "/api"
PUBLIC: dict[str, Any] = {"rule": "public"}
SIGNED_IN: dict[str, Any] = {"rule": "signed_in"}
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_COOKIE_METHODS = frozenset({"GET", "HEAD"})  # the methods on which the API also takes the session cookie
BEARER, COOKIE = "bearer", "cookie"  # the credentials a request may carry (`credentials`)
_LAPSED = {
    "lapsed": "You were signed out after a period of inactivity; sign in again.",
    "expired": "The token has expired.",
}


def feed(action: Action) -> dict[str, Any]:
    """A calendar feed's route: the token in its path (`token`) stands for its owner, who needs `action` there."""
    return {"rule": "feed", "action": action, "also": (), "across_sites": False}


def needs(action: Action, *also: Action, across_sites: bool = False) -> dict[str, Any]:
    """A route that needs `action` (and every one of `also`) on its study and site."""
    return {"rule": "action", "action": action, "also": also, "across_sites": across_sites}


@dataclass(frozen=True, slots=True)
class Access:
    """What the guard found out, for the handler: who, and which sites of the study they may see."""

    viewer: Viewer | None  # None on a public route only
    sites: SiteScope | None = None  # for an `across_sites` route

    @property
    def signed_in(self) -> Viewer:
        """The viewer; a handler asks only on a route that declared a rule needing one."""
        if self.viewer is None:
            raise RuntimeError("a public route's handler asked who is signed in: its route must declare a rule")
        return self.viewer

    @property
    def user_id(self) -> str:
        return self.signed_in.user_id

    def shows(self, site: str) -> bool:
        return self.sites is None or self.sites.includes(site)

    def require_site(self, site: str, what: str) -> None:
        """For a write whose site is in the body: the guard could only check the study."""
        if not self.shows(site):
            raise PermissionDeniedException(f"{self.user_id} may not {what} at site {site}")

    def may(self, action: Action, study: str, site: str | None, today: date) -> bool:
        return bool(authorize(self.signed_in.grants, action, study, site, today))

    def may_see_study(self, study: str, today: date) -> bool:
        return any(g.in_force(today) and g.study in (None, study) for g in self.signed_in.grants)


def rule_of(handler: BaseRouteHandler, path: str, method: str) -> dict[str, Any] | None:
    """The declared rule; litestar's own OPTIONS answers and the OpenAPI document are public."""
    if method == "OPTIONS" or path.startswith("/schema"):
        return PUBLIC
    return handler.opt.get("rule") and handler.opt


async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    path = connection.url.path
    is_api = path.startswith(API_PREFIX)
    method = str(connection.scope.get("method", "GET"))  # HTTP routes only: the app has no websockets
    rule = rule_of(handler, path, method)
    if rule is None:
        raise PermissionDeniedException("This route declares no access rule, so it is refused.")
    if "\x00" in path or "%00" in connection.scope.get("query_string", b"").decode("latin-1"):
        raise ValidationException("The address contains a NUL character", extra=[{"key": "path", "message": "NUL"}])
    if rule["rule"] == "feed":
        connection.state.access = await _feed_access(connection, rule)
        return
    resolution = await connection.app.state.resolve_session(_token(connection, path, method))
    viewer = resolution.viewer
    connection.state.access = Access(viewer)
    if rule["rule"] == "public":
        return
    if viewer is None:
        detail = _LAPSED.get(
            resolution.why,
            "Sign in to continue." if not is_api else "A bearer token is required (Authorization: Bearer <token>).",
        )
        raise NotAuthorizedException(detail, headers={"WWW-Authenticate": "Bearer"} if is_api else None)
    if not is_api and method in _UNSAFE:
        await _check_csrf(connection, viewer)
    if rule["rule"] == "signed_in":
        return
    connection.state.access = await _decide(connection, viewer, rule)


async def _decide(connection: ASGIConnection, viewer: Viewer, rule: dict[str, Any]) -> Access:
    action: Action = rule["action"]
    needed = (action, *rule.get("also", ()))
    today: date = connection.app.state.settings.today()
    params = connection.path_params
    study, site = params.get("study"), params.get("site")
    if "subject_id" in params:
        # The same refusal whether the participant exists or not, naming no site: nothing leaks.
        subject = params["subject_id"]
        site = await connection.app.state.participant_site(study, subject)
        if site is None and all(authorize(viewer.grants, a, study, None, today) for a in needed):
            return Access(viewer)  # whoever sees the whole study may learn it does not exist (404)
        if site is None or not all(authorize(viewer.grants, a, study, site, today) for a in needed):
            raise PermissionDeniedException(
                f"{viewer.user_id} may not {_verb(action)} participant {subject} of {study} ({_grants(viewer, today)})"
            )
        return Access(viewer)
    if study is not None and site is None and rule.get("across_sites"):
        scope = visible_sites(viewer.grants, action, study, today)
        chosen = connection.query_params.get("site")  # a list narrowed to one site, or an enrolment page
        if chosen:
            scope = SiteScope(False, frozenset({chosen}) if scope.includes(chosen) else frozenset())
        if scope.all_sites or scope.sites:
            return Access(viewer, scope)
        site = chosen or None
    for one in needed:
        decision = authorize(viewer.grants, one, study, site, today)
        if not decision:
            raise PermissionDeniedException(
                f"{viewer.user_id} may not {_verb(one)} {_where(study, site)}: {decision.reason}"
            )
    return Access(viewer)


async def _feed_access(connection: ASGIConnection, rule: dict[str, Any]) -> Access:
    params = connection.path_params
    resolution = await connection.app.state.resolve_feed(
        params.get("token"), params.get("study"), params.get("site"), params.get("subject_id")
    )
    if resolution.viewer is None:
        raise NotFoundException("No such calendar feed: it was revoked, its account disabled, or its address is wrong.")
    try:
        return await _decide(connection, resolution.viewer, rule)
    except PermissionDeniedException:  # the message would describe the owner's grants to whoever holds the address
        raise PermissionDeniedException(
            "This calendar feed's owner may no longer see these visits: it serves nothing."
        ) from None


def _grants(viewer: Viewer, today: date) -> str:
    """The viewer's own grants, for a refusal that must not describe its target."""

    def state(g) -> str:
        if g.valid_to is not None and today > g.valid_to:
            return f" (ended {g.valid_to})"
        return f" (starts {g.valid_from})" if today < g.valid_from else ""

    held = [g.describe() + state(g) for g in viewer.grants]
    return "your grants: " + ("; ".join(held) if held else "none")


def _verb(action: Action) -> str:
    return str(action).replace("_", " ")


def _where(study: str | None, site: str | None) -> str:
    if study is None:
        return "system-wide"
    return f"in {study}" + (f" at site {site}" if site else "")


def credentials(path: str, method: str) -> tuple[str, ...]:
    """What the guard reads who is asking from, in order: the API takes the bearer token, and the session
    cookie on a safe method (a download linked from a page); a page takes the cookie. The OpenAPI document's
    `security` says the same (kernel/web/openapi.py)."""
    if not path.startswith(API_PREFIX):
        return (COOKIE,)
    return (BEARER, COOKIE) if method in _COOKIE_METHODS else (BEARER,)


def _token(connection: ASGIConnection, path: str, method: str) -> str | None:
    accepted = credentials(path, method)
    if BEARER in accepted:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return connection.cookies.get(SESSION_COOKIE) if COOKIE in accepted else None


async def _check_csrf(connection: ASGIConnection, viewer: Viewer) -> None:
    """The session's token, from the form field or the header, compared in constant time."""
    sent = connection.headers.get(CSRF_HEADER)
    if sent is None and hasattr(connection, "form"):
        form = await connection.form()
        sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), viewer.csrf_token.encode()):
        raise PermissionDeniedException("The form's security token is missing or wrong; reload the page and try again.")
