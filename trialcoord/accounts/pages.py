"""Pages: sign-in, sign-out, and the administrators' view of accounts and failed sign-ins."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from trialcoord.accounts import sessions
from trialcoord.accounts.api import RulesDep, address_of, signed_in
from trialcoord.accounts.sessions import PAGE, SignInRefused
from trialcoord.accounts.users import get_user, list_users
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.forms import Form, FormReader
from trialcoord.kernel.web.guard import PUBLIC, SESSION_COOKIE, SIGNED_IN, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr


def safe_next(target: str | None) -> str:
    """Only a path of this site: never '//host' or 'https://...' (an open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class AccountPages(Controller):
    include_in_schema = False

    @get("/sign-in", opt=PUBLIC)
    async def sign_in_form(self, next: QueryStr = None) -> Template:  # noqa: A002 - the query parameter's name
        return Template("sign_in.html", context={"next": safe_next(next), "error": None, "user_id": ""})

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
            context = {"next": target, "error": str(refused), "user_id": user_id}
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
    async def sign_out(self, access: AccessDep) -> Redirect:
        await sessions.sign_out(signed_in(access))
        return Redirect(
            "/sign-in", status_code=303, cookies=[Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/")]
        )

    @get("/admin", opt=needs(Action.MANAGE_USERS))
    async def admin(self) -> Template:
        users = await list_users()
        details = [await get_user(user.user_id) for user in users]
        problems = await sessions.recent_sign_in_problems()
        return Template("admin.html", context={"users": details, "problems": problems})
