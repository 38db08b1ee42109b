"""The Merkle tree over the audit records, kept in the CA database.

Trusted side. Table ``audit_tree`` (defined in ``schema``; the SQL on it is
this module's) holds the hash of every *perfect* subtree of the RFC 9162
tree whose leaf ``i`` is audit record ``i + 1`` (``audit``): level 0 holds
the leaf hashes, ``(level, idx)`` the subtree over leaves ``[idx * 2^level,
(idx + 1) * 2^level)``. Appending a leaf adds it and each parent it
completes, in the caller's transaction, so a record is never on disk without
its leaf; a root or a proof is then O(log n) point lookups, the algorithms
being ``tlog.merkle``'s.

Trusted: the database file, which only the signer user can write. A node
that is absent is a damaged or edited tree and raises ``TreeError``; one
that is present but wrong is what ``TreeCheck`` (run by ``AuditLog.verify``)
finds, by recomputing every node from the records.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from tlog import merkle


class TreeError(LookupError):
    """The audit tree lacks a node it should hold, or is asked about leaves it has not."""


def node_name(level: int, idx: int) -> str:
    """A node by the records it covers, as a person reads it (record n is leaf n - 1)."""
    first, last = (idx << level) + 1, (idx + 1) << level
    return f"leaf of record {first}" if level == 0 else f"node over records {first} to {last}"


Node = tuple[int, int, bytes]
"""(level, idx, hash) of a perfect subtree."""


def completed(index: int, leaf: bytes, left: merkle.NodeLookup) -> list[Node]:
    """Leaf ``index`` and each parent its arrival completes, lowest first.

    Leaf ``index`` completes one parent per trailing 1 bit of ``index``: at
    each, the node so far is a right child whose left sibling, ``left(level,
    idx - 1)``, is already complete.
    """
    level, idx, node = 0, index, leaf
    nodes = [(level, idx, node)]
    while idx & 1:
        node = merkle.node_hash(left(level, idx - 1), node)
        level, idx = level + 1, idx >> 1
        nodes.append((level, idx, node))
    return nodes


class AuditTree:
    """The stored tree: append, root and proofs; one writer (the signer)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn  # the signer's, or a read-only one (signerctl)

    def size(self) -> int:
        """The number of leaves: one past the last leaf's index (one index lookup)."""
        row = self.conn.execute("SELECT max(idx) FROM audit_tree WHERE level = 0").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash as the next leaf, in the caller's transaction (``AuditLog.append``'s)."""
        self.conn.executemany(
            # A plain INSERT: a node that is already there is a tree out of step, never replaced.
            "INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)",
            completed(self.size(), leaf, self.lookup),
        )

    def lookup(self, level: int, idx: int) -> bytes:
        row = self.conn.execute(
            "SELECT hash FROM audit_tree WHERE level = ? AND idx = ?", (level, idx)
        ).fetchone()
        if row is None:
            raise TreeError(f"the audit tree has no {node_name(level, idx)}")
        return bytes(row[0])

    def leaf(self, index: int) -> bytes:
        return self.lookup(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of the first ``size`` leaves (all of them by default)."""
        return merkle.root_of(self.lookup, self._within(self.size() if size is None else size))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(self.lookup, index, self._within(size))

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(self.lookup, old, self._within(new))

    def _within(self, size: int) -> int:
        held = self.size()
        if not 0 <= size <= held:
            raise TreeError(f"the audit tree has {held} leaves, so no tree of {size}")
        return size


class Builder:
    """The nodes of a tree grown leaf by leaf in memory, holding the last node of each level.

    What the migration writes for the records already there, and what
    ``TreeCheck`` compares with the table: the left sibling a new node needs
    is the last node completed on its level.
    """

    def __init__(self) -> None:
        self.size = 0
        self._last: dict[int, bytes] = {}

    def add(self, leaf: bytes) -> list[Node]:
        """The leaf and each parent it completes, lowest first."""
        nodes = completed(self.size, leaf, self._left)
        for level, _, node in nodes:
            self._last[level] = node
        self.size += 1
        return nodes

    def _left(self, level: int, idx: int) -> bytes:
        return self._last[level]


class TreeCheck:
    """Recomputes every stored node from the leaves given in order, and compares.

    ``add`` takes each record's leaf hash in turn and returns a sentence on
    the first node that is missing or differs, ``finish`` one on nodes past
    the last record. The stored nodes are read by one ordered cursor per
    level, so the whole check is one pass over the table, O(log n) memory.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._built = Builder()
        self._levels: list[Iterator[tuple[int, bytes]]] = []
        self._pending: list[tuple[int, bytes] | None] = []  # the next stored node of each level

    def add(self, leaf: bytes) -> str | None:
        for level, idx, node in self._built.add(leaf):
            stored = self._take(level, idx)
            if stored is None:
                return f"the audit tree has no {node_name(level, idx)}"
            if stored != node:
                them = "it" if level == 0 else "them"
                return f"the audit tree's {node_name(level, idx)} does not match {them}"
        return None

    def finish(self) -> str | None:
        """What the table holds beyond the nodes of the leaves given, as a sentence."""
        size, leaves = self._built.size, AuditTree(self.conn).size()
        if leaves > size:
            return f"the audit tree has {leaves} leaves for {size} records"
        expected = 2 * size - size.bit_count()
        (stored,) = self.conn.execute("SELECT count(*) FROM audit_tree").fetchone()
        if stored != expected:
            return f"the audit tree holds {stored} nodes where {size} records make {expected}"
        return None

    def _take(self, level: int, idx: int) -> bytes | None:
        """The stored hash of (level, idx), consuming it, or None if the level skips it."""
        while len(self._levels) <= level:
            rows = self.conn.execute(
                "SELECT idx, hash FROM audit_tree WHERE level = ? ORDER BY idx",
                (len(self._levels),),
            )
            self._levels.append(iter(rows))
            self._pending.append(next(self._levels[-1], None))
        pending = self._pending[level]
        if pending is None or pending[0] != idx:
            return None
        self._pending[level] = next(self._levels[level], None)
        return bytes(pending[1])
