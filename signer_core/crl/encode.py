"""Fast encoding and signing of X.509 v2 CRLs.

Trusted side: it holds no policy and parses nothing from the link; its
callers hand it values from the CA database and the root's own key.

cryptography's ``CertificateRevocationListBuilder`` re-copies its entry list
on every ``add_revoked_certificate``, so building a CRL of n entries costs
O(n^2). Here each revokedCertificates entry is encoded once, on revocation,
by ``encode_entry``; ``build_crl`` then wraps the caller's concatenation of
those entries into a TBSCertList with a handful of DER headers and signs it.
Issuing a CRL is one linear copy of the entries plus one hash of the result.
The DER written here is byte for byte what cryptography's builder writes for
the same fields (the tests compare them).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from signer_core.roots import RootKey


class CrlError(ValueError):
    """The root's key or digest cannot sign a CRL here."""


_SEQUENCE, _INTEGER, _OCTETS, _BITS, _OID, _NULL, _ENUM = 0x30, 0x02, 0x04, 0x03, 0x06, 0x05, 0x0A
_UTCTIME, _GENTIME = 0x17, 0x18

_REASON_CODES = {
    x509.ReasonFlags.unspecified: 0,
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.remove_from_crl: 8,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_RSA_OIDS = {
    "sha1": "1.2.840.113549.1.1.5",
    "sha224": "1.2.840.113549.1.1.14",
    "sha256": "1.2.840.113549.1.1.11",
    "sha384": "1.2.840.113549.1.1.12",
    "sha512": "1.2.840.113549.1.1.13",
}
_ECDSA_OIDS = {
    "sha1": "1.2.840.10045.4.1",
    "sha224": "1.2.840.10045.4.3.1",
    "sha256": "1.2.840.10045.4.3.2",
    "sha384": "1.2.840.10045.4.3.3",
    "sha512": "1.2.840.10045.4.3.4",
}
_ED25519_OID, _ED448_OID = "1.3.101.112", "1.3.101.113"
_REASON_OID, _AKI_OID, _CRL_NUMBER_OID = "2.5.29.21", "2.5.29.35", "2.5.29.20"


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    size = (value + (value < 0)).bit_length() // 8 + 1
    return _tlv(_INTEGER, value.to_bytes(size, "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(_OID, bytes(body))


def _time(when: dt.datetime) -> bytes:
    """RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050."""
    if when.tzinfo is None:
        raise CrlError("CRL times must be timezone-aware")
    when = when.astimezone(dt.UTC)
    if 1950 <= when.year < 2050:
        return _tlv(_UTCTIME, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return _tlv(_GENTIME, f"{when.year:04d}{when:%m%d%H%M%S}Z".encode("ascii"))


def _extension(oid: str, value: bytes) -> bytes:
    return _tlv(_SEQUENCE, _oid(oid) + _tlv(_OCTETS, value))


def encode_entry(
    serial: int, revoked_at: dt.datetime, reason: x509.ReasonFlags | None = None
) -> bytes:
    """One revokedCertificates element, DER."""
    body = _integer(serial) + _time(revoked_at)
    if reason is not None:
        code = _tlv(_ENUM, bytes((_REASON_CODES[reason],)))
        body += _tlv(_SEQUENCE, _extension(_REASON_OID, code))
    return _tlv(_SEQUENCE, body)


def _algorithm(key: RootKey, digest: str) -> tuple[bytes, hashes.HashAlgorithm | None]:
    """The AlgorithmIdentifier DER and the hash to sign with."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _tlv(_SEQUENCE, _oid(_ED25519_OID)), None
    if isinstance(key, ed448.Ed448PrivateKey):
        return _tlv(_SEQUENCE, _oid(_ED448_OID)), None
    if digest not in _HASHES:
        raise CrlError(f"unsupported CRL digest {digest!r}")
    if isinstance(key, rsa.RSAPrivateKey):
        return _tlv(_SEQUENCE, _oid(_RSA_OIDS[digest]) + _tlv(_NULL, b"")), _HASHES[digest]()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _tlv(_SEQUENCE, _oid(_ECDSA_OIDS[digest])), _HASHES[digest]()
    raise CrlError(f"unsupported CRL signing key {type(key).__name__}")


def _sign(key: RootKey, data: bytes, algorithm: hashes.HashAlgorithm | None) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        assert algorithm is not None
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert algorithm is not None
        return key.sign(data, ec.ECDSA(algorithm))
    return key.sign(data)


def authority_key_id(issuer: x509.Certificate) -> bytes:
    """The issuer's subjectKeyIdentifier, or the RFC 5280 method 1 value."""
    try:
        ext = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest


def _crl_extensions(key_id: bytes, number: int) -> bytes:
    aki = _tlv(_SEQUENCE, _tlv(0x80, key_id))
    exts = _extension(_AKI_OID, aki) + _extension(_CRL_NUMBER_OID, _integer(number))
    return _tlv(0xA0, _tlv(_SEQUENCE, exts))


def _header(tag: int, body_length: int) -> bytes:
    return bytes((tag,)) + _length(body_length)


def build_crl(
    issuer: x509.Certificate,
    key: RootKey,
    digest: str,
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    entries: Sequence[bytes] | bytes | bytearray,
) -> bytes:
    """A signed v2 CRL, DER.

    ``entries`` is either the concatenated DER of ``encode_entry`` results or
    a sequence of them; they appear in the CRL in that order.
    """
    if not isinstance(entries, (bytes, bytearray)):
        entries = b"".join(entries)
    algorithm, hash_algorithm = _algorithm(key, digest)
    head = (
        _integer(1)
        + algorithm
        + issuer.subject.public_bytes()
        + _time(this_update)
        + _time(next_update)
    )
    tail = _crl_extensions(authority_key_id(issuer), number)
    # RFC 5280: with no entries the revokedCertificates field is absent.
    revoked_header = _header(_SEQUENCE, len(entries)) if entries else b""
    body_length = len(head) + len(revoked_header) + len(entries) + len(tail)
    tbs = b"".join((_header(_SEQUENCE, body_length), head, revoked_header, entries, tail))
    signature = _tlv(_BITS, b"\x00" + _sign(key, tbs, hash_algorithm))
    outer = _header(_SEQUENCE, len(tbs) + len(algorithm) + len(signature))
    return b"".join((outer, tbs, algorithm, signature))


_PEM_HEAD, _PEM_TAIL = b"-----BEGIN X509 CRL-----\n", b"-----END X509 CRL-----\n"


def pem_length(der_length: int) -> int:
    """The size ``der_to_pem`` gives for a CRL of ``der_length`` bytes."""
    b64 = 4 * -(-der_length // 3)
    return len(_PEM_HEAD) + b64 + -(-b64 // 64) + len(_PEM_TAIL)


def der_to_pem(der: bytes) -> bytes:
    """PEM armour of a DER CRL, 64 columns, as ``openssl crl`` writes it."""
    flat = base64.b64encode(der)
    lines = [flat[i : i + 64] + b"\n" for i in range(0, len(flat), 64)]
    return b"".join([_PEM_HEAD, *lines, _PEM_TAIL])
