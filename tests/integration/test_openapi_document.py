"""The OpenAPI document the app serves: valid (openapi-spec-validator, an independent implementation of the
OpenAPI 3.1 schema), one operationId each, `security` exactly where the guard wants someone signed in, the real
media type of every file it answers, and problem details for every error.

The document is built from the route table alone, so one app without a database serves it to every check of the
document; the two that call routes run on SQLite only (the downloads they fetch run on both databases in their
features' own tests).
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import PASSWORD, account_rules, add_user
from trialcoord.kernel.config import load_settings
from trialcoord.kernel.web.guard import CSRF_HEADER, SESSION_COOKIE, rule_of
from trialcoord.web.app import create_app

METHODS = ("get", "put", "post", "delete", "patch")
BEARER, COOKIE = {"bearerToken": []}, {"sessionCookie": []}
PROBLEM = "application/problem+json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The media types of the files the API answers; octet-stream ("some bytes") is never one of them.
FILE_TYPES = {
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    XLSX,
    "application/zip",
    "text/csv",
    "text/calendar",
    "image/png",
    "image/jpeg",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An app and the document it serves at /schema/openapi.json (no lifespan: no database is opened)."""
    folder = tmp_path_factory.mktemp("openapi")  # its access log too: never into the working directory
    settings = {"TRIALCOORD_DATABASE_URL": f"sqlite:///{folder / 'unused.sqlite3'}", "TRIALCOORD_DATA_DIR": str(folder)}
    app = create_app(load_settings(settings), account_rules=account_rules())
    return app, asyncio.run(_fetch(app))


async def _fetch(app) -> dict:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        return await document_of(client)


