"""Revocations and CRLs as stored: the SQL on ``revocations``, ``crl_numbers``, ``crls``.

Trusted side, on the CA database (tables defined in ``schema``). The
decisions are elsewhere: ``signer_core.crl.revocation`` revokes and issues,
``signerctl``'s import adds what the old CA revoked, ``signerctl`` shows and
exports; this module only reads and writes the rows, on the signer's
connection or on a read-only one. Callers hold the transaction.

- ``revocations``: one row per revoked certificate with its
  revokedCertificates entry already DER-encoded, in revocation order (``seq``);
- ``crl_numbers``: the last CRL number of each root (never goes down);
- ``crls``: each root's recent CRLs by SHA-1, the newest issued one being
  the current CRL; imported ones (``imported = 1``) only serve as delta bases.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from signer_core.store.cadb import serial_text


@dataclass(frozen=True)
class StoredCrl:
    number: int
    der: bytes


@dataclass(frozen=True)
class CrlSummary:
    root: int
    number: int
    next_update: int | None
    entries: int  # revocations of the root, listed or pruned
    der_bytes: int


# -- revocations --------------------------------------------------------------


def revocation_of(
    conn: sqlite3.Connection, root: int, serial: int
) -> tuple[int, str | None] | None:
    """(revoked_at, reason) of a revoked certificate; None if it is not revoked."""
    row = conn.execute(
        "SELECT revoked_at, reason FROM revocations WHERE root = ? AND serial = ?",
        (root, serial_text(serial)),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def add_revocation(
    conn: sqlite3.Connection,
    root: int,
    serial: int,
    revoked_at: int,
    reason: str | None,
    not_after: int | None,
    entry: bytes,
) -> bool:
    """Add one revocation; False if the certificate was revoked already (row kept)."""
    cur = conn.execute(
        "INSERT INTO revocations (root, serial, revoked_at, reason, not_after, entry)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (root, serial) DO NOTHING",
        (root, serial_text(serial), revoked_at, reason, not_after, entry),
    )
    return cur.rowcount == 1


def entries_after(
    conn: sqlite3.Connection, root: int, seq: int
) -> Iterator[tuple[int, bytes, int | None]]:
    """(seq, entry, not_after) of the root's revocations after ``seq``, in order."""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: this may walk a million rows
    yield from cur.execute(
        "SELECT seq, entry, not_after FROM revocations WHERE root = ? AND seq > ? ORDER BY seq",
        (root, seq),
    )


# -- CRL numbers --------------------------------------------------------------


def last_number(conn: sqlite3.Connection, root: int) -> int | None:
    row = conn.execute("SELECT last_number FROM crl_numbers WHERE root = ?", (root,)).fetchone()
    return None if row is None else int(row[0])


def raise_number(conn: sqlite3.Connection, root: int, at_least: int) -> None:
    conn.execute(
        "INSERT INTO crl_numbers (root, last_number) VALUES (?, ?) ON CONFLICT (root)"
        " DO UPDATE SET last_number = max(last_number, excluded.last_number)",
        (root, at_least),
    )


def next_number(conn: sqlite3.Connection, root: int) -> int:
    """Take the root's next CRL number (1 for its first CRL)."""
    row = conn.execute(
        "INSERT INTO crl_numbers (root, last_number) VALUES (?, 1) ON CONFLICT (root)"
        " DO UPDATE SET last_number = last_number + 1 RETURNING last_number",
        (root,),
    ).fetchone()
    return int(row[0])


# -- CRLs ---------------------------------------------------------------------


def newest_crl(
    conn: sqlite3.Connection, root: int, *, valid_at: int | None = None
) -> StoredCrl | None:
    """The root's newest CRL issued here; with ``valid_at``, only if not expired by then."""
    row = conn.execute(
        "SELECT number, der FROM crls WHERE root = ? AND imported = 0"
        " AND (? IS NULL OR next_update > ?) ORDER BY id DESC LIMIT 1",
        (root, valid_at, valid_at),
    ).fetchone()
    return None if row is None else StoredCrl(int(row[0]), bytes(row[1]))


def crl_by_sha1(conn: sqlite3.Connection, root: int, sha1: bytes) -> bytes | None:
    """A CRL of the root that is kept (issued or imported), DER, by its SHA-1."""
    row = conn.execute("SELECT der FROM crls WHERE root = ? AND sha1 = ?", (root, sha1)).fetchone()
    return None if row is None else bytes(row[0])


def add_crl(
    conn: sqlite3.Connection, root: int, number: int, der: bytes, next_update: int, history: int
) -> None:
    """Keep a CRL just issued here, and only the newest ``history`` CRLs of the root."""
    conn.execute(
        "INSERT INTO crls (root, number, sha1, next_update, imported, der)"
        " VALUES (?, ?, ?, ?, 0, ?)",
        (root, number, hashlib.sha1(der).digest(), next_update, der),
    )
    conn.execute(
        "DELETE FROM crls WHERE root = ? AND id NOT IN"
        " (SELECT id FROM crls WHERE root = ? ORDER BY id DESC LIMIT ?)",
        (root, root, history),
    )


def add_known_crl(conn: sqlite3.Connection, root: int, number: int, der: bytes) -> None:
    """Keep a CRL made elsewhere as a delta base; nothing if it is kept already."""
    conn.execute(
        "INSERT INTO crls (root, number, sha1, next_update, imported, der)"
        " VALUES (?, ?, ?, NULL, 1, ?) ON CONFLICT (root, sha1) DO NOTHING",
        (root, number, hashlib.sha1(der).digest(), der),
    )


# -- what signerctl reads -----------------------------------------------------


def crl_summaries(conn: sqlite3.Connection) -> list[CrlSummary]:
    """Each root's newest CRL issued here, by root."""
    rows = conn.execute(
        "SELECT c.root, c.number, c.next_update,"
        " (SELECT count(*) FROM revocations r WHERE r.root = c.root), length(c.der)"
        " FROM crls c WHERE c.id = (SELECT max(id) FROM crls WHERE root = c.root AND imported = 0)"
        " ORDER BY c.root"
    )
    return [CrlSummary(*row) for row in rows]


def issued_with_revocations(
    conn: sqlite3.Connection, root: int
) -> Iterator[tuple[int, int, bytes, int | None, str | None]]:
    """(serial, not_after, der, revoked_at, reason) of the root's issued certificates, in order."""
    rows = conn.execute(
        "SELECT c.serial, c.not_after, c.der, r.revoked_at, r.reason FROM certificates c"
        " LEFT JOIN revocations r ON r.root = c.root AND r.serial = c.serial"
        " WHERE c.root = ? AND c.state = 'issued' ORDER BY c.id",
        (root,),
    )
    for serial, not_after, der, revoked_at, reason in rows:
        yield int(serial, 16), not_after, bytes(der), revoked_at, reason
