"""The system signing key at rest and signed checkpoints. Keys are generated per run into tmp_path only."""

from __future__ import annotations

import json
import stat
from dataclasses import replace

import pytest

from trialcoord.kernel import signing_keys as sk
from trialcoord.kernel.rules.audit_entries import AuditEntry, seal
from trialcoord.kernel.rules.audit_verification import Checkpoint, verify_entries

PASSPHRASE = b"correct horse battery staple"
CHECKPOINT = Checkpoint(1234, "5d" * 32, "2026-11-28T00:00:00.000000Z")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One key saved once: each scrypt derivation costs about half a second, on purpose."""
    key = sk.generate_key()
    path = tmp_path_factory.mktemp("keys") / "system-key.json"
    sk.save_private_key(key, path, PASSPHRASE)
    return key, path


def rewritten(path, tmp_path, **changes):
    document = {**json.loads(path.read_text()), **changes}
    copy = tmp_path / "changed-key.json"
    copy.write_text(json.dumps(document))
    return copy


# --- keys at rest ------------------------------------------------------------------------------------


def test_a_saved_key_loads_back_and_signs_for_the_same_public_key(saved):
    key, path = saved
    loaded = sk.load_private_key(path, PASSPHRASE)
    assert sk.public_key_hex(loaded.public_key()) == sk.public_key_hex(key.public_key())
    key.public_key().verify(loaded.sign(b"message"), b"message")


def test_the_key_file_is_private_and_holds_no_plain_key(saved):
    key, path = saved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    seed = key.private_bytes_raw()
    assert seed.hex() not in text and sk._b64(seed) not in text


def test_the_kdf_costs_at_least_the_strong_setting(saved):
    document = json.loads(saved[1].read_text())
    kdf = document["kdf"]
    assert kdf["name"] == "scrypt" and kdf["n"] >= 2**15 and kdf["r"] >= 8 and kdf["p"] >= 1
    assert 128 * kdf["n"] * kdf["r"] >= 32 * 2**20  # at least 32 MiB of memory per guess
    assert len(sk._unb64(kdf["salt"])) >= 16
    assert document["cipher"] == "AES-256-GCM" and len(sk._unb64(document["nonce"])) == 12


def test_a_wrong_passphrase_is_a_clear_error(saved):
    with pytest.raises(sk.SigningKeyError, match="wrong passphrase"):
        sk.load_private_key(saved[1], b"wrong")


def test_a_key_file_is_never_overwritten(saved):
    with pytest.raises(sk.SigningKeyError, match="exists"):
        sk.save_private_key(sk.generate_key(), saved[1], PASSPHRASE)


def test_a_swapped_public_key_fails_to_decrypt(saved, tmp_path):
    other = sk.public_key_hex(sk.generate_key().public_key())
    with pytest.raises(sk.SigningKeyError, match="altered"):
        sk.load_private_key(rewritten(saved[1], tmp_path, public_key=other), PASSPHRASE)


@pytest.mark.parametrize(
    "kdf",
    [
        {"name": "scrypt", "n": 2**10, "r": 8, "p": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="},
        {"name": "scrypt", "n": 2**30, "r": 8, "p": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="},
        {"name": "pbkdf2", "n": 2**17, "r": 8, "p": 1, "salt": "AAAAAAAAAAAAAAAAAAAAAA=="},
        {"name": "scrypt"},
    ],
)
def test_weak_or_unknown_key_derivation_is_refused_before_deriving(saved, tmp_path, kdf):
    with pytest.raises(sk.SigningKeyError, match="corrupted"):
        sk.load_private_key(rewritten(saved[1], tmp_path, kdf=kdf), PASSPHRASE)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"format": "trialcoord-ed25519-key/1"}'])
def test_a_corrupted_key_file_is_a_clear_error(tmp_path, text):
    path = tmp_path / "key.json"
    path.write_text(text)
    with pytest.raises(sk.SigningKeyError, match=f"key file {path}"):
        sk.load_private_key(path, PASSPHRASE)


def test_a_damaged_ciphertext_is_a_clear_error(saved, tmp_path):
    with pytest.raises(sk.SigningKeyError, match="corrupted"):
        sk.load_private_key(rewritten(saved[1], tmp_path, ciphertext="!!not base64!!"), PASSPHRASE)


def test_a_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(sk.SigningKeyError, match="No such file"):
        sk.load_private_key(tmp_path / "absent.json", PASSPHRASE)


# --- passphrases -------------------------------------------------------------------------------------


def test_the_passphrase_comes_from_the_named_file_or_variable(tmp_path):
    path = tmp_path / "passphrase"
    path.write_text("from file\n")
    assert sk.read_passphrase(file=path) == b"from file"
    assert (
        sk.read_passphrase(env="TRIALCOORD_KEY_PASSPHRASE", environ={"TRIALCOORD_KEY_PASSPHRASE": "from env"})
        == b"from env"
    )


@pytest.mark.parametrize("sources", [{}, {"file": "x", "env": "Y"}, {"env": "UNSET_VARIABLE"}])
def test_a_missing_or_ambiguous_passphrase_is_a_clear_error(sources):
    with pytest.raises(sk.SigningKeyError):
        sk.read_passphrase(**sources, environ={})


def test_an_empty_or_missing_passphrase_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(sk.SigningKeyError, match="empty"):
        sk.read_passphrase(file=tmp_path / "empty")
    with pytest.raises(sk.SigningKeyError, match="passphrase file"):
        sk.read_passphrase(file=tmp_path / "absent")


# --- public keys -------------------------------------------------------------------------------------


def test_public_keys_export_as_hex_and_pem_and_load_back(saved):
    public = saved[0].public_key()
    assert len(sk.public_key_hex(public)) == 64
    assert sk.public_key_pem(public).startswith("-----BEGIN PUBLIC KEY-----")
    for text in (sk.public_key_hex(public), sk.public_key_pem(public)):
        assert sk.public_key_hex(sk.load_public_key(text)) == sk.public_key_hex(public)
    assert len(sk.key_id(public)) == 16


@pytest.mark.parametrize("text", ["", "abcd", "zz" * 32, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"])
def test_a_bad_public_key_is_a_clear_error(text):
    with pytest.raises(sk.SigningKeyError, match="Ed25519 public key"):
        sk.load_public_key(text)


# --- checkpoints -------------------------------------------------------------------------------------


def test_a_signed_checkpoint_verifies_to_the_same_checkpoint(saved):
    key = saved[0]
    signed = sk.sign_checkpoint(CHECKPOINT, key)
    assert set(signed.to_json()) == {"size", "root", "issued_at", "key_id", "signature"}
    assert sk.verify_checkpoint(signed, key.public_key()) == CHECKPOINT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 1235),
        ("root", "5e" + "5d" * 31),
        ("issued_at", "2026-11-29T00:00:00.000000Z"),
    ],
)
def test_a_tampered_checkpoint_fails_verification(saved, field, value):
    key = saved[0]
    signed = replace(sk.sign_checkpoint(CHECKPOINT, key), **{field: value})
    with pytest.raises(sk.CheckpointError, match="does not verify"):
        sk.verify_checkpoint(signed, key.public_key())


def test_a_tampered_signature_fails_verification(saved):
    key = saved[0]
    signed = sk.sign_checkpoint(CHECKPOINT, key)
    flipped = ("1" if signed.signature[0] == "0" else "0") + signed.signature[1:]
    for signature in (flipped, "not hex", signed.signature[:-2]):
        with pytest.raises(sk.CheckpointError, match="does not verify"):
            sk.verify_checkpoint(replace(signed, signature=signature), key.public_key())


def test_a_checkpoint_signed_by_another_key_fails_verification(saved):
    intruder = sk.generate_key()
    signed = sk.sign_checkpoint(CHECKPOINT, intruder)
    with pytest.raises(sk.CheckpointError, match="signed by key"):
        sk.verify_checkpoint(signed, saved[0].public_key())
    with pytest.raises(sk.CheckpointError, match="does not verify"):
        sk.verify_checkpoint(replace(signed, key_id=sk.key_id(saved[0].public_key())), saved[0].public_key())


def test_a_malformed_or_incomplete_checkpoint_is_a_clear_error(saved):
    key = saved[0]
    signed = sk.sign_checkpoint(CHECKPOINT, key)
    with pytest.raises(sk.CheckpointError, match="lacks signature"):
        sk.verify_checkpoint(
            sk.SignedCheckpoint.from_json({n: v for n, v in signed.to_json().items() if n != "signature"}),
            key.public_key(),
        )
    with pytest.raises(sk.CheckpointError, match="malformed"):
        sk.verify_checkpoint(sk.SignedCheckpoint.from_json({**signed.to_json(), "size": -1}), key.public_key())


@pytest.mark.parametrize(("field", "value"), [("size", "1234"), ("root", None), ("key_id", 5), ("signature", ["ab"])])
def test_a_signed_checkpoint_of_values_of_the_wrong_type_is_refused_when_read(saved, field, value):
    document = {**sk.sign_checkpoint(CHECKPOINT, saved[0]).to_json(), field: value}
    with pytest.raises(sk.CheckpointError, match=f"malformed: checkpoint {field}"):
        sk.SignedCheckpoint.from_json(document)


def test_a_signed_checkpoint_is_the_json_document_its_file_holds(saved, tmp_path):
    signed = sk.sign_checkpoint(CHECKPOINT, saved[0])
    path = tmp_path / "checkpoint.json"
    sk.save_checkpoint(signed, path)
    assert list(json.loads(path.read_text())) == ["size", "root", "issued_at", "key_id", "signature"]
    assert sk.SignedCheckpoint.from_json(json.loads(path.read_text())) == signed == sk.load_checkpoint(path)


def test_a_checkpoint_file_round_trips(saved, tmp_path):
    key = saved[0]
    path = tmp_path / "checkpoint.json"
    sk.save_checkpoint(sk.sign_checkpoint(CHECKPOINT, key), path)
    assert set(json.loads(path.read_text())) == {"size", "root", "issued_at", "key_id", "signature"}
    assert sk.verify_checkpoint(sk.load_checkpoint(path), key.public_key()) == CHECKPOINT


@pytest.mark.parametrize("text", ["not json", "[]"])
def test_a_bad_checkpoint_file_is_a_clear_error(tmp_path, text):
    path = tmp_path / "checkpoint.json"
    path.write_text(text)
    with pytest.raises(sk.CheckpointError, match=f"checkpoint file {path}"):
        sk.load_checkpoint(path)
    with pytest.raises(sk.CheckpointError, match="No such file"):
        sk.load_checkpoint(tmp_path / "absent.json")


def test_an_exported_checkpoint_later_proves_the_trail_extends_it(saved, tmp_path):
    key, path = saved
    rows = [
        seal(AuditEntry(i, f"2026-11-27T09:30:{i:02d}.000000Z", "system", "create", "visit", f"V{i}", new={"n": i}))
        for i in range(1, 13)
    ]
    exported = tmp_path / "checkpoint.json"
    signer = sk.load_private_key(path, PASSPHRASE)
    sk.save_checkpoint(
        sk.sign_checkpoint(verify_entries(rows[:8]).checkpoint("2026-11-28T00:00:00.000000Z"), signer), exported
    )

    checkpoint = sk.verify_checkpoint(
        sk.load_checkpoint(exported), sk.load_public_key(sk.public_key_hex(key.public_key()))
    )
    assert verify_entries(rows, checkpoint).ok
    rows[3] = seal(AuditEntry(4, "2026-11-27T09:30:04.000000Z", "system", "delete", "visit", "V4"))
    assert verify_entries(rows, checkpoint).first_bad[0] == 8
