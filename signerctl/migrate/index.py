"""OpenSSL ``ca`` database text: reading and writing ``index.txt`` lines.

Trusted side tooling, run by an operator migrating from (or exporting for)
the old OpenSSL-based signer. The index comes from the old CA's disk: it is
the operator's data, but years old and hand-edited at times, so every line is
parsed strictly and a bad one is refused with its line number, never guessed.

A line is six tab-separated fields, as ``openssl ca`` writes them:
status (V, R or E), expiry (UTCTime ``YYMMDDHHMMSSZ`` or GeneralizedTime),
revocation ``date[,reason[,argument]]`` (empty unless R), serial (hex), file
name (``unknown``) and subject in ``X509_NAME_oneline`` form
(``/C=AU/O=.../CN=...``). ``oneline`` reproduces that last form from a
certificate's DER subject so entries can be checked against certificates and
written back for ``openssl ca``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509

MAX_LINE = 64 * 1024
_UTC = dt.UTC
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,40}")
_TIME = re.compile(r"(\d{12}|\d{14})Z")

# OpenSSL's names for the revocation reasons it stores in the index.
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "CACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "removeFromCRL": x509.ReasonFlags.remove_from_crl,
}
REASON_NAMES = {flag: name for name, flag in REASONS.items()}
# Reasons that OpenSSL stores with an argument: a hold instruction or an invalidity date.
_WITH_ARGUMENT = {"certificateHold", "keyCompromise", "CACompromise"}


class IndexLineError(ValueError):
    """One index line cannot be read; the message says why."""


@dataclass(frozen=True)
class IndexEntry:
    line: int
    status: str  # "V", "R" or "E"
    expires: dt.datetime
    revoked_at: dt.datetime | None
    reason: x509.ReasonFlags | None
    reason_argument: str  # hold instruction or invalidity date, not carried over
    serial: int
    serial_hex: str  # as written in the index, for file names
    filename: str
    subject: str


def parse_time(text: str) -> dt.datetime:
    """An ASN.1 UTCTime (RFC 5280 century rule) or GeneralizedTime as OpenSSL writes them."""
    if not _TIME.fullmatch(text):
        raise IndexLineError(f"bad time {text!r}")
    digits = text[:-1]
    if len(digits) == 12:
        year = int(digits[:2])
        digits = f"{year + (1900 if year >= 50 else 2000)}{digits[2:]}"
    try:  # not strptime: this runs once or twice per line of a million-line index
        return dt.datetime(
            int(digits[:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
            tzinfo=_UTC,
        )
    except ValueError:
        raise IndexLineError(f"bad time {text!r}") from None


def format_time(when: dt.datetime) -> str:
    """The inverse of ``parse_time``: UTCTime through 2049, GeneralizedTime after."""
    when = when.astimezone(_UTC)
    if 1950 <= when.year < 2050:
        return when.strftime("%y%m%d%H%M%SZ")
    return f"{when.year:04d}{when:%m%d%H%M%S}Z"


def _revocation(field: str) -> tuple[dt.datetime, x509.ReasonFlags | None, str]:
    parts = field.split(",", 2)
    when = parse_time(parts[0])
    if len(parts) == 1:
        return when, None, ""
    if parts[1] not in REASONS:
        raise IndexLineError(f"unknown revocation reason {parts[1]!r}")
    argument = parts[2] if len(parts) == 3 else ""
    if argument and parts[1] not in _WITH_ARGUMENT:
        raise IndexLineError(f"reason {parts[1]} takes no argument")
    return when, REASONS[parts[1]], argument


def parse_line(number: int, text: str) -> IndexEntry:
    """One index line (without its newline); IndexLineError says what is wrong."""
    if len(text) > MAX_LINE:
        raise IndexLineError(f"line longer than {MAX_LINE} characters")
    fields = text.split("\t")
    if len(fields) != 6:
        raise IndexLineError(f"{len(fields)} tab-separated fields, expected 6")
    status, expiry, revocation, serial, filename, subject = fields
    if status not in ("V", "R", "E"):
        raise IndexLineError(f"unknown status {status!r}")
    if not _SERIAL.fullmatch(serial):
        raise IndexLineError(f"bad serial {serial!r}")
    revoked_at, reason, argument = None, None, ""
    if status == "R":
        revoked_at, reason, argument = _revocation(revocation)
    elif revocation:
        raise IndexLineError(f"status {status} with a revocation field")
    if not subject.startswith("/"):
        raise IndexLineError("subject is not in /NAME=value form")
    return IndexEntry(
        number,
        status,
        parse_time(expiry),
        revoked_at,
        reason,
        argument,
        int(serial, 16),
        serial,
        filename,
        subject,
    )


def serial_hex(serial: int) -> str:
    """The index's spelling of a serial: uppercase hex, an even number of digits."""
    text = format(serial, "X")
    return text if len(text) % 2 == 0 else "0" + text


def format_line(
    status: str,
    expires: dt.datetime,
    revoked_at: dt.datetime | None,
    reason: x509.ReasonFlags | None,
    serial: int,
    subject: str,
) -> str:
    revocation = ""
    if revoked_at is not None:
        revocation = format_time(revoked_at)
        if reason is not None:
            revocation += "," + REASON_NAMES[reason]
    return "\t".join(
        (status, format_time(expires), revocation, serial_hex(serial), "unknown", subject)
    )


# -- X509_NAME_oneline ----------------------------------------------------

# OpenSSL's short names (objects.txt) for the attributes seen in subjects.
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.51": "houseIdentifier",
    "2.5.4.72": "role",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
}
_GENERAL_STRING = 0x1B


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each DER element in ``data``."""
    items, i = [], 0
    while i < len(data):
        tag, length = data[i], data[i + 1]
        i += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[i : i + size], "big")
            i += size
        items.append((tag, data[i : i + length]))
        i += length
    return items


def _oid_text(body: bytes) -> str:
    arcs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _escape(tag: int, value: bytes) -> str:
    """OpenSSL's escaping: bytes outside space..tilde as \\xHH."""
    keep = [True] * len(value)
    if tag == _GENERAL_STRING and len(value) % 4 == 0:
        # X509_NAME_oneline prints only every fourth byte of a GeneralString
        # whose other bytes are all zero (a disguised UniversalString).
        wide = any(value[j] for j in range(len(value)) if j % 4 != 3)
        keep = [wide or j % 4 == 3 for j in range(len(value))]
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02X}"
        for b, k in zip(value, keep, strict=True)
        if k
    )


def oneline(name_der: bytes) -> str:
    """The subject as ``X509_NAME_oneline`` writes it (``openssl ca`` index form)."""
    out = []
    ((_, rdns),) = _der_items(name_der)
    for _, rdn in _der_items(rdns):
        for _, atv in _der_items(rdn):
            (_, oid), (tag, value) = _der_items(atv)[:2]
            dotted = _oid_text(oid)
            out.append(f"/{_SHORT_NAMES.get(dotted, dotted)}={_escape(tag, value)}")
    return "".join(out)
