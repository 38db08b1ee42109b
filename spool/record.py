"""On-disk record format of spool requests and results.

Shared by both sides, no policy. The signer decodes files written by the comm
handler (untrusted) and the comm handler decodes files written by the signer;
the decoder therefore trusts nothing: every length is bounded before use,
the record must end exactly where its framing says, and any inconsistency is
a ``SpoolFormatError``. Nothing is ever executed on load (no pickle, no eval).

Layout (all integers big-endian)::

    magic "SGSP" | version 1 | kind ("Q" request, "R" result, "D" receipt)
             | id (53 ASCII)
    request: received_at (IEEE double) | flags (bit 0 = reply, bit 1 = link id)
             | [link id (16), a v2 request's] | header (9) | 3 x (L3 length | payload)
    result:  action (1) | 2 x (L3 length | payload)
    receipt: delivered request id (53 ASCII)
    end marker "\\0END" | SHA-256 of everything before it, end marker included

A delivery receipt is the comm handler's word that the web host ACKed the
response frame that carried a request's result. It travels the way requests
do (comm writes only to incoming/), so the comm side never writes results.
The signer believes a receipt only as far as it goes: a forged one can make
a later identical request count as new, never make the signer issue what a
request could not get it to issue anyway.

A request that came over link protocol v2 carries the web host's request
id (``link_id``): the signer's retry rule keys v2 requests on it.

The SHA-256 is a checksum against torn or edited files, not a MAC: the comm
handler can compute it too. Authenticity comes from directory permissions.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import struct
from dataclasses import dataclass

MAGIC = b"SGSP"
VERSION = 1
KIND_REQUEST = ord("Q")
KIND_RESULT = ord("R")
KIND_RECEIPT = ord("D")
END_MARKER = b"\x00END"
DIGEST_SIZE = 32
MAX_PAYLOAD = 2**24 - 1
HEADER_SIZE = 9
ID_SIZE = 53
LINK_ID_SIZE = 16
FLAG_REPLY = 0x01
FLAG_LINK_ID = 0x02

ID_PATTERN = re.compile(r"[0-9]{20}-[0-9a-f]{32}")

_PREFIX = len(MAGIC) + 2 + ID_SIZE
_TRAILER = len(END_MARKER) + DIGEST_SIZE
_DOUBLE = struct.Struct(">d")
MAX_REQUEST_SIZE = _PREFIX + 8 + 1 + LINK_ID_SIZE + HEADER_SIZE + 3 * (3 + MAX_PAYLOAD) + _TRAILER
MAX_RESULT_SIZE = _PREFIX + 1 + 2 * (3 + MAX_PAYLOAD) + _TRAILER
RECEIPT_SIZE = _PREFIX + ID_SIZE + _TRAILER
# The largest answer the comm handler can send: a v1 response is one L3
# string holding four L3 strings (4-byte header, payload 1, payload 2, empty
# payload 3), so payload 1 and payload 2 share 2**24 - 1 less 16 bytes. Both
# sides use this one figure: the signer refuses a larger answer before it
# commits it, and the comm handler never meets one.
MAX_ANSWER = MAX_PAYLOAD - 4 * 3 - 4


class SpoolFormatError(ValueError):
    """A record that cannot be encoded or decoded (torn, edited, oversized...)."""


@dataclass(frozen=True)
class Request:
    id: str  # file stem, "<time_ns:020d>-<uuid4 hex>"
    received_at: float  # time.time() when comm had the whole frame
    header: bytes  # 9 bytes, as received
    payloads: tuple[bytes, bytes, bytes]
    reply: bool  # False for NUL: comm does not wait for a result
    link_id: bytes | None = None  # a v2 request's id, chosen by the web host


@dataclass(frozen=True)
class Result:
    id: str
    action: int
    payload1: bytes
    payload2: bytes  # b"" or b"ERR <code>: <text>"


@dataclass(frozen=True)
class Receipt:
    id: str  # the receipt's own spool id (sorts it after the request it names)
    request_id: str  # the request whose result the web host ACKed


def error_payload(code: str, text: str) -> bytes:
    """Payload 2 of a refusal, as both daemons send it: ``ERR <code>: <text>``."""
    return f"ERR {code}: {text}".encode("utf-8", "replace")


def parse_error(payload2: bytes) -> tuple[str, str] | None:
    """(name, text) of a refusal's payload 2, ``ERR <name>: <text>``; None if it is not one."""
    if not payload2.startswith(b"ERR "):
        return None
    name, sep, text = payload2[4:].decode("utf-8", "replace").partition(": ")
    return (name, text) if sep and name else None


