"""Sign-in for API clients, the signed-in user, one's calendar feeds, and administration of accounts and grants."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromQuery, JSONBody, PathParameter

from trialcoord.accounts import sessions, users
from trialcoord.accounts.sessions import API, TOKEN, SignInRefused
from trialcoord.accounts.users import AccountRules
from trialcoord.kernel.rules.access import Action, Viewer
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import PUBLIC, SIGNED_IN, Access, needs
from trialcoord.kernel.web.params import InstallationDep, SitePath, StudyPath, SubjectPath, Today
from trialcoord.kernel.web.schemas import Text

UserPath = Annotated[str, PathParameter(description="User ID", max_length=64)]
GrantPath = Annotated[int, PathParameter(description="Grant number", ge=1, le=2**31 - 1)]
FeedPath = Annotated[int, PathParameter(description="Calendar feed number", ge=1, le=2**31 - 1)]
AccessDep = NamedDependency[Access]
Secret = Annotated[str, msgspec.Meta(max_length=1024)]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MANAGE = needs(Action.MANAGE_USERS)

RulesDep = NamedDependency[AccountRules]  # provided by the app (create_app builds the rules once)


class SignInIn(msgspec.Struct):
    user_id: UserId
    password: Secret


class SignInOut(msgspec.Struct):
    token: str
    user_id: str
    token_type: str = "Bearer"


class GrantOut(msgspec.Struct):
    id: int
    user_id: str
    role: str
    study: str | None
    site: str | None
    valid_from: date
    valid_to: date | None
    personal_data: bool
    granted_by: str
    granted_at: str
    revoked_by: str | None
    revoked_at: str | None


class UserOut(msgspec.Struct):
    user_id: str
    printed_name: str
    email: str
    status: str
    created_at: str
    grants: list[GrantOut] = msgspec.field(default_factory=list)


class UserIn(msgspec.Struct):
    user_id: UserId
    printed_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
    password: Secret


class PasswordIn(msgspec.Struct):
    password: Secret


class ReasonIn(msgspec.Struct):
    reason: Annotated[Text, msgspec.Meta(min_length=1)]


class GrantIn(msgspec.Struct):
    role: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    valid_from: date
    study: UserId | None = None
    site: UserId | None = None
    valid_to: date | None = None
    personal_data: bool = False


class SignInProblem(msgspec.Struct):
    attempted_at: str
    user_id: str
    address: str
    outcome: str


class CalendarFeedOut(msgspec.Struct):
    id: int
    user_id: str
    study: str
    site: str | None
    subject_id: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    revoked_by: str | None


class NewCalendarFeedOut(msgspec.Struct):
    feed: CalendarFeedOut
    url: str  # shown once: its token is stored only as a hash


def feed_url(request: Request, path: str) -> str:
    """The feed's full address, as a calendar app subscribes to it."""
    return str(request.base_url).rstrip("/") + path


def _feed_out(feed: sessions.CalendarFeed) -> CalendarFeedOut:
    return msgspec.convert(feed, CalendarFeedOut, from_attributes=True)


def address_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _user(user: users.User | users.UserWithGrants) -> UserOut:
    return msgspec.convert(user, UserOut, from_attributes=True)


def signed_in(access: Access) -> Viewer:
    """The viewer of a route the guard let through as signed in (opt=SIGNED_IN or an action)."""
    if access.viewer is None:
        raise NotAuthorizedException("Sign in to continue.")
    return access.viewer


class SessionController(Controller):
    path = "/api"
    tags = ["accounts"]

    @post("/sign-in", opt=PUBLIC, status_code=201, responses=problem_responses(400, 401, 429))
    async def sign_in(self, request: Request, data: JSONBody[SignInIn], account_rules: RulesDep) -> Response[SignInOut]:
        """Exchange a user ID and password for a bearer token; it lapses after the inactivity timeout."""
        try:
            signed = await sessions.sign_in(
                data.user_id, data.password, address_of(request), kind=API, rules=account_rules
            )
        except SignInRefused as refused:
            return refusal_response(refused)
        return Response(SignInOut(signed.token, signed.user_id), status_code=201)

    @post("/sign-out", opt=SIGNED_IN, status_code=204, responses=problem_responses(400, 401))
    async def sign_out(self, access: AccessDep, revoke_token: FromQuery[bool] = False) -> None:
        """End the session of the bearer token. A program's token (`trialcoord user token`) outlives a sign-out
        unless `revoke_token=true` asks for its end: a program signing out does not lose its credential."""
        viewer = signed_in(access)
        if viewer.kind != TOKEN or revoke_token:
            await sessions.sign_out(viewer)

    @get("/me", opt=SIGNED_IN, responses=problem_responses(401))
    async def me(self, access: AccessDep) -> UserOut:
        return _user(await users.get_user(access.user_id))


def refusal_response(refused: SignInRefused) -> Response:
    from trialcoord.kernel.web.errors import PROBLEM_JSON, _problem

    status = 429 if refused.retry_at else 401
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {"Retry-After": "60"}
    return Response(_problem(status, str(refused)), status_code=status, media_type=PROBLEM_JSON, headers=headers)


