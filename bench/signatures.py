"""Electronic signatures: sign and verify 20,000 statements vs raw Ed25519 over the same bytes.

Sign: `Statement(...).canonical_bytes()` then `signing_keys.sign_bytes` (what `signatures.sign` does) vs
`Ed25519PrivateKey.sign` of the same message bytes. Verify: `judge(signature, registry, sha256,
signing_keys.verify_hex, now)` vs `Ed25519PublicKey.verify` with the key object loaded once and the
signature as bytes. 20 signers, each with their own key. Goal: at most 1.5x for each.

Run: `.venv/bin/python -m bench.signatures [--quick]` (--quick: 2,000 statements).
"""

from __future__ import annotations

import hashlib
import random
import sys
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.common import ratio_line
from bench.compute import best_of
from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.accounts.rules.signers import SignerKey
from trialcoord.documents.rules.signatures import Signature, Statement, judge
from trialcoord.kernel import signing_keys
from trialcoord.kernel.signing_keys import sign_bytes, verify_hex

FULL, RUNS, SIGNERS = 20_000, 3, 20
NOW = "2026-11-27T12:00:00.000000Z"


def build(count: int):
    rng = random.Random(25519)
    keys = [signing_keys.generate_key() for _ in range(SIGNERS)]
    publics = [k.public_key() for k in keys]
    registry = {
        signing_keys.key_id(p): SignerKey(
            f"user-{i:02d}",
            f"User {i}",
            signing_keys.key_id(p),
            signing_keys.public_key_hex(p),
            "2026-01-01T00:00:00.000000Z",
        )
        for i, p in enumerate(publics)
    }
    key_ids = list(registry)
    facts = [
        (
            hashlib.sha256(rng.randbytes(32)).hexdigest(),
            rng.randrange(SIGNERS),
            f"2026-{1 + i % 11:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}.{i:06d}Z",
        )
        for i in range(count)
    ]
    messages = [Statement(sha, f"user-{who:02d}", Meaning.APPROVAL, at).canonical_bytes() for sha, who, at in facts]
    signatures = [
        Signature(
            Statement(sha, f"user-{who:02d}", Meaning.APPROVAL, at),
            f"User {who}",
            key_ids[who],
            sign_bytes(message, keys[who]),
        )
        for (sha, who, at), message in zip(facts, messages)
    ]
    return keys, publics, registry, facts, messages, signatures


def ours_sign(keys, facts) -> None:
    for sha, who, at in facts:
        sign_bytes(Statement(sha, f"user-{who:02d}", Meaning.APPROVAL, at).canonical_bytes(), keys[who])


def raw_sign(keys, facts, messages) -> None:
    for (_, who, _), message in zip(facts, messages):
        keys[who].sign(message)


def ours_verify(signatures, registry, verify=verify_hex) -> None:
    for signature in signatures:
        if not judge(signature, registry, signature.statement.version_sha256, verify, NOW).ok:
            raise SystemExit("signatures: a generated signature did not verify")


def raw_verify(items) -> None:
    for public, signature, message in items:
        public.verify(signature, message)


@lru_cache(maxsize=1024)
def _public(hex_key: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def cached_verify_hex(public_key: str, message: bytes, signature: str) -> bool:
    """verify_hex with the key object cached by its hex (what a cache in signing_keys would give)."""
    try:
        _public(public_key).verify(bytes.fromhex(signature), message)
    except (TypeError, ValueError, InvalidSignature):
        return False
    return True


def no_crypto(public_key: str, message: bytes, signature: str) -> bool:
    return True


def parse_keys(hex_keys) -> None:
    for hex_key in hex_keys:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def statements_only(facts) -> None:
    for sha, who, at in facts:
        Statement(sha, f"user-{who:02d}", Meaning.APPROVAL, at).canonical_bytes()


def main(quick: bool = False) -> None:
    count = FULL // 10 if quick else FULL
    keys, publics, registry, facts, messages, signatures = build(count)
    raw_items = [(publics[who], bytes.fromhex(s.value), m) for (_, who, _), s, m in zip(facts, signatures, messages)]
    hex_keys = [registry[s.key_id].public_key for s in signatures]
    variants = [
        (raw_sign, keys, facts, messages),
        (ours_sign, keys, facts),
        (raw_verify, raw_items),
        (ours_verify, signatures, registry),
        (ours_verify, signatures, registry, cached_verify_hex),
        (ours_verify, signatures, registry, no_crypto),
        (parse_keys, hex_keys),
        (statements_only, facts),
    ]
    best = [float("inf")] * len(variants)
    for _ in range(RUNS):  # interleaved, so a change in machine load touches every variant alike
        best = [min(b, best_of(1, *v)) for b, v in zip(best, variants)]
    base_sign, sign, base_verify, verify, cached, judging, parse, statement = best
    rate = lambda seconds: f"{count / seconds / 1e3:6.1f} k/s"  # noqa: E731
    print(
        f"signatures: {count:,} statements of {len(messages[0])} bytes, {SIGNERS} signers (best of {RUNS}, interleaved)"
    )
    print(f"  raw Ed25519 sign                   {base_sign:7.3f} s  {rate(base_sign)}")
    print(f"  Statement + canonical + sign_bytes {sign:7.3f} s  {rate(sign)}")
    print(f"    of which Statement + canonical   {statement:7.3f} s  ({statement / sign:.0%})")
    print(ratio_line("sign", sign / base_sign, "<= 1.5x", sign / base_sign <= 1.5))
    print(f"  raw Ed25519 verify (key loaded)    {base_verify:7.3f} s  {rate(base_verify)}")
    print(f"  judge + verify_hex                 {verify:7.3f} s  {rate(verify)}")
    print(f"    of which judge without the crypto {judging:6.3f} s  ({judging / verify:.0%})")
    print(f"    of which parsing the public key  {parse:7.3f} s  ({parse / verify:.0%})")
    print(f"  judge + cached public key object   {cached:7.3f} s  {rate(cached)}  ratio {cached / base_verify:.2f}x")
    print(ratio_line("verify", verify / base_verify, "<= 1.5x", verify / base_verify <= 1.5))
    both, base_both = sign + verify, base_sign + base_verify
    print(ratio_line("sign + verify", both / base_both, "<= 1.5x", both / base_both <= 1.5))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
