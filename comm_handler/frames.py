"""Messages and frames of the v1 link protocol (docs/protocol.md).

Pure data code, no I/O: the comm handler (untrusted side) uses it to cut
frames off the serial line, and the web host's client builds its
messages with it. The 9-byte request header that travels on into the
spool is spool.header's. Everything here treats its input as hostile: every length is
checked against the bytes actually present and against a limit, and every
inconsistency raises ``FrameError`` (never another exception, never a
truncation).

Wire format::

    L3(x)   = len(x) as 3 bytes big-endian || x         (len(x) <= 2**24 - 1)
    message = L3( L3(header) || L3(p1) || L3(p2) || L3(p3) )
    frame   = message || XOR(message) || b"rie4Ech7"
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from spool.header import VERSION
from spool.record import MAX_PAYLOAD

START = 0x02
READY = 0x10
ACK = 0x10
NAK = 0x11
TRAILER = b"rie4Ech7"
LEN_BYTES = 3
MAX_STRING = MAX_PAYLOAD  # one L3 string; the spool records use the same prefix
# Four inner length prefixes fill part of the outer string.
MAX_PAYLOAD_TOTAL = MAX_STRING - 4 * LEN_BYTES
XOR_BLOCK = 1 << 16  # a power of two


class FrameError(ValueError):
    """Bad message, frame or header: the protocol's own error type."""


@dataclass(frozen=True)
class Message:
    """One header and exactly three payloads (request or response)."""

    header: bytes
    payloads: tuple[bytes, bytes, bytes]

    def __post_init__(self) -> None:
        if not isinstance(self.header, bytes):
            raise FrameError("header must be bytes")
        if len(self.payloads) != 3 or not all(isinstance(p, bytes) for p in self.payloads):
            raise FrameError("a message has exactly three byte-string payloads")


def _l3(data: bytes) -> bytes:
    if len(data) > MAX_STRING:
        raise FrameError(f"string of {len(data)} bytes exceeds the {MAX_STRING}-byte limit")
    return len(data).to_bytes(LEN_BYTES, "big") + data


def encode_message(message: Message) -> bytes:
    """Serialise ``message``; FrameError if any string or the whole is too long."""
    inner = b"".join(_l3(part) for part in (message.header, *message.payloads))
    return _l3(inner)


def _read_l3(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + LEN_BYTES > len(data):
        raise FrameError(f"truncated length prefix at offset {pos}")
    length = int.from_bytes(data[pos : pos + LEN_BYTES], "big")
    start = pos + LEN_BYTES
    if start + length > len(data):
        raise FrameError(f"string at offset {pos} claims {length} bytes, {len(data) - start} left")
    return data[start : start + length], start + length


def decode_message(data: bytes) -> Message:
    """Parse exactly one message (outer length + four strings, nothing more)."""
    outer, end = _read_l3(data, 0)
    if end != len(data):
        raise FrameError(f"{len(data) - end} bytes after the message")
    parts = []
    pos = 0
    for _ in range(4):
        part, pos = _read_l3(outer, pos)
        parts.append(part)
    if pos != len(outer):
        raise FrameError(f"{len(outer) - pos} bytes after the fourth string")
    return Message(parts[0], (parts[1], parts[2], parts[3]))


def xor_checksum(data: bytes) -> int:
    """XOR of all bytes. Blocks are XORed as big integers, then the result is
    folded in halves down to one byte: 16 MiB takes milliseconds, not seconds.
    The folding starts at the result's own width (a power of two bytes), not
    the block's, so that a short message is not folded through 64 KiB wide
    masks: a keep-alive's frame is checked in a microsecond, not twenty."""
    view = memoryview(data)
    acc = 0
    for pos in range(0, len(view), XOR_BLOCK):
        acc ^= int.from_bytes(view[pos : pos + XOR_BLOCK], "little")
    width = 1 << max(0, (acc.bit_length() + 7) // 8 - 1).bit_length()
    while width > 1:
        width //= 2
        bits = 8 * width
        acc = (acc >> bits) ^ (acc & ((1 << bits) - 1))
    return acc


def _check_message_length(message_bytes: bytes) -> None:
    if len(message_bytes) < LEN_BYTES:
        raise FrameError("message shorter than its length prefix")
    declared = int.from_bytes(message_bytes[:LEN_BYTES], "big")
    if declared != len(message_bytes) - LEN_BYTES:
        raise FrameError(
            f"message declares {declared} bytes but holds {len(message_bytes) - LEN_BYTES}"
        )


def make_frame(message_bytes: bytes) -> bytes:
    """Append the XOR byte and the trailer to an encoded message."""
    _check_message_length(message_bytes)
    return message_bytes + bytes([xor_checksum(message_bytes)]) + TRAILER


class ReceiverState(enum.Enum):
    LENGTH = "length"  # fewer than 3 bytes seen
    BODY = "body"  # collecting the rest of the frame
    COMPLETE = "complete"  # holds 3 + length + 9 bytes; message() decides


class FrameReceiver:
    """Collects one frame from arbitrary chunks, never buffering more than it.

    ``feed`` consumes bytes up to the end of the frame and returns how many it
    took; it raises FrameError as soon as the declared length exceeds
    ``max_length``. Once ``state`` is COMPLETE, ``message()`` returns the
    checked message bytes or raises FrameError (damaged: bad XOR or trailer).
    """

    def __init__(self, max_length: int = MAX_STRING) -> None:
        if not 0 <= max_length <= MAX_STRING:
            raise ValueError(f"max_length must be within 0..{MAX_STRING}")
        self.max_length = max_length
        self.reset()

    def reset(self) -> None:
        self._buf = bytearray()
        self._total: int | None = None

    @property
    def state(self) -> ReceiverState:
        if self._total is None:
            return ReceiverState.LENGTH
        return ReceiverState.COMPLETE if len(self._buf) == self._total else ReceiverState.BODY

    @property
    def received(self) -> int:
        return len(self._buf)

    @property
    def expected(self) -> int | None:
        """Whole frame size once the length prefix is known, else None."""
        return self._total

    @property
    def needed(self) -> int:
        """Bytes still missing (a lower bound while the length is unknown)."""
        if self._total is None:
            return LEN_BYTES - len(self._buf)
        return self._total - len(self._buf)

    def feed(self, data: bytes) -> int:
        used = 0
        while used < len(data) and self.state is not ReceiverState.COMPLETE:
            take = min(self.needed, len(data) - used)
            self._buf += data[used : used + take]
            used += take
            if self._total is None and len(self._buf) == LEN_BYTES:
                self._set_length(int.from_bytes(self._buf, "big"))
        return used

    def _set_length(self, length: int) -> None:
        if length > self.max_length:
            raise FrameError(f"frame declares {length} bytes, limit is {self.max_length}")
        self._total = LEN_BYTES + length + 1 + len(TRAILER)

    def message(self) -> bytes:
        if self.state is not ReceiverState.COMPLETE:
            raise FrameError(
                f"incomplete frame: {self.received} bytes of {self._total or 'unknown'}"
            )
        end = len(self._buf) - len(TRAILER)
        if self._buf[end:] != TRAILER:
            raise FrameError("damaged frame: bad trailer")
        message = bytes(memoryview(self._buf)[: end - 1])
        if xor_checksum(message) != self._buf[end - 1]:
            raise FrameError("damaged frame: XOR mismatch")
        return message


def response_header(action: int) -> bytes:
    """The 4-byte response header: version, action, 0, 0."""
    if not 0 <= action <= 255:
        raise FrameError(f"action {action} does not fit in a byte")
    return bytes([VERSION, action, 0, 0])
