"""Certificate profiles (templates) as data: the built-in table of docs/design.md.

Trusted side. Pure data, no input parsing: the configuration may override
fields of a built-in profile (see ``signer_core.config.x509``), the issuer reads them.
The built-in ids and names are ``spool.header.BUILTIN_PROFILE_NAMES``, the table
both ends of the link share.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from spool.header import BUILTIN_PROFILE_NAMES

MS_EFS = "1.3.6.1.4.1.311.10.3.4"
MS_SGC = "1.3.6.1.4.1.311.10.3.3"
NS_SGC = "2.16.840.1.113730.4.1"
MS_CODE_IND = "1.3.6.1.4.1.311.2.1.21"
MS_CODE_COM = "1.3.6.1.4.1.311.2.1.22"
MS_SMARTCARD_LOGIN = "1.3.6.1.4.1.311.20.2.2"
XMPP_ADDR = "1.3.6.1.5.5.7.8.5"

EMAIL_PROTECTION = ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string
CODE_SIGNING = ExtendedKeyUsageOID.CODE_SIGNING.dotted_string
OCSP_SIGNING = ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string
TIME_STAMPING = ExtendedKeyUsageOID.TIME_STAMPING.dotted_string

# keyUsage bit names, as cryptography's x509.KeyUsage keyword arguments.
KEY_USAGE_NAMES = frozenset(
    {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    }
)


class SanSource(enum.StrEnum):
    """Where a profile's subjectAltName entries come from."""

    EMAIL_AND_PAYLOAD = "email+payload"  # subject emailAddress, then payload 2
    PAYLOAD = "payload"  # payload 2 only
    NONE = "none"  # no SAN at all (payload 2 must be empty)


@dataclasses.dataclass(frozen=True)
class Profile:
    """One certificate template, keyed by header byte 4."""

    id: int
    name: str
    enabled: bool
    key_usage: frozenset[str]
    extended_key_usage: tuple[str, ...]
    san_source: SanSource
    ca: bool = False
    path_length: int | None = None
    max_days: int = 730
    ocsp_nocheck: bool = False
    eku_critical: bool = False
    require_san: bool = False  # refuse when no SAN entry results
    require_xmpp: bool = False  # at least one XMPP otherName expected
    server_names: bool = False  # names servers: wildcards allowed, each CN among the SANs
    email_names: bool = False  # names a person: no IP address SAN
    extra_policy_oids: tuple[str, ...] = ()  # e.g. CA/B Forum reserved OIDs, after the CPS policy

    def __post_init__(self) -> None:
        unknown = self.key_usage - KEY_USAGE_NAMES
        if unknown:
            raise ValueError(f"profile {self.id}: unknown key usage {sorted(unknown)}")
        for oid in self.extended_key_usage + self.extra_policy_oids:
            ObjectIdentifier(oid)  # raises ValueError on a malformed OID
        if not 1 <= self.max_days <= 36600:
            raise ValueError(f"profile {self.id}: max_days must be 1-36600")
        if self.path_length is not None and not (self.ca and 0 <= self.path_length <= 16):
            raise ValueError(f"profile {self.id}: path_length needs ca and 0-16")

    def eku_oids(self) -> list[ObjectIdentifier]:
        return [ObjectIdentifier(o) for o in self.extended_key_usage]


_DS_KE_KA = frozenset({"digital_signature", "key_encipherment", "key_agreement"})
_DS_KE = frozenset({"digital_signature", "key_encipherment"})
_DS = frozenset({"digital_signature"})
_CLIENT_EKU = (EMAIL_PROTECTION, CLIENT_AUTH, MS_EFS, MS_SGC, NS_SGC)
_CODE_EKU = (
    EMAIL_PROTECTION,
    CLIENT_AUTH,
    CODE_SIGNING,
    MS_CODE_IND,
    MS_CODE_COM,
    MS_EFS,
    MS_SGC,
    NS_SGC,
)
_SERVER_EKU = (CLIENT_AUTH, SERVER_AUTH, NS_SGC, MS_SGC)
_EP = SanSource.EMAIL_AND_PAYLOAD
_P = SanSource.PAYLOAD


def _builtin() -> dict[int, Profile]:
    def p(pid: int, *fields: Any, **options: Any) -> Profile:
        return Profile(pid, BUILTIN_PROFILE_NAMES[pid], *fields, **options)

    table = [
        p(0, True, _DS_KE_KA, _CLIENT_EKU, _EP, email_names=True),
        p(1, True, _DS_KE_KA, _CLIENT_EKU, _EP, email_names=True),
        p(2, True, _DS_KE_KA, _CODE_EKU, _EP, email_names=True),
        p(3, True, _DS_KE, (CLIENT_AUTH,), _P),
        p(4, True, _DS_KE, (CLIENT_AUTH, MS_SMARTCARD_LOGIN), _EP, email_names=True),
        p(5, True, _DS_KE_KA, _SERVER_EKU, _P, require_san=True, server_names=True),
        p(6, True, _DS_KE_KA, _SERVER_EKU, _P, require_san=True, server_names=True),
        p(
            7,
            True,
            _DS_KE_KA,
            _SERVER_EKU,
            _P,
            require_san=True,
            require_xmpp=True,
            server_names=True,
        ),
        p(8, True, _DS, (OCSP_SIGNING,), _P, ocsp_nocheck=True),
        p(9, True, _DS, (TIME_STAMPING,), _P, eku_critical=True),
        p(10, False, _DS_KE, (CLIENT_AUTH,), _P),
        p(
            11,
            False,
            frozenset({"key_cert_sign", "crl_sign"}),
            (),
            SanSource.NONE,
            ca=True,
            path_length=0,
            max_days=3653,
        ),
    ]
    if [prof.id for prof in table] != list(BUILTIN_PROFILE_NAMES):
        raise ValueError("the built-in profiles are not those spool.header names")
    return {prof.id: prof for prof in table}


BUILTIN_PROFILES: Mapping[int, Profile] = MappingProxyType(_builtin())
