"""Field-level encryption of personal identifiers: format, binding to record and field, keys, rotation."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trialcoord.kernel.pii import (
    KEY_FILE_VARIABLE,
    KEYS_VARIABLE,
    NONCE_SIZE,
    TAG_SIZE,
    CiphertextError,
    EncryptedField,
    KeyRing,
    KeyRingError,
    PiiError,
    UnknownKeyError,
    generate_key_file,
    key_id_of,
    key_ring_from_environment,
    key_ring_from_json,
    load_key_file,
    rotate,
    write_key_file,
)

RING = KeyRing.generate("2024-01")
RECORD = "participant:TST-1:1001"
NAME = "Jane Quincy Doe"


def test_a_value_round_trips():
    assert RING.decrypt(RING.encrypt(NAME, RECORD, "name"), RECORD, "name") == NAME


@given(st.text(max_size=200))
def test_any_text_round_trips(text):
    assert RING.decrypt(RING.encrypt(text, RECORD, "contact"), RECORD, "contact") == text


def test_the_format_is_version_key_id_nonce_ciphertext_and_tag():
    stored = RING.encrypt(NAME, RECORD, "name")
    assert stored[0] == 1 and stored[1] == len("2024-01") and stored[2:9] == b"2024-01"
    assert len(stored) == 2 + 7 + NONCE_SIZE + len(NAME.encode()) + TAG_SIZE
    assert key_id_of(stored) == "2024-01"


@pytest.mark.parametrize("plaintext", [NAME, "1961-04-12", "MRN-00482913", "+1 555 0100", "Zoë Ångström"])
def test_a_known_plaintext_never_appears_in_the_stored_bytes(plaintext):
    stored = RING.encrypt(plaintext, RECORD, "name")
    for form in (plaintext.encode("utf-8"), plaintext.encode("utf-16-le"), base64.b64encode(plaintext.encode())):
        assert form not in stored


def test_the_same_value_encrypts_differently_each_time():
    assert RING.encrypt(NAME, RECORD, "name") != RING.encrypt(NAME, RECORD, "name")


@pytest.mark.parametrize(
    ("record", "field"), [("participant:TST-1:1002", "name"), (RECORD, "contact"), ("participant:TST-2:1001", "name")]
)
def test_a_value_moved_to_another_record_or_field_does_not_decrypt(record, field):
    stored = RING.encrypt(NAME, RECORD, "name")
    with pytest.raises(CiphertextError, match="copied from another record or field"):
        RING.decrypt(stored, record, field)


def test_every_altered_byte_is_detected():
    stored = RING.encrypt("Jo", RECORD, "name")
    for position in range(len(stored)):
        altered = bytearray(stored)
        altered[position] ^= 0x01
        with pytest.raises(PiiError):
            RING.decrypt(bytes(altered), RECORD, "name")


@pytest.mark.parametrize("cut", [0, 1, 5, 9 + NONCE_SIZE + TAG_SIZE - 1])
def test_a_truncated_value_is_reported_as_such(cut):
    stored = RING.encrypt(NAME, RECORD, "name")
    with pytest.raises(CiphertextError, match=f"{RECORD}:name is (not an encrypted value|truncated)"):
        RING.decrypt(stored[:cut], RECORD, "name")


def test_an_unknown_format_version_is_reported():
    stored = RING.encrypt(NAME, RECORD, "name")
    with pytest.raises(CiphertextError, match="format version 1"):
        RING.decrypt(b"\x02" + stored[1:], RECORD, "name")


def test_a_different_key_of_the_same_id_is_reported():
    impostor = KeyRing.generate("2024-01")
    with pytest.raises(CiphertextError, match="does not decrypt with key '2024-01': the key is not the one"):
        impostor.decrypt(RING.encrypt(NAME, RECORD, "name"), RECORD, "name")


def test_a_missing_key_id_is_reported_with_the_ids_held():
    with pytest.raises(UnknownKeyError, match="key '2024-01', which the key ring does not hold \\(it holds other\\)"):
        KeyRing.generate("other").decrypt(RING.encrypt(NAME, RECORD, "name"), RECORD, "name")


def test_errors_never_carry_the_plaintext():
    stored = RING.encrypt(NAME, RECORD, "name")
    with pytest.raises(PiiError) as caught:
        RING.decrypt(stored, RECORD, "contact")
    assert NAME not in str(caught.value)


@pytest.mark.parametrize("field", ["", "Name", "na:me"])
def test_a_field_name_is_a_plain_identifier(field):
    with pytest.raises(ValueError, match="field name"):
        RING.encrypt(NAME, RECORD, field)


# --- rotation ---


def test_rotation_moves_every_value_to_the_new_key_and_keeps_it_readable():
    values = {
        (f"participant:TST-1:{n}", field): f"{field} of {n}"
        for n in range(1000, 1010)
        for field in ("name", "date_of_birth", "medical_record_number")
    }
    stored = [EncryptedField(r, f, RING.encrypt(text, r, f)) for (r, f), text in values.items()]
    rotated_ring = RING.with_new_current_key("2024-07")
    already_current = EncryptedField(RECORD, "name", rotated_ring.encrypt(NAME, RECORD, "name"))

    moved = list(rotate(rotated_ring, [*stored, already_current]))

    assert [(v.record, v.field) for v in moved] == [(v.record, v.field) for v in stored]
    assert {key_id_of(v.ciphertext) for v in moved} == {"2024-07"}
    retired = rotated_ring.without_key("2024-01")
    assert {(v.record, v.field): retired.decrypt(v.ciphertext, v.record, v.field) for v in moved} == values
    assert list(rotate(rotated_ring, moved)) == []
    with pytest.raises(UnknownKeyError):
        retired.decrypt(stored[0].ciphertext, stored[0].record, stored[0].field)


def test_new_values_use_the_current_key_and_old_keys_still_read():
    rotated = RING.with_new_current_key("2024-07")
    assert key_id_of(rotated.encrypt(NAME, RECORD, "name")) == "2024-07"
    assert rotated.decrypt(RING.encrypt(NAME, RECORD, "name"), RECORD, "name") == NAME


def test_a_key_id_is_never_reused_and_the_current_key_never_removed():
    with pytest.raises(KeyRingError, match="never reused"):
        RING.with_new_current_key("2024-01")
    with pytest.raises(KeyRingError, match="current key"):
        RING.without_key("2024-01")


# --- key rings, key files and the environment ---


def test_a_key_ring_never_shows_its_keys():
    key = base64.b64encode(RING.keys["2024-01"]).decode()
    assert key not in repr(RING) and "2024-01" in repr(RING)


@pytest.mark.parametrize(
    ("current", "keys", "message"),
    [
        ("a", {"a": b"x" * 16}, "key 'a' has 16 bytes; AES-256 needs 32"),
        ("b", {"a": b"x" * 32}, "the current key 'b' is not among the keys \\(a\\)"),
        ("a b", {"a b": b"x" * 32}, "key id 'a b' must be"),
    ],
)
def test_an_unusable_key_ring_is_rejected(current, keys, message):
    with pytest.raises(KeyRingError, match=message):
        KeyRing(current, keys)


def test_a_generated_key_file_is_private_and_loads(tmp_path):
    path = tmp_path / "pii-keys.json"
    old_umask = os.umask(0)
    try:
        ring = generate_key_file(path, "k1")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_file(path) == ring
    assert set(json.loads(path.read_text())) == {"current", "keys"}


def test_a_key_file_is_never_overwritten_by_accident(tmp_path):
    path = tmp_path / "pii-keys.json"
    ring = generate_key_file(path, "k1")
    with pytest.raises(KeyRingError, match="already exists"):
        generate_key_file(path, "k2")
    assert load_key_file(path) == ring


def test_a_rotated_ring_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "pii-keys.json"
    rotated = generate_key_file(path, "k1").with_new_current_key("k2")
    write_key_file(path, rotated, replace=True)
    assert load_key_file(path) == rotated
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["pii-keys.json"]


def key_json(current="k1", **keys) -> str:
    keys = keys or {"k1": base64.b64encode(b"k" * 32).decode()}
    return json.dumps({"current": current, "keys": keys})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "TRIALCOORD_PII_KEYS: not JSON"),
        ("[]", 'expected {"current"'),
        (json.dumps({"keys": {}}), 'expected {"current"'),
        (key_json(k1="%%%"), "key 'k1' is not valid base64"),
        (key_json(k1=17), "key 'k1' must be a base64 string"),
        (key_json(k1=base64.b64encode(b"short").decode()), "key 'k1' has 5 bytes"),
        (key_json(current="k9"), "the current key 'k9' is not among the keys"),
    ],
)
def test_a_malformed_key_configuration_says_what_is_wrong(text, message):
    with pytest.raises(KeyRingError, match=message.replace("{", "\\{")):
        key_ring_from_json(text, KEYS_VARIABLE)


def test_key_errors_never_carry_key_material():
    secret = base64.b64encode(b"s" * 31).decode()
    with pytest.raises(KeyRingError) as caught:
        key_ring_from_json(key_json(k1=secret), "test")
    assert secret not in str(caught.value)


def test_keys_come_from_the_key_file_named_in_the_environment(tmp_path):
    path = tmp_path / "keys.json"
    ring = generate_key_file(path, "k1")
    assert key_ring_from_environment({KEY_FILE_VARIABLE: str(path)}) == ring


def test_keys_come_inline_from_the_environment():
    assert key_ring_from_environment({KEYS_VARIABLE: RING.to_json()}) == RING


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no key for personal data: set TRIALCOORD_PII_KEY_FILE"),
        ({KEY_FILE_VARIABLE: "/nonexistent/keys.json"}, "key file /nonexistent/keys.json does not exist"),
        ({KEY_FILE_VARIABLE: "/tmp/x.json", KEYS_VARIABLE: "{}"}, "not both"),
    ],
)
def test_a_missing_key_configuration_says_what_to_set(environ, message):
    with pytest.raises(KeyRingError, match=message):
        key_ring_from_environment(environ)
