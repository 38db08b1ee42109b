"""The audit chain: a long chain verifies; each kind of tampering is found where it happened."""

from __future__ import annotations

import sqlite3

import pytest

from signer_core.store.audit import GENESIS, AuditLog, record_hash
from signer_core.store.cadb import CADatabase

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


def test_deleted_record_is_located(conn):
    conn.execute("DELETE FROM audit WHERE seq = 4321")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 4321 and verdict.count == 4320
    assert "missing" in verdict.problem


def test_edited_record_is_located(conn):
    conn.execute("""UPDATE audit SET details = '{"root":0,"serial":"1"}' WHERE seq = 777""")
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 777 and "altered" in verdict.problem


def test_swapped_records_are_located(conn):
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
    verdict = AuditLog(conn).verify()
    assert not verdict.ok and verdict.bad_seq == 100


def test_rewritten_tail_changes_the_head(conn):
    """A forger who rehashes from a point on yields a valid chain with another head."""
    log = AuditLog(conn)
    head = log.verify().head
    conn.execute("DELETE FROM audit WHERE seq > ?", (N - 5,))
    forged = AuditLog(conn)
    for _ in range(5):
        forged.append("issued", root=0, serial="forged")
    verdict = forged.verify()
    assert verdict.ok and verdict.head != head
