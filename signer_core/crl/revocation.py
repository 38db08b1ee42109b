"""Revoking X.509 certificates and issuing each root's CRL (protocol action 2).

Trusted side. Payload 1 (a PEM certificate) and payload 3 (the SHA-1 of the
CRL the web host holds) come from the link and are hostile: both are bounded
and checked, and the certificate must be one this CA issued from that root
(issuer name, signature by the root key, and the very row in the CA
database). Trusted: the CA database, the root objects and their keys.

Tables, in the CA database file:

- ``revocations``: one row per revoked certificate, carrying its
  revokedCertificates entry already DER-encoded, in revocation order;
- ``crl_numbers``: the last CRL number of each root (monotonic, stored);
- ``crls``: each root's recent CRLs by SHA-1 (at most ``history``), the
  newest issued one being the current CRL; imported ones (``add_known_crl``)
  only serve as delta bases.

A revocation and the CRL that publishes it are one transaction, so the
database never holds a revocation without a CRL listing it. The answer is an
xdelta patch from the client's CRL when that CRL is known, else the whole
CRL in PEM: the web host is brought back in sync in one exchange.

Each root's concatenated entries are kept in memory and topped up from the
table by sequence number, so one more revocation costs one entry's encoding
plus one copy of the entries into the new CRL, not a re-encoding of the set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from signer_core.crl.encode import CrlError, build_crl, der_to_pem, encode_entry, pem_length
from signer_core.crl.xdelta import XdeltaError, make_delta
from signer_core.refusal import Refusal
from signer_core.roots import Root
from signer_core.store.cadb import CADatabase, serial_text
from signer_core.x509.compat import not_after, verify_signature
from spool.record import MAX_ANSWER

MAX_CERT_PEM = 64 * 1024
MAX_IMPORTED_CRL = 1 << 30
_CLIENT_HASH = re.compile(rb"[0-9a-f]{40}")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"

_log = logging.getLogger(__name__)

_SCHEMA = """
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
"""


@dataclass
class _Entries:
    """A root's concatenated revokedCertificates DER, up to row ``last_seq``."""

    last_seq: int = 0
    blob: bytearray = field(default_factory=bytearray)
    oldest_not_after: int | None = None


def _utc_seconds(now: dt.datetime) -> dt.datetime:
    aware = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).replace(microsecond=0)


def _client_hash(value: bytes) -> bytes:
    if not _CLIENT_HASH.fullmatch(value):
        raise Refusal("bad-crl-hash", "payload 3 must be 40 lowercase hex digits")
    return bytes.fromhex(value.decode("ascii"))


