"""The audit trail's hashing: RFC 6962 vectors, the tree against a naive reference, consistency proofs,
canonical bytes, and tamper detection (alter, delete, reorder, insert, rewrite, truncate)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trialcoord.kernel.rules.audit_entries import (
    AuditEntry,
    StoredEntry,
    canonical_bytes,
    canonical_json,
    seal,
    utc_instant,
)
from trialcoord.kernel.rules.audit_verification import Checkpoint, VerificationResult, verify_entries
from trialcoord.kernel.rules.merkle_tree import (
    EMPTY_ROOT,
    CompactTree,
    consistency_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
)

# RFC 6962 reference data, as used by Certificate Transparency's own tests: eight leaf inputs and the
# tree head of every size from 0 to 8.
CT_INPUTS = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_CONSISTENCY = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
START = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def naive_mth(inputs: list[bytes]) -> bytes:
    """RFC 6962 2.1 written out literally, with hashlib only."""
    if not inputs:
        return hashlib.sha256(b"").digest()
    if len(inputs) == 1:
        return hashlib.sha256(b"\x00" + inputs[0]).digest()
    k = 1 << ((len(inputs) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + naive_mth(inputs[:k]) + naive_mth(inputs[k:])).digest()


def entry(sequence: int, **changes) -> AuditEntry:
    fields = dict(
        sequence=sequence,
        recorded_at=utc_instant(START + timedelta(seconds=sequence)),
        actor=f"user-{sequence % 3}",
        action="update",
        record_type="visit",
        record_id=f"101-0001/V{sequence % 7}",
        old={"actual_date": None, "status": "scheduled"},
        new={"actual_date": "2026-03-04", "status": "done"},
        reason="entered from source" if sequence % 2 else None,
    )
    return AuditEntry(**{**fields, **changes})


def trail(size: int) -> list[StoredEntry]:
    return [seal(entry(sequence)) for sequence in range(1, size + 1)]


def altered(row: StoredEntry, **changes) -> StoredEntry:
    """What someone editing the table would leave: changed fields, the old leaf hash."""
    return StoredEntry(dataclasses.replace(row.entry, **changes), row.leaf_hash)


# --- RFC 6962 ----------------------------------------------------------------------------------------


def test_the_empty_tree_hash_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle_root([]) == EMPTY_ROOT == CompactTree().root()


def test_leaf_and_node_hashes_are_domain_separated():
    assert leaf_hash(b"").hex() == CT_ROOTS[1] == hashlib.sha256(b"\x00").hexdigest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    assert leaf_hash(left + right) != node_hash(left, right)  # a leaf can never pose as a node


def test_roots_match_the_rfc6962_reference_for_every_size_up_to_8():
    leaves = [leaf_hash(data) for data in CT_INPUTS]
    assert [merkle_root(leaves[:n]).hex() for n in range(9)] == CT_ROOTS


@pytest.mark.parametrize(("m", "n", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_rfc6962_reference(m, n, expected):
    leaves = [leaf_hash(data) for data in CT_INPUTS]
    proof = consistency_proof(leaves, m, n)
    assert [node.hex() for node in proof] == expected
    assert verify_consistency(m, n, bytes.fromhex(CT_ROOTS[m]), bytes.fromhex(CT_ROOTS[n]), proof)


def test_the_compact_tree_gives_the_naive_root_after_every_append_up_to_70():
    inputs = [f"entry {i}".encode() for i in range(70)]
    tree = CompactTree()
    for n, data in enumerate(inputs, start=1):
        tree.append(leaf_hash(data))
        assert tree.size == n
        assert tree.root() == naive_mth(inputs[:n]), n


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70))
def test_merkle_root_equals_the_naive_recursion(inputs):
    assert merkle_root([leaf_hash(data) for data in inputs]) == naive_mth(inputs)


# --- consistency proofs ------------------------------------------------------------------------------

LEAVES = [leaf_hash(f"leaf {i}".encode()) for i in range(40)]
ROOTS = [merkle_root(LEAVES[:n]) for n in range(41)]
PAIRS = [(m, n) for n in range(1, 41) for m in range(1, n + 1)]


def flip(node: bytes) -> bytes:
    return bytes([node[0] ^ 1]) + node[1:]


def test_every_consistency_proof_verifies_for_all_sizes_up_to_40():
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES, m, n)
        assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)
        assert len(proof) <= 2 * math.ceil(math.log2(n)) + 1


def test_a_consistency_proof_fails_for_altered_roots():
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES, m, n)
        assert not verify_consistency(m, n, flip(ROOTS[m]), ROOTS[n], proof), (m, n)
        assert not verify_consistency(m, n, ROOTS[m], flip(ROOTS[n]), proof), (m, n)


def test_a_consistency_proof_fails_when_altered_shortened_or_extended():
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES, m, n)
        for i in range(len(proof)):
            bad = proof[:i] + [flip(proof[i])] + proof[i + 1 :]
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], bad), (m, n, i)
        if proof:
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1]), (m, n)
        assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof, LEAVES[0]]), (m, n)


def test_a_consistency_proof_fails_for_other_sizes():
    for m, n in PAIRS:
        proof = consistency_proof(LEAVES, m, n)
        if n < 40:
            assert not verify_consistency(m, n + 1, ROOTS[m], ROOTS[n + 1], proof), (m, n)
        if m < n:
            assert not verify_consistency(m + 1, n, ROOTS[m + 1], ROOTS[n], proof), (m, n)


def test_a_rewritten_prefix_has_no_consistency_proof():
    rewritten = [leaf_hash(b"forged"), *LEAVES[1:]]
    for m, n in [(1, 2), (3, 8), (5, 40)]:
        proof = consistency_proof(rewritten, m, n)
        assert not verify_consistency(m, n, ROOTS[m], merkle_root(rewritten[:n]), proof)


@pytest.mark.parametrize(("m", "n"), [(0, 5), (6, 5), (1, 41)])
def test_consistency_proof_refuses_impossible_sizes(m, n):
    with pytest.raises(ValueError):
        consistency_proof(LEAVES, m, n)


# --- canonical bytes ---------------------------------------------------------------------------------


def test_canonical_bytes_are_pinned():
    sample = AuditEntry(
        7,
        "2026-11-27T09:30:00.000000Z",
        "user-1",
        "update",
        "visit",
        "101-0001/V3",
        old={"status": "scheduled", "actual_date": None},
        new={"status": "done", "actual_date": "2026-03-04"},
        reason="Datum korrigiert: Quelle ü",
    )
    assert (
        canonical_bytes(sample)
        == (
            '{"action":"update","actor":"user-1","new":{"actual_date":"2026-03-04","status":"done"},'
            '"old":{"actual_date":null,"status":"scheduled"},"reason":"Datum korrigiert: Quelle ü",'
            '"record_id":"101-0001/V3","record_type":"visit","recorded_at":"2026-11-27T09:30:00.000000Z","sequence":7}'
        ).encode()
    )


def test_canonical_bytes_are_stable_and_ignore_key_order():
    first = entry(3, new={"b": 1, "a": {"y": [1, 2], "x": None}})
    second = entry(3, new={"a": {"x": None, "y": [1, 2]}, "b": 1})
    assert canonical_bytes(first) == canonical_bytes(first) == canonical_bytes(second)
    assert canonical_bytes(first) != canonical_bytes(entry(3, new={"b": 2, "a": {"y": [1, 2], "x": None}}))


@pytest.mark.parametrize("value", [datetime(2026, 1, 1, tzinfo=UTC), date(2026, 1, 1), Decimal("1.5"), b"x"])
def test_values_that_are_not_json_raise_type_error(value):
    with pytest.raises(TypeError, match="UTC ISO-8601 strings"):
        canonical_bytes(entry(1, new={"actual_date": value}))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError):
        canonical_bytes(entry(1, new={"dose": value}))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_canonical_json_is_the_standard_sorted_compact_utf8_form(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(value) == expected.encode("utf-8")


def test_utc_instant_is_utc_with_microseconds_and_z():
    new_york = timezone(timedelta(hours=-5))
    assert utc_instant(datetime(2026, 11, 27, 4, 30, 0, 12, tzinfo=new_york)) == "2026-11-27T09:30:00.000012Z"
    with pytest.raises(ValueError, match="time zone"):
        utc_instant(datetime(2026, 11, 27, 9, 30))


# --- sealing -----------------------------------------------------------------------------------------


def test_seal_stores_the_leaf_hash_of_the_canonical_bytes():
    row = seal(entry(1))
    assert row.leaf_hash == leaf_hash(canonical_bytes(entry(1)))


@pytest.mark.parametrize(
    "payload",
    [
        {"name": 'Ünïcödé 診察 \u2028 "quoted" \\ \x01'},
        {"nested": {"b": [1, 2.5, {"z": None, "a": True}]}},
        {},
        {"date": "2026-12-06", "n": -3, "x": 1e-07},
    ],
)
def test_seal_splices_one_encoding_equal_to_the_canonical_bytes(payload):
    """`seal` encodes each payload once and splices it in; the bytes are those of `canonical_bytes`."""
    sealed = seal(entry(3, old=payload, new=payload, reason="why: ü"))
    assert sealed.leaf_hash == leaf_hash(canonical_bytes(sealed.entry))
    assert sealed.new_text == canonical_json(payload).decode()


def test_what_seal_accepts_reads_back_from_the_database_as_the_same_bytes():
    """Round trip through the database's JSON: the stored text, parsed and encoded again, is the same text, and
    verification of the parsed entry agrees; a str-subclass key (a StrEnum) is text; an int key inside a
    NamedTuple is refused as inside a list."""
    import enum
    from typing import NamedTuple

    class Kind(enum.StrEnum):
        VISIT = "visit"

    class Pair(NamedTuple):
        first: object
        second: object

    payload = {Kind.VISIT: "V2", "pair": Pair({"b": 1}, [2.5, None]), "n": 10**20, "f": -0.0}
    sealed = seal(entry(1, new=payload))
    parsed = json.loads(sealed.new_text)
    assert canonical_json(parsed).decode() == sealed.new_text
    reloaded = dataclasses.replace(sealed.entry, new=parsed)
    assert verify_entries([StoredEntry(reloaded, sealed.leaf_hash)]).ok
    with pytest.raises(ValueError, match="string keys"):
        seal(entry(2, new={"pair": Pair({10: "a", 9: "b"}, None)}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sequence": 0}, "sequence"),
        ({"recorded_at": "2026-11-27 09:30:00"}, "recorded_at"),
        ({"recorded_at": "2026-11-27T09:30:00+00:00"}, "recorded_at"),
        ({"actor": ""}, "actor"),
        ({"record_id": 42}, "record_id"),
        ({"old": ["status"]}, "old"),
        ({"reason": 3}, "reason"),
        ({"new": {9: "a", 10: "b"}}, "string keys"),
        ({"new": {"list": [{1: "a"}]}}, "string keys"),
    ],
)
def test_seal_refuses_entries_that_could_not_be_verified_later(changes, message):
    with pytest.raises(ValueError, match=message):
        seal(dataclasses.replace(entry(1), **changes))


def test_a_sealed_entry_survives_a_json_round_trip_of_its_payload():
    row = seal(entry(1, new={"doses": [1, 2.5, "x"], "nested": {"b": True, "a": None}}))
    reloaded = dataclasses.replace(row.entry, new=json.loads(json.dumps(row.entry.new)))
    assert verify_entries([StoredEntry(reloaded, row.leaf_hash)]).ok


# --- verification and tamper detection ---------------------------------------------------------------


def test_an_intact_trail_verifies_and_gives_its_root():
    rows = trail(50)
    result = verify_entries(rows)
    assert result == VerificationResult(True, 50, merkle_root([row.leaf_hash for row in rows]).hex())
    assert verify_entries([]) == VerificationResult(True, 0, EMPTY_ROOT.hex())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recorded_at", "2026-11-27T09:31:00.000000Z"),
        ("actor", "user-9"),
        ("action", "create"),
        ("record_type", "participant"),
        ("record_id", "101-0002/V1"),
        ("old", {"status": "done"}),
        ("new", {"actual_date": "2026-03-05", "status": "done"}),
        ("new", None),
        ("reason", "backdated"),
    ],
)
def test_an_altered_field_is_named(field, value):
    rows = trail(30)
    rows[16] = altered(rows[16], **{field: value})
    result = verify_entries(rows)
    assert not result.ok
    assert result.first_bad[0] == 17 and "altered" in result.first_bad[1]
    assert result.size == 16 and result.root == merkle_root([row.leaf_hash for row in rows[:16]]).hex()


def test_an_altered_leaf_hash_is_named():
    rows = trail(30)
    rows[16] = StoredEntry(rows[16].entry, leaf_hash(b"other"))
    assert verify_entries(rows).first_bad[0] == 17


def test_a_deleted_entry_is_named():
    rows = trail(30)
    del rows[16]
    assert verify_entries(rows).first_bad == (17, "missing or out of order: entry 18 stands where entry 17 belongs")


def test_a_deleted_first_entry_is_named():
    assert verify_entries(trail(5)[1:]).first_bad[0] == 1


def test_two_reordered_entries_are_named():
    rows = trail(30)
    rows[16], rows[17] = rows[17], rows[16]
    assert verify_entries(rows).first_bad[0] == 17


def test_two_entries_with_swapped_sequence_numbers_are_named():
    rows = trail(30)
    rows[16], rows[17] = altered(rows[17], sequence=17), altered(rows[16], sequence=18)
    assert verify_entries(rows).first_bad[0] == 17


def test_an_inserted_entry_with_a_duplicate_sequence_is_named():
    rows = trail(30)
    rows.insert(16, seal(entry(17, actor="intruder")))
    result = verify_entries(rows)
    assert result.first_bad[0] == 17 and "appears again" in result.first_bad[1]


def test_an_inserted_entry_with_the_rest_renumbered_is_caught_at_the_first_renumbered_one():
    rows = trail(30)
    rows[16:] = [seal(entry(17, actor="intruder"))] + [
        altered(row, sequence=row.entry.sequence + 1) for row in rows[16:]
    ]
    result = verify_entries(rows)
    assert result.first_bad[0] == 18 and "altered" in result.first_bad[1]


def test_a_fully_rewritten_history_is_caught_only_by_a_checkpoint():
    rows = trail(30)
    checkpoint = verify_entries(rows[:20]).checkpoint("2026-11-28T00:00:00.000000Z")
    forged = [seal(entry(17, actor="intruder"))] + [
        seal(dataclasses.replace(row.entry, sequence=row.entry.sequence + 1)) for row in rows[16:]
    ]
    rewritten = rows[:16] + forged
    assert verify_entries(rewritten).ok  # every hash recomputed: nothing inside the database can tell
    result = verify_entries(rewritten, checkpoint)
    assert not result.ok and result.first_bad[0] == 20 and "rewritten" in result.first_bad[1]


def test_a_trail_truncated_below_a_checkpoint_is_caught():
    rows = trail(30)
    checkpoint = verify_entries(rows).checkpoint("2026-11-28T00:00:00.000000Z")
    result = verify_entries(rows[:25], checkpoint)
    assert not result.ok and result.first_bad[0] == 26 and "missing" in result.first_bad[1]


def test_a_trail_that_extends_its_checkpoint_verifies_and_has_a_consistency_proof():
    rows = trail(33)
    checkpoint = verify_entries(rows[:20]).checkpoint("2026-11-28T00:00:00.000000Z")
    result = verify_entries(rows, checkpoint)
    assert result.ok and result.size == 33
    leaves = [row.leaf_hash for row in rows]
    proof = consistency_proof(leaves, checkpoint.size, result.size)
    assert verify_consistency(
        checkpoint.size, result.size, bytes.fromhex(checkpoint.root), bytes.fromhex(result.root), proof
    )


def test_a_row_whose_fields_cannot_be_serialised_is_named_not_raised():
    rows = trail(10)
    rows[4] = altered(rows[4], new={"actual_date": date(2026, 3, 4)})
    result = verify_entries(rows)
    assert result.first_bad[0] == 5 and "cannot be serialised" in result.first_bad[1]


@settings(max_examples=50)
@given(
    st.integers(min_value=1, max_value=25),
    st.integers(min_value=0, max_value=24),
    st.sampled_from(["alter", "delete", "swap"]),
)
def test_every_single_tampering_is_detected_at_its_position(size, position, kind):
    rows = trail(size)
    index = position % size
    if kind == "alter":
        rows[index] = altered(rows[index], actor="intruder")
    elif kind == "delete":
        del rows[index]
    elif index + 1 < size:
        rows[index], rows[index + 1] = rows[index + 1], rows[index]
    else:
        return
    result = verify_entries(rows)
    if kind == "delete" and index == size - 1:
        assert result.ok  # deleting the newest entries needs a checkpoint to notice: see the truncation test
    else:
        assert result.first_bad[0] == index + 1


# --- checkpoints -------------------------------------------------------------------------------------


def test_a_checkpoint_has_pinned_canonical_bytes():
    checkpoint = Checkpoint(3, "ab" * 32, "2026-11-28T00:00:00.000000Z")
    assert checkpoint.canonical_bytes() == (
        b'{"issued_at":"2026-11-28T00:00:00.000000Z","kind":"trialcoord-audit-checkpoint/1","root":"'
        + b"ab" * 32
        + b'","size":3}'
    )


@pytest.mark.parametrize(
    ("size", "root", "issued_at"),
    [
        (0, "ab" * 32, "2026-11-28T00:00:00.000000Z"),
        (3, "AB" * 32, "2026-11-28T00:00:00.000000Z"),
        (3, "ab" * 31, "2026-11-28T00:00:00.000000Z"),
        (3, "ab" * 32, "2026-11-28T00:00:00Z"),
        ("3", "ab" * 32, "2026-11-28T00:00:00.000000Z"),
    ],
)
def test_a_malformed_checkpoint_is_refused(size, root, issued_at):
    with pytest.raises(ValueError):
        Checkpoint(size, root, issued_at)


def test_no_checkpoint_is_issued_for_a_trail_that_does_not_verify():
    rows = trail(5)
    del rows[2]
    with pytest.raises(ValueError, match="entry 3"):
        verify_entries(rows).checkpoint("2026-11-28T00:00:00.000000Z")


# --- verification from stored rows (the database path) ---

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
TEXT = st.text(min_size=1, max_size=30)


def as_row(stored: StoredEntry) -> tuple:
    from trialcoord.kernel.rules.audit_entries import canonical_json

    e = stored.entry
    text = lambda value: None if value is None else canonical_json(value).decode()  # noqa: E731
    return (
        e.sequence,
        e.recorded_at,
        e.actor,
        e.action,
        e.record_type,
        e.record_id,
        text(e.old),
        text(e.new),
        e.reason,
        stored.leaf_hash.hex(),
    )


@settings(max_examples=300)
@given(
    TEXT,
    TEXT,
    TEXT,
    TEXT,
    st.none() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
    st.none() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
    st.none() | TEXT,
)
def test_bytes_spliced_from_stored_text_equal_the_canonical_bytes(
    actor, action, record_type, record_id, old, new, reason
):
    from trialcoord.kernel.rules.audit_entries import stored_bytes

    sealed = seal(AuditEntry(7, "2026-11-27T09:30:00.000000Z", actor, action, record_type, record_id, old, new, reason))
    assert stored_bytes(*as_row(sealed)[:9]) == canonical_bytes(sealed.entry)


def test_verifying_rows_finds_what_verifying_entries_finds():
    from trialcoord.kernel.rules.audit_verification import TrailVerifier

    rows = [as_row(stored) for stored in trail(9)]
    verifier = TrailVerifier()
    assert all(verifier.feed_row(row) for row in rows)
    assert verifier.result().root == verify_entries(trail(9)).root

    def first_bad(changed: list[tuple]) -> tuple[int, str]:
        one, batch = TrailVerifier(), TrailVerifier()
        for row in changed:
            if not one.feed_row(row):
                break
        batch.feed_rows(changed)
        assert batch.result() == one.result()  # the inlined loop agrees with the plain one
        return one.result().first_bad

    respaced = list(rows)
    respaced[4] = rows[4][:7] + (rows[4][7].replace(":", ": "),) + rows[4][8:]  # same value, other text
    assert first_bad(respaced)[0] == 5
    assert first_bad(rows[:3] + rows[4:])[0] == 4
    assert first_bad(rows[:2] + [rows[3], rows[2]] + rows[4:])[0] == 3
    swapped = list(rows)
    swapped[5] = rows[5][:2] + ("mallory",) + rows[5][3:]
    assert first_bad(swapped) == (6, "altered: its fields do not give its stored leaf hash")
    assert first_bad([rows[0], rows[1][:2] + (None,) + rows[1][3:]])[0] == 2
    assert first_bad([rows[0][:9] + ("not hex",)]) == (
        1,
        "its stored fields cannot be read: non-hexadecimal number found in fromhex() arg at position 0",
    )