class UserController(Controller):
    path = "/api"
    tags = ["accounts"]

    @get("/users", opt=MANAGE, responses=problem_responses(401, 403))
    async def list_users(self) -> list[UserOut]:
        return [_user(user) for user in await users.list_users()]

    @post("/users", opt=MANAGE, status_code=201, responses=problem_responses(400, 401, 403, 409, 422))
    async def create_user(self, data: JSONBody[UserIn], access: AccessDep, account_rules: RulesDep) -> UserOut:
        user = await users.create_user(
            data.user_id, data.printed_name, data.email, data.password, access.user_id, rules=account_rules
        )
        return _user(user)

    @get("/users/{user_id:str}", opt=MANAGE, responses=problem_responses(400, 401, 403, 404))
    async def get_user(self, user_id: UserPath) -> UserOut:
        return _user(await users.get_user(user_id))

    @post("/users/{user_id:str}/disable", opt=MANAGE, responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def disable_user(
        self,
        user_id: UserPath,
        data: JSONBody[ReasonIn],
        access: AccessDep,
        installation: InstallationDep,
        today: Today,
    ) -> UserOut:
        """Disable the account and end its sessions; 409 for the last administrator's (grant another first)."""
        return _user(await users.disable_user(user_id, access.user_id, data.reason, installation, today))

    @post("/users/{user_id:str}/password", opt=MANAGE, responses=problem_responses(400, 401, 403, 404, 422))
    async def reset_password(
        self, user_id: UserPath, data: JSONBody[PasswordIn], access: AccessDep, account_rules: RulesDep
    ) -> UserOut:
        """Set a new password; every session of the account ends."""
        return _user(await users.reset_password(user_id, data.password, access.user_id, rules=account_rules))

    @post(
        "/users/{user_id:str}/grants", opt=MANAGE, status_code=201, responses=problem_responses(400, 401, 403, 404, 422)
    )
    async def grant(self, user_id: UserPath, data: JSONBody[GrantIn], access: AccessDep) -> GrantOut:
        granted = await users.grant(
            user_id,
            data.role,
            data.study,
            data.site,
            data.valid_from,
            data.valid_to,
            access.user_id,
            data.personal_data,
        )
        return msgspec.convert(granted, GrantOut, from_attributes=True)

    @post("/grants/{grant_id:int}/revoke", opt=MANAGE, responses=problem_responses(400, 401, 403, 404, 409, 422))
    async def revoke(self, grant_id: GrantPath, data: JSONBody[ReasonIn], access: AccessDep, today: Today) -> GrantOut:
        """Revoke the grant; 409 for the last administrator grant in force (grant another administrator first)."""
        revoked = await users.revoke(grant_id, access.user_id, data.reason, today)
        return msgspec.convert(revoked, GrantOut, from_attributes=True)

    @get("/sign-in-problems", opt=MANAGE, responses=problem_responses(401, 403))
    async def sign_in_problems(self) -> list[SignInProblem]:
        """Failed and refused sign-ins, newest first (11.300(d))."""
        return [
            msgspec.convert(attempt, SignInProblem, from_attributes=True)
            for attempt in await sessions.recent_sign_in_problems()
        ]


class CalendarFeedController(Controller):
    """Subscribable calendars: created where the user may export the site's or participant's schedule; the address
    is answered once; listed with their last use; revoked by their owner or an administrator."""

    path = "/api"
    tags = ["calendar feeds"]

    @post(
        "/studies/{study:str}/sites/{site:str}/feeds",
        opt=needs(Action.EXPORT),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def create_site_feed(
        self, request: Request, study: StudyPath, site: SitePath, access: AccessDep
    ) -> NewCalendarFeedOut:
        made = await sessions.create_feed(access.user_id, study, site=site)
        return NewCalendarFeedOut(_feed_out(made.feed), feed_url(request, made.path))

    @post(
        "/studies/{study:str}/participants/{subject_id:str}/feeds",
        opt=needs(Action.EXPORT),
        status_code=201,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def create_participant_feed(
        self, request: Request, study: StudyPath, subject_id: SubjectPath, access: AccessDep
    ) -> NewCalendarFeedOut:
        made = await sessions.create_feed(access.user_id, study, subject_id=subject_id)
        return NewCalendarFeedOut(_feed_out(made.feed), feed_url(request, made.path))

    @get("/calendar-feeds", opt=SIGNED_IN, responses=problem_responses(401))
    async def my_feeds(self, access: AccessDep) -> list[CalendarFeedOut]:
        """One's own feeds, newest first, with their last use (revoked ones too)."""
        return [_feed_out(feed) for feed in await sessions.calendar_feeds(access.user_id)]

    @get("/users/{user_id:str}/calendar-feeds", opt=MANAGE, responses=problem_responses(400, 401, 403))
    async def user_feeds(self, user_id: UserPath) -> list[CalendarFeedOut]:
        return [_feed_out(feed) for feed in await sessions.calendar_feeds(user_id)]

    @post(
        "/calendar-feeds/{feed_id:int}/revoke",
        opt=SIGNED_IN,
        status_code=200,
        responses=problem_responses(400, 401, 404),
    )
    async def revoke_feed(self, feed_id: FeedPath, access: AccessDep, today: Today) -> CalendarFeedOut:
        """Its address stops working at once; one's own feed, or any for an administrator."""
        return _feed_out(await sessions.revoke_feed(feed_id, signed_in(access), today))