def _parse_certificate(pem: bytes) -> x509.Certificate:
    if len(pem) > MAX_CERT_PEM:
        raise Refusal("cert-too-large", f"certificate over {MAX_CERT_PEM} bytes")
    if _PEM_CERT not in pem:
        raise Refusal("bad-certificate", "payload 1 is not a PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem)
        # cryptography 38 parses lazily: touch what we use so errors show now.
        _ = (cert.issuer, cert.serial_number, cert.tbs_certificate_bytes, not_after(cert))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Refusal("bad-certificate", f"unreadable certificate: {exc}") from exc
    return cert


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    if cert.issuer != issuer.subject:
        raise Refusal("wrong-issuer", "certificate not issued by this root")
    try:
        verify_signature(cert, issuer.public_key())
    except InvalidSignature:
        raise Refusal("bad-cert-signature", "certificate signature does not verify") from None


class Revocations:
    """Revocations and CRLs of every X.509 root, in one CA database."""

    def __init__(
        self,
        db: CADatabase,
        *,
        validity_days: int = 7,
        history: int = 16,
        prune_expired_after_days: int = 0,
    ) -> None:
        if validity_days < 1 or history < 1 or prune_expired_after_days < 0:
            raise ValueError("validity_days and history must be >= 1, pruning >= 0")
        self.db = db
        self._conn = db.connection
        self._validity = dt.timedelta(days=validity_days)
        self._history = history
        self._prune_after = dt.timedelta(days=prune_expired_after_days)
        self._entries: dict[int, _Entries] = {}
        self._conn.executescript(_SCHEMA)

    # -- the protocol's two requests -------------------------------------

    def revoke(
        self,
        root: Root,
        cert_pem: bytes,
        client_crl_sha1: bytes,
        now: dt.datetime,
        *,
        reason: x509.ReasonFlags | None = None,
    ) -> bytes:
        """Revoke the certificate in ``cert_pem``; payload 1 of the answer.

        An empty ``cert_pem`` is the protocol's refresh. Revoking a certificate
        again answers with the current CRL (a new one only if it has expired).
        """
        client = _client_hash(client_crl_sha1)
        if not cert_pem:
            return self._refresh(root, client, now)
        cert = _parse_certificate(cert_pem)
        _check_issued_by(cert, root.certificate)
        row = self.db.find_certificate(root.id, cert.serial_number)
        if (
            row is None
            or row.state != "issued"
            or row.der != cert.public_bytes(serialization.Encoding.DER)
        ):
            raise Refusal(
                "unknown-certificate",
                f"serial {serial_text(cert.serial_number)} was not issued here",
            )
        now = _utc_seconds(now)
        with self._transaction(root.id):
            old = self._known_crl(root.id, client)
            current = None
            if not self._record(root.id, cert, now, reason):
                current = self._current(root.id, now)
            new = current if current is not None else self._issue(root, now)
        return self._answer(root.id, old, new)

    def refresh(self, root: Root, client_crl_sha1: bytes, now: dt.datetime) -> bytes:
        """Issue a new CRL (fresh dates, next number); payload 1 of the answer."""
        return self._refresh(root, _client_hash(client_crl_sha1), now)

    def is_revoked(self, root_id: int, serial: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM revocations WHERE root = ? AND serial = ?",
            (root_id, serial_text(serial)),
        ).fetchone()
        return row is not None

    def current_crl(self, root_id: int) -> bytes | None:
        """The root's newest issued CRL, DER."""
        row = self._conn.execute(
            "SELECT der FROM crls WHERE root = ? AND imported = 0 ORDER BY id DESC LIMIT 1",
            (root_id,),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def current_number(self, root_id: int) -> int | None:
        """The CRL number of the root's newest issued CRL."""
        row = self._conn.execute(
            "SELECT number FROM crls WHERE root = ? AND imported = 0 ORDER BY id DESC LIMIT 1",
            (root_id,),
        ).fetchone()
        return None if row is None else int(row[0])

    def add_known_crl(self, root_id: int, der: bytes) -> None:
        """Remember a CRL made elsewhere (migration) as a delta base.

        A client holding it then gets a patch; the root's CRL numbers continue
        above its number. The CRL is parsed, not trusted as current.
        """
        if len(der) > MAX_IMPORTED_CRL:
            raise Refusal("crl-too-large", "imported CRL too large")
        try:
            parsed = x509.load_der_x509_crl(der)
            number_ext = parsed.extensions.get_extension_for_class(x509.CRLNumber)
            number = number_ext.value.crl_number
        except x509.ExtensionNotFound:
            number = 0
        except ValueError as exc:
            raise Refusal("bad-crl", f"not a DER CRL: {exc}") from exc
        with self._transaction(root_id):
            self._conn.execute(
                "INSERT INTO crls (root, number, sha1, next_update, imported, der)"
                " VALUES (?, ?, ?, NULL, 1, ?) ON CONFLICT (root, sha1) DO NOTHING",
                (root_id, number, hashlib.sha1(der).digest(), der),
            )
            self._raise_number(root_id, number)

    # -- inside a transaction --------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, root_id: int) -> Iterator[None]:
        """A write transaction, or the caller's if one is open (a handler adds its audit record)."""
        with self.db.transaction():
            # The cache may come to hold rows of a transaction that is rolled back.
            self.db.on_rollback(lambda: self._entries.pop(root_id, None))
            yield

    def _refresh(self, root: Root, client: bytes, now: dt.datetime) -> bytes:
        now = _utc_seconds(now)
        with self._transaction(root.id):
            old = self._known_crl(root.id, client)
            new = self._issue(root, now)
        return self._answer(root.id, old, new)

    def _known_crl(self, root_id: int, sha1: bytes) -> bytes | None:
        row = self._conn.execute(
            "SELECT der FROM crls WHERE root = ? AND sha1 = ?", (root_id, sha1)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _current(self, root_id: int, now: dt.datetime) -> bytes | None:
        row = self._conn.execute(
            "SELECT der FROM crls WHERE root = ? AND imported = 0 AND next_update > ?"
            " ORDER BY id DESC LIMIT 1",
            (root_id, int(now.timestamp())),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _record(
        self,
        root_id: int,
        cert: x509.Certificate,
        now: dt.datetime,
        reason: x509.ReasonFlags | None,
    ) -> bool:
        """Add the revocation; False if the certificate was already revoked."""
        cur = self._conn.execute(
            "INSERT INTO revocations (root, serial, revoked_at, reason, not_after, entry)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (root, serial) DO NOTHING",
            (
                root_id,
                serial_text(cert.serial_number),
                int(now.timestamp()),
                None if reason is None else reason.value,
                int(not_after(cert).timestamp()),
                encode_entry(cert.serial_number, now, reason),
            ),
        )
        return cur.rowcount == 1

    def _raise_number(self, root_id: int, at_least: int) -> None:
        self._conn.execute(
            "INSERT INTO crl_numbers (root, last_number) VALUES (?, ?) ON CONFLICT (root)"
            " DO UPDATE SET last_number = max(last_number, excluded.last_number)",
            (root_id, at_least),
        )

    def _next_number(self, root_id: int) -> int:
        self._conn.execute(
            "INSERT INTO crl_numbers (root, last_number) VALUES (?, 1) ON CONFLICT (root)"
            " DO UPDATE SET last_number = last_number + 1",
            (root_id,),
        )
        row = self._conn.execute(
            "SELECT last_number FROM crl_numbers WHERE root = ?", (root_id,)
        ).fetchone()
        return int(row[0])

    def _revoked_entries(self, root_id: int, now: dt.datetime) -> bytearray:
        """The root's entries, topped up from the table; rebuilt when pruning bites."""
        cutoff = int((now - self._prune_after).timestamp()) if self._prune_after else None
        cache = self._entries.get(root_id)
        if cache is None or (
            cutoff is not None
            and cache.oldest_not_after is not None
            and cache.oldest_not_after < cutoff
        ):
            cache = self._entries[root_id] = _Entries()
        cur = self._conn.cursor()
        cur.row_factory = None
        cur.execute(
            "SELECT seq, entry, not_after FROM revocations WHERE root = ? AND seq > ? ORDER BY seq",
            (root_id, cache.last_seq),
        )
        for seq, entry, expires in cur:
            cache.last_seq = seq
            if cutoff is not None and expires is not None:
                if expires < cutoff:
                    continue
                if cache.oldest_not_after is None or expires < cache.oldest_not_after:
                    cache.oldest_not_after = expires
            cache.blob += entry
        return cache.blob

    def _issue(self, root: Root, now: dt.datetime) -> bytes:
        number = self._next_number(root.id)
        entries = self._revoked_entries(root.id, now)
        try:
            der = build_crl(
                root.certificate,
                root.private_key,
                root.config.default_digest,
                number,
                now,
                now + self._validity,
                entries,
            )
        except CrlError as exc:
            raise Refusal("crl-signing-failed", str(exc)) from exc
        self._conn.execute(
            "INSERT INTO crls (root, number, sha1, next_update, imported, der)"
            " VALUES (?, ?, ?, ?, 0, ?)",
            (
                root.id,
                number,
                hashlib.sha1(der).digest(),
                int((now + self._validity).timestamp()),
                der,
            ),
        )
        self._conn.execute(
            "DELETE FROM crls WHERE root = ? AND id NOT IN"
            " (SELECT id FROM crls WHERE root = ? ORDER BY id DESC LIMIT ?)",
            (root.id, root.id, self._history),
        )
        return der

    # -- the answer ------------------------------------------------------

    def _answer(self, root_id: int, old: bytes | None, new: bytes) -> bytes:
        if old is not None:
            try:
                patch = make_delta(old, new)
            except XdeltaError as exc:
                _log.error("root %d: cannot make the CRL delta: %s", root_id, exc)
                raise Refusal("delta-failed", "cannot make the CRL delta") from exc
            if len(patch) <= MAX_ANSWER:
                return patch
            _log.warning(
                "root %d: the CRL delta is %d bytes, over the protocol limit", root_id, len(patch)
            )
            raise Refusal("crl-too-large", f"CRL delta is {len(patch)} bytes, over {MAX_ANSWER}")
        size = pem_length(len(new))
        if size > MAX_ANSWER:
            _log.warning(
                "root %d: the CRL is %d bytes in PEM, over the %d-byte protocol"
                " limit; a client without a known CRL cannot be brought in sync",
                root_id,
                size,
                MAX_ANSWER,
            )
            raise Refusal("crl-too-large", f"CRL PEM is {size} bytes, over {MAX_ANSWER}")
        return der_to_pem(new)
