"""Differences between the cryptography releases the appliance runs on.

Trusted side; no policy. Debian 12 ships cryptography 38, Debian 13 ships 43,
PyPI has 50: the ``*_utc`` accessors exist from 42 on, and the naive ones
warn there. Everything else in the code calls these and gets aware UTC times.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def not_before(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)
