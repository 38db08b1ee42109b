"""The CA database: every certificate the appliance has issued or reserved.

Trusted side, owned by the signer user alone (mode 0600). An embedded SQLite
file opened with full durability (WAL, synchronous=FULL): a commit that
returned is on disk. Other modules (revocations, CRLs, OpenPGP, time,
audit) add their own tables to the same file through ``connection``.

Issuance is two commits around the signature, so that a crash anywhere
leaves a state the next attempt can finish without issuing twice:

1. ``reserve``: the random serial and the request's digest are recorded in
   state ``reserved`` before the key is used;
2. ``record_issued``: the signed certificate is stored and the row becomes
   ``issued``.

A request seen again (same digest) is answered from the row: an issued row
returns its certificate, a reserved one is signed again with the same serial.
One row per certificate; nothing is stored per request beyond that row.
OpenPGP certifications are kept the same way, one row per request, so that
a retry gets the key certified the first time rather than a second
certification.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.x509compat import not_after, not_before

_SCHEMA = """
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


def serial_text(serial: int) -> str:
    """The database's spelling of a serial: lowercase hex, no leading zeros."""
    return format(serial, "x")


@dataclass(frozen=True)
class CertRow:
    root: int
    serial: int
    profile: int
    state: str
    der: bytes | None

    def certificate(self) -> x509.Certificate:
        assert self.der is not None, "a reserved row has no certificate yet"
        return x509.load_der_x509_certificate(self.der)

    def pem(self) -> bytes:
        return self.certificate().public_bytes(serialization.Encoding.PEM)


def _row(r: sqlite3.Row | None) -> CertRow | None:
    if r is None:
        return None
    return CertRow(r["root"], int(r["serial"], 16), r["profile"], r["state"], r["der"])


class CADatabase:
    """One SQLite connection, used by one thread of the signer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = path.open("a")  # create with a mode we choose before SQLite does
        fd.close()
        path.chmod(0o600)
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.executescript(_SCHEMA)
        self._on_rollback: list[Callable[[], None]] = []

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested uses join the outer one.

        Handlers wrap a decision and its audit record in one transaction so
        that neither is on disk without the other.
        """
        if self.connection.in_transaction:
            yield self.connection
            return
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            hooks, self._on_rollback = self._on_rollback, []
            for hook in hooks:
                hook()
            raise
        self._on_rollback = []
        self.connection.execute("COMMIT")

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` if the current transaction is rolled back (to drop caches)."""
        self._on_rollback.append(hook)

    def find_by_digest(self, digest: bytes) -> CertRow | None:
        cur = self.connection.execute(
            "SELECT root, serial, profile, state, der FROM certificates"
            " WHERE request_digest = ?", (digest,))
        return _row(cur.fetchone())

    def find_certificate(self, root: int, serial: int) -> CertRow | None:
        cur = self.connection.execute(
            "SELECT root, serial, profile, state, der FROM certificates"
            " WHERE root = ? AND serial = ?", (root, serial_text(serial)))
        return _row(cur.fetchone())

    def reserve(self, root: int, serial: int, digest: bytes, profile: int) -> bool:
        """Record a serial before signing; False if the serial is taken in this root."""
        try:
            with self.transaction():
                self.connection.execute(
                    "INSERT INTO certificates (root, serial, request_digest, profile,"
                    " state, reserved_at) VALUES (?, ?, ?, ?, 'reserved', ?)",
                    (root, serial_text(serial), digest, profile, int(time.time())))
        except sqlite3.IntegrityError:
            if self.find_by_digest(digest) is not None:
                raise
            return False
        return True

    def record_issued(self, digest: bytes, cert: x509.Certificate) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        with self.transaction():
            cur = self.connection.execute(
                "UPDATE certificates SET state = 'issued', issued_at = ?, subject = ?,"
                " not_before = ?, not_after = ?, der = ?"
                " WHERE request_digest = ? AND state = 'reserved' AND serial = ?",
                (int(time.time()), cert.subject.rfc4514_string(),
                 int(not_before(cert).timestamp()), int(not_after(cert).timestamp()),
                 der, digest, serial_text(cert.serial_number)))
            if cur.rowcount != 1:
                raise RuntimeError("no reserved row matches the certificate just signed")

    def find_openpgp(self, digest: bytes) -> bytes | None:
        """The armoured key answered to this request before, if any."""
        row = self.connection.execute(
            "SELECT armoured FROM openpgp_certifications WHERE request_digest = ?",
            (digest,)).fetchone()
        return None if row is None else bytes(row[0])

    def record_openpgp(self, digest: bytes, fingerprint: str, days: int, armoured: bytes) -> None:
        with self.transaction():
            self.connection.execute(
                "INSERT INTO openpgp_certifications (request_digest, fingerprint, days,"
                " certified_at, armoured) VALUES (?, ?, ?, ?, ?)",
                (digest, fingerprint, days, int(time.time()), armoured))

    def count(self, state: str = "issued") -> int:
        cur = self.connection.execute(
            "SELECT count(*) FROM certificates WHERE state = ?", (state,))
        return int(cur.fetchone()[0])
