"""Schemathesis against the OpenAPI document: no 5xx, and every response is one the schema declares.

Runs on SQLite only (the app in schemathesis' own event loop thread; see stack-notes), on a database
holding the demo data, so the path examples (DEMO-001, 101-001, V3, 101) reach real records, as an
administrator with a bearer token (unauthenticated calls would stop at 401 and test nothing else): the document
declares its security schemes, and schemathesis is told not to generate credentials of its own for them (a
missing or made-up token is the access matrix test's concern).
Signing out is left out: it would end the token the other cases use.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import date
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import account_rules
from trialcoord.kernel.config import load_settings
from trialcoord.web.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# schemathesis' lazy `from_fixture` breaks on pytest 9 (it sets `node._nodeid`), so the schema is built
# at import from the app itself (no database access), and the data arrives in a fixture before any case.
DATA_DIR = Path(tempfile.mkdtemp(prefix="trialcoord-fuzz-"))
DATABASE_URL = f"sqlite:///{DATA_DIR / 'fuzz.sqlite3'}"
app = create_app(load_settings({"TRIALCOORD_DATABASE_URL": DATABASE_URL, "TRIALCOORD_DATA_DIR": str(DATA_DIR)}))
schema = schemathesis.openapi.from_dict(app.openapi_schema.to_schema())
schema.app = app  # as from_asgi does: cases go to the app in-process, which starts its lifespan
schema.config.generation.update(with_security_parameters=False)  # every case carries the administrator's token
TOKEN: dict[str, str] = {}


async def _load_demo() -> None:
    from trialcoord.accounts import sessions, users
    from trialcoord.demo.demo import load_demo
    from trialcoord.kernel.database.engine import bind_engine, build_engine
    from trialcoord.kernel.database.migrations import migrate

    engine = bind_engine(build_engine(DATABASE_URL))
    await migrate(engine)
    await load_demo(date.today())
    await users.create_user(
        "fuzzer", "Fuzz Admin", "fuzz@example.org", "fuzzing passphrase 1", "system", rules=account_rules()
    )
    await users.grant("fuzzer", "administrator", None, None, date(2000, 1, 1), None, "system")
    TOKEN["value"] = (await sessions.issue_token("fuzzer", 1, "system")).token


@pytest.fixture(scope="module", autouse=True)
def demo_data():
    asyncio.run(_load_demo())
    yield
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.exclude(path="/api/sign-out").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    response = case.call_and_validate(checks=CHECKS, headers={"Authorization": f"Bearer {TOKEN['value']}"})
    if case.path != "/api/sign-in":
        assert response.status_code != 401, "the token stopped working: the run would test nothing"
