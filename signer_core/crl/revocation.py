"""Revoking X.509 certificates and issuing each root's CRL (protocol action 2).

Trusted side. Payload 1 (a PEM certificate) and payload 3 (the SHA-1 of the
CRL the web host holds) come from the link and are hostile: both are bounded
and checked, and the certificate must be one this CA issued from that root
(issuer name, signature by the root key, and the very row in the CA
database). Trusted: the CA database, the root objects and their keys.

The rows (revocations, CRL numbers, each root's newest ``history`` CRLs and
the imported ones, ``add_known_crl``, that only serve as delta bases) are
kept by ``signer_core.store.crls``; this module decides what goes in them.

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
from signer_core.store import crls
from signer_core.store.cadb import CADatabase, serial_text
from signer_core.store.crls import StoredCrl
from signer_core.x509.compat import not_after, verify_signature
from signer_core.x509.der import CERTIFICATE, CRL, fault, from_pem
from spool.record import MAX_ANSWER

MAX_CERT_PEM = 64 * 1024
MAX_IMPORTED_CRL = 1 << 30
_CLIENT_HASH = re.compile(rb"[0-9a-f]{40}")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevokeOutcome:
    """What a revoke (or refresh) request did: the answer and what the audit record names."""

    answer: bytes  # payload 1: an xdelta patch from the client's CRL, or the CRL in PEM
    crl_number: int  # of the CRL the answer brings the client to
    serial: int | None  # the certificate revoked (or revoked before); None: a refresh


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
        _log.info("certificate not parsed: %s", exc)
        raise Refusal(
            "bad-certificate", f"payload 1 is not a certificate: {_cert_fault(pem)}"
        ) from None
    return cert


def _cert_fault(pem: bytes) -> str:
    try:
        return fault(from_pem(pem, ("CERTIFICATE",)), CERTIFICATE)
    except ValueError as exc:
        return str(exc)


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

    # -- the protocol's two requests -------------------------------------

    def revoke(
        self,
        root: Root,
        cert_pem: bytes,
        client_crl_sha1: bytes,
        now: dt.datetime,
        *,
        reason: x509.ReasonFlags | None = None,
    ) -> RevokeOutcome:
        """Revoke the certificate in ``cert_pem``, and answer with the CRL listing it.

        An empty ``cert_pem`` is the protocol's refresh. Revoking a certificate
        again answers with the current CRL (a new one only if it has expired).
        The outcome names the certificate from the parsed, checked request,
        so that no caller needs to parse the hostile PEM again.
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
            old = crls.crl_by_sha1(self._conn, root.id, client)
            new = None
            if not self._record(root.id, cert, now, reason):
                new = crls.newest_crl(self._conn, root.id, valid_at=int(now.timestamp()))
            if new is None:
                new = self._issue(root, now)
        return RevokeOutcome(self._answer(root.id, old, new.der), new.number, cert.serial_number)

    def refresh(self, root: Root, client_crl_sha1: bytes, now: dt.datetime) -> bytes:
        """Issue a new CRL (fresh dates, next number); payload 1 of the answer."""
        return self._refresh(root, _client_hash(client_crl_sha1), now).answer

    def is_revoked(self, root_id: int, serial: int) -> bool:
        return crls.revocation_of(self._conn, root_id, serial) is not None

    def current_crl(self, root_id: int) -> bytes | None:
        """The root's newest issued CRL, DER."""
        crl = crls.newest_crl(self._conn, root_id)
        return None if crl is None else crl.der

    def current_number(self, root_id: int) -> int | None:
        """The CRL number of the root's newest issued CRL."""
        crl = crls.newest_crl(self._conn, root_id)
        return None if crl is None else crl.number

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
            _log.info("imported CRL not parsed: %s", exc)
            raise Refusal("bad-crl", f"not a DER CRL: {fault(der, CRL)}") from None
        with self._transaction(root_id):
            crls.add_known_crl(self._conn, root_id, number, der)
            crls.raise_number(self._conn, root_id, number)

    # -- inside a transaction --------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, root_id: int) -> Iterator[None]:
        """A write transaction, or the caller's if one is open (a handler adds its audit record)."""
        with self.db.transaction():
            # The cache may come to hold rows of a transaction that is rolled back.
            self.db.on_rollback(lambda: self._entries.pop(root_id, None))
            yield

    def _refresh(self, root: Root, client: bytes, now: dt.datetime) -> RevokeOutcome:
        now = _utc_seconds(now)
        with self._transaction(root.id):
            old = crls.crl_by_sha1(self._conn, root.id, client)
            new = self._issue(root, now)
        return RevokeOutcome(self._answer(root.id, old, new.der), new.number, None)

    def _record(
        self,
        root_id: int,
        cert: x509.Certificate,
        now: dt.datetime,
        reason: x509.ReasonFlags | None,
    ) -> bool:
        """Add the revocation; False if the certificate was already revoked."""
        return crls.add_revocation(
            self._conn,
            root_id,
            cert.serial_number,
            int(now.timestamp()),
            None if reason is None else reason.value,
            int(not_after(cert).timestamp()),
            encode_entry(cert.serial_number, now, reason),
        )

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
        for seq, entry, expires in crls.entries_after(self._conn, root_id, cache.last_seq):
            cache.last_seq = seq
            if cutoff is not None and expires is not None:
                if expires < cutoff:
                    continue
                if cache.oldest_not_after is None or expires < cache.oldest_not_after:
                    cache.oldest_not_after = expires
            cache.blob += entry
        return cache.blob

    def _issue(self, root: Root, now: dt.datetime) -> StoredCrl:
        number = crls.next_number(self._conn, root.id)
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
        next_update = int((now + self._validity).timestamp())
        crls.add_crl(self._conn, root.id, number, der, next_update, self._history)
        return StoredCrl(number, der)

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
