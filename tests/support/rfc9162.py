"""A second RFC 9162 Merkle tree, straight from section 2.1's recursive definitions.

Test tooling, trusted by the tests it serves: tests/tlog/test_merkle.py holds
tlog.merkle's iterative algorithms to it. MTH, PATH and SUBPROOF are the RFC's;
the verifiers rebuild the roots by running the same recursions backwards, so
that nothing here shares a line with the code under test, hashing included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_split(n: int) -> int:
    """k < n <= 2k, k a power of two (n > 1)."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


class Reference:
    """MTH, PATH and PROOF over a fixed list of leaf data; MTH of a range is cached."""

    def __init__(self, data: Sequence[bytes]) -> None:
        self.data = list(data)
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        if (start, end) not in self._mth:
            n = end - start
            if n == 0:
                value = hashlib.sha256(b"").digest()
            elif n == 1:
                value = ref_leaf(self.data[start])
            else:
                k = ref_split(n)
                value = ref_node(self.mth(start, start + k), self.mth(start + k, end))
            self._mth[start, end] = value
        return self._mth[start, end]

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end])."""
        n = end - start
        if n == 1:
            return []
        k = ref_split(n)
        if m < k:
            return self.path(m, start, start + k) + [self.mth(start + k, end)]
        return self.path(m - k, start + k, end) + [self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b)."""
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = ref_split(n)
        if m <= k:
            return self.subproof(m, start, start + k, b) + [self.mth(start + k, end)]
        return self.subproof(m - k, start + k, end, False) + [self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[0:n]); empty for m = 0 and m = n, as tlog.merkle defines them."""
        return [] if m in (0, n) else self.subproof(m, 0, n, True)

    def lookup(
        self, size: int, calls: list[tuple[int, int]] | None = None
    ) -> Callable[[int, int], bytes]:
        """The perfect subtrees of the tree of ``size``, as the CA database would hold them."""

        def lookup(level: int, index: int) -> bytes:
            start, end = index << level, (index + 1) << level
            if not 0 <= start < end <= size:
                raise LookupError(f"subtree {level}/{index} is not in a tree of {size}")
            if calls is not None:
                calls.append((level, index))
            return self.mth(start, end)

        return lookup


def ref_root_from_path(leaf: bytes, m: int, n: int, path: Sequence[bytes]) -> bytes | None:
    """The root PATH(m, D[n]) = ``path`` leads to from ``leaf``: PATH's recursion, run backwards."""
    if not 0 <= m < n:
        return None
    if n == 1:
        return None if path else leaf
    if not path:
        return None
    k, rest, last = ref_split(n), path[:-1], path[-1]
    below = ref_root_from_path(leaf, *((m, k) if m < k else (m - k, n - k)), rest)
    if below is None:
        return None
    return ref_node(below, last) if m < k else ref_node(last, below)


def ref_roots_from_subproof(
    m: int, n: int, b: bool, proof: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(MTH of the first m leaves, MTH of all n) that SUBPROOF(m, D[n], b) = ``proof`` gives."""
    if m == n:
        if b:
            return None if proof else (old_root, old_root)
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k, rest, last = ref_split(n), proof[:-1], proof[-1]
    if m <= k:
        below = ref_roots_from_subproof(m, k, b, rest, old_root)
        return None if below is None else (below[0], ref_node(below[1], last))
    below = ref_roots_from_subproof(m - k, n - k, False, rest, old_root)
    return None if below is None else (ref_node(last, below[0]), ref_node(last, below[1]))


def ref_verify_inclusion(leaf: bytes, m: int, n: int, path: Sequence[bytes], root: bytes) -> bool:
    return ref_root_from_path(leaf, m, n, path) == root


def ref_verify_consistency(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    if not 0 <= m <= n:
        return False
    if m == n:
        return not proof and old_root == new_root
    if m == 0:
        return not proof
    return ref_roots_from_subproof(m, n, True, proof, old_root) == (old_root, new_root)


def path_length(m: int, n: int) -> int:
    """len(PATH(m, D[n])), from PATH's recursion."""
    if n == 1:
        return 0
    k = ref_split(n)
    return 1 + (path_length(m, k) if m < k else path_length(m - k, n - k))