def is_valid_id(value: object) -> bool:
    """True if ``value`` is a spool id ``<time_ns:020d>-<32 hex>``."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def _check_id(value: object) -> bytes:
    if not isinstance(value, str) or not is_valid_id(value):
        raise SpoolFormatError(f"bad id {value!r:.80}")
    return value.encode("ascii")


def _l3(payload: object) -> bytes:
    if not isinstance(payload, bytes):
        raise SpoolFormatError(f"payload must be bytes, not {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD:
        raise SpoolFormatError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return len(payload).to_bytes(3, "big") + payload


def _seal(kind: int, record_id: object, body: list[bytes]) -> bytes:
    data = b"".join([MAGIC, bytes([VERSION, kind]), _check_id(record_id), *body, END_MARKER])
    return data + hashlib.sha256(data).digest()


def encode_request(request: Request) -> bytes:
    """Serialize ``request``; ``SpoolFormatError`` if a field is out of range."""
    at = request.received_at
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        raise SpoolFormatError(f"bad received_at {at!r:.40}")
    header = request.header
    if not isinstance(header, bytes) or len(header) != HEADER_SIZE:
        raise SpoolFormatError(f"header must be {HEADER_SIZE} bytes")
    payloads = request.payloads
    if not isinstance(payloads, tuple) or len(payloads) != 3:
        raise SpoolFormatError("a request has exactly three payloads")
    if not isinstance(request.reply, bool):
        raise SpoolFormatError("reply must be a bool")
    link_id = request.link_id
    if link_id is not None and (not isinstance(link_id, bytes) or len(link_id) != LINK_ID_SIZE):
        raise SpoolFormatError(f"a link id is {LINK_ID_SIZE} bytes")
    flags = (FLAG_REPLY if request.reply else 0) | (FLAG_LINK_ID if link_id else 0)
    body = [_DOUBLE.pack(float(at)), bytes([flags]), link_id or b"", header]
    return _seal(KIND_REQUEST, request.id, body + [_l3(p) for p in payloads])


def encode_result(result: Result) -> bytes:
    """Serialize ``result``; ``SpoolFormatError`` if a field is out of range."""
    action = result.action
    if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action <= 255:
        raise SpoolFormatError(f"bad action {action!r:.40}")
    body = [bytes([action]), _l3(result.payload1), _l3(result.payload2)]
    return _seal(KIND_RESULT, result.id, body)


def encode_receipt(receipt: Receipt) -> bytes:
    """Serialize ``receipt``; ``SpoolFormatError`` if an id is malformed."""
    return _seal(KIND_RECEIPT, receipt.id, [_check_id(receipt.request_id)])


class _Reader:
    """A cursor over the record body that refuses to run past its end."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self._data = data
        self._pos = start
        self._end = end

    def take(self, n: int) -> bytes:
        if n > self._end - self._pos:
            raise SpoolFormatError("record truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def take_l3(self) -> bytes:
        return self.take(int.from_bytes(self.take(3), "big"))

    def finish(self) -> None:
        if self._pos != self._end:
            raise SpoolFormatError(f"{self._end - self._pos} stray bytes before end marker")


def _open(data: bytes, kind: int, max_size: int) -> tuple[str, _Reader]:
    """Check the envelope (size, magic, version, kind, checksum); return id and body."""
    if not isinstance(data, bytes):
        raise SpoolFormatError(f"record must be bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise SpoolFormatError(f"record of {len(data)} bytes exceeds {max_size}")
    if len(data) < _PREFIX + _TRAILER:
        raise SpoolFormatError(f"record of {len(data)} bytes is too short")
    if data[: len(MAGIC)] != MAGIC:
        raise SpoolFormatError("bad magic")
    if data[len(MAGIC)] != VERSION:
        raise SpoolFormatError(f"unsupported version {data[len(MAGIC)]}")
    if data[len(MAGIC) + 1] != kind:
        raise SpoolFormatError(f"wrong record kind {data[len(MAGIC) + 1]:#04x}")
    sealed = data[:-DIGEST_SIZE]
    if not hmac.compare_digest(hashlib.sha256(sealed).digest(), data[-DIGEST_SIZE:]):
        raise SpoolFormatError("checksum mismatch")
    if not sealed.endswith(END_MARKER):
        raise SpoolFormatError("missing end marker")
    try:
        record_id = data[len(MAGIC) + 2 : _PREFIX].decode("ascii")
    except UnicodeDecodeError:
        raise SpoolFormatError("id is not ASCII") from None
    if not is_valid_id(record_id):
        raise SpoolFormatError(f"bad id {record_id!r}")
    return record_id, _Reader(data, _PREFIX, len(sealed) - len(END_MARKER))


def decode_request(data: bytes) -> Request:
    """Parse a request record; ``SpoolFormatError`` on any defect."""
    record_id, reader = _open(data, KIND_REQUEST, MAX_REQUEST_SIZE)
    (received_at,) = _DOUBLE.unpack(reader.take(8))
    if not math.isfinite(received_at):
        raise SpoolFormatError("received_at is not finite")
    flags = reader.take(1)[0]
    if flags & ~(FLAG_REPLY | FLAG_LINK_ID):
        raise SpoolFormatError(f"unknown flags {flags:#04x}")
    link_id = reader.take(LINK_ID_SIZE) if flags & FLAG_LINK_ID else None
    header = reader.take(HEADER_SIZE)
    payloads = (reader.take_l3(), reader.take_l3(), reader.take_l3())
    reader.finish()
    return Request(record_id, received_at, header, payloads, bool(flags & FLAG_REPLY), link_id)


def decode_result(data: bytes) -> Result:
    """Parse a result record; ``SpoolFormatError`` on any defect."""
    record_id, reader = _open(data, KIND_RESULT, MAX_RESULT_SIZE)
    action = reader.take(1)[0]
    payload1 = reader.take_l3()
    payload2 = reader.take_l3()
    reader.finish()
    return Result(record_id, action, payload1, payload2)


def decode_receipt(data: bytes) -> Receipt:
    """Parse a delivery receipt; ``SpoolFormatError`` on any defect."""
    record_id, reader = _open(data, KIND_RECEIPT, RECEIPT_SIZE)
    try:
        request_id = reader.take(ID_SIZE).decode("ascii")
    except UnicodeDecodeError:
        raise SpoolFormatError("delivered id is not ASCII") from None
    if not is_valid_id(request_id):
        raise SpoolFormatError(f"bad delivered id {request_id!r}")
    reader.finish()
    return Receipt(record_id, request_id)
