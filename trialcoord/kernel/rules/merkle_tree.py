"""The Merkle tree of RFC 6962 section 2.1 over the audit trail's leaf hashes: leaf and node hashes, the compact
tree that streams a trail through in O(log n) memory, roots, and consistency proofs with their verifier.

Pure, standard library only; docs/audit-trail.md explains why a tree and not a hash chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962: the hash of an empty tree is SHA-256 of nothing

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class CompactTree:
    """The roots of the perfect subtrees that make up a tree of `size` leaves, largest first.

    Appending is amortised one node hash (O(log n) at worst), the root O(log n), memory O(log n), so
    a million-entry trail streams through it.
    """

    __slots__ = ("size", "_peaks")

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def of(cls, leaves: Iterable[bytes]) -> CompactTree:
        tree = cls()
        for leaf in leaves:
            tree.append(leaf)
        return tree

    def append(self, leaf: bytes) -> None:
        # Each trailing 1 bit of size is a perfect subtree the new leaf completes: merge them.
        node, size, peaks = leaf, self.size, self._peaks
        while size & 1:
            node = node_hash(peaks.pop(), node)
            size >>= 1
        peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        # RFC 6962 splits at the largest power of two below n: fold the peaks from the right.
        if not self._peaks:
            return EMPTY_ROOT
        root = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            root = node_hash(peak, root)
        return root


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of RFC 6962 2.1 over leaf hashes."""
    return CompactTree.of(leaves).root()


def consistency_proof(leaves: Sequence[bytes], m: int, n: int) -> list[bytes]:
    """RFC 6962 2.1.2 PROOF(m, D[n]): that the tree of the first m leaves is a prefix of the first n."""
    if not 1 <= m <= n <= len(leaves):
        raise ValueError(f"a consistency proof needs 1 <= m <= n <= {len(leaves)}, not m={m}, n={n}")
    return _subproof(leaves, m, 0, n, True)


def _subproof(leaves: Sequence[bytes], m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    if m == hi - lo:
        return [] if whole else [merkle_root(leaves[lo:hi])]
    k = _largest_power_of_two_below(hi - lo)
    if m <= k:
        return _subproof(leaves, m, lo, lo + k, whole) + [merkle_root(leaves[lo + k : hi])]
    return _subproof(leaves, m - k, lo + k, hi, False) + [merkle_root(leaves[lo : lo + k])]


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (the verifier for RFC 6962 proofs): does the tree of size n extend the one of size m?"""
    if not 1 <= m <= n:
        raise ValueError(f"consistency needs 1 <= m <= n, not m={m}, n={n}")
    if m == n:
        return not proof and old_root == new_root
    path = [old_root, *proof] if m & (m - 1) == 0 else list(proof)
    if not path:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(sibling, fr), node_hash(sibling, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, sibling)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
