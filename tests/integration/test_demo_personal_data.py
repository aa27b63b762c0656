"""The demo's participants carry made-up personal data, stored encrypted through the personal-data use case:
a user with `view_personal_data` reads it on the participant page and through the API, a sponsor or a coded
monitor finds it nowhere; the values are fictitious, fixed, and listed in `DEMO_PERSONAL_VALUES` for the
tests of coded exports."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import pytest

from tests.conftest import PASSWORD, account_rules, signed_in
from trialcoord.demo import demo
from trialcoord.scheduling import identities

pytestmark = pytest.mark.anyio
TODAY = date.today()  # the app judges grants on its own clock: the demo users' grants run from it


@pytest.fixture
async def loaded(db):
    assert await demo.load_demo(TODAY) is True
    await demo.add_demo_users(TODAY, PASSWORD, "system", account_rules())


async def test_every_demo_participant_has_fictitious_personal_data_in_several_scripts(loaded):
    assert len(demo.PERSONAL_DATA) == len(demo.PARTICIPANTS)
    assert {(p[0], p[1]) for p in demo.PARTICIPANTS} == set(demo.PERSONAL_DATA)
    scripts = set()
    for (study, subject), person in demo.PERSONAL_DATA.items():
        stored = await identities.get_identity(study, subject)
        assert stored == person, (study, subject)  # exactly what the demo lists, decrypted
        assert all(getattr(stored, field) for field in identities.FIELDS)
        assert re.fullmatch(r"DEMO-MRN-\d{4}", stored.mrn or "")
        phone, email = (part.strip() for part in (stored.contact or "").split(","))
        assert re.fullmatch(r"\+1-555-01\d\d", phone) and email.endswith("@example.org")
        assert date.fromisoformat(stored.date_of_birth or "") < date(2008, 1, 1)  # adults
        for value in (stored.name, stored.date_of_birth, stored.contact, stored.mrn, phone, email):
            assert value in demo.DEMO_PERSONAL_VALUES
        scripts |= {unicodedata.name(c).split()[0] for c in stored.name or "" if c.isalpha()}
    assert {"CJK", "GREEK", "ARABIC", "LATIN"} <= scripts
    assert any(
        date.fromisoformat(p.date_of_birth or "") < date(TODAY.year - 90, 1, 1) for p in demo.PERSONAL_DATA.values()
    )
    assert len(set(demo.DEMO_PERSONAL_VALUES)) == len(demo.DEMO_PERSONAL_VALUES)  # no two participants share one


def _found(text: str) -> list[str]:
    return [value for value in demo.DEMO_PERSONAL_VALUES if value in text]


async def test_a_coordinator_sees_a_participants_name_and_a_sponsor_or_coded_monitor_none(anonymous, loaded):
    person = demo.PERSONAL_DATA[("DEMO-001", "101-002")]
    page, api = "/studies/DEMO-001/participants/101-002", "/api/studies/DEMO-001/participants/101-002"
    cora = await signed_in(anonymous, "cora")  # coordinator of site 101: view_personal_data there
    shown = await cora.get(page)
    assert shown.status_code == 200 and person.name in shown.text and person.mrn in shown.text
    identity = await cora.get(f"{api}/identity")
    assert identity.status_code == 200 and identity.json()["name"] == "山田 花子"
    assert identity.json()["mrn"] == "DEMO-MRN-0002"
    for user in ("sam", "mona"):  # the sponsor; the demo's monitor has no personal-data grant
        client = await signed_in(anonymous, user)
        for url in (page, api, f"{api}/schedule", "/studies/DEMO-001", "/api/studies/DEMO-001/participants"):
            answer = await client.get(url)
            assert answer.status_code == 200, (user, url, answer.status_code)
            assert _found(answer.text) == [], (user, url)
        refused = await client.get(f"{api}/identity")
        assert refused.status_code == 403 and _found(refused.text) == []


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    """No key in the environment and no key file where the settings look by default."""
    from trialcoord.kernel import pii
    from trialcoord.kernel.config import reset_settings

    monkeypatch.delenv(pii.KEYS_VARIABLE, raising=False)
    monkeypatch.delenv(pii.KEY_FILE_VARIABLE, raising=False)
    monkeypatch.setenv("TRIALCOORD_DATA_DIR", str(tmp_path / "no-keys-here"))
    reset_settings()
    yield
    reset_settings()


async def test_without_a_key_ring_the_demo_loads_coded_data_only(db, no_key):
    from trialcoord.kernel.database.engine import fetch

    assert demo.personal_data_available() is False
    assert await demo.load_demo(TODAY) is True
    assert (await fetch("SELECT COUNT(*) AS n FROM participant_identities"))[0]["n"] == 0
