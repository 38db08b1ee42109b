"""The refusal codes, by name and by number: the one table of them.

Shared by both sides and by the web host, no policy, no I/O. A refusal is
``ERR <name>: <text>`` in a v1 response's payload 2 and a 16-bit number with
a text in a v2 answer; the comm handler turns the first into the second and
the web host's bridge the second back into the first, both through this
table, so that a name and its number never disagree. Numbers are grouped by
who refuses (the link, the request's form, X.509, OpenPGP, revocation, the
roots, the audit log); a number, once given, is never reused for another name.
A test checks that every code the programs can send is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

OK = 0
UNREGISTERED = 0xFFFF
"""The number sent for a name missing from the table (a bug): the text still says it."""

_GROUPS: tuple[tuple[int, tuple[str, ...]], ...] = (
    # The link and the spool (comm handler, bridge).
    (
        1,
        (
            "bad-message",
            "spool-unavailable",
            "bad-result",
            "result-too-large",
            "timeout",
            "link-down",
        ),
    ),
    # The request's form and the signer's own limits.
    (
        100,
        (
            "bad-header",
            "unknown-request",
            "bad-request",
            "over-budget",
            "answer-too-large",
            "internal",
            "bad-time",
            "implausible-time",
        ),
    ),
    # X.509 requests: the CSR or SPKAC, its key, names and profile.
    (
        200,
        (
            "bad-csr",
            "bad-csr-signature",
            "bad-spkac",
            "bad-key",
            "unsupported-key",
            "weak-key",
            "bad-exponent",
            "roca-key",
            "close-primes",
            "small-factor",
            "key-blocklisted",
            "blocklist-unavailable",
            "ca-key",
            "bad-subject",
            "bad-san",
            "bad-idna",
            "dns-ip-literal",
            "ip-not-allowed",
            "wildcard-not-allowed",
            "cn-not-in-san",
            "unknown-profile",
            "profile-disabled",
            "unknown-digest",
            "unsupported-digest",
            "weak-digest",
            "bad-days",
            "cert-too-large",
            "pre-issuance-check",
        ),
    ),
    # OpenPGP certification.
    (
        300,
        (
            "openpgp-root-missing",
            "openpgp-bad-armour",
            "openpgp-bad-packets",
            "openpgp-too-large",
            "openpgp-too-many-packets",
            "openpgp-key-too-large",
            "openpgp-no-key",
            "openpgp-multiple-keys",
            "openpgp-secret-key",
            "openpgp-unsupported-key",
            "openpgp-weak-key",
            "openpgp-exponent-too-large",
            "openpgp-no-uid",
            "openpgp-no-valid-uid",
            "openpgp-too-many-uids",
            "openpgp-too-many-subkeys",
            "openpgp-too-many-signatures",
            "openpgp-too-many-uid-signatures",
            "openpgp-key-expired",
            "openpgp-key-revoked",
            "openpgp-ca-key",
            "openpgp-bad-days",
            "openpgp-import-failed",
            "openpgp-certify-failed",
            "openpgp-cpu-limit",
            "openpgp-timeout",
        ),
    ),
    # Revocation and CRLs.
    (
        400,
        (
            "bad-certificate",
            "bad-cert-signature",
            "unknown-certificate",
            "wrong-issuer",
            "bad-crl",
            "bad-crl-hash",
            "crl-too-large",
            "crl-signing-failed",
            "delta-failed",
        ),
    ),
    # The roots.
    (
        500,
        (
            "unknown-root",
            "root-not-installed",
            "root-unavailable",
            "root-expired",
            "root-not-yet-valid",
        ),
    ),
    # The audit log's exchange.
    (600, ("audit-unavailable",)),
)

TRANSIENT = frozenset({"spool-unavailable", "bad-result", "timeout", "link-down"})
"""Codes that decide nothing: the request may yet be answered, and is sent again as it was."""

NUMBERS: Mapping[str, int] = MappingProxyType(
    {name: first + i for first, names in _GROUPS for i, name in enumerate(names)}
)
"""Code name to its number on a v2 link."""

NAMES: Mapping[int, str] = MappingProxyType({n: name for name, n in NUMBERS.items()})
"""A number on a v2 link to its code name."""


def number_of(name: str) -> int:
    """The v2 number of a code name; ``UNREGISTERED`` for a name not in the table."""
    return NUMBERS.get(name, UNREGISTERED)


def name_of(number: int) -> str:
    """The code name of a v2 number; a number not in the table gets a name that says so."""
    return NAMES.get(number, f"code-{number}")
