"""Large downloads are built off the event loop: while a site's calendar feed (or a visit listing) is being built,
/health answers. The builder is held on an Event until /health has answered; had it run on the event loop,
nothing else could run until it let go (its wait ends unreleased, which the test reports), so no timing is
asserted: the timeouts only keep a broken build from hanging the run."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import httpx
import pytest

from tests.conftest import RANDOMIZED
from trialcoord.kernel.render import tabular
from trialcoord.scheduling import ics, participants
from trialcoord.scheduling.visits import record_event

pytestmark = [pytest.mark.anyio, pytest.mark.db]

FEED = "/api/studies/TST-1/sites/101/schedule.ics"
DEADLOCK_GUARD = 30  # seconds; never reached when the build is off the loop


@pytest.fixture
async def site_with_visits(study):
    for n in range(3):
        subject = f"101-00{n}"
        await participants.enroll_participant(study, subject, "101", arm="A", enrolled_on=RANDOMIZED, today=RANDOMIZED)
        await record_event(study, subject, "randomization", RANDOMIZED, today=RANDOMIZED)
    return study


class Held:
    """Wraps a builder function: its first call waits until released, and says whether it was."""

    def __init__(self, build: Callable) -> None:
        self.build, self.started, self.release = build, threading.Event(), threading.Event()
        self.released: bool | None = None

    def __call__(self, *args, **kwargs):
        if not self.started.is_set():
            self.started.set()
            self.released = self.release.wait(DEADLOCK_GUARD)
        return self.build(*args, **kwargs)


async def health_while(client: httpx.AsyncClient, held: Held, url: str) -> httpx.Response:
    """/health asked while `held` is building the download at `url` (as of 2024-03-16); the download's response."""
    result: dict[str, httpx.Response] = {}

    async def take() -> None:
        result["download"] = await client.get(url, params={"as_of": "2024-03-16"})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take)
        try:
            assert await anyio.to_thread.run_sync(held.started.wait, DEADLOCK_GUARD), "the builder never started"
            result["health"] = await client.get("/health")
        finally:
            held.release.set()
    assert result["health"].status_code == 200 and result["health"].json() == {"status": "ok"}
    assert held.released is True, "the builder held the event loop: /health could only answer after it gave up"
    return result["download"]


async def test_health_answers_while_a_site_feed_is_built(client, site_with_visits, monkeypatch):
    held = Held(ics._event)
    monkeypatch.setattr(ics, "_event", held)
    feed = await health_while(client, held, FEED)
    assert feed.status_code == 200 and feed.headers["content-type"] == "text/calendar; charset=utf-8"
    assert feed.text.startswith("BEGIN:VCALENDAR") and feed.text.count("BEGIN:VEVENT") > 3


async def test_the_site_feed_is_sent_in_parts(app, client, site_with_visits, monkeypatch):
    """Each part is sent as it is built: with two events a part, the body comes in many messages."""
    monkeypatch.setattr(ics, "EVENTS_PER_PART", 2)
    sent: list[bytes] = []

    async def recorded(scope, receive, send):
        async def record(message):
            if message["type"] == "http.response.body":
                sent.append(message.get("body", b""))
            await send(message)

        await app(scope, receive, record)

    transport = httpx.ASGITransport(app=recorded)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver", headers=client.headers) as raw:
        feed = await raw.get(FEED, params={"as_of": "2024-03-16"})
    assert feed.status_code == 200
    parts = [part for part in sent if part]
    assert parts[0].startswith(b"BEGIN:VCALENDAR") and parts[-1] == b"END:VCALENDAR\r\n"
    assert len(parts) >= 1 + feed.text.count("BEGIN:VEVENT") // 2
    assert b"".join(parts).decode() == feed.text


async def test_health_answers_while_a_visit_grid_export_is_built(client, site_with_visits, monkeypatch):
    held = Held(tabular.csv_text)
    monkeypatch.setattr(tabular, "csv_text", held)
    listing = await health_while(client, held, "/studies/TST-1/grid.csv")
    assert listing.status_code == 200 and listing.text.count("\n") == 4  # the header and three participants
