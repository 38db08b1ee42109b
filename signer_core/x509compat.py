"""Differences between the cryptography releases the appliance runs on.

Trusted side; no policy. Debian 12 ships cryptography 38, Debian 13 ships 43,
PyPI has 50: the ``*_utc`` accessors exist from 42 on, and the naive ones
warn there. Everything else in the code calls these and gets aware UTC times.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def not_before(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def verify_issued_by(cert: x509.Certificate | x509.CertificateRevocationList,
                     issuer: x509.Certificate) -> None:
    """Raise InvalidSignature unless ``issuer`` signed ``cert`` (a certificate or CRL).

    ``Certificate.verify_directly_issued_by`` appears only in cryptography 40.
    """
    if cert.issuer != issuer.subject:
        raise InvalidSignature("issuer name does not match")
    tbs = getattr(cert, "tbs_certificate_bytes", None) or cert.tbs_certlist_bytes
    key = issuer.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, tbs, padding.PKCS1v15(), cert.signature_hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, tbs, ec.ECDSA(cert.signature_hash_algorithm))
    else:
        key.verify(cert.signature, tbs)
