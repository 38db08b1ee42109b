"""Differences between the cryptography releases the appliance runs on.

Trusted side; no policy. Debian 12 ships cryptography 38, Debian 13 ships 43,
PyPI has 50: the ``*_utc`` accessors exist from 42 on, and the naive ones
warn there. Everything else in the code calls these and gets aware UTC times.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

if TYPE_CHECKING:
    # The unions of key types have these names from cryptography 40 on (38 spells
    # them PUBLIC_KEY_TYPES and so on): only annotations name them, never run time.
    from cryptography.hazmat.primitives.asymmetric.types import (
        PrivateKeyTypes as PrivateKeyTypes,
    )
    from cryptography.hazmat.primitives.asymmetric.types import (
        PublicKeyTypes as PublicKeyTypes,
    )


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def not_before(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def crl_last_update(crl: x509.CertificateRevocationList) -> dt.datetime:
    return _utc(getattr(crl, "last_update_utc", None) or crl.last_update)


def crl_next_update(crl: x509.CertificateRevocationList) -> dt.datetime | None:
    value = crl.next_update_utc if hasattr(crl, "next_update_utc") else crl.next_update
    return None if value is None else _utc(value)


def revocation_date(item: x509.RevokedCertificate) -> dt.datetime:
    return _utc(getattr(item, "revocation_date_utc", None) or item.revocation_date)


def verify_signature(
    signed: x509.Certificate | x509.CertificateRevocationList, issuer_key: PublicKeyTypes
) -> None:
    """Raise InvalidSignature unless ``issuer_key`` made the signature of a certificate or CRL.

    ``Certificate.verify_directly_issued_by`` appears only in cryptography 40,
    and there is no such method for CRLs before 40 either.
    """
    tbs = (
        signed.tbs_certificate_bytes
        if isinstance(signed, x509.Certificate)
        else signed.tbs_certlist_bytes
    )
    algorithm = signed.signature_hash_algorithm
    try:
        if isinstance(issuer_key, rsa.RSAPublicKey) and algorithm is not None:
            issuer_key.verify(signed.signature, tbs, padding.PKCS1v15(), algorithm)
        elif isinstance(issuer_key, ec.EllipticCurvePublicKey) and algorithm is not None:
            issuer_key.verify(signed.signature, tbs, ec.ECDSA(algorithm))
        elif isinstance(issuer_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            issuer_key.verify(signed.signature, tbs)
        else:
            raise InvalidSignature(f"unsupported issuer key {type(issuer_key).__name__}")
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise InvalidSignature(str(exc)) from exc


def verify_issued_by(
    signed: x509.Certificate | x509.CertificateRevocationList, issuer: x509.Certificate
) -> None:
    """Raise InvalidSignature unless ``issuer`` is named as the issuer and made the signature."""
    if signed.issuer != issuer.subject:
        raise InvalidSignature("issuer name does not match")
    verify_signature(signed, issuer.public_key())
