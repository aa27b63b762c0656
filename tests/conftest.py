"""Shared fixtures: `db` runs a test once on SQLite and once on PostgreSQL, each on a fresh database.

PostgreSQL comes from TRIALCOORD_TEST_POSTGRES_URL (default: the local server, role postgres). When it
cannot be reached the postgres run is skipped, or fails when TRIALCOORD_REQUIRE_POSTGRES=1 (as in CI).
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from trialcoord.kernel.database.engine import bind_engine, build_engine, close_pool, start_pool
from trialcoord.kernel.database.migrations import migrate

if TYPE_CHECKING:
    from trialcoord.documents.signatures import SignatureRecord

# Property tests count examples, never seconds: Hypothesis' per-example deadline and its "input generation is
# slow" check measure wall-clock time, which a loaded CI machine (2 cores, the suite on both) makes fail.
settings.register_profile("trialcoord", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("trialcoord")

POSTGRES_URL = os.environ.get("TRIALCOORD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# A small protocol with every feature the services touch: a chained visit, an arm-limited repeat,
# an optional visit and an ending event. Version 2.0 widens V3's window and adds V4.
PROTOCOL_V1 = """\
study: TST-1
title: Test study
version: "1.0"
effective: 2024-01-01
day_one: randomization
events:
  consent: {}
  randomization: {}
  first_dose: {}
  withdrawal: {ends_schedule: true, collection: stops}
  early_termination: {ends_schedule: true}
arms:
  - {code: A, name: Active}
  - {code: P, name: Placebo}
visits:
  - {code: SCR, name: Screening, from: randomization, offset: -7d, window: {early: 7d, late: 6d}}
  - {code: V2, name: Week 2, from: randomization, offset: 2w, window: {early: 3d, late: 3d}}
  - {code: V3, name: Week 4, from: V2, offset: 2w, window: {early: 3d, late: 3d}}
  - code: C{n}D1
    name: Cycle {n} Day 1
    from: first_dose
    offset: 0d
    repeat: {every: 21d, count: 3}
    window: {early: 0d, late: 3d}
    arms: [A]
  - {code: PK, name: PK sampling, from: randomization, offset: 10d, window: {early: 2d, late: 2d},
     optional: true}
