"""Parse payload 2 of a Sign X.509 request: subjectAltName entries.

Trusted side, hostile input: payload 2 comes over the link from the web host
through the spool. The syntax is OpenSSL's configuration syntax, comma
separated: ``DNS:``, ``email:``, ``IP:``, ``URI:`` and the XMPP address
``otherName:1.3.6.1.5.5.7.8.5;UTF8:...``. Nothing else is accepted; every
value is validated, and the deployed server's forbidden characters are
refused. Each refusal names the offending entry.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from signer_core.refusal import Refusal

MAX_SAN_BYTES = 16384
MAX_SAN_ENTRIES = 100
MAX_DNS = 253
MAX_EMAIL = 254
MAX_URI = 1024
MAX_JID_BYTES = 1023
XMPP_OID = "1.3.6.1.5.5.7.8.5"
FORBIDDEN = frozenset(" \t\r\n\0#\"'\\")

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_LOCAL = re.compile(r"^[A-Za-z0-9!$%&*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!$%&*+/=?^_`{|}~-]+)*$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[!-~]+$")
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def is_dns_name(name: str, wildcard: bool = False) -> bool:
    """LDH host name of at least two labels, optionally starting ``*.``."""
    if wildcard and name.startswith("*."):
        name = name[2:]
    if not 0 < len(name) <= MAX_DNS:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def is_email(addr: str) -> bool:
    """An ASCII mailbox ``local@domain`` (dot-atom local part, DNS domain)."""
    if len(addr) > MAX_EMAIL or addr.count("@") != 1:
        return False
    local, domain = addr.split("@")
    return len(local) <= 64 and bool(_LOCAL.match(local)) and is_dns_name(domain)


def bad_character(text: str, forbidden: frozenset[str]) -> str | None:
    """The first forbidden or control/format character of ``text``, if any."""
    for ch in text:
        if ch in forbidden or unicodedata.category(ch) in _BAD_CATEGORIES:
            return ch
    return None


def parse_san(payload2: bytes) -> list[x509.GeneralName]:
    """Return the general names of payload 2 in order, or raise Refusal('bad-san')."""
    if not payload2:
        return []
    if len(payload2) > MAX_SAN_BYTES:
        raise Refusal("bad-san", f"subjectAltName list longer than {MAX_SAN_BYTES} bytes")
    try:
        text = payload2.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal("bad-san", f"not UTF-8 at byte {exc.start}") from None
    entries = text.split(",")
    if len(entries) > MAX_SAN_ENTRIES:
        raise Refusal("bad-san", f"more than {MAX_SAN_ENTRIES} subjectAltName entries")
    return [_entry(i, e) for i, e in enumerate(entries, 1)]


def _entry(index: int, entry: str) -> x509.GeneralName:
    ch = bad_character(entry, FORBIDDEN)
    if ch is not None:
        raise Refusal("bad-san", f"entry {index}: forbidden character U+{ord(ch):04X}")
    kind, sep, value = entry.partition(":")
    parse = _PARSERS.get(kind.lower()) if sep else None
    if parse is None:
        raise Refusal("bad-san", f"entry {index}: unsupported type {kind[:20]!r}")
    name = parse(value)
    if name is None:
        raise Refusal("bad-san", f"entry {index}: invalid {kind} value {value[:60]!r}")
    return name


def _dns(value: str) -> x509.GeneralName | None:
    return x509.DNSName(value) if is_dns_name(value, wildcard=True) else None


def _email(value: str) -> x509.GeneralName | None:
    return x509.RFC822Name(value) if is_email(value) else None


def _ip(value: str) -> x509.GeneralName | None:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return None


def _uri(value: str) -> x509.GeneralName | None:
    ok = len(value) <= MAX_URI and _URI.match(value)
    return x509.UniformResourceIdentifier(value) if ok else None


def _other(value: str) -> x509.GeneralName | None:
    oid, sep, rest = value.partition(";")
    kind, sep2, jid = rest.partition(":")
    if oid != XMPP_OID or not sep or not sep2 or kind.upper() not in ("UTF8", "UTF8STRING"):
        return None
    if not is_jid(jid):
        return None
    return x509.OtherName(ObjectIdentifier(XMPP_OID), asn1.UTF8String(jid).dump())


_JID_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")  # RFC 6122 2.4, plus the separators


def is_jid(jid: str) -> bool:
    """A bare XMPP address ``[local@]domain``: no resource part, DNS domain."""
    if not jid or len(jid.encode("utf-8")) > MAX_JID_BYTES or "/" in jid:
        return False
    local, at, domain = jid.rpartition("@")
    if at and (not local or any(c in _JID_LOCAL_FORBIDDEN for c in local)):
        return False
    return is_dns_name(domain)


_PARSERS = {"dns": _dns, "email": _email, "ip": _ip, "uri": _uri, "othername": _other}
