"""Accounts, lock-out, inactivity and the 11.200 signing ceremony, pinned at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trialcoord.accounts.rules.accounts import (
    INACTIVITY_TIMEOUT,
    AccountStatus,
    Components,
    LockoutPolicy,
    Meaning,
    SigningAttempt,
    SigningSession,
    UserAccount,
    locked_until,
    login_gate,
    normalize_user_id,
    retry_delay,
    session_lapsed,
)
from trialcoord.kernel.problems import InvalidInput

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PASSWORD = "correct horse battery"
JANE = UserAccount("jdoe", "Jane Doe", "jane.doe@site-a.example")


def minutes(*offsets: float) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in offsets]


# --- accounts ---


def test_an_account_is_active_by_default():
    assert JANE.active and JANE.status is AccountStatus.ACTIVE
    assert not UserAccount("jdoe", "Jane Doe", "jane@x.example", "disabled").active


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_id": "JDoe"}, "user_id"),
        ({"user_id": "jd"}, "user_id"),
        ({"user_id": " jdoe"}, "user_id"),
        ({"user_id": "j" * 65}, "user_id"),
        ({"printed_name": "  "}, "printed_name"),
        ({"printed_name": "x" * 201}, "printed_name"),
        ({"email": "jane"}, "email"),
        ({"email": "a@b.c" + "c" * 250}, "email"),
        ({"status": "locked"}, "status"),
    ],
)
def test_an_invalid_account_names_the_field(kwargs, field):
    values = {"user_id": "jdoe", "printed_name": "Jane Doe", "email": "jane@x.example"} | kwargs
    with pytest.raises(InvalidInput) as caught:
        UserAccount(**values)
    assert [p.field for p in caught.value.problems] == [field]


def test_a_typed_user_id_is_normalized_to_its_stored_form():
    assert normalize_user_id("  JDoe ") == "jdoe"


# --- lock-out ---


def test_four_failures_within_the_window_do_not_lock():
    failures = minutes(0, 1, 2, 3)
    assert locked_until(failures) is None
    assert login_gate(failures, T0 + 4 * MINUTE).allowed


def test_the_fifth_failure_within_the_window_locks_for_fifteen_minutes():
    failures = minutes(0, 1, 2, 3, 4)
    gate = login_gate(failures, T0 + 5 * MINUTE)
    assert not gate.allowed and gate.locked
    assert gate.retry_at == T0 + 19 * MINUTE
    assert "locked after 5 failed sign-ins" in gate.reason


@pytest.mark.parametrize(("span", "locks"), [(timedelta(minutes=14, seconds=59), True), (15 * MINUTE, False)])
def test_five_failures_lock_only_when_less_than_the_window_apart(span, locks):
    failures = [T0, T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE, T0 + span]
    assert (locked_until(failures) is not None) is locks


@pytest.mark.parametrize(("after_last", "allowed"), [(14, False), (15, True), (16, True)])
def test_a_lock_ends_fifteen_minutes_after_the_last_failure(after_last, allowed):
    failures = minutes(0, 1, 2, 3, 4)
    gate = login_gate(failures, T0 + (4 + after_last) * MINUTE)
    assert gate.allowed is allowed and gate.locked is not allowed


def test_after_a_lock_ends_one_more_failure_does_not_lock_again():
    failures = minutes(0, 1, 2, 3, 4, 20)
    assert locked_until(failures) == T0 + 19 * MINUTE
    assert login_gate(failures, T0 + 21 * MINUTE).allowed


def test_failures_recorded_during_a_lock_extend_it():
    # Only if the caller records refused attempts as failures, which login_gate's doc warns against.
    assert locked_until(minutes(0, 1, 2, 3, 4, 10)) == T0 + 25 * MINUTE


def test_failures_need_not_arrive_in_order():
    assert locked_until(minutes(4, 0, 3, 1, 2)) == T0 + 19 * MINUTE


@pytest.mark.parametrize(("count", "seconds"), [(0, 0), (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (60, 30)])
def test_the_delay_doubles_up_to_its_maximum(count, seconds):
    assert retry_delay(count) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("wait", "allowed"), [(timedelta(seconds=7), False), (timedelta(seconds=8), True)])
def test_after_four_quick_failures_the_next_attempt_waits_eight_seconds(wait, allowed):
    failures = [T0 + timedelta(seconds=s) for s in (0, 1, 2, 3)]
    gate = login_gate(failures, failures[-1] + wait)
    assert gate.allowed is allowed
    if not allowed:
        assert not gate.locked and gate.retry_at == failures[-1] + timedelta(seconds=8)


def test_the_delay_counts_only_failures_within_the_window():
    failures = minutes(0, 1, 2, 30)  # the first three are more than 15 minutes before the last
    assert login_gate(failures, T0 + 30 * MINUTE + timedelta(seconds=1)).allowed


def test_no_failures_never_wait():
    assert login_gate([], T0).allowed


def test_the_policy_is_configurable():
    policy = LockoutPolicy(max_failures=3, window=5 * MINUTE, lock_for=60 * MINUTE)
    assert locked_until(minutes(0, 1, 2), policy) == T0 + 62 * MINUTE
    assert locked_until(minutes(0, 3, 6), policy) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"per_address": 0},
        {"window": timedelta(0)},
        {"first_delay": timedelta(seconds=10), "max_delay": timedelta(seconds=5)},
    ],
)
def test_a_policy_that_cannot_work_is_rejected(kwargs):
    with pytest.raises(ValueError):
        LockoutPolicy(**kwargs)


FAILURE_TIMES = st.lists(st.integers(0, 3 * 60 * 60), max_size=12).map(
    lambda seconds: [T0 + timedelta(seconds=s) for s in seconds]
)


@given(FAILURE_TIMES.filter(lambda f: len(f) < 5), st.integers(0, 4 * 60 * 60))
def test_fewer_than_five_failures_never_lock(failures, at):
    gate = login_gate(failures, T0 + timedelta(seconds=at))
    assert not gate.locked
    assert gate.allowed or gate.retry_at - max(failures) <= timedelta(seconds=8)


@given(FAILURE_TIMES)
def test_a_lock_never_outlasts_the_last_failure_by_more_than_its_duration(failures):
    until = locked_until(failures)
    assert until is None or (len(failures) >= 5 and until <= max(failures) + 15 * MINUTE)
    if failures:
        assert login_gate(failures, max(failures) + 15 * MINUTE).allowed


@given(FAILURE_TIMES, st.randoms())
def test_the_order_failures_are_given_in_does_not_matter(failures, rnd):
    shuffled = list(failures)
    rnd.shuffle(shuffled)
    assert locked_until(shuffled) == locked_until(failures)


# --- inactivity ---


@pytest.mark.parametrize(
    ("idle", "lapsed"), [(timedelta(minutes=14, seconds=59), False), (15 * MINUTE, True), (16 * MINUTE, True)]
)
def test_a_session_lapses_after_fifteen_minutes_of_inactivity(idle, lapsed):
    assert INACTIVITY_TIMEOUT == 15 * MINUTE
    assert session_lapsed(T0, T0 + idle) is lapsed


def test_the_inactivity_timeout_is_configurable():
    assert not session_lapsed(T0, T0 + 20 * MINUTE, timeout=30 * MINUTE)
    assert session_lapsed(T0, T0 + 30 * MINUTE, timeout=30 * MINUTE)


# --- the signing ceremony ---


def checks(password: str) -> bool:
    return password == PASSWORD


def both(meaning: str = "approval", password: str = PASSWORD) -> SigningAttempt:
    return SigningAttempt(meaning, password, user_id="jdoe")


def password_only(meaning: str = "review", password: str = PASSWORD) -> SigningAttempt:
    return SigningAttempt(meaning, password)


def test_the_first_signing_of_a_session_needs_both_components():
    session = SigningSession.start("jdoe", T0)
    assert session.required_components(T0) is Components.USER_ID_AND_PASSWORD
    refused = session.sign(JANE, password_only(), checks, T0)
    assert refused.signing is None and not refused.ok
    assert refused.reason == "this signing needs your user ID and password"
    result = session.sign(JANE, both(), checks, T0 + MINUTE)
    assert result.ok
    assert result.signing.components is Components.USER_ID_AND_PASSWORD
    assert (result.signing.user_id, result.signing.printed_name) == ("jdoe", "Jane Doe")
    assert result.signing.meaning is Meaning.APPROVAL and result.signing.signed_at == T0 + MINUTE


def test_later_signings_in_the_continuous_session_need_the_password_only():
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    result = session.sign(JANE, password_only("review"), checks, T0 + 14 * MINUTE)
    assert result.ok and result.signing.components is Components.PASSWORD
    again = result.session.sign(JANE, password_only("authorship"), checks, T0 + 28 * MINUTE)
    assert again.ok, "each signing is activity that keeps the session continuous"


@pytest.mark.parametrize(
    ("idle", "required"),
    [
        (timedelta(minutes=14, seconds=59), Components.PASSWORD),
        (15 * MINUTE, Components.USER_ID_AND_PASSWORD),
        (16 * MINUTE, Components.USER_ID_AND_PASSWORD),
    ],
)
def test_after_the_session_lapses_both_components_are_needed_again(idle, required):
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    assert session.required_components(T0 + idle) is required
    assert session.sign(JANE, password_only(), checks, T0 + idle).ok is (required is Components.PASSWORD)
    assert session.sign(JANE, both(), checks, T0 + idle).ok


def test_other_activity_keeps_the_session_continuous():
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    session = session.touch(T0 + 10 * MINUTE).touch(T0 + 20 * MINUTE)
    assert session.sign(JANE, password_only(), checks, T0 + 30 * MINUTE).ok


def test_activity_after_a_lapse_starts_a_new_period():
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    session = session.touch(T0 + 20 * MINUTE)
    assert session.required_components(T0 + 21 * MINUTE) is Components.USER_ID_AND_PASSWORD


def test_a_wrong_password_fails_closed_and_both_components_are_needed_next():
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    failed = session.sign(JANE, password_only(password="wrong password"), checks, T0 + MINUTE)
    assert failed.signing is None and failed.reason == "the password is not correct"
    assert failed.session.required_components(T0 + 2 * MINUTE) is Components.USER_ID_AND_PASSWORD
    assert not failed.session.sign(JANE, password_only(), checks, T0 + 2 * MINUTE).ok


@pytest.mark.parametrize("meaning", ["", "approved", "APPROVAL", "witness"])
def test_a_meaning_outside_the_fixed_list_is_rejected_before_the_password_is_checked(meaning):
    asked = []
    result = SigningSession.start("jdoe", T0).sign(JANE, both(meaning), lambda p: asked.append(p) or True, T0)
    assert result.signing is None and asked == []
    assert result.reason == "a signature's meaning is one of authorship, review, approval, responsibility, consent"


@pytest.mark.parametrize("meaning", list(Meaning))
def test_every_meaning_of_the_list_can_be_signed(meaning):
    assert SigningSession.start("jdoe", T0).sign(JANE, both(str(meaning)), checks, T0).signing.meaning is meaning


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        (SigningAttempt("approval", PASSWORD, user_id="jsmith"), "the user ID is not the signed-in user's"),
        (SigningAttempt("approval", "", user_id="jdoe"), "this signing needs your password"),
    ],
)
def test_the_components_must_be_the_signed_in_users(attempt, reason):
    result = SigningSession.start("jdoe", T0).sign(JANE, attempt, checks, T0)
    assert result.signing is None and result.reason == reason


def test_a_wrong_user_id_fails_even_when_the_password_alone_would_do():
    session = SigningSession.start("jdoe", T0).sign(JANE, both(), checks, T0).session
    attempt = SigningAttempt("review", PASSWORD, user_id="jsmith")
    assert not session.sign(JANE, attempt, checks, T0 + MINUTE).ok


def test_the_typed_user_id_is_compared_in_its_stored_form():
    attempt = SigningAttempt("approval", PASSWORD, user_id=" JDoe ")
    assert SigningSession.start("jdoe", T0).sign(JANE, attempt, checks, T0).ok


def test_a_disabled_account_cannot_sign():
    disabled = UserAccount("jdoe", "Jane Doe", "jane@x.example", AccountStatus.DISABLED)
    result = SigningSession.start("jdoe", T0).sign(disabled, both(), checks, T0)
    assert result.signing is None and result.reason == "the account is disabled"


def test_another_account_cannot_sign_in_this_session():
    other = UserAccount("jsmith", "John Smith", "john@x.example")
    result = SigningSession.start("jdoe", T0).sign(other, both(), checks, T0)
    assert result.signing is None and result.reason == "the account is not the one signed in"


def test_an_error_while_checking_the_password_gives_no_signing():
    def broken(password):
        raise RuntimeError("hash store unavailable")

    with pytest.raises(RuntimeError):
        SigningSession.start("jdoe", T0).sign(JANE, both(), broken, T0)


def test_the_password_never_appears_in_a_repr():
    assert PASSWORD not in repr(both())


STEPS = st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["touch", "both", "password", "wrong"])), max_size=15)


@given(STEPS)
def test_both_components_are_needed_exactly_when_no_continuous_signed_period_exists(steps):
    """A model of 11.200: password only iff the last signing succeeded and no gap since reached the timeout."""
    session, now, period_signed, last_active = SigningSession.start("jdoe", T0), T0, False, T0
    for gap, step in steps:
        now += timedelta(minutes=gap)
        if now - last_active >= INACTIVITY_TIMEOUT:
            period_signed = False
        expected = Components.PASSWORD if period_signed else Components.USER_ID_AND_PASSWORD
        assert session.required_components(now) is expected
        if step == "touch":
            session, last_active = session.touch(now), now
            continue
        attempt = {"both": both(), "password": password_only(), "wrong": both(password="nope")}[step]
        result = session.sign(JANE, attempt, checks, now)
        should_sign = step == "both" or (step == "password" and period_signed)
        assert result.ok is should_sign
        session, period_signed = result.session, should_sign
        if should_sign:
            last_active = now
            assert result.signing.components is expected
