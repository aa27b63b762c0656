"""Every CSV download (grep text/csv) says its type once: `text/csv; charset=utf-8`, not the charset twice."""

from __future__ import annotations

import pytest

from tests.conftest import PROTOCOL_V2

pytestmark = [pytest.mark.anyio, pytest.mark.db]

CSV = "text/csv; charset=utf-8"


@pytest.fixture
async def enrolled(client, study):
    body = {"subject_id": "101-001", "site": "101", "enrolled_on": "2024-03-01"}
    assert (await client.post("/api/studies/TST-1/participants", json=body)).status_code == 201
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/api/audit/export?format=csv",
        "/api/studies/TST-1/audit/export?format=csv",
        "/api/studies/TST-1/deviations/listing.csv",
        "/api/studies/TST-1/protocol-versions/2.0/impact?format=csv",
        "/studies/TST-1/grid.csv",
    ],
)
async def test_csv_downloads_name_their_charset_once(enrolled, url):
    response = await enrolled.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV


async def test_the_impact_of_a_posted_protocol_as_csv(enrolled):
    response = await enrolled.post(
        "/api/studies/TST-1/protocol-impact?format=csv",
        content=PROTOCOL_V2,
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV


async def test_the_impact_page_as_csv(enrolled):
    response = await enrolled.post(
        "/studies/TST-1/amendments/impact", files={"file": ("", b"")}, data={"version": "2.0", "format": "csv"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CSV
