"""The bodies of link protocol v2's request and answer frames.

Pure data code, no I/O, on the untrusted side: the comm handler decodes
request bodies from the cable and encodes answers; the web host's client and
bridge do the reverse. Decoding trusts nothing: every length is bounded by
what is left of the body, the whole body by the caller's limit (v1's, by
default), and any inconsistency raises ``FrameError``.

Request body (integers big-endian)::

    kind (1) | root (1) | profile (1) | md (1) | days (2) | flags (1: bit 0 SPKAC)
    | 3 x (length (3) | payload)

Answer body::

    kind (1) | error code (2, 0 = done) | length (3) | payload | length (2) | text

Why a fixed layout of our own and not CBOR: every field has one size and one
place, so the parser is a dozen bounded slices that cannot recurse, nest or
allocate beyond the body it was given, and no decoder library joins the
comm handler's attack surface. The fields are v1's, so a v1 request maps onto
a v2 one and back without loss (the bridge does that), and the spool
carries a v2 request as a version-2 header with the request id beside it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from comm_handler.frames import FrameError
from spool import codes
from spool.header import VERSION_2, Action, HeaderError, RequestHeader, System
from spool.record import error_payload, parse_error

MAX_BODY = 2**24 - 1  # v1's whole-message limit, kept for v2's bodies
MAX_TEXT = 1000  # bytes of a refusal's text: as the comm handler cuts v1's payload 2
_REQUEST_FIXED = 7


class Kind(enum.IntEnum):
    NUL = 0
    SIGN_X509 = 1
    SIGN_OPENPGP = 2
    REVOKE_X509 = 3
    STATUS = 4
    AUDIT = 5  # reserved for the audit log exchange


KIND_ACTIONS: dict[Kind, tuple[Action, System]] = {
    Kind.NUL: (Action.NUL, System.NONE),
    Kind.SIGN_X509: (Action.SIGN, System.X509),
    Kind.SIGN_OPENPGP: (Action.SIGN, System.OPENPGP),
    Kind.REVOKE_X509: (Action.REVOKE, System.X509),
    Kind.STATUS: (Action.STATUS, System.NONE),
    Kind.AUDIT: (Action.AUDIT, System.NONE),
}
"""Each v2 kind as the (action, system) of the spool header the signer dispatches on."""

_ACTION_KINDS = {pair: kind for kind, pair in KIND_ACTIONS.items()}


def _kind(value: int) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise FrameError(f"unknown request kind {value}") from None


@dataclass(frozen=True)
class V2Request:
    kind: Kind
    root: int = 0
    profile: int = 0
    md: int = 0
    days: int = 0
    spkac: bool = False
    payloads: tuple[bytes, bytes, bytes] = (b"", b"", b"")

    def header(self) -> RequestHeader:
        """The version-2 spool header of this request; ``HeaderError`` if a field is out of range."""
        action, system = KIND_ACTIONS[self.kind]
        return RequestHeader(
            version=VERSION_2,
            action=action,
            system=system,
            root=self.root,
            profile=self.profile,
            md=self.md,
            days=self.days,
            spkac=self.spkac,
        )

    @classmethod
    def from_v1(cls, header: RequestHeader, payloads: tuple[bytes, bytes, bytes]) -> V2Request:
        """The v2 form of a v1 request (the bridge's mapping); ``HeaderError`` if it has none."""
        kind = _ACTION_KINDS.get((header.action, header.system))
        if kind is None:
            raise HeaderError(f"action {header.action} for system {header.system} has no v2 kind")
        return cls(
            kind, header.root, header.profile, header.md, header.days, header.spkac, payloads
        )


@dataclass(frozen=True)
class V2Answer:
    kind: Kind
    code: int = codes.OK
    payload: bytes = b""
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.code == codes.OK

    @classmethod
    def from_result(cls, kind: Kind, payload1: bytes, payload2: bytes) -> V2Answer:
        """A v1-style result (payload 1, ``ERR <code>: <text>`` or empty payload 2) as an answer."""
        error = parse_error(payload2)
        if error is None:
            return cls(kind, codes.OK, payload1)
        name, text = error
        return cls(kind, codes.number_of(name), payload1, text)

    def v1_payloads(self) -> tuple[bytes, bytes]:
        """Payloads 1 and 2 of the v1 response this answer stands for (the bridge's mapping)."""
        if self.ok:
            return self.payload, b""
        return self.payload, error_payload(codes.name_of(self.code), self.text)


def _l(data: bytes, size: int) -> bytes:
    if len(data) >= 1 << (8 * size):
        raise FrameError(f"a field of {len(data)} bytes does not fit a {size}-byte length")
    return len(data).to_bytes(size, "big") + data


def encode_request(request: V2Request) -> bytes:
    """The body of a request frame; ``FrameError`` if a field is out of range."""
    try:
        request.header()
    except HeaderError as exc:
        raise FrameError(str(exc)) from None
    fixed = bytes([request.kind, request.root, request.profile, request.md])
    fixed += request.days.to_bytes(2, "big") + bytes([int(request.spkac)])
    body = fixed + b"".join(_l(p, 3) for p in request.payloads)
    if len(body) > MAX_BODY:
        raise FrameError(f"a request body of {len(body)} bytes is over {MAX_BODY}")
    return body


def encode_answer(answer: V2Answer) -> bytes:
    """The body of an answer frame; ``FrameError`` if a field is out of range."""
    if not 0 <= answer.code <= 0xFFFF:
        raise FrameError(f"error code {answer.code} does not fit 16 bits")
    text = answer.text.encode("utf-8")[:MAX_TEXT]
    return (
        bytes([answer.kind]) + answer.code.to_bytes(2, "big") + _l(answer.payload, 3) + _l(text, 2)
    )


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise FrameError("body truncated")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def field(self, size: int) -> bytes:
        return self.take(int.from_bytes(self.take(size), "big"))

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise FrameError(f"{len(self.data) - self.pos} stray bytes after the body")


def decode_request(body: bytes, max_body: int = MAX_BODY) -> V2Request:
    """A request body, every field checked; ``FrameError`` says what is wrong."""
    if len(body) > max_body:
        raise FrameError(f"a request body of {len(body)} bytes is over {max_body}")
    cursor = _Cursor(body)
    fixed = cursor.take(_REQUEST_FIXED)
    if fixed[6] > 1:
        raise FrameError(f"unknown request flags {fixed[6]:#04x}")
    payloads = (cursor.field(3), cursor.field(3), cursor.field(3))
    cursor.finish()
    kind = _kind(fixed[0])
    days = int.from_bytes(fixed[4:6], "big")
    return V2Request(kind, fixed[1], fixed[2], fixed[3], days, bool(fixed[6]), payloads)


def decode_answer(body: bytes, max_body: int = MAX_BODY) -> V2Answer:
    """An answer body, every field checked; ``FrameError`` says what is wrong."""
    if len(body) > max_body + 3 + 2 + MAX_TEXT:
        raise FrameError(f"an answer body of {len(body)} bytes is over the limit")
    cursor = _Cursor(body)
    kind = _kind(cursor.take(1)[0])
    code = int.from_bytes(cursor.take(2), "big")
    payload = cursor.field(3)
    text = cursor.field(2)
    cursor.finish()
    if len(text) > MAX_TEXT:
        raise FrameError(f"an answer text of {len(text)} bytes is over {MAX_TEXT}")
    return V2Answer(kind, code, payload, text.decode("utf-8", "replace"))
