"""Parse the subject of a Sign X.509 request into an ``x509.Name``.

Trusted side, hostile input: payload 3 (OpenSSL slash form with ``\\xNN``
escapes) and the attribute lines of an SPKAC block both come over the link.
Only the attributes the web side uses are accepted, one RDN per attribute;
values are checked against the deployed server's forbidden characters,
control characters, UTF-8 validity and the X.520 upper bounds. The CSR's own
subject is never used.

The parsers keep the order the web side sent (CN first, as it happens).
``policy_order`` then puts the name into the order of the old CA's ``openssl
ca`` policy section, which is what ``[x509] subject_order = "policy"`` (the
default) applies: relying parties map certificates by their subject DN
string, and that string must stay the one the old CA wrote. ``"as-sent"``
keeps the order given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from signer_core.refusal import Refusal
from signer_core.x509.san import bad_character, is_email

MAX_SUBJECT_BYTES = 2048
MAX_ATTRIBUTES = 16
# Space is allowed in a subject, unlike in a SAN; "/" would be ambiguous in
# the slash form that the web side and operators read back.
FORBIDDEN = frozenset("\t\r\n\0#\"'\\/")

_ATTRIBUTE_TABLE = (
    (("CN", "commonName"), NameOID.COMMON_NAME, 64),
    (("emailAddress",), NameOID.EMAIL_ADDRESS, 255),
    (("O", "organizationName"), NameOID.ORGANIZATION_NAME, 64),
    (("OU", "organizationalUnitName"), NameOID.ORGANIZATIONAL_UNIT_NAME, 64),
    (("L", "localityName"), NameOID.LOCALITY_NAME, 128),
    (("ST", "stateOrProvinceName"), NameOID.STATE_OR_PROVINCE_NAME, 128),
    (("C", "countryName"), NameOID.COUNTRY_NAME, 2),
)
# The old CA's policy section, in its order: `openssl ca` (apps/ca.c do_body)
# writes, for each policy field in turn, every matching attribute of the
# request in the order sent. Every OID of _ATTRIBUTE_TABLE is in it.
POLICY_ORDER: tuple[ObjectIdentifier, ...] = (
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
    NameOID.EMAIL_ADDRESS,
)
_POLICY_POSITION = {oid: i for i, oid in enumerate(POLICY_ORDER)}
# name -> (OID, X.520 upper bound in characters)
_ATTRS: dict[str, tuple[ObjectIdentifier, int]] = {
    name: (oid, bound) for names, oid, bound in _ATTRIBUTE_TABLE for name in names
}

_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2})?")
_SPKAC_NAME = re.compile(r"^(?:[0-9]{1,3}\.)?([A-Za-z]{1,40})$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def parse_subject(payload3: bytes) -> x509.Name:
    """Parse ``/name=value/...`` with ``\\xNN`` escapes; raise Refusal('bad-subject')."""
    if len(payload3) > MAX_SUBJECT_BYTES:
        raise Refusal("bad-subject", f"subject longer than {MAX_SUBJECT_BYTES} bytes")
    if not payload3.startswith(b"/"):
        raise Refusal("bad-subject", "subject must start with '/'")
    pairs = []
    for i, part in enumerate(payload3[1:].split(b"/"), 1):
        name, sep, raw = part.partition(b"=")
        if not sep:
            raise Refusal("bad-subject", f"attribute {i}: no '='")
        pairs.append((i, name, _unescape(i, raw)))
    return _build(pairs)


def parse_spkac_subject(lines: Iterable[bytes]) -> x509.Name:
    """Parse SPKAC ``name = value`` lines (names may carry an ``N.`` prefix)."""
    pairs = []
    for i, line in enumerate(lines, 1):
        name, sep, value = line.partition(b"=")
        if not sep:
            raise Refusal("bad-subject", f"SPKAC line {i}: no '='")
        match = _SPKAC_NAME.match(name.strip().decode("ascii", "replace"))
        if match is None:
            raise Refusal("bad-subject", f"SPKAC line {i}: bad attribute name")
        pairs.append((i, match.group(1).encode(), value.strip(b" ")))
    return _build(pairs)


def policy_order(name: x509.Name) -> x509.Name:
    """``name`` (one attribute per RDN, as the parsers make it) in POLICY_ORDER.

    A stable sort, so repeated attributes (several OUs) keep the order sent,
    as ``openssl ca`` keeps them.
    """
    return x509.Name(sorted(name.rdns, key=_policy_position))


def _policy_position(rdn: x509.RelativeDistinguishedName) -> int:
    (attribute,) = rdn
    return _POLICY_POSITION[attribute.oid]


def _unescape(index: int, raw: bytes) -> bytes:
    def repl(m: re.Match[bytes]) -> bytes:
        if m.group(1) is None:
            raise Refusal("bad-subject", f"attribute {index}: bad escape (only \\xNN)")
        return bytes([int(m.group(1)[1:], 16)])

    return _ESCAPE.sub(repl, raw)


def _build(pairs: list[tuple[int, bytes, bytes]]) -> x509.Name:
    if not pairs:
        raise Refusal("bad-subject", "empty subject")
    if len(pairs) > MAX_ATTRIBUTES:
        raise Refusal("bad-subject", f"more than {MAX_ATTRIBUTES} attributes")
    attrs = [_attribute(i, name, value) for i, name, value in pairs]
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attrs])


def _attribute(index: int, raw_name: bytes, raw_value: bytes) -> x509.NameAttribute[str]:
    name = raw_name.decode("ascii", "replace")
    if name not in _ATTRS:
        raise Refusal("bad-subject", f"attribute {index}: unknown name {name[:30]!r}")
    oid, bound = _ATTRS[name]
    try:
        value = raw_value.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal("bad-subject", f"{name}: not UTF-8") from None
    if not value.strip():
        raise Refusal("bad-subject", f"{name}: empty value")
    if value != value.strip(" "):
        raise Refusal("bad-subject", f"{name}: leading or trailing space")
    ch = bad_character(value, FORBIDDEN)
    if ch is not None:
        raise Refusal("bad-subject", f"{name}: forbidden character U+{ord(ch):04X}")
    if len(value) > bound:
        raise Refusal("bad-subject", f"{name}: longer than {bound} characters")
    if oid == NameOID.COMMON_NAME and len(value.encode("utf-8")) > bound:
        # cryptography 42+ counts a commonName's bound in UTF-8 bytes
        raise Refusal("bad-subject", f"{name}: longer than {bound} bytes in UTF-8")
    if oid == NameOID.COUNTRY_NAME and not _COUNTRY.match(value):
        raise Refusal("bad-subject", f"{name}: not two capital letters")
    if oid == NameOID.EMAIL_ADDRESS and not is_email(value):
        raise Refusal("bad-subject", f"{name}: not a valid e-mail address")
    return x509.NameAttribute(oid, value)
