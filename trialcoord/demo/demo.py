"""Demo data: the protocols under protocols/, three sites and a few made-up participants.

Dates are relative to `today`, so the worklists always show visits due today, overdue, missed,
late, early and on time. DEMO-001 is double-blind: only the administrator and the unblinded pharmacist see
arms. Subject IDs are invented (site-number); there is no personal data.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from trialcoord.accounts import users
from trialcoord.accounts.users import AccountRules
from trialcoord.amendments import applying
from trialcoord.deviations import detection, deviation_review, manual, queue
from trialcoord.kernel.bundled import folder
from trialcoord.kernel.database.engine import transaction
from trialcoord.scheduling import participants, protocols, sites
from trialcoord.scheduling.visits import book_appointment, mark_missed, record_event, record_visit

PROTOCOLS_DIR = folder("protocols")

SITES = (  # study, code, name, time zone
    ("DEMO-001", "101", "Riverside Clinic", "America/New_York"),
    ("DEMO-001", "102", "Lakeside Research Center", "America/Chicago"),
    ("ONC-201", "201", "Harbor Oncology Institute", "America/Los_Angeles"),
)

# study, subject, site, arm, version, {event: days before today}, {visit: days before today}
PARTICIPANTS = (
    # Week 2 (V3) is due today.
    (
        "DEMO-001",
        "101-001",
        "101",
        "A",
        None,
        {"consent": 20, "randomization": 14, "first_dose": 14},
        {"V1": 20, "V2": 14},
    ),
    # Week 2 done late, Week 4 overdue, Week 8 due; moved to amendment 2.0 after Week 2.
    (
        "DEMO-001",
        "101-002",
        "101",
        "P",
        "1.0",
        {"consent": 70, "randomization": 60, "first_dose": 60},
        {"V1": 70, "V2": 60, "V3": 41},
    ),
    # Week 2 on time, Week 4 marked missed (below), PK sample due.
    (
        "DEMO-001",
        "101-003",
        "101",
        "A",
        None,
        {"consent": 45, "randomization": 35, "first_dose": 35},
        {"V1": 45, "V2": 35, "V3": 21},
    ),
    # Just randomised: Week 2 upcoming, booked below.
    (
        "DEMO-001",
        "102-001",
        "102",
        "A",
        None,
        {"consent": 10, "randomization": 3, "first_dose": 3},
        {"V1": 10, "V2": 3},
    ),
    # Stopped early: Week 4 early, Week 12 missed, early termination visit due.
    (
        "DEMO-001",
        "102-002",
        "102",
        "P",
        None,
        {"consent": 110, "randomization": 100, "first_dose": 100, "early_termination": 5},
        {"V1": 110, "V2": 100, "V3": 86, "V4": 76, "V5": 48},
    ),
    # Cycle 2 done a day late; cycle 3 is next.
    ("ONC-201", "201-001", "201", None, None, {"consent": 50, "first_dose": 42}, {"SCR": 49, "C1D1": 42, "C2D1": 20}),
    # Cycle 2 not done yet: overdue.
    ("ONC-201", "201-002", "201", None, None, {"consent": 35, "first_dose": 30}, {"SCR": 33, "C1D1": 30}),
)


async def load_demo(today: date, protocols_dir: Path = PROTOCOLS_DIR) -> bool:
    """Load the demo into an empty database; False (and nothing written) when it holds a study."""
    from trialcoord.scheduling.protocol_files import load_protocol

    async with transaction("demo data"):
        if await protocols.list_studies():
            return False
        for path in sorted(protocols_dir.glob("*/*.yaml")):
            text = path.read_text(encoding="utf-8")
            source = path.relative_to(protocols_dir.parent).as_posix()
            await protocols.load_protocol_version(load_protocol(path), text, source)
        loaded = {study.code for study in await protocols.list_studies()}
        for study, code, name, zone in SITES:
            if study in loaded:
                await sites.create_site(study, code, name, zone)
        for entry in PARTICIPANTS:
            if entry[0] in loaded:
                await _participant(today, *entry)
        if "DEMO-001" in loaded:
            await _coordinator_actions(today)
        for study in sorted(loaded):  # so the monitors' queue has work in it from the start
            await detection.detect(study, today, today=today)
        if "DEMO-001" in loaded:
            await _deviation_work(today)
    return True


async def _participant(
    today: date,
    study: str,
    subject: str,
    site: str,
    arm: str | None,
    version: str | None,
    events: dict[str, int],
    visits: dict[str, int],
) -> None:
    ago = lambda days: today - timedelta(days=days)  # noqa: E731
    await participants.enroll_participant(
        study, subject, site, arm=arm, version=version, enrolled_on=ago(max(events.values())), today=today
    )
    for event, days in events.items():
        await record_event(study, subject, event, ago(days), today=today)
    for code, days in visits.items():
        await record_visit(study, subject, code, ago(days), today=today)


async def _coordinator_actions(today: date) -> None:
    await mark_missed("DEMO-001", "101-003", "V4", "Participant was in hospital (not study related)", today=today)
    await book_appointment("DEMO-001", "102-001", "V3", today + timedelta(days=11), today=today)
    await applying.change_version(
        "DEMO-001", "101-002", "2.0", today - timedelta(days=30), "Re-consented to amendment 1", today=today
    )


async def _deviation_work(today: date) -> None:
    """A manual deviation, and a site response to one detected deviation: the review under way."""
    await manual.record_manual(
        "DEMO-001",
        "102",
        "assessments",
        "ECG at Week 4 not performed (machine broken)",
        today - timedelta(days=76),
        "colin",
        subject_id="102-002",
        visit="V4",
        subcategory="ASSESSMENT NOT PERFORMED",
        today=today,
    )
    rows, _ = await queue.listing("DEMO-001", participant="101-002")
    late = next((row for row in rows if row.rule == "visit_late"), None)
    if late is not None:
        await deviation_review.take_step(
            "DEMO-001",
            late.id,
            "respond",
            "cora",
            response="Participant was travelling for a family emergency",
            corrective_action="Visit reminders a week ahead for this participant",
        )


# Demo users, one per persona of the access rules; their password is generated by `trialcoord setup`
# and printed once, never written in code.
DEMO_USERS = (  # user ID, printed name, role, study, site, grant ends (days from today; None: open)
    ("cora", "Cora Coordinator", "coordinator", "DEMO-001", "101", None),
    ("colin", "Colin Coordinator", "coordinator", "DEMO-001", "102", None),
    ("ivan", "Ivan Investigator", "investigator", "DEMO-001", "101", None),
    ("paula", "Paula Pharmacist (unblinded)", "unblinded_pharmacist", "DEMO-001", "101", None),
    ("mona", "Mona Monitor", "monitor", "DEMO-001", None, 90),
    ("max", "Max Monitor (grant ended)", "monitor", "DEMO-001", None, -30),
    ("sam", "Sam Sponsor", "sponsor", "DEMO-001", None, None),
)


async def add_demo_users(today: date, password: str, actor: str, rules: AccountRules) -> list[str]:
    """Create the demo users that do not exist yet; returns their IDs."""
    created = []
    for user_id, name, role, study, site, ends in DEMO_USERS:
        if await _user_exists(user_id):
            continue
        await users.create_user(user_id, name, f"{user_id}@demo.invalid", password, actor, rules=rules)
        valid_to = today + timedelta(days=ends) if ends is not None else None
        start = min(today - timedelta(days=120), valid_to or today)
        await users.grant(user_id, role, study, site, start, valid_to, actor)
        created.append(user_id)
    return created


async def _user_exists(user_id: str) -> bool:
    from trialcoord.kernel.problems import NotFound

    try:
        await users.get_user(user_id)
    except NotFound:
        return False
    return True
