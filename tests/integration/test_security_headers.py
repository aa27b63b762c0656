"""Security headers on every kind of answer (docs/security.md): a page, the API, a static file, a 404, a
redirect and an error; the Content-Security-Policy allows no inline script or style, and no page carries any."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.db]

FIXED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def assert_hardened(response: httpx.Response) -> None:
    for name, value in FIXED.items():
        assert response.headers.get(name) == value, (name, response.request.url)
    csp = directives(response)
    assert csp["default-src"] == "default-src 'none'"
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["script-src"] == "script-src 'self'" and csp["style-src"] == "style-src 'self'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert "camera=()" in response.headers["permissions-policy"]
    assert response.headers["strict-transport-security"].startswith("max-age=")  # the client asks over https


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_every_kind_of_answer_carries_the_headers(app, client, study):
    """Including what no route answers (litestar's own 404) and what the guard refuses."""
    answers = [
        await client.get("/studies/TST-1"),  # a page
        await client.get("/api/studies"),  # the API
        await client.get("/static/site.css"),  # a static file
        await client.get("/no/such/page"),  # a 404 no route answers
        await client.get("/api/studies/NOPE"),  # a 404 a route answers
        await client.post("/api/studies", json={"nonsense": 1}),  # a refused write
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as nobody:
        answers.append(await nobody.get("/studies/TST-1"))  # refused: not signed in
    answers.append(await client.post("/sign-out"))  # a redirect
    statuses = [a.status_code for a in answers]
    assert statuses[:3] == [200, 200, 200] and statuses[3:5] == [404, 404] and statuses[5] >= 400
    assert statuses[6] == 401 and 300 <= statuses[7] < 400
    for answer in answers:
        assert_hardened(answer)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_hsts_only_over_tls(app, study):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as plain:
        response = await plain.get("/health")
    assert response.status_code == 200 and "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_an_inline_preview_may_be_framed_by_the_app_only(client, study):
    """A document shown inside the version page (an iframe of the same origin): framed by the app itself, and
    with no script or style of its own."""
    pdf = base64.b64encode(b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").decode()
    body = {"name": "PI CV", "site": "101", "artifact": "087", "label": "1", "file_name": "cv.pdf", "content": pdf}
    upload = await client.post("/api/studies/TST-1/documents", json=body)
    assert upload.status_code == 201, upload.text
    query = {"site": "101", "name": "PI CV", "label": "1", "inline": "true"}
    response = await client.get("/api/studies/TST-1/documents/content", params=query)
    assert response.status_code == 200 and response.headers["content-disposition"].startswith("inline")
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    csp = directives(response)
    assert csp["frame-ancestors"] == "frame-ancestors 'self'" and csp["default-src"] == "default-src 'none'"


def test_no_template_or_script_carries_inline_script_or_style():
    """What the policy would block in a browser: <script> with a body, on* handlers, style attributes, <style>."""
    from pathlib import Path

    import trialcoord.web

    web = Path(trialcoord.web.__file__).parent
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\son[a-z]+\s*=|\sstyle\s*=|javascript:", re.I)
    found = [
        f"{path.name}: {match.group(0)}"
        for path in [*web.glob("templates/*.html"), *web.glob("static/*.js")]
        for match in inline.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []
