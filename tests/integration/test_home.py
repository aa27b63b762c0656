"""The home page of one's tasks, over both engines: what each role lands on after signing in."""

from __future__ import annotations

import pytest

from tests.conftest import add_user, signed_in

pytestmark = [pytest.mark.anyio, pytest.mark.db]


async def test_an_ended_grant_says_when_it_ended_and_whom_to_ask(anonymous, study):
    """Found: a monitor whose grant ended read "No study is loaded yet ... trialcoord protocol load"."""
    from datetime import date

    await add_user("max", ("monitor", study, None, date(2020, 12, 31)))
    client = await signed_in(anonymous, "max")
    response = await client.get("/")
    assert response.status_code == 200
    assert "No study is loaded" not in response.text and "protocol load" not in response.text
    assert "Your monitor grant at TST-1 ended on 2020-12-31" in response.text
    assert "administrator" in response.text
