"""Route x role x scope: generated from the app's own route table, so a new route without a rule fails here.

Each persona calls every route, for a target at site A and at site B where the route names a participant
or a site. Expectations are written out per persona below (not derived from `authorize`), and every call
sends an empty body, so an allowed write stops at validation and changes nothing.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import PERSONAS, SITE_A, SITE_B, SUBJECT_A, SUBJECT_B, signed_in
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.guard import rule_of

pytestmark = pytest.mark.anyio

A = Action
SITE_WORK = {
    A.VIEW_SCHEDULE,
    A.VIEW_PERSONAL_DATA,
    A.EXPORT,
    A.ENROLL_PARTICIPANT,
    A.ASSIGN_ARM,
    A.RECORD_VISIT,
    A.MANAGE_DOCUMENTS,
    A.SIGN,
    A.RECORD_DEVIATION,
    A.RESPOND_DEVIATION,
}
MONITORING = {
    A.VIEW_SCHEDULE,
    A.VIEW_PERSONAL_DATA,
    A.VIEW_AUDIT,
    A.EXPORT,
    A.SIGN,
    A.RECORD_DEVIATION,
    A.REVIEW_DEVIATION,
}
# persona -> site -> actions allowed there ("*" covers every site of TST-1; "study" the study itself)
EXPECTED = {
    "admin": {"*": set(A), "study": set(A), "system": set(A)},
    "coord-a": {SITE_A: SITE_WORK},
    "coord-b": {SITE_B: SITE_WORK},
    "pharmacist-a": {SITE_A: {A.VIEW_SCHEDULE, A.VIEW_ALLOCATION, A.ASSIGN_ARM}},
    "monitor": {"*": MONITORING, "study": MONITORING},
    "monitor-expired": {},
    "sponsor": {"*": {A.VIEW_SCHEDULE, A.EXPORT}, "study": {A.VIEW_SCHEDULE, A.EXPORT}},
    "outsider": {},
}
VALUES = {
    "study": "TST-1",
    "code": "V2",
    "action": "actual",
    "user_id": "outsider",
    "grant_id": "1",
    "file_path": "site.css",
    "form": "csv",
    "job_id": "no-such-job",
    "deviation_id": "1",
    "capa_id": "1",
    "version": "1.0",
    "first_day": "2026-12-24",
    "package_id": "1",
    "extension_id": "1",
    "feed_id": "1",
    "token": "no-such-feed-token",
}
SIGN_OUT = {"/sign-out", "/api/sign-out"}
# Routes of a record by sequential ID (record 1 does not exist here): to someone who sees only some sites of the
# study, a record that does not exist is denied as another site's is (403), so IDs tell nothing (issue 17).
RECORD_IDS = ("{deviation_id", "{capa_id", "{extension_id")


def routes(app) -> list[tuple[str, str, object]]:
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                found.append((method, route.path, handler))
    return found


def targets(path: str) -> list[tuple[str, str | None]]:
    """(url, site of the target): a participant or site route once per site."""
    if "{subject_id" in path:
        pairs = [(SUBJECT_A, SITE_A), (SUBJECT_B, SITE_B)]
        return [(_fill(path, subject_id=subject), site) for subject, site in pairs]
    if "{site" in path:
        return [(_fill(path, site=site), site) for site in (SITE_A, SITE_B)]
    return [(_fill(path), None)]


def _fill(path: str, **more: str) -> str:
    values = {**VALUES, **more}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def allowed(persona: str, rule: dict, path: str, site: str | None) -> bool:
    if rule["rule"] in ("public", "signed_in"):
        return True
    grants = EXPECTED[persona]
    return all(
        _allows(grants, action, path, site, rule.get("across_sites")) for action in (rule["action"], *rule["also"])
    )


def _allows(grants: dict, action: Action, path: str, site: str | None, across_sites: bool) -> bool:
    if "{study" not in path:
        return action in grants.get("system", set())
    if site is not None:
        return action in grants.get(site, set()) | grants.get("*", set())
    if across_sites:
        return any(action in actions for key, actions in grants.items() if key != "system")
    return action in grants.get("study", set())


def test_every_route_declares_a_rule(app):
    undeclared = [f"{method} {path}" for method, path, handler in routes(app) if rule_of(handler, path, method) is None]
    assert undeclared == []


def test_the_expectations_cover_every_persona_and_the_documented_table():
    assert set(EXPECTED) == set(PERSONAS)
    from trialcoord.kernel.rules.access import ROLE_PERMISSIONS, Role

    assert EXPECTED["coord-a"][SITE_A] == set(ROLE_PERMISSIONS[Role.COORDINATOR])
    assert EXPECTED["sponsor"]["*"] == set(ROLE_PERMISSIONS[Role.SPONSOR])
    assert EXPECTED["pharmacist-a"][SITE_A] == set(ROLE_PERMISSIONS[Role.UNBLINDED_PHARMACIST])


async def test_route_role_scope_matrix(app, anonymous, personas):
    cells, wrong = 0, []
    for persona in [None, *PERSONAS]:
        session_client = None
        for method, path, handler in routes(app):
            rule = rule_of(handler, path, method)
            if path.startswith(("/static", "/schema")):
                continue
            for url, site in targets(path):
                if persona is not None and (session_client is None or path in SIGN_OUT):
                    session_client = await signed_in(anonymous, persona)
                elif persona is None:
                    anonymous.cookies.clear()
                    for header in ("Authorization", "X-CSRF-Token"):
                        anonymous.headers.pop(header, None)
                response = await _call(anonymous, method, url)
                cells += 1
                if rule["rule"] == "feed":  # its address is its credential: no such token, whoever asks
                    expected = 404
                elif persona is None:
                    expected = "open" if rule["rule"] == "public" else 401
                else:
                    expected = "open" if allowed(persona, rule, path, site) else 403
                    body_first = method != "GET" and url.startswith("/api")  # the empty body is refused first
                    if expected == "open" and "*" not in EXPECTED[persona] and any(k in path for k in RECORD_IDS):
                        expected = "open" if body_first else 403
                status = response.status_code
                if expected == "open":  # public routes may still answer 401 (a wrong password at sign-in)
                    ok = status not in ((403, 500) if rule["rule"] == "public" else (401, 403, 500))
                else:
                    ok = status == expected
                if not ok:
                    wrong.append(f"{persona or 'anonymous'} {method} {url}: {status}, expected {expected}")
            if path in SIGN_OUT:
                session_client = None  # that session has ended
    assert wrong == [], "\n".join(wrong)
    assert cells > 300


async def _call(client, method: str, url: str):
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        if url.startswith("/api"):
            return await client.request(method, url, json={})
        return await client.request(method, url, data={"_": ""})
    return await client.request(method, url)


async def test_a_denial_names_the_grant_and_never_leaks_existence(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    other_site = await client.get(f"/api/studies/TST-1/participants/{SUBJECT_B}")
    missing = await client.get("/api/studies/TST-1/participants/no-such-subject")
    unknown_study = await client.get("/api/studies/NOPE/participants")
    assert other_site.status_code == missing.status_code == unknown_study.status_code == 403
    assert "coordinator of TST-1 at site 101" in other_site.json()["detail"]  # the viewer's own grant
    assert other_site.json()["detail"].replace(SUBJECT_B, "X") == missing.json()["detail"].replace(
        "no-such-subject", "X"
    )  # the same words whether the participant exists or not
    assert "102" not in other_site.json()["detail"]
    admin = await signed_in(anonymous, "admin")
    assert (await admin.get("/api/studies/TST-1/participants/no-such-subject")).status_code == 404


async def test_lists_show_only_the_sites_a_grant_covers(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    listed = (await client.get("/api/studies/TST-1/participants")).json()
    assert [row["subject_id"] for row in listed] == [SUBJECT_A]
    assert (await client.get(f"/api/studies/TST-1/worklist?site={SITE_B}")).status_code == 403
    page = await client.get("/studies/TST-1?tab=participants")
    assert SUBJECT_A in page.text and SUBJECT_B not in page.text
    studies = (await (await signed_in(anonymous, "outsider")).get("/api/studies")).json()
    assert studies == []


async def test_enrolling_at_another_site_is_refused(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    body = {"subject_id": "3001", "site": SITE_B}
    assert (await client.post("/api/studies/TST-1/participants", json=body)).status_code == 403
    # naming one's own site in the query does not widen what the body may name
    sneaky = await client.post(f"/api/studies/TST-1/participants?site={SITE_A}", json=body)
    assert sneaky.status_code == 403
    page = await client.post(f"/studies/TST-1/participants?site={SITE_A}", data={"subject_id": "3001", "site": SITE_B})
    assert page.status_code == 403
    assert (await client.post("/api/studies/TST-1/participants", json={**body, "site": SITE_A})).status_code == 201


async def test_a_monitor_grant_stops_working_after_its_end_date(anonymous, personas):
    client = await signed_in(anonymous, "monitor-expired")
    response = await client.get(f"/api/studies/TST-1/participants/{SUBJECT_A}/schedule")
    assert response.status_code == 403
    assert "2020-12-31" in response.json()["detail"] or "not in force" in response.json()["detail"]


def route_table(app) -> list[str]:
    """docs/access-control.md's route x role table, generated from the route table and ROLE_PERMISSIONS."""
    from trialcoord.kernel.rules.access import ROLE_PERMISSIONS, SITE_ROLES, Role

    lines = []
    for method, path, handler in sorted(routes(app), key=lambda r: (r[1], r[0])):
        if path.startswith(("/static", "/schema")):
            continue
        rule = rule_of(handler, path, method)
        if rule["rule"] not in ("action", "feed"):
            cells = ["anyone" if rule["rule"] == "public" else "signed in"] * len(Role)
            lines.append(f"| `{method} {path}` | {rule['rule'].replace('_', ' ')} | " + " | ".join(cells) + " |")
            continue
        actions = (rule["action"], *rule["also"])
        cells = []
        for role in Role:
            permitted = all(a in ROLE_PERMISSIONS[role] for a in actions)
            if role is Role.ADMINISTRATOR:
                cells.append("yes")
            elif "{study" not in path or (
                not rule["across_sites"] and "{subject_id" not in path and "{site" not in path
            ):
                cells.append("yes" if permitted and "{study" in path else "—")  # study-level or system-wide
            elif permitted:
                cells.append("own site" if role in SITE_ROLES else "granted sites")
            elif role is Role.MONITOR and all(
                a in ROLE_PERMISSIONS[role] or a is A.VIEW_PERSONAL_DATA for a in actions
            ):
                cells.append("with personal-data grant")
            else:
                cells.append("—")
        need = " + ".join(f"`{a}`" for a in actions)
        if rule["rule"] == "feed":  # the feed's owner needs the action, checked at each fetch
            need = f"feed token: {need}"
        lines.append(f"| `{method} {path}` | {need} | " + " | ".join(cells) + " |")
    return lines


