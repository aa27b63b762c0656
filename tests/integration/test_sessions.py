"""Sign-in, lock-out, sessions, CSRF, tokens and the signing ceremony, through the app and the services."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.conftest import PASSWORD, account_rules, add_user, signed_in
from trialcoord.accounts import sessions, signing, users
from trialcoord.accounts.rules.accounts import LockoutPolicy
from trialcoord.accounts.users import AccountRules
from trialcoord.kernel import audit_log
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import Viewer

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(server_clock):
    """The server clock at T0, moved on by the test."""
    server_clock.to(T0)
    return server_clock.by


async def _page_sign_in(client, user_id: str, password: str = PASSWORD, next_page: str = "/"):
    return await client.post("/sign-in", data={"user_id": user_id, "password": password, "next": next_page})


async def test_pages_ask_anonymous_visitors_to_sign_in_and_come_back(anonymous, personas):
    response = await anonymous.get("/studies/TST-1")
    assert response.status_code == 401 and 'name="password"' in response.text
    assert 'value="/studies/TST-1"' in response.text
    signed = await _page_sign_in(anonymous, "coord-a", next_page="/studies/TST-1")
    assert signed.status_code == 303 and signed.headers["location"] == "/studies/TST-1"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = await anonymous.get("/studies/TST-1")
    assert page.status_code == 200 and "Coord-A" in page.text


async def test_an_open_redirect_is_not_followed(anonymous, personas):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await _page_sign_in(anonymous, "coord-a", next_page=target)
        assert response.headers["location"] == "/"


async def test_the_api_wants_a_bearer_token(anonymous, personas):
    assert (await anonymous.get("/api/me")).status_code == 401
    assert (await anonymous.get("/api/me")).headers["www-authenticate"] == "Bearer"
    token = (await anonymous.post("/api/sign-in", json={"user_id": "Coord-A", "password": PASSWORD})).json()["token"]
    me = await anonymous.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["user_id"] == "coord-a"


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer " + "x" * 5000, "Basic YWRtaW46YWRtaW4=", "Bearer \u00e9\u00e9", "bearer  ", "Token abc"],
)
async def test_malformed_tokens_are_401_never_500(anonymous, personas, header):
    response = await anonymous.get("/api/me", headers={"Authorization": header.encode("utf-8")})
    assert response.status_code == 401


async def test_wrong_credentials_say_the_same_thing_whether_or_not_the_user_exists(anonymous, personas):
    unknown = await anonymous.post("/api/sign-in", json={"user_id": "nobody", "password": "x" * 12})
    wrong = await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": "x" * 12})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"] == sessions.WRONG


async def test_what_was_typed_as_an_unknown_user_id_is_never_recorded(anonymous, personas, clock):
    for typed in ("Tr0ub4dor&3 horse", "correcthorsebatterystaple"):  # passwords typed in the wrong field
        await anonymous.post("/api/sign-in", json={"user_id": typed, "password": "x" * 12})
        clock(minutes=1)
    problems = await sessions.recent_sign_in_problems()
    assert [p.user_id for p in problems[:2]] == [sessions.UNKNOWN] * 2
    trail = str(await audit_log.browse(audit_log.AuditFilter(action="sign_in_failed"), None, 5)).lower()
    assert "tr0ub4dor" not in trail and "correcthorse" not in trail


async def test_concurrent_attempts_cannot_all_pass_the_gate(personas, clock):
    import asyncio

    async def attempt():
        try:
            await sessions.sign_in("coord-a", "wrong password!", "10.0.0.9", rules=account_rules())
        except sessions.SignInRefused as refused:
            return "refused" if refused.retry_at else "failed"

    outcomes = await asyncio.gather(*(attempt() for _ in range(20)))
    assert outcomes.count("failed") <= 5  # the password was checked at most as often as the policy allows
    assert outcomes.count("refused") >= 15


async def test_an_address_spraying_passwords_across_accounts_is_refused(personas, clock):
    rules = replace(account_rules(), lockout=LockoutPolicy(per_address=3))
    for user_id in ("coord-a", "coord-b", "sponsor"):
        with pytest.raises(sessions.SignInRefused):
            await sessions.sign_in(user_id, "wrong password!", "10.0.0.7", rules=rules)
    with pytest.raises(sessions.SignInRefused, match="too many failed"):
        await sessions.sign_in("monitor", PASSWORD, "10.0.0.7", rules=rules)  # right password, throttled address
    assert (await sessions.sign_in("monitor", PASSWORD, "10.0.0.8", rules=account_rules())).user_id == "monitor"


async def test_failures_are_recorded_audited_and_shown_to_administrators(anonymous, personas, clock):
    await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": "wrong password!"})
    admin = await signed_in(anonymous, "admin")
    problems = (await admin.get("/api/sign-in-problems")).json()
    assert problems[0]["user_id"] == "coord-a" and problems[0]["outcome"] == "failed"
    page = await admin.get("/admin")
    assert "coord-a" in page.text and "failed" in page.text
    trail = (await admin.get("/api/audit", params={"action": "sign_in_failed"})).json()
    assert trail[0]["record_id"] == "coord-a" and "wrong password" not in str(trail)
    clock(seconds=2)
    assert (await (await signed_in(anonymous, "coord-a")).get("/api/sign-in-problems")).status_code == 403


async def test_repeated_failures_slow_then_lock_the_account(anonymous, personas, clock):
    async def attempt(password: str):
        return await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": password})

    for _ in range(4):
        assert (await attempt("wrong password!")).status_code == 401
        clock(minutes=1)
    assert (await attempt("wrong password!")).status_code == 401  # the fifth failure locks
    clock(seconds=1)
    locked = await attempt(PASSWORD)  # even the right password is refused now
    assert locked.status_code == 429 and "locked" in locked.json()["detail"]
    clock(minutes=14)
    assert (await attempt(PASSWORD)).status_code == 429
    clock(minutes=1)
    assert (await attempt(PASSWORD)).status_code == 201


async def test_a_second_attempt_within_the_delay_is_refused_not_counted(anonymous, personas, clock):
    assert (
        await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": "wrong password!"})
    ).status_code == 401
    refused = await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": PASSWORD})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    clock(seconds=2)
    assert (await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": PASSWORD})).status_code == 201


async def test_sessions_end_after_the_inactivity_timeout(anonymous, personas, clock):
    client = await signed_in(anonymous, "coord-a")
    clock(minutes=14)
    assert (await client.get("/api/me")).status_code == 200  # activity: the period starts again
    clock(minutes=14, seconds=59)
    assert (await client.get("/api/me")).status_code == 200
    clock(minutes=15)
    lapsed = await client.get("/api/me")
    assert lapsed.status_code == 401 and "inactivity" in lapsed.json()["detail"]
    assert (await client.get("/api/me")).status_code == 401  # ended for good, not just this once
    page = await client.get("/")
    assert page.status_code == 401 and "Sign in" in page.text  # the ended session is no session at all


async def test_the_timeout_is_configurable(db, personas, clock, tmp_path):
    import httpx

    from trialcoord.kernel.config import load_settings
    from trialcoord.web.app import create_app

    settings = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}
    app = create_app(load_settings({**settings, "TRIALCOORD_SESSION_TIMEOUT_MINUTES": "5"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        await signed_in(client, "coord-a")
        clock(minutes=5)
        assert (await client.get("/api/me")).status_code == 401


async def test_a_new_password_or_disabling_signs_out_everywhere(anonymous, personas, installation):
    import httpx

    first = await signed_in(anonymous, "coord-a")
    async with httpx.AsyncClient(transport=anonymous._transport, base_url="https://testserver") as other:
        second = await signed_in(other, "coord-a")
        await users.reset_password("coord-a", "a brand new passphrase", "admin", rules=account_rules())
        assert (await first.get("/api/me")).status_code == 401
        assert (await second.get("/api/me")).status_code == 401
    signed = await sessions.sign_in("coord-a", "a brand new passphrase", "127.0.0.1", rules=account_rules())
    await users.disable_user("coord-a", "admin", "left the site", installation=installation)
    assert (await sessions.resolve(signed.token, rules=account_rules())).viewer is None
    with pytest.raises(sessions.SignInRefused):
        await sessions.sign_in("coord-a", "a brand new passphrase", "127.0.0.1", rules=account_rules())


async def test_signing_out_ends_the_session(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    token = client.headers["Authorization"].split()[1]
    response = await client.post("/sign-out")
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    assert (await sessions.resolve(token, rules=account_rules())).viewer is None


async def test_every_page_form_needs_the_sessions_csrf_token(app, anonymous, personas):
    from tests.integration.test_access_matrix import _fill, routes

    client = await signed_in(anonymous, "admin")
    real = client.headers.pop("X-CSRF-Token")
    posts = [
        path
        for method, path, _ in routes(app)
        if method == "POST" and not path.startswith("/api") and path != "/sign-in"
    ]
    assert len(posts) >= 7
    for path in posts:
        url = _fill(path, subject_id="1001", site="101")
        missing = await client.post(url, data={"reason": "x"})
        forged = await client.post(url, data={"reason": "x", "csrf_token": real[:-2] + "xx"})
        assert missing.status_code == forged.status_code == 403, path
        assert "security token" in forged.text
    good = await client.post("/studies/TST-1/participants/1001/events", data={"csrf_token": real})
    assert good.status_code == 422  # past the check, stopped by the empty form


async def test_bearer_tokens_do_not_open_pages_and_cookies_do_not_write_to_the_api(anonymous, personas):
    token = (await anonymous.post("/api/sign-in", json={"user_id": "coord-a", "password": PASSWORD})).json()["token"]
    assert (await anonymous.get("/", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    anonymous.cookies.set("trialcoord_session", token)
    assert (await anonymous.get("/api/me")).status_code == 200  # a download linked from a page
    write = await anonymous.post("/api/studies/TST-1/participants", json={"subject_id": "9", "site": "101"})
    assert write.status_code == 401


async def test_issued_tokens_expire(personas, clock):
    token = await sessions.issue_token("coord-a", 2, "admin")
    clock(days=1, hours=23)
    assert (await sessions.resolve(token.token, rules=account_rules())).viewer is not None
    clock(hours=1)
    assert (await sessions.resolve(token.token, rules=account_rules())).why == "expired"


async def test_account_and_grant_input_is_checked(anonymous, personas):
    client = await signed_in(anonymous, "admin")
    too_long = await client.post(
        "/api/users", json={"user_id": "u" * 65, "printed_name": "U", "email": "u@x.org", "password": PASSWORD}
    )
    assert too_long.status_code == 400
    role = await client.post(
        "/api/users/coord-a/grants", json={"role": "wizard", "valid_from": "2024-01-01", "study": "TST-1"}
    )
    assert role.status_code == 422 and "coordinator" in role.json()["errors"][0]["message"]
    for scope, field in (({"study": "TST-9"}, "study"), ({"study": "TST-1", "site": "999"}, "site")):
        typo = await client.post(
            "/api/users/coord-a/grants",
            json={"role": "investigator", "valid_from": "2024-01-01", "site": "101", **scope},
        )
        assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == field
    weak = await client.post(
        "/api/users", json={"user_id": "newbie", "printed_name": "N", "email": "n@x.org", "password": "short"}
    )
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "password"
    assert "short" not in weak.text
    taken = await client.post(
        "/api/users", json={"user_id": "Coord-A", "printed_name": "C", "email": "c@x.org", "password": PASSWORD}
    )
    assert taken.status_code == 409
    grant = await client.post(
        "/api/users/coord-a/grants",
        json={"role": "investigator", "valid_from": "2024-01-01", "study": "TST-1", "site": "102"},
    )
    assert grant.status_code == 201
    revoked = await client.post(f"/api/grants/{grant.json()['id']}/revoke", json={"reason": "assigned elsewhere"})
    assert revoked.json()["revoked_by"] == "admin"
    trail = (await client.get("/api/audit", params={"record_type": "grant"})).json()
    assert [e["action"] for e in trail[:2]] == ["revoke", "grant"] and trail[0]["reason"] == "assigned elsewhere"


# The signing ceremony (11.200(a)(1))


async def _viewer(user_id: str) -> Viewer:
    signed = await sessions.sign_in(user_id, PASSWORD, "127.0.0.1", rules=account_rules())
    return (await sessions.resolve(signed.token, rules=account_rules())).viewer


async def test_the_first_signing_needs_both_components_later_ones_the_password(personas, clock):
    viewer = await _viewer("coord-a")
    with pytest.raises(InvalidInput, match="user ID and password"):
        await signing.signing_ceremony(viewer, "authorship", PASSWORD, None, rules=account_rules())
    first = await signing.signing_ceremony(viewer, "authorship", PASSWORD, "Coord-A", rules=account_rules())
    assert (first.printed_name, str(first.meaning), str(first.components)) == (
        "Coord-A",
        "authorship",
        "user ID and password",
    )
    clock(minutes=5)
    second = await signing.signing_ceremony(viewer, "review", PASSWORD, None, rules=account_rules())
    assert str(second.components) == "password"


async def test_a_failed_signing_fails_closed_and_restarts_the_ceremony(personas, clock):
    viewer = await _viewer("coord-a")
    await signing.signing_ceremony(viewer, "approval", PASSWORD, "coord-a", rules=account_rules())
    with pytest.raises(InvalidInput, match="password is not correct"):
        await signing.signing_ceremony(viewer, "approval", "not my password", None, rules=account_rules())
    with pytest.raises(InvalidInput, match="user ID and password"):
        await signing.signing_ceremony(viewer, "approval", PASSWORD, None, rules=account_rules())
    with pytest.raises(InvalidInput, match="meaning"):
        await signing.signing_ceremony(viewer, "because", PASSWORD, "coord-a", rules=account_rules())
    with pytest.raises(InvalidInput, match="not the signed-in"):
        await signing.signing_ceremony(viewer, "approval", PASSWORD, "coord-b", rules=account_rules())
    trail = await audit_log.browse(audit_log.AuditFilter(action="signing_failed"), None, 10)
    # an unknown meaning is refused as a mistake before the ceremony: not a failed signing
    assert len(trail) == 3 and all("not my password" not in str(e) for e in trail)


async def test_a_disabled_account_cannot_sign(personas, installation):
    viewer = await _viewer("coord-a")
    await users.disable_user("coord-a", "admin", "left", installation=installation)
    with pytest.raises(InvalidInput):
        await signing.signing_ceremony(viewer, "approval", PASSWORD, "coord-a", rules=account_rules())


async def test_a_user_id_is_never_reused(personas, installation):
    from trialcoord.kernel.problems import Conflict

    await users.disable_user("coord-b", "admin", "left", installation=installation)
    with pytest.raises(Conflict, match="never reused"):
        await add_user("coord-b")


async def test_nothing_but_static_files_may_be_cached(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    for url in ("/", "/studies/TST-1/participants/1001", "/api/studies/TST-1/participants/1001/identity", "/api/me"):
        assert (await client.get(url)).headers["cache-control"] == "no-store", url
    assert "max-age" in (await client.get("/static/site.css")).headers["cache-control"]


async def test_password_checks_run_off_the_event_loop(personas):
    import threading

    threads = []
    real = account_rules().hashing

    class Watching:
        def __getattr__(self, name):
            return getattr(real, name)

        def verify(self, stored, password):
            threads.append(threading.current_thread())
            return real.verify(stored, password)

    await sessions.sign_in("coord-a", PASSWORD, "127.0.0.1", rules=AccountRules(hashing=Watching()))
    assert threads and threading.main_thread() not in threads