async def document_of(client) -> dict:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200 and _media(response) == "application/vnd.oai.openapi+json"
    return response.json()


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def schema_routes(app) -> list[tuple[str, str, str, object]]:
    """(method, path as the document writes it, path as the guard sees its template, handler) of every route
    handler the app puts in its document: walked from the route table, so a route added later is walked too."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.resolve_include_in_schema():
                for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                    found.append((method, route.path_format, route.path, handler))
    return found


def test_the_served_document_is_valid_openapi(served):
    _, document = served
    validate(document)  # raises OpenAPIValidationError naming the first fault
    assert document["openapi"].startswith("3.1.")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerToken"]["type"] == "http" and schemes["bearerToken"]["scheme"] == "bearer"
    assert "trialcoord user token" in schemes["bearerToken"]["description"]  # how a program gets one
    cookie = schemes["sessionCookie"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie", SESSION_COOKIE)
    assert CSRF_HEADER in cookie["description"] and "GET only" in cookie["description"]


def test_every_operation_has_its_own_operation_id(served):
    ids = [operation.get("operationId") for _, _, operation in operations(served[1])]
    assert None not in ids
    assert len(ids) == len(set(ids)) > 80


def test_security_is_present_exactly_where_the_guard_requires_a_signed_in_user(served):
    app, document = served
    documented = {(method, path): operation for method, path, operation in operations(document)}
    walked = schema_routes(app)
    assert {(method, path) for method, path, _, _ in walked} == set(documented)  # the walk covers the document
    wrong = []
    for method, path, template, handler in walked:
        # a calendar feed's credential is the secret in its path, which no security scheme can name
        public = rule_of(handler, template, method)["rule"] in ("public", "feed")
        if public:
            expected = None
        elif path.startswith("/api/"):  # the session cookie only on a read (docs/access-control.md, CSRF)
            expected = [BEARER, COOKIE] if method == "GET" else [BEARER]
        else:
            expected = [COOKIE]
        if documented[(method, path)].get("security") != expected:
            wrong.append(f"{method} {path}: {documented[(method, path)].get('security')}, expected {expected}")
    assert wrong == []
    assert documented[("GET", "/health")].get("security") is None
    assert documented[("POST", "/api/sign-in")].get("security") is None
    assert documented[("POST", "/api/sign-out")]["security"] == [BEARER]
    feeds = [path for method, path in documented if "/feeds/{token}/" in path]
    assert feeds and all(documented[("GET", path)].get("security") is None for path in feeds)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.anyio
async def test_the_guard_takes_exactly_the_credentials_the_document_declares(anonymous):
    """Every operation called without credentials (401 exactly where `security` is declared) and with the
    pages' session cookie alone (let in exactly where the cookie scheme is declared). Writes are refused at the
    guard, before their handler; reads run as an administrator on targets that do not exist."""
    document = await document_of(anonymous)
    await add_user("admin", ("administrator", None, None))
    from trialcoord.accounts import sessions

    cookie = (await sessions.sign_in("admin", PASSWORD, "127.0.0.1", rules=account_rules())).token
    wrong = []
    for method, path, operation in operations(document):
        url = _filled(path, operation)
        security = operation.get("security") or []
        anonymous.cookies.clear()
        bare = await anonymous.request(method, url, json={} if method != "GET" else None)
        if (bare.status_code == 401) != bool(security) or (bare.status_code == 401 and _media(bare) != PROBLEM):
            wrong.append(f"{method} {url} without credentials: {bare.status_code} {_media(bare)}")
        if not security:
            continue
        anonymous.cookies.set(SESSION_COOKIE, cookie)
        with_cookie = await anonymous.request(method, url, json={} if method != "GET" else None)
        if COOKIE in security and with_cookie.status_code in (401, 500):
            wrong.append(f"{method} {url} with the session cookie: {with_cookie.status_code}")
        if COOKIE not in security and with_cookie.status_code != 401:
            wrong.append(f"{method} {url} took the session cookie: {with_cookie.status_code}")
    assert wrong == []


def test_every_file_answer_is_documented_as_binary_of_its_real_media_type(served):
    app, document = served
    files = {}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            for media_type, shown in (response.get("content") or {}).items():
                if status.startswith("2") and media_type != "application/json":
                    files[(method, path, media_type)] = shown["schema"]
    assert {media_type for _, _, media_type in files} == FILE_TYPES  # no octet-stream, every kind served
    binary = [
        key for key, schema in files.items() if schema.get("type") != "string" or schema.get("format") != "binary"
    ]
    assert binary == []
    assert all(schema["contentMediaType"] == media_type for (_, _, media_type), schema in files.items())
    # A route answering a file names its media type in its decorator; its document names it too.
    for method, path, _, handler in schema_routes(app):
        declared = str(getattr(handler.media_type, "value", handler.media_type))
        if declared and declared != "application/json" and declared != "application/octet-stream":
            assert (method, path, declared) in files, f"{method} {path} answers {declared}"


def test_every_error_is_documented_as_problem_details(served):
    _, document = served
    wrong = []
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status[0] in "45" and set(response.get("content") or {}) != {PROBLEM}:
                wrong.append(f"{method} {path} {status}: {set(response.get('content') or {})}")
        if operation.get("security") and "401" not in operation["responses"]:
            wrong.append(f"{method} {path}: no 401")
    assert wrong == []
    schema = document["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail"} <= set(schema["required"])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.anyio
async def test_downloads_answer_the_media_types_the_document_declares(client, study):
    document = await document_of(client)
    calls = [
        ("/api/audit/export", {"format": "csv"}),
        ("/api/audit/export", {"format": "pdf"}),
        ("/api/studies/{study}/deviations/listing.csv", {}),
        ("/api/studies/{study}/deviations/listing.xlsx", {}),
        ("/api/studies/{study}/sites/{site}/schedule.ics", {}),
        ("/api/studies/{study}/protocol-versions/{version}/impact", {"format": "csv"}),
        ("/api/studies/{study}/protocol-versions/{version}/impact", {"format": "pdf"}),
        ("/api/studies/{study}/protocol-versions/{version}/impact", {}),
    ]
    answered = set()
    for path, params in calls:
        url = path.format(study=study, site="101", version="2.0")
        response = await client.get(url, params=params)
        assert response.status_code == 200, f"{url} {params}: {response.status_code} {response.text[:200]}"
        declared = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert _media(response) in declared, f"{url} {params} answered {_media(response)}, declared {set(declared)}"
        answered.add(_media(response))
        assert _media(response) != "application/pdf" or response.content.startswith(b"%PDF-")
    assert answered == {"text/csv", "application/pdf", XLSX, "text/calendar", "application/json"}


def _media(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


def _filled(path: str, operation: dict) -> str:
    """The path with a value of the right type for each parameter: `1`, a date, or a word."""
    kinds = {
        p["name"]: (p.get("schema") or {}).get("format") or (p.get("schema") or {}).get("type")
        for p in operation.get("parameters", [])
        if p["in"] == "path"
    }
    values = {"integer": "1", "date": "2026-12-24"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(kinds.get(m.group(1), ""), "X1"), path)
