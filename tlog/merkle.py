"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and their checks.

Pure code, no I/O, used on both sides of the cable: the signer builds proofs
from the subtree hashes it keeps in the CA database (``signer_core.store.
auditree``), and the web host checks them against checkpoints it verified
(``webhost.audit_sync``). The checks trust nothing: a proof is a list of
hashes from the other side, and a wrong length or value is a ``False``,
never an exception or more than O(log n) work.

Hashing is section 2.1.1: a leaf is SHA-256(0x00 || data), an inner node
SHA-256(0x01 || left || right), the empty tree SHA-256(""). The tree over n
leaves splits at k, the largest power of two below n. A *perfect* subtree
covers leaves [i * 2^level, (i + 1) * 2^level); every range the algorithms
below visit is made of such subtrees, so a store of the perfect ones
answers any proof with O(log n) lookups (``subtree``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeLookup = Callable[[int, int], bytes]
"""``lookup(level, index)``: the hash of the perfect subtree of 2^level leaves at ``index``."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree(lookup: NodeLookup, start: int, end: int) -> bytes:
    """MTH of leaves [start, end), from perfect subtrees; ``start`` aligned as RFC 9162's ranges are."""
    if end <= start:
        return EMPTY_ROOT
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return lookup(size.bit_length() - 1, start // size)
    k = split(size)
    return node_hash(subtree(lookup, start, start + k), subtree(lookup, start + k, end))


def root_of(lookup: NodeLookup, size: int) -> bytes:
    return subtree(lookup, 0, size)


def inclusion_proof(lookup: NodeLookup, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of section 2.1.3.1, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(subtree(lookup, start + k, end))
            end = start + k
        else:
            path.append(subtree(lookup, start, start + k))
            start += k
    return path[::-1]


def consistency_proof(lookup: NodeLookup, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) of section 2.1.4.1; empty when old is 0 or old == new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    start, end, complete = 0, new, True
    m = old
    while True:
        if m == end - start:
            if not complete:
                proof.append(subtree(lookup, start, end))
            break
        k = split(end - start)
        if m <= k:
            proof.append(subtree(lookup, start + k, end))
            end = start + k
        else:
            proof.append(subtree(lookup, start, start + k))
            start, m, complete = start + k, m - k, False
    return proof[::-1]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Section 2.1.3.2: is ``leaf`` (a leaf hash) at ``index`` of the tree of ``size`` with ``root``?"""
    if not 0 <= index < size or any(len(h) != HASH_SIZE for h in (leaf, root, *proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Section 2.1.4.2: is the tree (new, new_root) an append-only extension of (old, old_root)?"""
    if any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)) or not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof  # every tree extends the empty one
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


class Frontier:
    """The perfect subtrees that make up a tree, largest first: enough to append and to root.

    The web host's copy keeps one so that checking a new checkpoint costs the
    new records, not the whole history. ``hashes[i]`` covers 2^level leaves,
    the levels being the set bits of ``size`` from the highest down.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} perfect subtrees")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        self.size += 1
        # Each trailing 1 bit of the old size is a subtree the new leaf completes.
        for _ in range((self.size & -self.size).bit_length() - 1):
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r