"""
PROTOCOL_V2 = (
    PROTOCOL_V1.replace('version: "1.0"', 'version: "2.0"')
    .replace("effective: 2024-01-01", "effective: 2024-06-01")
    .replace("V2, offset: 2w, window: {early: 3d, late: 3d}}", "V2, offset: 2w, window: {early: 7d, late: 7d}}")
    + "  - {code: V4, name: Week 8, from: V3, offset: 4w, window: {early: 5d, late: 5d}}\n"
)
RANDOMIZED = date(2024, 3, 4)  # a Monday: V2 targets 2024-03-18, window 2024-03-15 .. 2024-03-21


@dataclass(frozen=True)
class Database:
    kind: str  # "sqlite" or "postgres"
    url: str
    engine: object


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path, anyio_backend):
    """A migrated, empty database bound to every table; the tests' own engine for one test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        engine = bind_engine(build_engine(url))
        await migrate(engine)
        yield Database("sqlite", url, engine)
        return
    server = await _connect_postgres()
    name = f"trialcoord_test_{uuid.uuid4().hex[:12]}"
    await server.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        engine = bind_engine(build_engine(url))
        await start_pool(engine)
        try:
            await migrate(engine)
            yield Database("postgres", url, engine)
        finally:
            await close_pool(engine)
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def _connect_postgres() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL at {POSTGRES_URL} cannot be reached ({exc}); set TRIALCOORD_TEST_POSTGRES_URL"
        if os.environ.get("TRIALCOORD_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


PASSWORD = "correct horse battery staple"  # test accounts only; never a real credential
LONG_AGO = date(2000, 1, 1)


@functools.cache
def account_rules():
    """The accounts' rules of every test: argon2's cheapest profile (the production one costs 64 MiB and about
    50 ms a hash), the default lock-out and inactivity."""
    from argon2 import profiles

    from trialcoord.accounts.passwords import PasswordHashing
    from trialcoord.accounts.users import AccountRules

    return AccountRules(hashing=PasswordHashing(profiles.CHEAPEST))


@pytest.fixture
def server_clock():
    """Sets the server's clock (every clock of the process, through time-machine: the audit trail's instants,
    sessions and signatures move together; the event loop's monotonic clock does not) with `to(instant)`, and
    moves it on with `by(**timedelta)`; real time again after the test."""
    import time_machine

    travellers = []  # (traveller, its coordinates)

    class Clock:
        def to(self, instant):
            self.stop()
            traveller = time_machine.travel(instant, tick=False)
            travellers.append((traveller, traveller.start()))

        def by(self, **delta):
            travellers[-1][1].shift(timedelta(**delta))

        def stop(self):
            while travellers:
                travellers.pop()[0].stop()

    clock = Clock()
    yield clock
    clock.stop()


@pytest.fixture(autouse=True)
def pii_keys(monkeypatch):
    """A throwaway key ring for personal data, in the environment as an operator would set it."""
    from trialcoord.kernel.pii import KEY_FILE_VARIABLE, KEYS_VARIABLE, KeyRing

    ring = KeyRing.generate("test-1")
    monkeypatch.delenv(KEY_FILE_VARIABLE, raising=False)
    monkeypatch.setenv(KEYS_VARIABLE, ring.to_json())
    return ring


@pytest.fixture(scope="session")
def _system_key_material():
    """One manifest key and PAdES credentials for the whole run (made once: ECDSA and Ed25519 are cheap,
    but a session fixture keeps every test's keys alike)."""
    from datetime import datetime

    from trialcoord.kernel import signing_keys
    from trialcoord.kernel.render.signed_pdf import new_site_credentials

    pades = new_site_credentials(
        "Test Site Document Signing",
        "trialcoord tests",
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2040, 1, 1, tzinfo=UTC),
    )
    return signing_keys.generate_key(), pades


@pytest.fixture
def system_keys(_system_key_material):
    """The system's keys, with scrypt at its lowest accepted cost for signers' keys (production: n = 2**17,
    about 0.4 s a derivation)."""
    from trialcoord.kernel import signing_keys
    from trialcoord.kernel.system_keys import SystemKeys

    manifest_key, pades = _system_key_material
    return SystemKeys(b"test system passphrase", manifest_key, pades, scrypt_n=signing_keys.MIN_SCRYPT_N)


@pytest.fixture
def installation(system_keys):
    """A bare installation (no data directory, UTC) holding the test keys: what the use cases that sign are handed."""
    from trialcoord.kernel.installation import Installation

    return Installation(None, system_keys)


@pytest.fixture
async def app(db, tmp_path, system_keys):
    """The app on the test's database. httpx's ASGI transport runs no lifespan, so what the lifespan would stop at
    shutdown is stopped here: sponsor package builds a request started, before the database goes."""
    from trialcoord.kernel.config import load_settings
    from trialcoord.kernel.installation import Installation
    from trialcoord.web.app import create_app

    # Its own data directory (render cache), and no signer registry directory: a test app never writes
    # into the repository.
    settings = load_settings(
        {
            "TRIALCOORD_DATABASE_URL": db.url,
            "TRIALCOORD_DATA_DIR": str(tmp_path / "data"),
            "TRIALCOORD_SIGNATURES_DIR": "/nonexistent",
        }
    )
    app = create_app(settings, account_rules=account_rules(), installation=Installation(settings, system_keys))
    yield app
    builds = app.state.get("sponsor_builds")
    if builds is not None:
        await builds.close()


@pytest.fixture
async def anonymous(app):
    """An HTTP client on the app in the test's own event loop (see docs: litestar's TestClient is not)."""
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        yield client


async def add_user(user_id: str, *grants: tuple, printed_name: str | None = None) -> None:
    """A user with grants given as (role, study, site[, valid_to[, personal_data]])."""
    from trialcoord.accounts import users

    await users.create_user(
        user_id, printed_name or user_id.title(), f"{user_id}@example.org", PASSWORD, "admin", rules=account_rules()
    )
    for role, study, site, *rest in grants:
        valid_to = rest[0] if rest else None
        await users.grant(
            user_id, role, study, site, LONG_AGO, valid_to, "admin", personal_data=rest[1] if len(rest) > 1 else False
        )