def test_the_documented_route_table_is_the_apps(app):
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "access-control.md").read_text(encoding="utf-8")
    documented = [line for line in doc.splitlines() if line.startswith("| `") and " /" in line.split("|")[1]]
    expected = route_table(app)
    assert documented == expected, "docs/access-control.md's route table differs; it should read:\n" + "\n".join(
        expected
    )


async def test_a_site_in_the_query_never_widens_a_grant(anonymous, personas):
    from tests.conftest import add_user

    await add_user("site-admin", ("administrator", "TST-1", SITE_A))  # an administrator of one site only
    client = await signed_in(anonymous, "site-admin")
    site = {"code": "103", "name": "New"}
    assert (await client.post("/api/studies/TST-1/sites", json=site)).status_code == 403
    assert (await client.post(f"/api/studies/TST-1/sites?site={SITE_A}", json=site)).status_code == 403
    for url in ("/api/users?site=101", "/admin?site=x", "/audit?site=101", "/api/audit?site=x"):
        assert (await client.get(url)).status_code == 403, url


async def test_nul_characters_are_refused_before_any_database(anonymous, personas):
    client = await signed_in(anonymous, "coord-a")
    for url in (
        "/api/studies/TST-1/participants/10%0001",
        "/api/studies/TST-1/audit?actor=a%00b",
        "/studies/TST-1%00/participants/1001",
    ):
        assert (await client.get(url)).status_code == 400, url
