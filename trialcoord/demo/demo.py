"""Demo data: the protocols under protocols/, three sites and a few made-up participants.

Dates are relative to `today`, so the worklists always show visits due today, overdue, missed,
late, early and on time. DEMO-001 is double-blind: only the administrator and the unblinded pharmacist see
arms. Subject IDs are invented (site-number). Each participant has made-up personal data
(`PERSONAL_DATA`: name, date of birth, contact details, medical record number), stored encrypted through the
personal-data use case when a key ring is configured (`trialcoord setup` makes one first), so that who sees
it, and who does not, can be tried out and tested. Every value is fictitious: names from a fixed list, some
in Japanese, Greek and Arabic script; record numbers `DEMO-MRN-nnnn`; telephone numbers in +1-555-0100 to
0199, the range reserved for fiction; e-mail addresses at example.org (RFC 2606).
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
from trialcoord.kernel.problems import NotConfigured
from trialcoord.scheduling import identities, participants, protocols, sites
from trialcoord.scheduling.identities import PersonalData
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


# Visits the demo has done outside their windows, with the reason a coordinator records (study, subject, visit).
VISIT_REASONS = {
    ("DEMO-001", "101-002", "V3"): "Participant was travelling for a family emergency",
    ("DEMO-001", "102-002", "V4"): "Brought forward: participant moving away",
}


def _person(number: int, name: str, born: str, email: str) -> PersonalData:
    return PersonalData(
        name=name,
        date_of_birth=born,
        contact=f"+1-555-01{number:02d}, {email}@example.org",
        mrn=f"DEMO-MRN-{number:04d}",
    )


# (study, subject) -> made-up personal data. Dates of birth are fixed; 101-002's makes her older than 89,
# the ages safe-harbor de-identification groups.
PERSONAL_DATA: dict[tuple[str, str], PersonalData] = {
    ("DEMO-001", "101-001"): _person(1, "Harriet Quellwater", "1958-03-14", "harriet.quellwater"),
    ("DEMO-001", "101-002"): _person(2, "山田 花子", "1934-11-02", "hanako.yamada"),
    ("DEMO-001", "101-003"): _person(3, "Ελένη Παπαδοπούλου", "1966-07-21", "eleni.papadopoulou"),
    ("DEMO-001", "102-001"): _person(4, "Zoë Lindqvist-Núñez", "1980-01-30", "zoe.lindqvist"),
    ("DEMO-001", "102-002"): _person(5, "فاطمة الزهراء بن علي", "1949-09-09", "fatima.benali"),
    ("ONC-201", "201-001"): _person(6, "Desmond Okonkwo-Vale", "1955-12-05", "desmond.okonkwo-vale"),
    ("ONC-201", "201-002"): _person(7, "Rosalind Fairweather-Kim", "1962-05-17", "rosalind.fairweather"),
}


def _phone_and_email(contact: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in contact.split(","))


# Every personal value of the demo as text, and the contact's telephone number and e-mail address on their
# own: what a coded export (the sponsor package) must never hold, checked member by member in its tests.
DEMO_PERSONAL_VALUES: tuple[str, ...] = tuple(
    value
    for person in PERSONAL_DATA.values()
    for value in (
        person.name,
        person.date_of_birth,
        person.contact,
        *_phone_and_email(person.contact or ""),
        person.mrn,
    )
    if value
)


def personal_data_available() -> bool:
    """Whether a personal-data key ring is configured, so the demo can store its participants' personal data."""
    try:
        identities.key_ring()
    except NotConfigured:
        return False
    return True


async def load_demo(today: date, protocols_dir: Path = PROTOCOLS_DIR) -> bool:
    """Load the demo into an empty database; False (and nothing written) when it holds a study. The
    participants' made-up personal data is stored when a key ring is configured (`personal_data_available`);
    without one the demo has coded data only."""
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
        if personal_data_available():
            for (study, subject), person in PERSONAL_DATA.items():
                if study in loaded:
                    values = {name: getattr(person, name) for name in identities.FIELDS}
                    await identities.set_identity(study, subject, values)
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
        await record_visit(
            study, subject, code, ago(days), reason=VISIT_REASONS.get((study, subject, code)), today=today
        )


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
