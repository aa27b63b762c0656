"""Signature statements, the registry and how a signature is judged (Part 11 11.50, 11.70)."""

from zoneinfo import ZoneInfo

import pytest

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.rules.signers import SignerKey, parse_registry, registry_document
from trialcoord.documents.rules.signatures import Signature, Statement, Verdict, judge, local_time
from trialcoord.kernel import signing_keys

SHA_A, SHA_B = "a" * 64, "b" * 64
AT = "2026-11-27T09:30:00.000000Z"
NOW = "2026-12-01T00:00:00.000000Z"


def _signed(private, sha=SHA_A, signer="cora", meaning=Meaning.APPROVAL, at=AT):
    statement = Statement(sha, signer, meaning, at)
    kid = signing_keys.key_id(private.public_key())
    return Signature(statement, "Cora Coordinator", kid, signing_keys.sign_bytes(statement.canonical_bytes(), private))


def _registry(private, signer="cora", valid_from="2026-01-01T00:00:00.000000Z", valid_to=None):
    public = private.public_key()
    return {
        signing_keys.key_id(public): SignerKey(
            signer,
            "Cora Coordinator",
            signing_keys.key_id(public),
            signing_keys.public_key_hex(public),
            valid_from,
            valid_to,
        )
    }


@pytest.fixture(scope="module")
def key():
    return signing_keys.generate_key()


def test_the_statement_covers_sha_record_signer_meaning_and_instant_canonically():
    text = Statement(SHA_A, "cora", Meaning.REVIEW, AT, "TST-1/101/documents/ICF/2.0").canonical_bytes()
    assert text == (
        b'{"instant":"2026-11-27T09:30:00.000000Z","kind":"trialcoord-signature/1","meaning":"review",'
        b'"record":"TST-1/101/documents/ICF/2.0","signer_id":"cora","version_sha256":"' + SHA_A.encode() + b'"}'
    )


@pytest.mark.parametrize(
    "sha, meaning, at",
    [
        ("A" * 64, "review", AT),
        (SHA_A, "liking", AT),
        (SHA_A, "review", "2026-11-27 09:30"),
    ],
)
def test_a_malformed_statement_is_refused(sha, meaning, at):
    with pytest.raises(ValueError):
        Statement(sha, "cora", meaning, at)


def test_a_good_signature_is_valid(key):
    assert judge(_signed(key), _registry(key), SHA_A, signing_keys.verify_hex, NOW).verdict is Verdict.VALID


def test_a_signature_moved_to_another_version_fails(key):
    check = judge(_signed(key), _registry(key), SHA_B, signing_keys.verify_hex, NOW)
    assert check.verdict is Verdict.INVALID and "moved from another version" in check.reason


def test_a_statement_rewritten_to_another_version_fails_the_cryptography(key):
    good = _signed(key)
    moved = Signature(Statement(SHA_B, "cora", Meaning.APPROVAL, AT), good.printed_name, good.key_id, good.value)
    check = judge(moved, _registry(key), SHA_B, signing_keys.verify_hex, NOW)
    assert check.verdict is Verdict.INVALID and "does not verify" in check.reason


@pytest.mark.parametrize(
    "field, value", [("meaning", Meaning.REVIEW), ("instant", "2026-11-27T09:30:00.000001Z"), ("signer_id", "colin")]
)
def test_changing_any_signed_fact_fails(key, field, value):
    good = _signed(key)
    facts = {"version_sha256": SHA_A, "signer_id": "cora", "meaning": Meaning.APPROVAL, "instant": AT, field: value}
    forged = Signature(Statement(**facts), good.printed_name, good.key_id, good.value)
    registry = _registry(key, signer=facts["signer_id"])
    assert judge(forged, registry, SHA_A, signing_keys.verify_hex, NOW).verdict is Verdict.INVALID


def test_an_unknown_key_or_another_signers_key_fails(key):
    assert "not in the signer registry" in judge(_signed(key), {}, SHA_A, signing_keys.verify_hex, NOW).reason
    assert (
        "belongs to colin"
        in judge(_signed(key), _registry(key, signer="colin"), SHA_A, signing_keys.verify_hex, NOW).reason
    )


def test_a_revoked_key_keeps_old_signatures_valid_when_made(key):
    registry = _registry(key, valid_to="2026-11-28T00:00:00.000000Z")
    check = judge(_signed(key), registry, SHA_A, signing_keys.verify_hex, NOW)
    assert check.verdict is Verdict.VALID_WHEN_MADE and check.ok
    assert (
        judge(_signed(key), registry, SHA_A, signing_keys.verify_hex, "2026-11-27T12:00:00.000000Z").verdict
        is Verdict.VALID
    )


@pytest.mark.parametrize("at", ["2025-12-31T23:59:59.999999Z", "2026-11-28T00:00:00.000000Z"])
def test_a_signature_outside_the_keys_validity_fails(key, at):
    registry = _registry(key, valid_to="2026-11-28T00:00:00.000000Z")
    check = judge(_signed(key, at=at), registry, SHA_A, signing_keys.verify_hex, NOW)
    assert check.verdict is Verdict.INVALID and "outside key" in check.reason


def test_signature_dicts_round_trip_and_malformed_ones_name_the_fault(key):
    good = _signed(key)
    assert Signature.from_dict(good.as_dict()) == good
    with pytest.raises(ValueError, match="signature value"):
        Signature.from_dict({**good.as_dict(), "signature": "zz"})
    with pytest.raises(ValueError, match="lacks 'meaning'"):
        Signature.from_dict({k: v for k, v in good.as_dict().items() if k != "meaning"})


def test_the_registry_document_round_trips(key):
    keys = list(_registry(key).values())
    document = registry_document(keys, [{"key_id": "k", "public_key": "00" * 32, "purpose": "manifests"}], NOW)
    signers, system = parse_registry(document)
    assert list(signers.values()) == keys and system["k"]["purpose"] == "manifests"
    with pytest.raises(ValueError, match="not a signer registry"):
        parse_registry({"signers": []})
    with pytest.raises(ValueError, match="valid_to"):
        parse_registry({**document, "signers": [{**keys[0].as_dict(), "valid_to": "tomorrow"}]})


def test_local_time_names_the_zone():
    assert local_time(AT, "Europe/Berlin", ZoneInfo("Europe/Berlin")) == "2026-11-27 10:30:00 CET (Europe/Berlin)"
    assert (
        local_time("2026-07-01T09:30:00.000000Z", "America/New_York", ZoneInfo("America/New_York"))
        == "2026-07-01 05:30:00 EDT (America/New_York)"
    )
