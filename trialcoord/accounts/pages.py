"""Pages: sign-in, sign-out, staying signed in, one's calendar feeds, and the administrators' view of accounts and
failed sign-ins."""

from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from jinja2 import pass_context
from jinja2.runtime import Context
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from trialcoord.accounts import sessions
from trialcoord.accounts.api import FeedPath, RulesDep, address_of, feed_url, signed_in
from trialcoord.accounts.sessions import PAGE, SignInRefused
from trialcoord.accounts.users import STATUSES, USER_SORTS, UserFilter, users_page
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import Action, Role
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import Form, FormReader
from trialcoord.kernel.web.guard import PUBLIC, SESSION_COOKIE, SIGNED_IN, needs
from trialcoord.kernel.web.paging import page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, SitePath, StudyPath, SubjectPath, Today

PageSize = FromQuery[Optional[int]]  # noqa: UP045 (read at run time by litestar's parameter parsing)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")  # browsers drop tabs and newlines: "/\t/host" is "//host"


def safe_next(target: str | None) -> str:
    """Only a path of this site: never '//host', 'https://...' or what a browser would read as one (an open
    redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or _UNSAFE.search(target):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


ENDED = {"inactivity": "You were signed out after a period of inactivity. Sign in again to go back to the page."}


@pass_context
def session_timing(context: Context) -> sessions.PageTiming | None:
    """For base.html: the inactivity sign-out a page of a signed-in session warns of (None: no such session)."""
    request = context.get("request")
    access = getattr(request.state, "access", None) if request is not None else None
    if access is None or access.viewer is None or access.viewer.kind != PAGE:
        return None
    return sessions.page_timing(request.app.state.account_rules.inactivity)


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _prefers_json(request: Request) -> bool:
    return request.accept.best_match(["text/html", "application/json"], default="text/html") == "application/json"


class AccountPages(Controller):
    include_in_schema = False

    @get("/sign-in", opt=PUBLIC)
    async def sign_in_form(
        self,
        next: QueryStr = None,  # noqa: A002 - the query parameter's name
        ended: QueryStr = None,
    ) -> Template:
        context: dict[str, Any] = {
            "next": safe_next(next),
            "error": ENDED.get(ended or ""),
            "user_id": "",
            "errors": {},
        }
        return Template("sign_in.html", context=context)

    @post("/sign-in", opt=PUBLIC)
    async def sign_in(self, request: Request, data: Form, account_rules: RulesDep) -> Template | Redirect:
        form = FormReader(data)
        user_id = (form.data.get("user_id") or "")[:64]
        target = safe_next(form.data.get("next"))
        try:
            signed = await sessions.sign_in(
                user_id, data.get("password") or "", address_of(request), kind=PAGE, rules=account_rules
            )
        except SignInRefused as refused:
            context = {"next": target, "error": None, "errors": {"": str(refused)}, "user_id": user_id}
            return Template("sign_in.html", context=context, status_code=429 if refused.retry_at else 401)
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=signed.token,
            httponly=True,
            samesite="lax",
            path="/",
            secure=request.app.state.settings.secure_cookies,
        )
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/sign-out", opt=SIGNED_IN)
    async def sign_out(self, request: Request, access: AccessDep) -> Redirect:
        """Sign out; the page's own sign-out at the inactivity limit says so (`why`) and where to come back to."""
        form = await request.form()
        why = _field(form, "why")
        why = why if why in sessions.SIGN_OUT_REASONS else "signed out"
        await sessions.sign_out(signed_in(access), why)
        target = "/sign-in"
        if why == "inactivity":
            target += f"?next={quote(safe_next(_field(form, 'next')), safe='')}&ended=inactivity"
        return Redirect(target, status_code=303, cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/")])

    @post("/session/extend", opt=SIGNED_IN, status_code=200)
    async def stay_signed_in(
        self, request: Request, access: AccessDep, account_rules: RulesDep
    ) -> Response[dict[str, Any]] | Redirect:
        """The "Stay signed in" of the warning before the inactivity sign-out: the script asks for JSON (how long
        the session now lasts); the form without a script comes back to its page."""
        timing = await sessions.extend(signed_in(access), account_rules)
        if _prefers_json(request):
            return Response({"ends_in": timing.ends_in, "warn": timing.warn})
        return Redirect(safe_next(_field(await request.form(), "next")), status_code=303)

    @post("/studies/{study:str}/sites/{site:str}/calendar-feeds", opt=needs(Action.EXPORT), status_code=201)
    async def create_site_feed(self, request: Request, study: StudyPath, site: SitePath, access: AccessDep) -> Template:
        """A new feed of the site's visits: its address shown once, with one's other feeds."""
        made = await sessions.create_feed(access.user_id, study, site=site)
        return await _feeds_page(access.user_id, made, feed_url(request, made.path))

    @post(
        "/studies/{study:str}/participants/{subject_id:str}/calendar-feeds", opt=needs(Action.EXPORT), status_code=201
    )
    async def create_participant_feed(
        self, request: Request, study: StudyPath, subject_id: SubjectPath, access: AccessDep
    ) -> Template:
        made = await sessions.create_feed(access.user_id, study, subject_id=subject_id)
        return await _feeds_page(access.user_id, made, feed_url(request, made.path))

    @get("/calendar-feeds", opt=SIGNED_IN)
    async def calendar_feeds(self, access: AccessDep) -> Template:
        """One's feeds with their last fetch; revoke each."""
        return await _feeds_page(access.user_id)

    @post("/calendar-feeds/{feed_id:int}/revoke", opt=SIGNED_IN)
    async def revoke_feed(self, feed_id: FeedPath, access: AccessDep, today: Today) -> Redirect:
        await sessions.revoke_feed(feed_id, signed_in(access), today)
        return Redirect("/calendar-feeds", status_code=303)

    @get("/admin", opt=needs(Action.MANAGE_USERS))
    async def admin(
        self,
        text: QueryStr = None,
        role: QueryStr = None,
        status: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: PageSize = None,
    ) -> Template:
        """Failed sign-ins, then the accounts a page at a time, found by ID, name or e-mail, role and status."""
        wanted = page_request(sort, order, after, size, sorts=USER_SORTS, default="user_id", key_width=2)
        shown = {"text": text or "", "role": role or "", "status": status or ""}
        errors: dict[str, str] = {}
        page = None
        try:
            page = await users_page(UserFilter(text, role, status), wanted)
        except InvalidInput as error:
            errors = field_messages(error)
        context = {
            "page": page,
            "filters": shown,
            "errors": errors,
            "roles": [(str(r), str(r).replace("_", " ")) for r in Role],
            "statuses": [(str(s), str(s)) for s in STATUSES],
            "problems": await sessions.recent_sign_in_problems(),
        }
        return Template("admin.html", context=context, status_code=400 if errors else 200)


async def _feeds_page(user_id: str, made: sessions.NewFeed | None = None, url: str | None = None) -> Template:
    context = {
        "feeds": await sessions.calendar_feeds(user_id),
        "new_feed": made.feed if made else None,
        "new_url": url,
    }
    return Template("calendar_feeds.html", context=context, status_code=201 if made else 200)