async def sign_version(
    key, label: str, user_id: str = "ivan", meaning: str = "approval", *, installation
) -> SignatureRecord:
    """`user_id` (made if new) signs a document version through the password ceremony, with the installation's
    keys (the `installation` fixture)."""
    from trialcoord.accounts import signing, users
    from trialcoord.documents import signatures
    from trialcoord.kernel.problems import NotFound

    try:
        await users.get_user(user_id)
    except NotFound:  # an investigator where the document is: signing needs the right to
        await add_user(user_id, ("investigator", key.study, key.site))
    return await signatures.sign(
        key, label, await signing.signing_by_password(user_id, meaning, PASSWORD, rules=account_rules()), installation
    )


async def signed_in(client, user_id: str):
    """`client` signed in as `user_id`: the session as cookie (pages) and bearer token (API), and the
    CSRF token as a header, which the pages accept in place of the form field."""
    from trialcoord.accounts import sessions

    session = await sessions.sign_in(user_id, PASSWORD, "127.0.0.1", rules=account_rules())
    client.cookies.set("trialcoord_session", session.token)
    client.headers["Authorization"] = f"Bearer {session.token}"
    client.headers["X-CSRF-Token"] = session.csrf_token
    return client


@pytest.fixture
async def client(anonymous):
    """Signed in as `admin`, administrator of every study."""
    await add_user("admin", ("administrator", None, None), printed_name="Ada Admin")
    return await signed_in(anonymous, "admin")


@pytest.fixture
async def study(db):
    """Study TST-1 with protocol versions 1.0 and 2.0 and site 101."""
    from trialcoord.scheduling import protocols, sites
    from trialcoord.scheduling.protocol_files import parse_protocol

    for text in (PROTOCOL_V1, PROTOCOL_V2):
        await protocols.load_protocol_version(parse_protocol(text, "tst.yaml"), text, "tst.yaml")
    await sites.create_site("TST-1", "101", "Riverside Clinic", "America/New_York")
    return "TST-1"


SITE_A, SITE_B = "101", "102"
SUBJECT_A, SUBJECT_B = "1001", "2001"  # enrolled at site A and site B
PERSONAS = {  # user ID -> grants, as (role, study, site[, valid_to[, personal_data]])
    "admin": [("administrator", None, None)],
    "coord-a": [("coordinator", "TST-1", SITE_A)],
    "coord-b": [("coordinator", "TST-1", SITE_B)],
    "pharmacist-a": [("unblinded_pharmacist", "TST-1", SITE_A)],
    "monitor": [("monitor", "TST-1", None, None, True)],
    "monitor-expired": [("monitor", "TST-1", None, date(2020, 12, 31))],
    "sponsor": [("sponsor", "TST-1", None)],
    "outsider": [],
}


@pytest.fixture
async def personas(study):
    """Study TST-1 with sites A and B, a participant at each, and one user per persona."""
    from trialcoord.scheduling import participants, sites

    await sites.create_site(study, SITE_B, "Lakeside", "America/Chicago")
    await participants.enroll_participant(study, SUBJECT_A, SITE_A, arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED)
    await participants.enroll_participant(study, SUBJECT_B, SITE_B, arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED)
    for user_id, grants in PERSONAS.items():
        await add_user(user_id, *grants)
    return PERSONAS


def bench_engines(out: str) -> list[str]:
    """The engines a benchmark's output covers; in CI (TRIALCOORD_REQUIRE_POSTGRES=1) PostgreSQL must be one."""
    engines = ["sqlite"] + (["postgres"] if "postgres  skipped" not in out else [])
    if engines == ["sqlite"] and os.environ.get("TRIALCOORD_REQUIRE_POSTGRES") == "1":
        pytest.fail("no PostgreSQL server for the benchmark's postgres half")
    return engines
