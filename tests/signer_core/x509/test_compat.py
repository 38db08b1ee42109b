"""signer_core.x509.compat: aware UTC times from CRLs on every cryptography release,
without the naive accessors' deprecation warnings of cryptography 42 on."""

from __future__ import annotations

import datetime as dt
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.x509.compat import crl_last_update, crl_next_update, revocation_date

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_crl_times_are_aware_and_warn_nothing():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compat root")])
    revoked = x509.RevokedCertificateBuilder().serial_number(7).revocation_date(NOW).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert crl_last_update(crl) == NOW
        assert crl_next_update(crl) == NOW + dt.timedelta(days=7)
        assert revocation_date(next(iter(crl))) == NOW
