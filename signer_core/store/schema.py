"""The CA database's schema: every table, its version, and the forward migrations.

Trusted side. The one place where the tables of the CA database are defined;
the modules beside this one each own the SQL on their tables (``cadb``:
certificates and OpenPGP certifications, ``audit``, ``auditree``: the
audit records and their Merkle tree, ``crls``: revocations
and CRLs, ``clock``: the web host's time, ``openssl``: the old CA's serial
counter), and nothing outside ``signer_core/store/`` writes SQL on them.
Trusted: the database file, which only the signer user can write.

The version is SQLite's ``PRAGMA user_version``:

- release 1 wrote none (0); it made ``certificates`` and
  ``openpgp_certifications`` with unique request digests and no delivery
  columns, and every other table lazily, in the module that used it;
- 2: retry versus renewal (``answer_id``, ``delivered_at``; a digest may
  have several rows); the other tables still made lazily;
- 3: every table is made here when the database is opened, so a reader
  (``signerctl``) finds them all whatever the signer has done so far;
- 4: ``audit_tree``, the Merkle tree over the audit records (``auditree``),
  built from the records already there.

Each step of ``MIGRATIONS`` is frozen once released: a later change to a
table is a new step that alters it, never an edit of an old one, so that a
database of any release goes through the same path as a fresh one (a fresh
file is just a release-1 database with no tables yet). ``migrate`` applies
the pending steps in one transaction; a database newer than this code is
refused, because an older release cannot know what the newer columns mean.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from signer_core.store.audit import record_leaf
from signer_core.store.auditree import Builder

SCHEMA_VERSION = 4


class SchemaError(sqlite3.DatabaseError):
    """The database's schema version is not one this release can use."""


def _exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _run(conn: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    # One statement at a time: executescript would commit the open transaction.
    for statement in statements:
        conn.execute(statement)


# -- version 2: retries and renewals -----------------------------------------

_V2_TABLES = (
    """CREATE TABLE certificates (
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
)""",
    """CREATE TABLE openpgp_certifications (
    id INTEGER PRIMARY KEY,
    request_digest BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    days INTEGER NOT NULL,
    certified_at INTEGER NOT NULL,
    armoured BLOB NOT NULL,
    answer_id TEXT,
    delivered_at INTEGER
)""",
)
_V2_INDEXES = (
    "CREATE INDEX certificates_not_after ON certificates (not_after)",
    "CREATE INDEX certificates_request ON certificates (request_digest)",
    "CREATE INDEX certificates_answer ON certificates (answer_id)",
    "CREATE INDEX openpgp_request ON openpgp_certifications (request_digest)",
    "CREATE INDEX openpgp_answer ON openpgp_certifications (answer_id)",
)
# Release 1's answers are taken as delivered: after the upgrade an identical
# request is a renewal, which is what it most likely is.
_V2_COPY = (
    """INSERT INTO certificates (id, root, serial, request_digest, profile, state,
    reserved_at, issued_at, subject, not_before, not_after, der, delivered_at)
    SELECT id, root, serial, request_digest, profile, state, reserved_at, issued_at,
           subject, not_before, not_after, der, issued_at FROM certificates_v1""",
    """INSERT INTO openpgp_certifications (id, request_digest, fingerprint, days,
    certified_at, armoured, delivered_at)
    SELECT id, request_digest, fingerprint, days, certified_at, armoured, certified_at
    FROM openpgp_certifications_v1""",
    "DROP TABLE certificates_v1",
    "DROP TABLE openpgp_certifications_v1",
)


def _to_2(conn: sqlite3.Connection) -> None:
    """Rebuild release 1's two tables (SQLite cannot drop a UNIQUE in place), or make them."""
    old = _exists(conn, "certificates")
    if old:
        # Renaming moves release 1's index with the table: dropped with it below.
        conn.execute("ALTER TABLE certificates RENAME TO certificates_v1")
        conn.execute("ALTER TABLE openpgp_certifications RENAME TO openpgp_certifications_v1")
    _run(conn, _V2_TABLES)
    if old:
        _run(conn, _V2_COPY)
    _run(conn, _V2_INDEXES)


# -- version 3: every table made at open --------------------------------------

# Releases 1 and 2 made these on first use, so any of them may exist already:
# IF NOT EXISTS, with the very columns those releases gave them.
_V3_TABLES = (
    """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    root INTEGER NOT NULL,
    serial TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    reason TEXT,
    not_after INTEGER,
    entry BLOB NOT NULL,
    UNIQUE (root, serial)
)""",
    "CREATE INDEX IF NOT EXISTS revocations_root_seq ON revocations (root, seq)",
    """CREATE TABLE IF NOT EXISTS crl_numbers (
    root INTEGER PRIMARY KEY,
    last_number INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS crls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    root INTEGER NOT NULL,
    number INTEGER NOT NULL,
    sha1 BLOB NOT NULL,
    next_update INTEGER,
    imported INTEGER NOT NULL CHECK (imported IN (0, 1)),
    der BLOB NOT NULL,
    UNIQUE (root, sha1)
)""",
    """CREATE TABLE IF NOT EXISTS time_readings (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS time_last (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS time_rejected (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    count INTEGER NOT NULL,  -- every rejected reading
    run INTEGER NOT NULL,    -- rejected since the last plausible reading
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL,
    reason TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS openssl_state (
    root INTEGER PRIMARY KEY,
    next_serial TEXT NOT NULL,
    imported_at INTEGER NOT NULL
)""",
)


def _to_3(conn: sqlite3.Connection) -> None:
    _run(conn, _V3_TABLES)


# -- version 4: the Merkle tree over the audit records -------------------------

_V4_TABLE = """CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID"""


def _to_4(conn: sqlite3.Connection) -> None:
    """Make the tree and give it a leaf per record there, oldest first.

    The SQL is written out here, frozen with the step; the hashing is the
    tree's definition (RFC 9162 over ``record_leaf``), which no release may
    change. One pass, holding one node per level (``Builder``).
    """
    conn.execute(_V4_TABLE)
    built = Builder()
    rows = conn.execute("SELECT seq, at, event, details, prev FROM audit ORDER BY seq")
    conn.executemany(
        "INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?)",
        (node for row in rows for node in built.add(record_leaf(*row))),
    )


# (version after the step, the step), oldest first.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _to_2),
    (3, _to_3),
    (4, _to_4),
)


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the CA database has schema version {found}, made by a newer release;"
            f" this release knows versions up to {SCHEMA_VERSION}"
        )


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the database to SCHEMA_VERSION in one transaction; SchemaError if it is newer.

    ``conn`` must be in autocommit mode (``isolation_level=None``), as the
    signer's connection is, and outside a transaction.
    """
    conn.execute("BEGIN IMMEDIATE")  # read the version under the write lock: one migrator
    try:
        found = version(conn)
        _refuse_newer(found)
        for target, step in MIGRATIONS:
            if found < target:
                step(conn)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_readonly(path: Path) -> sqlite3.Connection:
    """The CA database for reading only (``signerctl``; safe while the signer runs).

    Read-only cannot migrate, so a database at another version than this
    code's is refused with SchemaError rather than read with the wrong columns.
    """
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        found = version(conn)
        _refuse_newer(found)
        if found < SCHEMA_VERSION:
            raise SchemaError(
                f"the CA database has schema version {found}; signer-core brings it to"
                f" version {SCHEMA_VERSION} when it next starts"
            )
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn
