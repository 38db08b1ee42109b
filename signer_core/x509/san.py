"""Parse payload 2 of a Sign X.509 request: subjectAltName entries.

Trusted side, hostile input: payload 2 comes over the link from the web host
through the spool. The syntax is OpenSSL's configuration syntax, comma
separated: ``DNS:``, ``email:``, ``IP:``, ``URI:`` and the XMPP address
``otherName:1.3.6.1.5.5.7.8.5;UTF8:...``. Nothing else is accepted; every
value is validated, and the deployed server's forbidden characters are
refused. Each refusal names the offending entry.

Name rules, with their refusal codes (``bad-san`` unless said otherwise):

- A host name (a dNSName, the domain of an e-mail address or of an XMPP
  address) is at most 253 characters of at least two LDH labels.
- It is never an IP address literal (``dns-ip-literal``): neither a text
  ``ipaddress`` parses (``10.0.0.1``) nor a name whose rightmost label is all
  digits, since no top-level domain is numeric. Such a name is an address
  smuggled past the ``IP:`` rules, which a client may still connect to.
- A label starting ``xn--`` (any case) is an A-label and must be valid IDNA
  2008 (``bad-idna``): the ``idna`` library decodes it, and encoding the
  result gives the same label back. The check is the library's, not our own
  Punycode code; it runs only on labels already known to be LDH and at most
  63 characters, so its cost is bounded.
- A dNSName may be a wildcard only as the whole leftmost label with at least
  two labels after it: ``*.example.org``, never ``a*.example.org``,
  ``foo.*.example.org``, ``*.*.example.org`` or ``*.org``. Offline there is
  no public-suffix list, so ``*.co.uk`` cannot be told from ``*.example.org``:
  two labels is the whole check. Whether a profile takes wildcards at all is
  the issuer's decision (``names.certificate_names``), not the parser's.
- An IPv6 address with a zone id (``fe80::1%eth0``) is refused: Python's
  ``ipaddress`` (3.9+) accepts scope ids, but an iPAddress has no room for
  one and the certificate would not say what was asked.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna
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


def check_dns_name(name: str, wildcard: bool = False) -> None:
    """Raise Refusal unless ``name`` is a host name by the module's rules;
    with ``wildcard``, ``*.`` may start it. The text says what is wrong."""
    if not 0 < len(name) <= MAX_DNS:
        raise Refusal("bad-san", f"is invalid: not 1-{MAX_DNS} characters")
    if _is_ip_address(name):
        raise Refusal("dns-ip-literal", "is an IP address, not a host name")
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        if len(labels) < 3:
            raise Refusal("bad-san", "is invalid: a wildcard needs two labels after it")
        labels = labels[1:]
    if wildcard and any("*" in label for label in labels):
        raise Refusal("bad-san", "is invalid: a wildcard must be the whole leftmost label")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise Refusal("bad-san", "is invalid")
    if labels[-1].isdigit():
        raise Refusal("dns-ip-literal", "ends in a numeric label, as an IP address does")
    for label in labels:
        if label[:4].lower() == "xn--" and not _is_a_label(label):
            raise Refusal("bad-idna", f"has label {label!r}, which is not valid IDNA")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_a_label(label: str) -> bool:
    """Whether the LDH label ``label`` is a valid IDNA 2008 A-label. The round
    trip matters: idna 3.3 (Debian 12) decodes non-canonical Punycode such as
    ``xn---bbk``, a second spelling of ``xn--bbk``, which newer releases
    refuse themselves; two spellings of one name must not both be certified."""
    try:
        return idna.encode(idna.decode(label)) == label.lower().encode("ascii")
    except idna.IDNAError:
        return False


def check_email(addr: str) -> None:
    """Raise Refusal unless ``addr`` is an ASCII mailbox ``local@domain``
    (dot-atom local part, host name domain)."""
    if len(addr) > MAX_EMAIL or addr.count("@") != 1:
        raise Refusal("bad-san", "is invalid")
    local, domain = addr.split("@")
    if len(local) > 64 or not _LOCAL.match(local):
        raise Refusal("bad-san", "is invalid")
    _check_domain(domain)


def _check_domain(domain: str) -> None:
    """``check_dns_name`` for the domain of an address, saying it is the domain."""
    try:
        check_dns_name(domain)
    except Refusal as exc:
        raise Refusal(exc.code, f"has a domain that {exc.text}") from None


def is_email(addr: str) -> bool:
    """Whether ``addr`` passes ``check_email``."""
    try:
        check_email(addr)
    except Refusal:
        return False
    return True


def bad_character(text: str, forbidden: frozenset[str]) -> str | None:
    """The first forbidden or control/format character of ``text``, if any."""
    for ch in text:
        if ch in forbidden or unicodedata.category(ch) in _BAD_CATEGORIES:
            return ch
    return None


def parse_san(payload2: bytes) -> list[x509.GeneralName]:
    """Return the general names of payload 2 in order, or raise Refusal with
    the code of the first rule an entry breaks (see the module docstring)."""
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
    try:
        return parse(value)
    except Refusal as exc:  # the parsers say what is wrong, this says where
        raise Refusal(exc.code, f"entry {index}: {kind} value {value[:60]!r} {exc.text}") from None


def _dns(value: str) -> x509.GeneralName:
    check_dns_name(value, wildcard=True)
    return x509.DNSName(value)


def _email(value: str) -> x509.GeneralName:
    check_email(value)
    return x509.RFC822Name(value)


def _ip(value: str) -> x509.GeneralName:
    if "%" in value:  # ipaddress would keep the zone id, the certificate could not
        raise Refusal("bad-san", "is invalid: zone ids are not allowed")
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        raise Refusal("bad-san", "is invalid") from None


def _uri(value: str) -> x509.GeneralName:
    if len(value) > MAX_URI or not _URI.match(value):
        raise Refusal("bad-san", "is invalid")
    return x509.UniformResourceIdentifier(value)


def _other(value: str) -> x509.GeneralName:
    oid, sep, rest = value.partition(";")
    kind, sep2, jid = rest.partition(":")
    if oid != XMPP_OID or not sep or not sep2 or kind.upper() not in ("UTF8", "UTF8STRING"):
        raise Refusal("bad-san", "is invalid")
    check_jid(jid)
    return x509.OtherName(ObjectIdentifier(XMPP_OID), asn1.UTF8String(jid).dump())


def xmpp_address(name: x509.OtherName) -> str:
    """The address of an XMPP otherName made by ``parse_san``."""
    return str(asn1.UTF8String.load(name.value).native)


_JID_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")  # RFC 6122 2.4, plus the separators


def check_jid(jid: str) -> None:
    """Raise Refusal unless ``jid`` is a bare XMPP address ``[local@]domain``:
    no resource part, host name domain."""
    if not jid or len(jid.encode("utf-8")) > MAX_JID_BYTES or "/" in jid:
        raise Refusal("bad-san", "is invalid")
    local, at, domain = jid.rpartition("@")
    if at and (not local or any(c in _JID_LOCAL_FORBIDDEN for c in local)):
        raise Refusal("bad-san", "is invalid")
    _check_domain(domain)


_PARSERS = {"dns": _dns, "email": _email, "ip": _ip, "uri": _uri, "othername": _other}
