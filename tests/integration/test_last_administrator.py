"""Issue 17: nobody locks the web out of administration, and signing a program out keeps its token unless asked."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tests.conftest import account_rules, add_user, signed_in
from trialcoord.accounts import sessions, users
from trialcoord.kernel.problems import Conflict

pytestmark = pytest.mark.anyio

WHY = "the last active administrator grant: grant another administrator first"


async def _grant_of(user_id: str) -> int:
    return next(g.id for g in (await users.get_user(user_id)).grants if g.role == "administrator")


async def test_the_last_administrator_grant_cannot_be_revoked_or_its_account_disabled(client):
    own = await _grant_of("admin")
    revoked = await client.post(f"/api/grants/{own}/revoke", json={"reason": "oops"})
    assert revoked.status_code == 409 and WHY in revoked.json()["detail"], revoked.text
    disabled = await client.post("/api/users/admin/disable", json={"reason": "oops"})
    assert disabled.status_code == 409 and WHY in disabled.json()["detail"], disabled.text
    assert (await client.get("/api/me")).status_code == 200  # nothing changed: still signed in, still granted
    assert (await users.get_user("admin")).grants[0].revoked_at is None


async def test_another_administrator_in_force_lets_one_go(client, study):
    # an ended grant, a grant of one study, and a disabled account's grant keep no one administering
    await add_user("old", ("administrator", None, None, date(2020, 12, 31)))
    await add_user("local", ("administrator", "TST-1", None))
    await add_user("gone", ("administrator", None, None))
    assert (await client.post("/api/users/gone/disable", json={"reason": "left"})).status_code == 201
    assert (await client.post("/api/users/admin/disable", json={"reason": "x"})).status_code == 409
    await add_user("bea", ("administrator", None, None))
    revoked = await client.post(f"/api/grants/{await _grant_of('admin')}/revoke", json={"reason": "handed over"})
    assert revoked.status_code == 201 and revoked.json()["revoked_at"]
    # bea is now the last one; a non-administrator grant of hers still goes
    bea = await signed_in(client, "bea")
    assert (await bea.post("/api/users/bea/disable", json={"reason": "x"})).status_code == 409
    extra = await users.grant("bea", "coordinator", "TST-1", "101", date(2020, 1, 1), None, "admin")
    assert (await bea.post(f"/api/grants/{extra.id}/revoke", json={"reason": "not needed"})).status_code == 201


async def test_two_concurrent_revocations_of_the_last_two_cannot_both_succeed(db):
    await add_user("ann", ("administrator", None, None))
    await add_user("bob", ("administrator", None, None))
    grants = [await _grant_of("ann"), await _grant_of("bob")]

    async def revoke(grant_id: int) -> str:
        try:
            await users.revoke(grant_id, "cli:root", "race")
        except Conflict as refused:
            return str(refused)
        return "revoked"

    outcomes = await asyncio.gather(*(revoke(g) for g in grants))
    assert sorted(outcomes)[1] == "revoked" and WHY in sorted(outcomes)[0], outcomes
    left = [g for g in (await users.get_user("ann")).grants + (await users.get_user("bob")).grants if not g.revoked_at]
    assert len(left) == 1


async def test_a_concurrent_revocation_and_disabling_cannot_both_succeed(db, installation):
    await add_user("ann", ("administrator", None, None))
    await add_user("bob", ("administrator", None, None))

    async def attempt(change) -> str:
        try:
            await change
        except Conflict:
            return "refused"
        return "done"

    outcomes = await asyncio.gather(
        attempt(users.revoke(await _grant_of("ann"), "cli:root", "race")),
        attempt(users.disable_user("bob", "cli:root", "race", installation)),
    )
    assert sorted(outcomes) == ["done", "refused"], outcomes


async def test_signing_out_with_a_program_token_keeps_it_unless_asked(anonymous, personas):
    issued = await sessions.issue_token("coord-a", 7, "cli:root")
    anonymous.headers["Authorization"] = f"Bearer {issued.token}"
    assert (await anonymous.post("/api/sign-out")).status_code == 204
    assert (await anonymous.get("/api/me")).status_code == 200, "the program's token ended"
    assert (await anonymous.post("/api/sign-out?revoke_token=true")).status_code == 204
    assert (await anonymous.get("/api/me")).status_code == 401


async def test_signing_out_of_a_sign_in_session_still_ends_it(anonymous, personas):
    signed = await sessions.sign_in(
        "coord-a", "correct horse battery staple", "127.0.0.1", kind=sessions.API, rules=account_rules()
    )
    anonymous.headers["Authorization"] = f"Bearer {signed.token}"
    assert (await anonymous.post("/api/sign-out")).status_code == 204
    assert (await anonymous.get("/api/me")).status_code == 401
