"""Roles, grants and `authorize`: every role x action cell, scoping by study and site, grant dates."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import (
    READ_ONLY_ACTIONS,
    ROLE_PERMISSIONS,
    SITE_ROLES,
    Action,
    Blinding,
    Grant,
    Role,
    SiteScope,
    allocation_sites,
    authorize,
    may_view_allocation,
    parse_role,
    visible_sites,
)

TODAY = date(2024, 6, 15)
START = date(2024, 1, 1)
DOCS = Path(__file__).parents[2] / "docs" / "access-control.md"

# Written out independently of ROLE_PERMISSIONS, so a change to the table must be made twice on purpose.
#                     admin coord invest monitor sponsor pharmacist
EXPECTED = """
view_schedule          Y     Y     Y      Y       Y       Y
view_personal_data     Y     Y     Y      -       -       -
view_audit             Y     -     Y      Y       -       -
export                 Y     Y     Y      Y       Y       -
enroll_participant     Y     Y     Y      -       -       -
assign_arm             Y     Y     Y      -       -       Y
record_visit           Y     Y     Y      -       -       -
manage_documents       Y     Y     Y      -       -       -
sign                   Y     Y     Y      Y       -       -
load_protocol          Y     -     -      -       -       -
manage_sites           Y     -     -      -       -       -
manage_users           Y     -     -      -       -       -
record_deviation       Y     Y     Y      Y       -       -
respond_deviation      Y     Y     Y      -       -       -
review_deviation       Y     -     -      Y       -       -
approve_exception      Y     -     Y      -       -       -
view_allocation        Y     -     -      -       -       Y
"""
ROLES = [Role.ADMINISTRATOR, Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR, Role.SPONSOR, Role.UNBLINDED_PHARMACIST]
CELLS = {
    (role, Action(row.split()[0])): mark == "Y"
    for row in EXPECTED.strip().splitlines()
    for role, mark in zip(ROLES, row.split()[1:], strict=True)
}


def grant(role, study="TST-1", site=None, valid_from=START, valid_to=None, user="u1", **kw) -> Grant:
    return Grant(user, role, study, site, valid_from, valid_to, **kw)


# A persona per role, each in its own usual scope.
PERSONA = {
    Role.ADMINISTRATOR: grant(Role.ADMINISTRATOR, study=None),
    Role.COORDINATOR: grant(Role.COORDINATOR, site="A"),
    Role.INVESTIGATOR: grant(Role.INVESTIGATOR, site="A"),
    Role.MONITOR: grant(Role.MONITOR, valid_to=date(2024, 6, 30)),
    Role.SPONSOR: grant(Role.SPONSOR),
    Role.UNBLINDED_PHARMACIST: grant(Role.UNBLINDED_PHARMACIST, site="A"),
}


def test_the_expected_table_covers_every_role_and_action():
    assert {cell for cell in CELLS} == {(r, a) for r in Role for a in Action}


@pytest.mark.parametrize(("role", "action"), sorted(CELLS), ids=lambda v: str(v))
def test_role_x_action(role, action):
    decision = authorize([PERSONA[role]], action, "TST-1", "A", TODAY)
    assert decision.allowed is CELLS[role, action], decision.reason
    assert (action in ROLE_PERMISSIONS[role]) is CELLS[role, action]


def test_the_documented_table_is_the_code_table():
    rows = re.findall(r"^\| `(\w+)` \|(.*)\|$", DOCS.read_text(), flags=re.M)
    documented = {
        (role, Action(name)): mark.strip() == "yes"
        for name, marks in rows
        if name in set(Action)
        for role, mark in zip(ROLES, marks.split("|"), strict=True)
    }
    assert documented == {(r, a): a in ROLE_PERMISSIONS[r] for r in Role for a in Action}


def test_every_role_has_one_name():
    assert [str(r) for r in Role] == [
        "administrator",
        "coordinator",
        "investigator",
        "monitor",
        "sponsor",
        "unblinded_pharmacist",
    ]


# --- site and study scoping ---


@pytest.mark.parametrize(
    ("study", "site", "allowed"),
    [
        ("TST-1", "A", True),
        ("TST-1", "B", False),
        ("TST-1", None, False),  # a study-wide request needs an all-sites grant
        ("OTHER", "A", False),
        (None, None, False),  # system-wide
    ],
)
def test_a_site_role_is_limited_to_its_site(study, site, allowed):
    assert authorize([PERSONA[Role.COORDINATOR]], Action.RECORD_VISIT, study, site, TODAY).allowed is allowed


@pytest.mark.parametrize(
    ("study", "site", "allowed"),
    [
        ("TST-1", "A", True),
        ("TST-1", "B", True),
        ("TST-1", None, True),
        ("OTHER", "A", False),
        (None, None, False),
    ],
)
def test_an_all_sites_grant_covers_every_site_of_its_study_only(study, site, allowed):
    assert authorize([PERSONA[Role.MONITOR]], Action.VIEW_SCHEDULE, study, site, TODAY).allowed is allowed


@pytest.mark.parametrize(("study", "site"), [("TST-1", "A"), ("OTHER", "Z"), ("TST-1", None), (None, None)])
def test_a_system_wide_administrator_may_act_anywhere(study, site):
    assert authorize([PERSONA[Role.ADMINISTRATOR]], Action.MANAGE_USERS, study, site, TODAY).allowed


def test_a_study_administrator_is_limited_to_the_study():
    study_admin = [grant(Role.ADMINISTRATOR)]
    assert authorize(study_admin, Action.LOAD_PROTOCOL, "TST-1", None, TODAY).allowed
    assert not authorize(study_admin, Action.LOAD_PROTOCOL, "OTHER", None, TODAY).allowed
    assert not authorize(study_admin, Action.MANAGE_USERS, None, None, TODAY).allowed


def test_a_coordinator_at_two_sites_works_at_both():
    grants = [grant(Role.COORDINATOR, site="A"), grant(Role.COORDINATOR, site="B")]
    assert authorize(grants, Action.RECORD_VISIT, "TST-1", "B", TODAY).allowed
    assert not authorize(grants, Action.RECORD_VISIT, "TST-1", "C", TODAY).allowed


# --- grant dates ---


@pytest.mark.parametrize(
    ("today", "allowed"),
    [
        (date(2024, 6, 29), True),
        (date(2024, 6, 30), True),  # the last day of the grant
        (date(2024, 7, 1), False),  # the day after
        (date(2023, 12, 31), False),  # the day before it starts
        (START, True),
    ],
)
def test_a_monitor_grant_works_from_its_first_to_its_last_day(today, allowed):
    decision = authorize([PERSONA[Role.MONITOR]], Action.VIEW_SCHEDULE, "TST-1", "A", today)
    assert decision.allowed is allowed, decision.reason


def test_an_expired_grant_says_when_it_ended():
    decision = authorize([PERSONA[Role.MONITOR]], Action.VIEW_SCHEDULE, "TST-1", "A", date(2024, 7, 1))
    assert "ended on 2024-06-30" in decision.reason


def test_a_grant_not_yet_started_says_when_it_starts():
    decision = authorize([grant(Role.MONITOR, valid_from=date(2024, 7, 1))], Action.EXPORT, "TST-1", None, TODAY)
    assert "starts on 2024-07-01" in decision.reason


@given(st.dates(), st.dates(), st.one_of(st.none(), st.dates()))
def test_a_grant_works_exactly_on_the_days_it_is_in_force(today, valid_from, valid_to):
    if valid_to is not None and valid_to < valid_from:
        valid_from, valid_to = valid_to, valid_from
    g = grant(Role.MONITOR, valid_from=valid_from, valid_to=valid_to)
    in_force = valid_from <= today and (valid_to is None or today <= valid_to)
    assert authorize([g], Action.VIEW_SCHEDULE, "TST-1", "A", today).allowed is in_force


# --- sponsors, monitors and personal data ---


def test_a_sponsor_is_read_only_and_never_sees_personal_data():
    assert ROLE_PERMISSIONS[Role.SPONSOR] <= READ_ONLY_ACTIONS
    assert Action.VIEW_PERSONAL_DATA not in ROLE_PERMISSIONS[Role.SPONSOR]
    for action in set(Action) - READ_ONLY_ACTIONS:
        assert not authorize([PERSONA[Role.SPONSOR]], action, "TST-1", "A", TODAY).allowed


def test_a_sponsor_grant_cannot_add_personal_data():
    with pytest.raises(InvalidInput, match="sponsors see coded data only"):
        grant(Role.SPONSOR, personal_data=True)


def test_a_monitor_sees_personal_data_only_when_the_grant_says_so():
    assert not authorize([PERSONA[Role.MONITOR]], Action.VIEW_PERSONAL_DATA, "TST-1", "A", TODAY).allowed
    sdv = grant(Role.MONITOR, personal_data=True)
    assert authorize([sdv], Action.VIEW_PERSONAL_DATA, "TST-1", "A", TODAY).allowed
    assert not authorize([sdv], Action.RECORD_VISIT, "TST-1", "A", TODAY).allowed


def test_read_only_actions_are_the_viewing_ones():
    assert READ_ONLY_ACTIONS == {
        Action.VIEW_SCHEDULE,
        Action.VIEW_PERSONAL_DATA,
        Action.VIEW_AUDIT,
        Action.EXPORT,
        Action.VIEW_ALLOCATION,
    }


# --- rejected input ---


def test_an_unknown_role_is_rejected_with_the_known_ones():
    with pytest.raises(InvalidInput) as caught:
        grant("superuser")
    (problem,) = caught.value.problems
    assert problem.field == "role"
    assert "unknown role 'superuser'" in problem.message and "administrator, coordinator" in problem.message
    with pytest.raises(InvalidInput):
        parse_role("Coordinator")


def test_a_role_given_as_text_becomes_the_role():
    assert grant("monitor").role is Role.MONITOR


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": Role.COORDINATOR, "site": None}, "site"),
        ({"role": Role.MONITOR, "study": None}, "study"),
        ({"role": Role.ADMINISTRATOR, "study": None, "site": "A"}, "site"),
        ({"role": Role.MONITOR, "valid_to": date(2023, 12, 31)}, "valid_to"),
        ({"role": Role.COORDINATOR, "site": "A", "personal_data": True}, "personal_data"),
        ({"role": Role.MONITOR, "user": ""}, "user_id"),
    ],
)
def test_an_impossible_grant_is_rejected(kwargs, field):
    with pytest.raises(InvalidInput) as caught:
        grant(**kwargs)
    assert field in [p.field for p in caught.value.problems]


def test_every_problem_of_a_grant_is_reported_at_once():
    with pytest.raises(InvalidInput) as caught:
        grant(Role.INVESTIGATOR, study=None, valid_to=date(2020, 1, 1))
    assert {p.field for p in caught.value.problems} == {"study", "site", "valid_to"}


def test_an_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        authorize([PERSONA[Role.ADMINISTRATOR]], "fly", "TST-1", "A", TODAY)


def test_a_site_without_its_study_is_a_programming_error():
    with pytest.raises(ValueError, match="without its study"):
        authorize([PERSONA[Role.ADMINISTRATOR]], Action.VIEW_SCHEDULE, None, "A", TODAY)


def test_the_grants_of_two_users_are_never_combined():
    with pytest.raises(ValueError, match="more than one user"):
        authorize(
            [grant(Role.COORDINATOR, site="A"), grant(Role.MONITOR, user="u2")],
            Action.VIEW_SCHEDULE,
            "TST-1",
            "A",
            TODAY,
        )


# --- decisions ---


def test_no_grant_denies():
    decision = authorize([], Action.VIEW_SCHEDULE, "TST-1", "A", TODAY)
    assert not decision and decision.reason == "no grant"


def test_a_decision_is_false_when_denied_so_an_if_cannot_let_it_through():
    assert not authorize([PERSONA[Role.SPONSOR]], Action.RECORD_VISIT, "TST-1", "A", TODAY)
    assert authorize([PERSONA[Role.SPONSOR]], Action.EXPORT, "TST-1", "A", TODAY)


def test_a_denial_gives_each_grants_reason():
    grants = [grant(Role.COORDINATOR, site="A"), PERSONA[Role.MONITOR]]
    decision = authorize(grants, Action.RECORD_VISIT, "TST-1", "B", TODAY)
    assert decision.reason == (
        "coordinator of TST-1 at site A: the grant does not cover TST-1 at site B; "
        "monitor of TST-1 at all sites: a monitor may not record_visit"
    )


def test_an_allowed_decision_names_the_grant():
    decision = authorize([PERSONA[Role.COORDINATOR]], Action.RECORD_VISIT, "TST-1", "A", TODAY)
    assert decision.reason == "allowed as coordinator of TST-1 at site A"


@st.composite
def any_grant(draw) -> Grant:
    role = draw(st.sampled_from(list(Role)))
    start = draw(st.dates(date(2023, 1, 1), date(2025, 1, 1)))
    days = draw(st.one_of(st.none(), st.integers(0, 400)))
    site = draw(st.sampled_from(["A", "B"] if role in SITE_ROLES else [None, "A", "B"]))
    study = None if role is Role.ADMINISTRATOR else "TST-1"
    return grant(
        role,
        study=study,
        site=site if study else None,
        valid_from=start,
        valid_to=None if days is None else start + timedelta(days=days),
    )


@given(
    st.lists(any_grant(), max_size=4),
    st.sampled_from(list(Action)),
    st.sampled_from([None, "A", "B", "C"]),
    st.dates(date(2023, 1, 1), date(2026, 1, 1)),
)
def test_several_grants_allow_what_any_one_of_them_allows(grants, action, site, today):
    alone = [authorize([g], action, "TST-1", site, today).allowed for g in grants]
    assert authorize(grants, action, "TST-1", site, today).allowed is any(alone)


# --- listings across sites ---


def test_visible_sites_are_the_sites_of_grants_in_force():
    grants = [grant(Role.COORDINATOR, site="A"), grant(Role.COORDINATOR, site="B", valid_to=date(2024, 1, 31))]
    scope = visible_sites(grants, Action.VIEW_SCHEDULE, "TST-1", TODAY)
    assert not scope.all_sites and scope.sites == {"A"}
    assert scope.includes("A") and not scope.includes("B")


def test_an_all_sites_grant_shows_every_site():
    scope = visible_sites([PERSONA[Role.MONITOR]], Action.VIEW_SCHEDULE, "TST-1", TODAY)
    assert scope.all_sites and scope.includes("anything")


def test_visible_sites_respect_the_action_and_the_study():
    assert visible_sites([PERSONA[Role.MONITOR]], Action.RECORD_VISIT, "TST-1", TODAY).sites == frozenset()
    assert not visible_sites([PERSONA[Role.MONITOR]], Action.VIEW_SCHEDULE, "OTHER", TODAY).includes("A")


# --- blinding: who may see the allocation ---


@pytest.mark.parametrize("blinding", list(Blinding))
@pytest.mark.parametrize("role", list(Role))
def test_the_allocation_is_seen_by_everyone_when_open_and_only_with_view_allocation_when_blinded(role, blinding):
    seen = may_view_allocation([PERSONA[role]], blinding, "TST-1", "A", TODAY)
    assert seen is (blinding is Blinding.OPEN or role in (Role.ADMINISTRATOR, Role.UNBLINDED_PHARMACIST))


def test_an_unblinded_pharmacist_sees_the_allocation_of_its_own_site_only():
    pharmacist = [PERSONA[Role.UNBLINDED_PHARMACIST]]
    assert may_view_allocation(pharmacist, "double", "TST-1", "A", TODAY)
    assert not may_view_allocation(pharmacist, "double", "TST-1", "B", TODAY)
    assert not may_view_allocation(pharmacist, "double", "TST-1", None, TODAY)  # study-wide, as a package is
    assert not may_view_allocation(pharmacist, "single", "OTHER", "A", TODAY)
    assert allocation_sites(pharmacist, Blinding.DOUBLE, "TST-1", TODAY) == SiteScope(False, frozenset({"A"}))


def test_an_ended_grant_no_longer_unblinds():
    ended = grant(Role.UNBLINDED_PHARMACIST, site="A", valid_to=date(2024, 6, 1))
    assert not may_view_allocation([ended], Blinding.DOUBLE, "TST-1", "A", TODAY)


def test_a_sponsor_and_a_monitor_see_no_allocation_of_a_blinded_study_anywhere():
    for role in (Role.SPONSOR, Role.MONITOR):
        assert allocation_sites([PERSONA[role]], "double", "TST-1", TODAY) == SiteScope(False, frozenset())
        assert allocation_sites([PERSONA[role]], "open", "TST-1", TODAY).all_sites


def test_an_unknown_blinding_is_a_programming_error():
    with pytest.raises(ValueError):
        may_view_allocation([PERSONA[Role.ADMINISTRATOR]], "triple", "TST-1", "A", TODAY)
