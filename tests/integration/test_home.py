"""The home page of one's tasks, over both engines: what each role lands on after signing in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import (
    PASSWORD,
    RANDOMIZED,
    SITE_A,
    SITE_B,
    SUBJECT_A,
    SUBJECT_B,
    account_rules,
    add_user,
    signed_in,
)

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


# The demo study, its users, and an administrator --------------------------------------------------------------

TODAY = datetime.now(UTC).date()  # the test app's time zone is UTC
PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ROLE_SECTIONS = {  # what each persona lands on (section ids of the home page)
    "cora": {"booked", "closing", "overdue", "awaiting-site", "reconsent", "binder"},
    "colin": {"booked", "closing", "overdue", "awaiting-site", "reconsent", "binder"},
    "ivan": {"awaiting-site", "signatures", "extensions"},
    "mona": {"awaiting-review", "trail", "new-documents"},
    "sam": {"packages", "metrics"},
    "admin": {"locked", "problems", "disabled", "jobs", "builds"},
    "paula": set(),
    "max": set(),
}
EVERY_SECTION = set().union(*ROLE_SECTIONS.values())
COUNTED = (
    "booked",
    "closing",
    "overdue",
    "awaiting-site",
    "signatures",
    "extensions",
    "awaiting-review",
    "locked",
    "problems",
)


@pytest.fixture
async def demo(db):
    from trialcoord.demo.demo import add_demo_users, load_demo

    await load_demo(TODAY)
    await add_demo_users(TODAY, PASSWORD, "system", account_rules())
    await add_user("admin", ("administrator", None, None))
    return "DEMO-001"


async def home_of(anonymous, user_id: str, **params: str) -> str:
    client = await signed_in(anonymous, user_id)
    response = await client.get("/", params=params)
    assert response.status_code == 200, response.text[-2000:]
    return response.text


def sections(html: str) -> set[str]:
    return set(re.findall(r'<section class="card" aria-labelledby="[^"]+" id="([^"]+)">', html)) & EVERY_SECTION


def section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}">')
    return html[start : html.index("</section>", start)]


def total(html: str, section_id: str) -> int:
    found = re.search(rf'id="{section_id}-heading">.*?<span class="hint">\((\d+)\)</span>', html)
    assert found, f"no count in {section_id}"
    return int(found.group(1))


def nav_count(html: str) -> int:
    found = re.search(r">My tasks \((\d+)\)</a>", html)
    assert found, "no task count in the navigation"
    return int(found.group(1))


async def test_each_role_lands_on_its_work(anonymous, demo):
    pages = {user: await home_of(anonymous, user) for user in ROLE_SECTIONS}
    for user, expected in ROLE_SECTIONS.items():
        assert sections(pages[user]) == expected, user
    cora, colin = pages["cora"], pages["colin"]
    # Week 2 of 101-001 is due today (window open, nothing booked); 101-002's Week 4 is overdue.
    assert 'href="/studies/DEMO-001/participants/101-001#visit-V3"' in section(cora, "closing")
    assert 'href="/studies/DEMO-001/participants/101-002#visit-V4"' in section(cora, "overdue")
    assert "102-" not in section(cora, "overdue") + section(cora, "awaiting-site")
    assert "101-" not in section(colin, "overdue") + section(colin, "awaiting-site")
    assert re.search(r'href="/studies/DEMO-001/deviations/\d+">#\d+ 101-002', section(cora, "awaiting-site"))
    assert "Principal investigator CV" in section(cora, "binder")  # ivan's CV is missing from site 101's binder
    # The monitor: 101-002's late visit, responded to by the site, awaits review.
    assert "site response" in section(pages["mona"], "awaiting-review")
    assert 'href="/studies/DEMO-001/audit?record_id=' in section(pages["mona"], "trail")
    assert ">Site 101</a>" in section(pages["sam"], "metrics") and ">Site 102</a>" in section(pages["sam"], "metrics")
    assert "No window-extension request awaits your decision." in section(pages["ivan"], "extensions")
    # Grants ended, and the hint to load a protocol only for an administrator of an empty installation.
    assert "Your monitor grant at DEMO-001 ended on" in pages["max"] and "protocol load" not in pages["max"]
    assert "Nothing waits on you here" in pages["paula"]
    assert all("protocol load" not in html for html in pages.values())
    assert all('<h2 id="studies-heading">Studies</h2>' in html for html in pages.values())


async def test_only_an_administrator_is_told_to_load_a_protocol(anonymous, db):
    await add_user("admin", ("administrator", None, None))
    await add_user("olive")
    assert "trialcoord protocol load FILE" in await home_of(anonymous, "admin")
    html = await home_of(anonymous, "olive")
    assert "protocol load" not in html and "You hold no grant in force in any study" in html


async def test_the_navigation_counts_what_the_home_page_lists(anonymous, demo, server_clock):
    from trialcoord.accounts import sessions
    from trialcoord.accounts.sessions import SignInRefused
    from trialcoord.scheduling.visits import book_appointment

    await book_appointment(demo, "101-001", "V3", TODAY, today=TODAY)  # booked today: no longer "closing"
    server_clock.to(datetime.now(UTC))
    for _ in range(5):  # colin is locked out: five failures, each after the wait the one before it set
        server_clock.by(minutes=1)
        with pytest.raises(SignInRefused):
            await sessions.sign_in("colin", "not the password", "10.0.0.9", rules=account_rules())
    server_clock.by(minutes=1)
    admin = await home_of(anonymous, "admin")  # a first visit: every failed sign-in recorded
    assert ">colin</a>" in section(admin, "locked") and total(admin, "problems") == 5
    assert "colin" in section(admin, "problems") and nav_count(admin) == 6
    for user in ("cora", "ivan", "mona", "sam", "admin"):
        server_clock.by(seconds=1)
        html = await home_of(anonymous, user)
        listed = re.findall(r'id="([a-z-]+)-heading">[^<]*<span class="hint">\((\d+)\)</span>', html)
        assert nav_count(html) == sum(int(n) for s, n in listed if s in COUNTED), user
    assert nav_count(html) == 1  # the administrator again: colin is locked; no failed sign-in since
    cora = await home_of(anonymous, "cora")
    assert total(cora, "booked") == 1 and total(cora, "closing") == 0 and nav_count(cora) == 4
    study = await anonymous.get("/studies/DEMO-001")  # every page's navigation, with the same count
    assert nav_count(study.text) == 4


async def test_the_counts_are_the_worklists_and_the_queues(demo):
    from trialcoord.deviations import queue
    from trialcoord.home import site_work, store
    from trialcoord.home.rules.tasks import AWAITING_SITE, Scope
    from trialcoord.kernel.database.engine import read
    from trialcoord.scheduling import worklists
    from trialcoord.scheduling.visits import book_appointment

    await book_appointment(demo, "101-001", "V3", TODAY, today=TODAY)
    for sites in ({"101"}, {"102"}, None):
        scope = Scope(demo, None if sites is None else frozenset(sites))
        async with read():
            booked, closing, overdue = await store.visit_counts([scope], TODAY, 7)
            awaiting = await store.deviation_count([scope], AWAITING_SITE)
        listed = await site_work.visits([scope], TODAY, 7)
        assert (booked, closing, overdue) == (listed.booked.total, listed.closing.total, listed.overdue.total)
        on_tab = [row for row in await worklists.worklist(demo, TODAY, kind="overdue") if scope.includes(row.site)]
        assert overdue == len(on_tab) > 0
        assert awaiting == (await queue.listing(demo, states=AWAITING_SITE, sites=scope.sites))[1] > 0
    assert booked == 1


async def test_windows_closing_within_the_days_asked(anonymous, demo):
    week = await home_of(anonymous, "cora")
    month = await home_of(anonymous, "cora", within="30")
    assert "Windows closing within 7 days" in week and "Windows closing within 30 days" in month
    assert total(month, "closing") > total(week, "closing")
    assert 'name="within" type="number" value="30"' in month
    for wrong in ("abc", "0", "91", "-3"):
        response = await anonymous.get("/", params={"within": wrong})
        assert response.status_code == 400
        assert re.search(r'id="within"[^>]*aria-invalid="true"', response.text)
        assert "Enter a whole number of days from 1 to 90" in response.text
        assert f'value="{wrong}"' in response.text  # what was typed stays


async def test_a_monitor_sees_what_changed_since_the_previous_sign_in(anonymous, personas, installation):
    from tests.conftest import sign_version
    from trialcoord.documents import documents
    from trialcoord.documents.rules.documents import DocumentKey
    from trialcoord.scheduling.visits import record_event

    first = await home_of(anonymous, "monitor")
    assert "Changed since your grant began (2000-01-01)" in first
    assert "create participant <span" in section(first, "trail")  # the enrolments, since the grant began
    await record_event("TST-1", SUBJECT_A, "randomization", RANDOMIZED, actor="coord-a", today=RANDOMIZED)
    key = DocumentKey("TST-1", SITE_A, "Lab certificate")
    await documents.add_version(key, "160", "1", PDF, "lab.pdf", actor="coord-a")
    await documents.change_status(key, "1", "in_review", TODAY, actor="coord-a")
    await sign_version(key, "1", "approver", "approval", installation=installation)
    await documents.change_status(key, "1", "approved", TODAY, actor="coord-a")
    again = await home_of(anonymous, "monitor")  # a second sign-in: since the first
    assert "Changed since your previous sign-in" in again
    trail = section(again, "trail")
    # The event, the version stored, sent for review, signed and approved; nothing from before the first sign-in.
    assert total(again, "trail") >= 5 and "create participant <span" not in trail
    assert f"TST-1/{SITE_A}/{SUBJECT_A}/randomization" in trail and "by coord-a" in trail
    assert f"TST-1/{SITE_A}/documents/Lab certificate/1" in trail and "by approver" in trail
    assert "/studies/TST-1/audit?since=" in trail
    documents_since = section(again, "new-documents")
    assert (
        "Lab certificate" in documents_since
        and "/studies/TST-1/documents/version?name=Lab+certificate" in documents_since
    )
    third = await home_of(anonymous, "monitor")
    assert total(third, "trail") == 0 and total(third, "new-documents") == 0


async def test_a_signature_asked_of_someone_is_on_their_home_page_until_they_sign(anonymous, personas, installation):
    from tests.conftest import sign_version
    from trialcoord.documents import documents, signature_requests
    from trialcoord.documents.rules.documents import DocumentKey

    await add_user("ivan", ("investigator", "TST-1", SITE_A))
    key = DocumentKey("TST-1", SITE_A, "Delegation log")
    await documents.add_version(key, "101", "1", PDF, "log.pdf", actor="coord-a")
    await documents.change_status(key, "1", "in_review", TODAY, actor="coord-a")
    assert total(await home_of(anonymous, "ivan"), "signatures") == 0  # in review, but no one asked him
    assert 'id="signatures"' not in await home_of(anonymous, "coord-a")  # a coordinator not asked: no such section
    await signature_requests.request_signature(key, "1", "ivan", "review", actor="coord-a", today=TODAY)
    await signature_requests.request_signature(key, "1", "coord-a", "review", actor="admin", today=TODAY)
    html = await home_of(anonymous, "ivan")
    asked = section(html, "signatures")
    assert total(html, "signatures") == 1 and nav_count(html) >= 1
    assert 'href="/studies/TST-1/documents/version?name=Delegation%20log&amp;label=1&amp;site=101"' in asked, asked
    assert "<td>review</td>" in asked and "coord-a" in asked.lower()  # the meaning, and who asked
    coordinator = await home_of(anonymous, "coord-a")  # asked too, in another role: the section is shown to them
    assert total(coordinator, "signatures") == 1
    await sign_version(key, "1", "ivan", "review", installation=installation)
    assert total(await home_of(anonymous, "ivan"), "signatures") == 0  # his signature fulfilled the request
    assert total(await home_of(anonymous, "coord-a"), "signatures") == 1  # the coordinator's is still open


async def test_an_investigator_decides_the_extensions_asked_at_their_sites_from_home(anonymous, personas):
    from trialcoord.deviations import window_extensions

    await add_user("ivan", ("investigator", "TST-1", SITE_A))
    before = await home_of(anonymous, "ivan")
    assert total(before, "extensions") == 0
    asked = await window_extensions.request_extension("TST-1", SUBJECT_A, "V2", 0, 3, "flight cancelled", "coord-a")
    await window_extensions.request_extension("TST-1", SUBJECT_B, "V2", 0, 3, "storm", "coord-b")  # another site
    html = await home_of(anonymous, "ivan")
    listed = section(html, "extensions")
    assert total(html, "extensions") == 1 and nav_count(html) == nav_count(before) + 1
    assert f'href="{asked.path}"' in listed and SUBJECT_B not in listed
    assert 'href="/studies/TST-1/extensions' in html  # show all: the study's requests page
    await window_extensions.decide_extension("TST-1", asked.id, approve=True, actor="ivan", today=TODAY)
    assert total(await home_of(anonymous, "ivan"), "extensions") == 0


async def test_an_administrator_sees_accounts_sign_ins_and_jobs(anonymous, personas, db):
    from trialcoord.accounts import sessions, users
    from trialcoord.accounts.sessions import SignInRefused
    from trialcoord.kernel.installation import Installation

    await users.disable_user("sponsor", "admin", "left the company", Installation(None))
    for _ in range(2):
        with pytest.raises(SignInRefused):
            await sessions.sign_in("coord-b", "wrong", "10.0.0.1", rules=account_rules())
    html = await home_of(anonymous, "admin")  # a first visit: every problem recorded
    assert ">sponsor</a>" in section(html, "disabled") and total(html, "locked") == 0
    assert total(html, "problems") == 2 and "Failed sign-ins" in html
    jobs = section(html, "jobs")
    if db.kind == "sqlite":
        assert "run every night at 02:30 (UTC); next at" in jobs
    else:
        assert "does not run the nightly" in jobs and "PostgreSQL" in jobs
    assert 'href="/studies/TST-1/deviations">TST-1</a>' in jobs and "never" in jobs
    again = await home_of(anonymous, "admin")
    assert "Failed sign-ins since your previous sign-in" in again and total(again, "problems") == 0


async def test_lists_show_ten_rows_and_link_each_studys_full_list(anonymous, personas, monkeypatch):
    """~200 participants: the page renders, each list shows its first 10 rows and links to the full list, and
    the page reads as much from the database for 200 participants as for 20 (no read per participant)."""
    from trialcoord.kernel.database import engine
    from trialcoord.scheduling import participants, worklists
    from trialcoord.scheduling.visits import record_event

    randomised = TODAY - timedelta(days=60)  # Week 2 and Week 4 windows closed: two overdue visits each

    async def enrol(numbers):
        for n in numbers:
            subject = f"A{n:03d}"
            await participants.enroll_participant(
                "TST-1", subject, SITE_A, arm="P", enrolled_on=randomised, today=TODAY
            )
            await record_event("TST-1", subject, "randomization", randomised, today=TODAY)

    statements = []
    formatted = engine._with_markers
    monkeypatch.setattr(engine, "_with_markers", lambda sql, e: statements.append(sql) or formatted(sql, e))

    async def reads() -> int:
        statements.clear()
        await home_of(anonymous, "coord-a")
        return len(statements)

    await enrol(range(20))
    with_20 = await reads()
    await enrol(range(20, 200))
    with_200 = await reads()
    html = await home_of(anonymous, "coord-a")
    assert with_200 == with_20
    overdue = section(html, "overdue")
    listed = len([row for row in await worklists.worklist("TST-1", TODAY, kind="overdue") if row.site == SITE_A])
    assert listed >= 400 and overdue.count("<tr>") == 1 + 10  # the header and ten rows
    assert f'<a href="/studies/TST-1?tab=overdue">Show all {listed}</a>' in overdue
    assert total(html, "overdue") == listed and nav_count(html) >= listed


async def test_the_count_is_made_once_for_pages_only(anonymous, personas, monkeypatch):
    from trialcoord.home import counts

    made = []
    count = counts.my_tasks

    async def counted(*args, **kwargs):
        made.append(args[0].user_id)
        return await count(*args, **kwargs)

    monkeypatch.setattr(counts, "my_tasks", counted)
    client = await signed_in(anonymous, "coord-a")
    assert nav_count((await client.get("/studies/TST-1")).text) == 0 and made == ["coord-a"]
    assert (await client.get("/api/me")).status_code == 200 and len(made) == 1  # the API counts nothing
    assert (await client.get("/static/site.css")).status_code == 200 and len(made) == 1
    refused = await client.post("/studies/TST-1/participants", data={"subject_id": "", "site": SITE_A})  # a write
    assert refused.status_code == 422 and len(made) == 1
    assert '<a href="/">My tasks</a>' in refused.text  # home all the same, without a count
    anonymous.cookies.clear()
    del anonymous.headers["Authorization"]
    assert (await anonymous.get("/sign-in")).status_code == 200 and len(made) == 1  # nobody signed in


async def test_a_grant_of_some_sites_links_each_sites_full_list(anonymous, personas):
    """A monitor of sites A and B reads the trail a site at a time (as the trail's pages show it to them): one
    "show all" per site, each opening that site's trail; a coordinator's binder checklist is a site's too."""
    await add_user("moe", ("monitor", "TST-1", SITE_A), ("monitor", "TST-1", SITE_B))
    html = await home_of(anonymous, "moe")
    links = re.findall(
        r'<a href="(/studies/TST-1/audit\?[^"]+)">Show all (\d+) of TST-1/(\d+)</a>', section(html, "trail")
    )
    assert [(site, url.split("?")[1].split("&")[0]) for url, _, site in links] == [
        (SITE_A, f"site={SITE_A}"),
        (SITE_B, f"site={SITE_B}"),
    ]
    assert sum(int(n) for _, n, _ in links) == total(html, "trail") > 0
    for url, _, site in links:
        opened = await anonymous.get(url.replace("&amp;", "&"))
        assert opened.status_code == 200 and f"TST-1/{site}/" in opened.text
    coordinator = await home_of(anonymous, "coord-a")
    assert f'<a href="/studies/TST-1/binder?site={SITE_A}">Show all' in section(coordinator, "binder")


async def test_a_wrong_within_is_named_to_who_has_no_such_list(anonymous, personas):
    client = await signed_in(anonymous, "monitor")
    response = await client.get("/", params={"within": "soon"})
    assert response.status_code == 400
    assert '<p class="alert" role="alert">within: Enter a whole number of days from 1 to 90' in response.text
