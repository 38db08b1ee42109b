"""The audit chain and its tree: a long log verifies; each kind of tampering is found where it happened.

Each damage is made twice where it can be, to the records alone and to the
records with their leaves made to match: the chain locates either.
"""

from __future__ import annotations

import sqlite3

import pytest

from signer_core.store.audit import AuditLog, record_hash, record_leaf
from signer_core.store.auditree import AuditTree
from signer_core.store.cadb import CADatabase
from tlog import merkle
from tlog.records import GENESIS

N = 10_000


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit") / "ca.sqlite"
    db = CADatabase(path)
    log = AuditLog(db.connection)
    with db.transaction():
        for i in range(N):
            log.append("issued", root=i % 3, serial=format(i * 7919, "x"))
    db.close()
    return path


@pytest.fixture
def conn(chain_db, tmp_path):
    """A private copy of the 10,000-record chain for one test to damage."""
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(chain_db.read_bytes())
    c = sqlite3.connect(copy, isolation_level=None)
    yield c
    c.close()


def test_long_chain_verifies(conn):
    verdict = AuditLog(conn).verify()
    assert verdict.ok and verdict.count == N
    assert verdict.head == AuditLog(conn).head()[1]
    last = conn.execute(
        "SELECT seq, at, event, details, prev FROM audit WHERE seq = ?", (N,)
    ).fetchone()
    assert verdict.head == record_hash(*last)


def test_empty_chain_verifies(tmp_path):
    verdict = AuditLog(CADatabase(tmp_path / "e.sqlite").connection).verify()
    assert verdict.ok and verdict.count == 0 and verdict.head == GENESIS


def releaf(conn: sqlite3.Connection, *seqs: int) -> None:
    """Make the tree's leaves of these records match them as they now are (a forger's step)."""
    for seq in seqs:
        row = conn.execute(
            "SELECT seq, at, event, details, prev FROM audit WHERE seq = ?", (seq,)
        ).fetchone()
        conn.execute(
            "UPDATE audit_tree SET hash = ? WHERE level = 0 AND idx = ?",
            (record_leaf(*row), seq - 1),
        )


@pytest.mark.parametrize("tree_too", [False, True])
def test_deleted_record_is_located(conn, tree_too):
    conn.execute("DELETE FROM audit WHERE seq = 4321")
    if tree_too:
        conn.execute("DELETE FROM audit_tree WHERE level = 0 AND idx = 4320")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 4321 and verdict.count == 4320
    assert verdict.problem == "record 4321 is missing (next is 4322)"


@pytest.mark.parametrize("tree_too", [False, True])
def test_edited_record_is_located(conn, tree_too):
    conn.execute("""UPDATE audit SET details = '{"root":0,"serial":"1"}' WHERE seq = 777""")
    if tree_too:
        releaf(conn, 777)
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 777 and verdict.problem == "record 777 was altered"


@pytest.mark.parametrize("tree_too", [False, True])
def test_swapped_records_are_located(conn, tree_too):
    rows = {
        r[0]: r
        for r in conn.execute(
            "SELECT seq, at, event, details, prev, hash FROM audit WHERE seq IN (100, 101)"
        )
    }
    with conn:
        conn.execute("BEGIN")
        for seq, other in ((100, 101), (101, 100)):
            conn.execute(
                "UPDATE audit SET at=?, event=?, details=?, prev=?, hash=? WHERE seq=?",
                (*rows[other][1:], seq),
            )
    if tree_too:
        releaf(conn, 100, 101)
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 100
    assert verdict.problem == "record 100 does not follow record 99"


def test_edited_tree_node_is_located(conn):
    """Records 801 to 808 are under node (3, 100): found when record 808 completes it."""
    conn.execute("UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 3 AND idx = 100")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and (verdict.bad_seq, verdict.count) == (808, 807)
    assert verdict.problem == "the audit tree's node over records 801 to 808 does not match them"


def test_edited_tree_leaf_is_located(conn):
    conn.execute("UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 0 AND idx = 9998")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 9999
    assert verdict.problem == "the audit tree's leaf of record 9999 does not match it"


def test_missing_tree_leaf_is_located(conn):
    conn.execute("DELETE FROM audit_tree WHERE level = 0 AND idx = 4999")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 5000 and verdict.count == 4999
    assert verdict.problem == "the audit tree has no leaf of record 5000"


def test_records_removed_from_the_end_are_found_by_the_leaves_left(conn):
    conn.execute("DELETE FROM audit WHERE seq > ?", (N - 3,))
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and (verdict.bad_seq, verdict.count) == (N - 2, N - 3)
    assert verdict.problem == f"the audit tree has {N} leaves for {N - 3} records"


def test_a_stray_node_past_the_end_is_found(conn):
    conn.execute("INSERT INTO audit_tree VALUES (5, 9999, zeroblob(32))")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == N + 1
    assert (
        verdict.problem
        == f"the audit tree holds {2 * N - 4} nodes where {N} records make {2 * N - 5}"
    )


def test_rewritten_tail_changes_the_head_and_the_root(conn):
    """A forger who rehashes both tables from a point on yields a valid log with
    another head and another root: what the checkpoints outside are for."""
    log, tree = AuditLog(conn), AuditTree(conn)
    head, root = log.verify().head, tree.root()
    conn.execute("DELETE FROM audit WHERE seq > ?", (N - 5,))
    conn.execute("DELETE FROM audit_tree WHERE (idx + 1) << level > ?", (N - 5,))
    for _ in range(5):
        log.append("issued", root=0, serial="forged")
    verdict = log.verify()
    assert verdict.ok and verdict.count == N and verdict.head != head
    assert tree.size() == N and tree.root() != root
    assert tree.root(N - 5) == merkle_root_before(conn, N - 5)


def merkle_root_before(conn: sqlite3.Connection, size: int) -> bytes:
    """The root over the first ``size`` records, from the records alone."""
    frontier = merkle.Frontier()
    for row in conn.execute(
        "SELECT seq, at, event, details, prev FROM audit WHERE seq <= ? ORDER BY seq", (size,)
    ):
        frontier.append(record_leaf(*row))
    return frontier.root()


def test_entries_are_the_raw_rows_in_batches(conn):
    log = AuditLog(conn)
    batch = log.entries(9990, 4)
    assert [row[0] for row in batch] == [9991, 9992, 9993, 9994]
    assert batch[0][4] == log.entries(9989, 1)[0][5]  # each row's prev is the last one's hash
    assert record_hash(*batch[-1][:5]) == batch[-1][5]
    assert [row[0] for row in log.entries(9998, 100)] == [9999, 10000]
    assert log.entries(N, 100) == []
