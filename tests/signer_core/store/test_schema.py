"""signer_core.store.schema: databases of earlier releases upgraded, newer ones refused.

Each earlier release's database is made here exactly as that release made
it (its DDL written out literally, as it shipped, with a few rows), then
opened by the current code: the version, the rows, the new columns and
tables are checked, and the result must have the shape of a fresh database.
The last tests walk the source: no module outside signer_core/store/ defines
a table or writes SQL on one.
"""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

from signer_core.store import clock, crls, openssl, schema
from signer_core.store.audit import AuditLog, Verdict, record_hash
from signer_core.store.auditree import AuditTree
from signer_core.store.cadb import CADatabase
from signer_core.store.schema import SCHEMA_VERSION, SchemaError, open_readonly
from tlog import merkle
from tlog.records import GENESIS

# -- release 1 (no user_version): every table as its module made it -------------

RELEASE_1_ISSUANCE = """
CREATE TABLE IF NOT EXISTS certificates (
    id INTEGER PRIMARY KEY,
    root INTEGER NOT NULL,
    serial TEXT NOT NULL,
    request_digest BLOB NOT NULL UNIQUE,
    profile INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'issued')),
    reserved_at INTEGER NOT NULL,
    issued_at INTEGER,
    subject TEXT,
    not_before INTEGER,
    not_after INTEGER,
    der BLOB,
    UNIQUE (root, serial)
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates (not_after);
CREATE TABLE IF NOT EXISTS openpgp_certifications (
    id INTEGER PRIMARY KEY,
    request_digest BLOB NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    days INTEGER NOT NULL,
    certified_at INTEGER NOT NULL,
    armoured BLOB NOT NULL
);
"""
# Made on first use by releases 1 and 2 alike, by the module that used them.
LAZY_TABLES = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    root INTEGER NOT NULL,
    serial TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    reason TEXT,
    not_after INTEGER,
    entry BLOB NOT NULL,
    UNIQUE (root, serial)
);
CREATE INDEX IF NOT EXISTS revocations_root_seq ON revocations (root, seq);
CREATE TABLE IF NOT EXISTS crl_numbers (
    root INTEGER PRIMARY KEY,
    last_number INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS crls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    root INTEGER NOT NULL,
    number INTEGER NOT NULL,
    sha1 BLOB NOT NULL,
    next_update INTEGER,
    imported INTEGER NOT NULL CHECK (imported IN (0, 1)),
    der BLOB NOT NULL,
    UNIQUE (root, sha1)
);
CREATE TABLE IF NOT EXISTS time_readings (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS time_last (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
);
"""
# Made by the first import-openssl, in releases 1 and 2.
OPENSSL_STATE = """
CREATE TABLE IF NOT EXISTS openssl_state (
    root INTEGER PRIMARY KEY,
    next_serial TEXT NOT NULL,
    imported_at INTEGER NOT NULL
)
"""
RELEASE_1 = RELEASE_1_ISSUANCE + LAZY_TABLES + OPENSSL_STATE

# -- release 2 (user_version 2), as it was first released: the two rebuilt
# tables, and the lazily made ones a signer had used (no time_rejected yet,
# no import ever run: no openssl_state).

RELEASE_2_ISSUANCE = """
CREATE TABLE IF NOT EXISTS certificates (
    id INTEGER PRIMARY KEY,
    root INTEGER NOT NULL,
    serial TEXT NOT NULL,
    request_digest BLOB NOT NULL,
    profile INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'issued', 'released')),
    reserved_at INTEGER NOT NULL,
    issued_at INTEGER,
    subject TEXT,
    not_before INTEGER,
    not_after INTEGER,
    der BLOB,
    answer_id TEXT,
    delivered_at INTEGER,
    UNIQUE (root, serial)
);
CREATE TABLE IF NOT EXISTS openpgp_certifications (
    id INTEGER PRIMARY KEY,
    request_digest BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    days INTEGER NOT NULL,
    certified_at INTEGER NOT NULL,
    armoured BLOB NOT NULL,
    answer_id TEXT,
    delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates (not_after);
CREATE INDEX IF NOT EXISTS certificates_request ON certificates (request_digest);
CREATE INDEX IF NOT EXISTS certificates_answer ON certificates (answer_id);
CREATE INDEX IF NOT EXISTS openpgp_request ON openpgp_certifications (request_digest);
CREATE INDEX IF NOT EXISTS openpgp_answer ON openpgp_certifications (answer_id);
PRAGMA user_version = 2;
"""
RELEASE_2 = RELEASE_2_ISSUANCE + LAZY_TABLES

# -- release 3 (user_version 3): every table made at open, no audit tree yet.

RELEASE_3 = (
    RELEASE_2_ISSUANCE.replace("user_version = 2", "user_version = 3")
    + LAZY_TABLES
    + """
CREATE TABLE IF NOT EXISTS time_rejected (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    count INTEGER NOT NULL,  -- every rejected reading
    run INTEGER NOT NULL,    -- rejected since the last plausible reading
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL,
    reason TEXT NOT NULL
);
"""
    + OPENSSL_STATE
)

RELEASE_1_ROWS = """
INSERT INTO certificates (root, serial, request_digest, profile, state, reserved_at,
    issued_at, subject, not_before, not_after, der)
    VALUES (0, 'abc', x'01', 5, 'issued', 10, 11, 'CN=a', 11, 99, x'3000');
INSERT INTO certificates (root, serial, request_digest, profile, state, reserved_at)
    VALUES (1, 'abd', x'03', 5, 'reserved', 12);
INSERT INTO openpgp_certifications (request_digest, fingerprint, days, certified_at, armoured)
    VALUES (x'02', 'F00D', 30, 13, x'99');
"""
COMMON_ROWS = """
INSERT INTO revocations (root, serial, revoked_at, reason, not_after, entry)
    VALUES (0, 'abc', 20, 'keyCompromise', 99, x'3003020101');
INSERT INTO crl_numbers VALUES (0, 7);
INSERT INTO crls (root, number, sha1, next_update, imported, der)
    VALUES (0, 7, x'aa', 40, 0, x'3001');
INSERT INTO time_readings (received_at, web_time, drift) VALUES (30.0, 32.5, 2.5);
INSERT INTO time_last VALUES (1, 30.0, 32.5, 2.5);
"""
OPENSSL_ROW = "INSERT INTO openssl_state VALUES (0, '1000', 16);"


def _audit_rows(conn: sqlite3.Connection, events: list[str]) -> str:
    """Append a real chain the way the old AuditLog did; return its head."""
    prev = GENESIS
    for seq, event in enumerate(events, 1):
        at, details = f"2026-11-28T12:00:0{seq}.000000+00:00", '{"root":0}'
        digest = record_hash(seq, at, event, details, prev)
        conn.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)", (seq, at, event, details, prev, digest)
        )
        prev = digest
    return prev


def make_database(path: Path, ddl: str, rows: str, records: int = 2) -> str:
    conn = sqlite3.connect(path)
    conn.executescript(ddl)
    conn.executescript(rows)
    head = _audit_rows(conn, ["started", *["issued"] * (records - 1)])
    conn.commit()
    conn.close()
    return head


def shape(conn: sqlite3.Connection) -> dict:
    """Each table's columns and indexes (name, unique, columns): what the code relies on."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    out = {}
    for table in sorted(tables):
        indexes = sorted(
            (
                index[1],
                index[2],
                tuple(c[2] for c in conn.execute(f"PRAGMA index_info({index[1]})")),
            )
            for index in conn.execute(f"PRAGMA index_list({table})")
        )
        out[table] = (conn.execute(f"PRAGMA table_info({table})").fetchall(), indexes)
    return out


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [*conn.iterdump(), str(schema.version(conn))]
    finally:
        conn.close()


@pytest.fixture
def fresh_shape(tmp_path) -> dict:
    db = CADatabase(tmp_path / "fresh.sqlite")
    try:
        return shape(db.connection)
    finally:
        db.close()


def test_a_fresh_database_gets_every_table_and_the_current_version(tmp_path, fresh_shape):
    db = CADatabase(tmp_path / "ca.sqlite")
    assert schema.version(db.connection) == SCHEMA_VERSION == 4
    assert " ".join(fresh_shape) == (
        "audit audit_tree certificates crl_numbers crls openpgp_certifications openssl_state"
        " revocations time_last time_readings time_rejected"
    )
    db.close()
    with open_readonly(tmp_path / "ca.sqlite") as conn:
        assert AuditLog(conn).verify().count == 0


def test_release_1_database_is_upgraded_with_its_rows(tmp_path, fresh_shape):
    path = tmp_path / "release1.sqlite"
    head = make_database(path, RELEASE_1, RELEASE_1_ROWS + COMMON_ROWS + OPENSSL_ROW)
    db = CADatabase(path)
    conn = db.connection
    assert schema.version(conn) == SCHEMA_VERSION
    assert shape(conn) == fresh_shape
    # Certificates: release 1's answers count as delivered, so the same bytes
    # again are a renewal and get a row of their own (digests are no longer unique).
    issued = db.find_by_digest(b"\x01")
    assert (issued.root, issued.serial, issued.state, issued.der) == (
        0,
        0xABC,
        "issued",
        b"\x30\x00",
    )
    assert (issued.issued_at, issued.not_after, issued.delivered_at) == (11, 99, 11)
    reserved = db.find_certificate(1, 0xABD)
    assert (reserved.state, reserved.delivered_at) == ("reserved", None)
    assert db.reserve(0, 0xDEF, b"\x01", 5)
    assert db.find_openpgp(b"\x02").delivered_at == 13
    db.record_openpgp(b"\x02", "F00D", 30, b"\x98", "req-2", 14)
    assert db.find_openpgp(b"\x02").armoured == b"\x98"
    assert db.mark_delivered("req-2", 15) == {"fingerprint": "F00D"}
    # Every other table kept its rows, and the one added since works.
    assert crls.revocation_of(conn, 0, 0xABC) == (20, "keyCompromise")
    assert crls.last_number(conn, 0) == 7 and crls.crl_by_sha1(conn, 0, b"\xaa") == b"\x30\x01"
    assert clock.last_believed(conn) == clock.Reading(30.0, 32.5, 2.5)
    assert clock.count_rejected(conn, clock.Reading(31.0, 1e9, 1e9), "implausible") == 1
    assert openssl.next_serial(conn, 0) == 0x1000
    assert AuditLog(conn).verify() == Verdict(True, 2, head)
    db.close()


def test_release_2_database_is_upgraded_with_its_rows(tmp_path, fresh_shape):
    path = tmp_path / "release2.sqlite"
    head = make_database(
        path,
        RELEASE_2,
        """
        INSERT INTO certificates (root, serial, request_digest, profile, state, reserved_at,
            issued_at, subject, not_before, not_after, der, answer_id)
            VALUES (0, 'abc', x'01', 5, 'issued', 10, 11, 'CN=a', 11, 99, x'3000', 'req-1');
        """
        + COMMON_ROWS,
    )
    db = CADatabase(path)
    conn = db.connection
    assert schema.version(conn) == SCHEMA_VERSION
    assert shape(conn) == fresh_shape
    undelivered = db.find_by_digest(b"\x01")
    assert (undelivered.answer_id, undelivered.delivered_at) == ("req-1", None)
    assert db.mark_delivered("req-1", 50) == {"root": 0, "serial": "abc"}
    assert crls.revocation_of(conn, 0, 0xABC) == (20, "keyCompromise")
    assert clock.history(conn, 5) == [clock.Reading(30.0, 32.5, 2.5)]
    # The tables release 2 had not made yet are there and work.
    assert clock.rejections(conn) is None
    assert clock.count_rejected(conn, clock.Reading(31.0, 0.0, -31.0), "before the roots") == 1
    assert clock.rejections(conn).reason == "before the roots"
    openssl.remember_next_serial(conn, 0, 0x77, 60)
    assert openssl.next_serial(conn, 0) == 0x77
    assert AuditLog(conn).verify() == Verdict(True, 2, head)
    db.close()


def test_release_3_database_gets_the_tree_of_its_records(tmp_path, fresh_shape):
    path = tmp_path / "release3.sqlite"
    head = make_database(path, RELEASE_3, COMMON_ROWS + OPENSSL_ROW, records=37)
    with sqlite3.connect(path) as old:
        rows = old.execute(
            "SELECT seq, at, event, details, prev FROM audit ORDER BY seq"
        ).fetchall()
    db = CADatabase(path)
    conn = db.connection
    assert schema.version(conn) == SCHEMA_VERSION and shape(conn) == fresh_shape
    frontier = merkle.Frontier()
    for row in rows:
        frontier.append(merkle.leaf_hash("\n".join(map(str, row)).encode()))
    tree = AuditTree(conn)
    assert tree.size() == 37 and tree.root() == frontier.root()
    assert conn.execute("SELECT count(*) FROM audit_tree").fetchone()[0] == 2 * 37 - 3
    assert AuditLog(conn).verify() == Verdict(True, 37, head)
    AuditLog(conn).append("started")
    assert tree.size() == 38 and AuditLog(conn).verify().ok
    assert openssl.next_serial(conn, 0) == 0x1000
    db.close()


@pytest.mark.parametrize("release", ["fresh", "release 1", "release 2", "release 3"])
def test_opening_again_changes_nothing(tmp_path, release):
    path = tmp_path / "ca.sqlite"
    if release == "release 1":
        make_database(path, RELEASE_1, RELEASE_1_ROWS + COMMON_ROWS)
    elif release == "release 2":
        make_database(path, RELEASE_2, COMMON_ROWS)
    elif release == "release 3":
        make_database(path, RELEASE_3, COMMON_ROWS, records=5)
    CADatabase(path).close()
    once = dump(path)
    CADatabase(path).close()
    assert dump(path) == once


def test_a_failed_upgrade_leaves_the_old_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "release1.sqlite"
    make_database(path, RELEASE_1, RELEASE_1_ROWS)
    before = dump(path)

    def broken(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "MIGRATIONS", ((2, schema._to_2), (3, broken)))
    with pytest.raises(sqlite3.OperationalError):
        CADatabase(path)
    assert dump(path) == before


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "ca.sqlite"
    CADatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = dump(path)
    with pytest.raises(SchemaError, match=f"version {SCHEMA_VERSION + 1}, made by a newer release"):
        CADatabase(path)
    with pytest.raises(SchemaError, match="newer release"):
        open_readonly(path)
    assert dump(path) == before


def test_reading_an_older_database_is_refused_until_the_signer_upgrades_it(tmp_path):
    path = tmp_path / "release2.sqlite"
    make_database(path, RELEASE_2, "")
    with pytest.raises(SchemaError, match="signer-core brings it to version 4"):
        open_readonly(path)
    CADatabase(path).close()
    with open_readonly(path) as conn:
        assert AuditLog(conn).verify().count == 2


# -- the source: one owner of the tables ---------------------------------------


def _repository() -> Path:
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "pyproject.toml").is_file())


def _strings_outside_the_store() -> list[tuple[str, str]]:
    """(file, string constant) of every Python module but the store's and the tests'."""
    root = _repository()
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "tests" or any(p.startswith(".") for p in rel.parts):
            continue
        if any(rel.parts[i : i + 2] == ("signer_core", "store") for i in range(len(rel.parts))):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((str(rel), node.value))
    assert any(f.startswith("signerctl/") for f, _ in found), "the walk found no source"
    return found


def test_no_module_outside_the_store_defines_a_table():
    ddl = re.compile(r"\b(CREATE|ALTER|DROP)\s+(TEMP\s+)?(TABLE|INDEX)\b", re.IGNORECASE)
    assert [(f, s[:60]) for f, s in _strings_outside_the_store() if ddl.search(s)] == []


def test_no_module_outside_the_store_writes_sql_on_its_tables(fresh_shape):
    tables = "|".join(sorted(fresh_shape))
    sql = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN)\s+\"?({tables})\b")
    assert [(f, s[:60]) for f, s in _strings_outside_the_store() if sql.search(s)] == []
