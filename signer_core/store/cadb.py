"""The CA database: every certificate the appliance has issued or reserved.

Trusted side, owned by the signer user alone (0600). SQLite with WAL and
synchronous=FULL: a durable commit that returned is on disk. Opening it
brings its schema up to date (``schema``); the other tables have modules of
their own beside this one, used on ``connection``. This module owns the SQL
on ``certificates`` and ``openpgp_certifications``.

Issuance is two commits around the signature, so that a crash anywhere
leaves a state the next attempt can finish without issuing twice, and one
flush to disk:

1. ``reserve``: the random serial and the request's digest, in state
   ``reserved``, before the key is used. Not flushed: step 2's flush takes
   it to disk too (WAL order), so a power cut loses it only with a
   signature that never left the machine; the retry reserves a new serial.
2. ``record_issued``: the certificate is stored, the row ``issued``, flushed
   before the commit returns. A refusal after step 1 marks the row
   ``released`` (its serial stays spent) with the refusal's record.

A retry is not a renewal. Each row remembers the spool id of the last
request it answered (``answer_id``) and, once the comm handler's receipt
says the web host ACKed that answer, when (``delivered_at``). A request with
the same digest is answered again only while the row's answer is
undelivered; after that it is a renewal, with a row of its own. OpenPGP
certifications are kept the same way.

``signerctl`` reads through the functions at the end (``schema.open_readonly``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.store.schema import migrate
from signer_core.x509.compat import not_after, not_before

_CERT_COLUMNS = (
    "id, root, serial, profile, state, der, issued_at, not_after, answer_id, delivered_at"
)


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
    id: int = 0
    issued_at: int | None = None
    not_after: int | None = None
    answer_id: str | None = None
    delivered_at: int | None = None

    def certificate(self) -> x509.Certificate:
        assert self.der is not None, "a reserved row has no certificate yet"
        return x509.load_der_x509_certificate(self.der)

    def pem(self) -> bytes:
        return self.certificate().public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class OpenPGPRow:
    id: int
    fingerprint: str
    days: int
    certified_at: int
    armoured: bytes
    delivered_at: int | None


@dataclass(frozen=True)
class SignedElsewhere:
    """A certificate this appliance did not sign (the old CA's, on import): issued as is."""

    root: int
    serial: int
    request_digest: bytes  # one no request can hash to: it must never answer a request
    profile: int
    issued_at: int
    subject: str
    not_before: int
    not_after: int
    der: bytes


def _row(r: sqlite3.Row | None) -> CertRow | None:
    if r is None:
        return None
    return CertRow(
        r["root"],
        int(r["serial"], 16),
        r["profile"],
        r["state"],
        r["der"],
        r["id"],
        r["issued_at"],
        r["not_after"],
        r["answer_id"],
        r["delivered_at"],
    )


class CADatabase:
    """One SQLite connection, used by one thread of the signer."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)  # made with a mode we choose before SQLite makes it
        path.chmod(0o600)
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.row_factory = sqlite3.Row
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        migrate(self.connection)
        self._on_rollback: list[Callable[[], object]] = []

    def close(self) -> bool:
        """Fold the write-ahead log into the file, then close; whether the file alone holds all.

        In WAL mode commits go to ``ca.sqlite-wal`` first; without this an
        operator who copies ``ca.sqlite`` alone may copy an empty database.
        The checkpoint waits up to the connection's busy timeout for readers
        (``signerctl``); False if one still held the log: nothing is lost, the
        log stays beside the file and the next open reads it.
        """
        try:
            row = self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.connection.close()
        return row is not None and row[0] == 0

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested uses join the outer one.

        Handlers wrap a decision and its audit record in one transaction so
        that neither is on disk without the other. ``durable=False`` skips
        the flush at commit (WAL order is kept: the next durable commit
        flushes it too); only for what a power cut may lose safely.
        """
        if self.connection.in_transaction:
            yield self.connection
            return
        if not durable:
            self.connection.execute("PRAGMA synchronous=NORMAL")
        try:
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
        finally:
            if not durable:
                self.connection.execute("PRAGMA synchronous=FULL")

    def on_rollback(self, hook: Callable[[], object]) -> None:
        """Call ``hook`` if the current transaction is rolled back (to drop caches)."""
        self._on_rollback.append(hook)

    def find_by_digest(self, digest: bytes) -> CertRow | None:
        """The newest live row (reserved or issued) made for a request with this digest."""
        cur = self.connection.execute(
            f"SELECT {_CERT_COLUMNS} FROM certificates WHERE request_digest = ?"
            " AND state != 'released' ORDER BY id DESC LIMIT 1",
            (digest,),
        )
        return _row(cur.fetchone())

    def find_certificate(self, root: int, serial: int) -> CertRow | None:
        cur = self.connection.execute(
            f"SELECT {_CERT_COLUMNS} FROM certificates WHERE root = ? AND serial = ?",
            (root, serial_text(serial)),
        )
        return _row(cur.fetchone())

    def reserve(self, root: int, serial: int, digest: bytes, profile: int) -> bool:
        """Record a serial before signing (unflushed, see above); False if it is taken."""
        try:
            with self.transaction(durable=False):
                self.connection.execute(
                    "INSERT INTO certificates (root, serial, request_digest, profile,"
                    " state, reserved_at) VALUES (?, ?, ?, ?, 'reserved', ?)",
                    (root, serial_text(serial), digest, profile, int(time.time())),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def has_certificates(self, root: int) -> bool:
        """Whether any row, of any state, belongs to this root."""
        row = self.connection.execute(
            "SELECT 1 FROM certificates WHERE root = ? LIMIT 1", (root,)
        ).fetchone()
        return row is not None

    def add_signed_elsewhere(self, certs: Iterable[SignedElsewhere]) -> None:
        """Rows in state ``issued`` that were never reserved here; IntegrityError on a taken serial."""
        with self.transaction():
            self.connection.executemany(
                "INSERT INTO certificates (root, serial, request_digest, profile, state,"
                " reserved_at, issued_at, subject, not_before, not_after, der)"
                " VALUES (?, ?, ?, ?, 'issued', ?, ?, ?, ?, ?, ?)",
                (
                    (
                        c.root,
                        serial_text(c.serial),
                        c.request_digest,
                        c.profile,
                        c.issued_at,
                        c.issued_at,
                        c.subject,
                        c.not_before,
                        c.not_after,
                        c.der,
                    )
                    for c in certs
                ),
            )

    def release(self, root: int, serial: int) -> None:
        """A reserved serial that will not be issued: kept, as spent, in state ``released``."""
        self.connection.execute(
            "UPDATE certificates SET state = 'released' WHERE root = ? AND serial = ?"
            " AND state = 'reserved'",
            (root, serial_text(serial)),
        )

    def record_issued(
        self,
        digest: bytes,
        cert: x509.Certificate,
        answer_id: str | None = None,
        at: int | None = None,
    ) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        with self.transaction():
            cur = self.connection.execute(
                "UPDATE certificates SET state = 'issued', issued_at = ?, subject = ?,"
                " not_before = ?, not_after = ?, der = ?, answer_id = ?"
                " WHERE request_digest = ? AND state = 'reserved' AND serial = ?",
                (
                    int(time.time()) if at is None else at,
                    cert.subject.rfc4514_string(),
                    int(not_before(cert).timestamp()),
                    int(not_after(cert).timestamp()),
                    der,
                    answer_id,
                    digest,
                    serial_text(cert.serial_number),
                ),
            )
            if cur.rowcount != 1:
                raise RuntimeError("no reserved row matches the certificate just signed")

    def answer_again(self, table: str, row_id: int, answer_id: str) -> None:
        """Row ``row_id`` of ``table`` now answers request ``answer_id`` (a retry)."""
        if table not in ("certificates", "openpgp_certifications"):
            raise ValueError(f"no answers in table {table!r}")
        self.connection.execute(
            f"UPDATE {table} SET answer_id = ? WHERE id = ?", (answer_id, row_id)
        )

    def mark_delivered(self, answer_id: str, at: int) -> dict[str, object] | None:
        """Record that the answer to ``answer_id`` reached the web host; what it carried."""
        row = self.connection.execute(
            "UPDATE certificates SET delivered_at = ? WHERE answer_id = ?"
            " AND delivered_at IS NULL RETURNING root, serial",
            (at, answer_id),
        ).fetchone()
        if row is not None:
            return {"root": row[0], "serial": row[1]}
        row = self.connection.execute(
            "UPDATE openpgp_certifications SET delivered_at = ? WHERE answer_id = ?"
            " AND delivered_at IS NULL RETURNING fingerprint",
            (at, answer_id),
        ).fetchone()
        return None if row is None else {"fingerprint": row[0]}

    def find_openpgp(self, digest: bytes) -> OpenPGPRow | None:
        """The newest certification made for a request with this digest."""
        row = self.connection.execute(
            "SELECT id, fingerprint, days, certified_at, armoured, delivered_at"
            " FROM openpgp_certifications WHERE request_digest = ? ORDER BY id DESC LIMIT 1",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        return OpenPGPRow(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])

    def record_openpgp(
        self, digest: bytes, fingerprint: str, days: int, armoured: bytes, answer_id: str, at: int
    ) -> None:
        with self.transaction():
            self.connection.execute(
                "INSERT INTO openpgp_certifications (request_digest, fingerprint, days,"
                " certified_at, armoured, answer_id) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, fingerprint, days, at, armoured, answer_id),
            )

    def count(self, state: str = "issued") -> int:
        cur = self.connection.execute("SELECT count(*) FROM certificates WHERE state = ?", (state,))
        return int(cur.fetchone()[0])


# -- what signerctl reads (any connection, read-only will do) -----------------


@dataclass(frozen=True)
class CertSummary:
    issued: int
    reserved: int
    last_issued_at: int | None


@dataclass(frozen=True)
class IssuedCert:
    root: int
    serial: int
    profile: int
    subject: str
    issued_at: int
    not_after: int


def certificate_rows(conn: sqlite3.Connection) -> list[tuple[int, str, str, bytes | None]]:
    """(root, serial, state, der) of every certificate row, in reservation order."""
    return conn.execute("SELECT root, serial, state, der FROM certificates ORDER BY id").fetchall()


def certificate_summary(conn: sqlite3.Connection) -> CertSummary:
    counts = dict(conn.execute("SELECT state, count(*) FROM certificates GROUP BY state"))
    last = conn.execute("SELECT max(issued_at) FROM certificates").fetchone()[0]
    return CertSummary(counts.get("issued", 0), counts.get("reserved", 0), last)


def find_issued(
    conn: sqlite3.Connection,
    *,
    serial: int | None = None,
    subject: str | None = None,
    since: int | None = None,
    limit: int = 100,
) -> list[IssuedCert]:
    """Issued certificates, newest first; ``subject`` is a substring, ``since`` a time."""
    query: list[str] = ["state = 'issued'"]
    args: list[object] = []
    if serial is not None:
        query.append("serial = ?")
        args.append(serial_text(serial))
    if subject is not None:
        query.append("subject LIKE ? ESCAPE '\\'")
        args.append(
            "%" + subject.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
    if since is not None:
        query.append("issued_at >= ?")
        args.append(since)
    rows = conn.execute(
        "SELECT root, serial, profile, subject, issued_at, not_after FROM certificates"
        f" WHERE {' AND '.join(query)} ORDER BY issued_at DESC LIMIT ?",
        (*args, limit),
    )
    return [IssuedCert(r[0], int(r[1], 16), r[2], r[3], r[4], r[5]) for r in rows]


def certificates_by_serial(
    conn: sqlite3.Connection, serial: int, root: int | None = None
) -> list[CertRow]:
    """Every row, of any state, with this serial (in ``root``, or in any root), by root."""
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    rows = cur.execute(
        f"SELECT {_CERT_COLUMNS} FROM certificates WHERE serial = ? AND (? IS NULL OR root = ?)"
        " ORDER BY root",
        (serial_text(serial), root, root),
    )
    return [row for row in map(_row, rows) if row is not None]
