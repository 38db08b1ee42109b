"""The audit tree in the CA database: the same root and proofs as RFC 9162 over the same leaves.

The reference is RFC 9162's MTH written out recursively here over a list of
leaves, and tlog.merkle's proofs over that list; the tree under test is the
table, grown one leaf at a time and read back through SQL.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3

import pytest

from signer_core.store.audit import AuditLog
from signer_core.store.auditree import AuditTree, TreeError
from signer_core.store.cadb import CADatabase
from tlog import merkle


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, as written there: over leaf hashes, split at k."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


def reference(leaves: list[bytes]) -> merkle.NodeLookup:
    """Perfect subtrees computed from the leaves: what tlog.merkle's proofs are made of."""
    return lambda level, idx: mth(leaves[idx << level : (idx + 1) << level])


def leaf(i: int) -> bytes:
    return merkle.leaf_hash(f"leaf {i}".encode())


@pytest.fixture
def db(tmp_path):
    d = CADatabase(tmp_path / "ca.sqlite")
    yield d
    d.close()


def stored(conn: sqlite3.Connection) -> dict[tuple[int, int], bytes]:
    return {(lv, i): h for lv, i, h in conn.execute("SELECT level, idx, hash FROM audit_tree")}


def test_every_size_to_70_has_rfc_9162_root_proofs_and_only_perfect_subtrees(db):
    every = [leaf(i) for i in range(70)]
    roots = [mth(every[:n]) for n in range(71)]
    perfect = {
        (lv, i): mth(every[i << lv : (i + 1) << lv]) for lv in range(7) for i in range(70 >> lv)
    }

    def ref(level: int, idx: int) -> bytes:
        return perfect[level, idx]

    tree = AuditTree(db.connection)
    for n in range(71):
        assert tree.size() == n and tree.root() == roots[n]
        nodes = stored(db.connection)
        assert len(nodes) == 2 * n - n.bit_count()
        assert all(h == perfect[key] for key, h in nodes.items())
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            assert proof == merkle.inclusion_proof(ref, i, n)
            assert merkle.verify_inclusion(every[i], i, n, proof, roots[n])
        for m in range(n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == merkle.consistency_proof(ref, m, n)
            assert merkle.verify_consistency(m, n, roots[m], roots[n], proof)
        if n < 70:
            with db.transaction(durable=False):
                tree.append(every[n])


class Counting(AuditTree):
    looked = 0

    def lookup(self, level: int, idx: int) -> bytes:
        self.looked += 1
        return super().lookup(level, idx)


def test_larger_random_sizes_match_and_cost_log_n_lookups(db):
    tree, leaves, rng = AuditTree(db.connection), [leaf(i) for i in range(3000)], random.Random(21)
    with db.transaction(durable=False):
        for h in leaves:
            tree.append(h)
    counting = Counting(db.connection)
    for _ in range(20):
        n = rng.randrange(1025, 3001)
        m, i = rng.randrange(1, n), rng.randrange(n)
        assert tree.root(n) == mth(leaves[:n])
        counting.looked = 0
        inclusion = counting.inclusion_proof(i, n)
        assert counting.looked <= 2 * n.bit_length()
        counting.looked = 0
        consistency = counting.consistency_proof(m, n)
        assert counting.looked <= 2 * n.bit_length()
        assert inclusion == merkle.inclusion_proof(reference(leaves[:n]), i, n)
        assert consistency == merkle.consistency_proof(reference(leaves[:n]), m, n)


def test_a_rolled_back_record_leaves_no_node(db):
    log, tree = AuditLog(db.connection), AuditTree(db.connection)
    for _ in range(3):
        log.append("started")
    before = stored(db.connection)
    with pytest.raises(RuntimeError), db.transaction():
        log.append("issued", serial="abc")  # the fourth leaf completes two parents
        assert tree.size() == 4
        raise RuntimeError("the signature failed")
    assert stored(db.connection) == before
    log.append("issued", serial="abd")
    assert tree.size() == 4 and log.verify().ok


def test_a_record_whose_leaf_cannot_be_stored_is_not_stored_either(db):
    """Outside a transaction, append's savepoint takes the record back with its leaf."""
    log = AuditLog(db.connection)
    log.append("started")
    db.connection.execute("INSERT INTO audit_tree VALUES (1, 0, zeroblob(32))")  # a stray parent
    with pytest.raises(sqlite3.IntegrityError):
        log.append("issued")
    assert log.head()[0] == 1 and AuditTree(db.connection).size() == 1
    assert not db.connection.in_transaction


def test_a_record_cut_from_the_end_leaves_a_gap_and_a_shorter_tree_is_refused(db):
    log = AuditLog(db.connection)
    for _ in range(4):
        log.append("started")
    db.connection.execute("DELETE FROM audit WHERE seq = 4")
    log.append("issued")  # takes leaf 5: the gap at 4 is the evidence, the tree stays true
    assert log.head()[0] == 5 and AuditTree(db.connection).size() == 5
    verdict = log.verify()
    assert not verdict.ok and verdict.bad_seq == 4 and "record 4 is missing" in verdict.problem
    db.connection.execute("DELETE FROM audit_tree WHERE level = 0 AND idx = 4")
    with pytest.raises(TreeError, match="the audit tree has 4 leaves for 5 records"):
        log.append("issued")
    assert log.head()[0] == 5


def test_absent_nodes_and_sizes_are_named(db):
    tree = AuditTree(db.connection)
    assert tree.size() == 0 and tree.root() == hashlib.sha256(b"").digest()
    with db.transaction():
        for i in range(5):
            tree.append(leaf(i))
    assert tree.leaf(4) == leaf(4)
    with pytest.raises(TreeError, match="^the audit tree has no leaf of record 6$"):
        tree.leaf(5)
    with pytest.raises(TreeError, match="^the audit tree has no node over records 5 to 8$"):
        tree.lookup(2, 1)
    with pytest.raises(TreeError, match="^the audit tree has 5 leaves, so no tree of 6$"):
        tree.consistency_proof(2, 6)
    with pytest.raises(TreeError, match="no tree of 6"):
        tree.inclusion_proof(0, 6)
    with pytest.raises(TreeError, match="no tree of -1"):
        tree.root(-1)
