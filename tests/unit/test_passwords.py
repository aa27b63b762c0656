"""argon2id hashing (production parameters asserted, cheap ones used) and the password policy."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from argon2 import Type, profiles
from hypothesis import given, settings
from hypothesis import strategies as st

from trialcoord.accounts.passwords import (
    MIN_LENGTH,
    PRODUCTION_PARAMETERS,
    PasswordHashing,
    password_problems,
)

CHEAP = PasswordHashing(profiles.CHEAPEST)
PASSWORD = "correct horse battery"


def test_production_hashing_is_argon2id_at_least_rfc_9106_low_memory():
    production = PasswordHashing()
    assert production.parameters == PRODUCTION_PARAMETERS == profiles.RFC_9106_LOW_MEMORY
    p = production.parameters
    assert (p.type, p.time_cost, p.memory_cost, p.parallelism, p.salt_len, p.hash_len) == (Type.ID, 3, 65536, 4, 16, 32)
    stored = production.hash(PASSWORD)  # the one real (about 50 ms) hash of the suite
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert production.verify(stored, PASSWORD)
    assert not production.needs_rehash(stored)
    assert production.needs_rehash(CHEAP.hash(PASSWORD))


def test_only_argon2id_is_accepted():
    with pytest.raises(ValueError, match="argon2id, not i"):
        PasswordHashing(replace(profiles.CHEAPEST, type=Type.I))


def test_a_hash_verifies_its_password_only():
    stored = CHEAP.hash(PASSWORD)
    assert PASSWORD not in stored
    assert CHEAP.verify(stored, PASSWORD)
    assert not CHEAP.verify(stored, PASSWORD + " ")
    assert not CHEAP.verify(stored, "")


def test_each_hash_has_its_own_salt():
    assert CHEAP.hash(PASSWORD) != CHEAP.hash(PASSWORD)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "not a hash",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$zz$zz",
        "$bcrypt$2b$12$abc",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
    ],
)
def test_a_missing_or_malformed_hash_never_verifies_and_never_raises(stored):
    assert CHEAP.verify(stored, PASSWORD) is False


@settings(max_examples=50)
@given(st.text(max_size=80), st.text(max_size=40))
def test_verify_returns_a_bool_for_any_input(stored, password):
    assert CHEAP.verify(stored, password) is False


def test_a_truncated_hash_does_not_verify():
    stored = CHEAP.hash(PASSWORD)
    assert not CHEAP.verify(stored[:-2], PASSWORD)


def test_an_unreadable_hash_needs_replacing():
    assert CHEAP.needs_rehash("not a hash") and CHEAP.needs_rehash("\u00e9")
    assert not CHEAP.needs_rehash(CHEAP.hash(PASSWORD))


# --- password policy ---


def problems(password, user_id="jdoe", email="jane.doe@site-a.example"):
    return [p.message for p in password_problems(password, user_id=user_id, email=email)]


def test_twelve_characters_are_enough_and_eleven_are_not():
    assert MIN_LENGTH == 12
    assert problems("a" * 12) == []
    assert problems("a" * 11) == ["a password has at least 12 characters; this one has 11"]


def test_a_very_long_password_is_refused():
    assert problems("a" * 1025) == ["a password has at most 1024 characters; this one has 1025"]


def test_the_user_id_is_not_a_password_whatever_its_case():
    assert problems("JDoe.Account", user_id="jdoe.account") == ["the password must not be your user ID"]


def test_the_email_address_is_not_a_password():
    assert problems("Jane.Doe@Site-A.example ") == ["the password must not be your e-mail address"]


def test_problems_name_the_password_field_and_never_repeat_it():
    found = password_problems("hunter2", user_id="jdoe", email="j@x.example")
    assert [p.field for p in found] == ["password"]
    assert all("hunter2" not in p.message for p in found)


def test_the_domain_never_loads_argon2_or_cryptography():
    code = (
        "import sys, trialcoord.kernel.rules.access, trialcoord.accounts.rules.accounts; "
        "print([m for m in ('argon2', 'cryptography') if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
