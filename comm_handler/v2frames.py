"""Frames of the v2 link protocol: a marker, a checked head, a body, a CRC-32C.

Pure data code, no I/O, on the untrusted side: the framing layer of link
protocol v2, for the comm handler, which reads frames off the cable, and for
the web host's side, which builds them.
Everything here treats its input as hostile: the head carries its own check,
so a damaged length is refused before a single body byte is awaited; the
body's declared length is bounded by the caller's limit before it is used;
every inconsistency raises ``FrameError`` (never another exception).

Wire format (integers big-endian)::

    head  = 0x16 | 0x02 | type (1) | request id (16) | body length n (4)
            | CRC-32C of the 23 bytes before it (4)
    frame = head | body (n) | CRC-32C of head and body (4)

Why: the first byte, SYN (0x16), is one that v1 never sends first (a v1
exchange opens with 0x02), so one line can carry both versions and the
receiver tells them apart by that byte. CRC-32C (Castagnoli) detects every
burst of up to 32 bits and every pattern of bits flipped in the same
position of two bytes, which v1's one-byte XOR misses; the ``crc32c``
library computes it at memory speed. The head's own check means that a flip
in the length cannot make the receiver wait for four gigabytes; the
trailing check covers the whole frame, head included.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import crc32c

from comm_handler.frames import FrameError

MARKER = 0x16
VERSION = 2
ID_SIZE = 16
CHECK_SIZE = 4
HEAD_SIZE = 3 + ID_SIZE + 4 + CHECK_SIZE
OVERHEAD = HEAD_SIZE + CHECK_SIZE
MAX_BODY = 2**32 - 1


class FrameType(enum.IntEnum):
    REQUEST = ord("Q")
    ANSWER = ord("A")
    ACK = ord("K")  # the frame of this id arrived whole
    NAK = ord("N")  # a frame arrived damaged: send it again


BODILESS = (FrameType.ACK, FrameType.NAK)


@dataclass(frozen=True)
class Head:
    """A checked frame head: what follows is ``length`` body bytes and a check."""

    type: FrameType
    request_id: bytes
    length: int


@dataclass(frozen=True)
class Frame:
    type: FrameType
    request_id: bytes
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _frame_type(self.type))
        if not isinstance(self.request_id, bytes) or len(self.request_id) != ID_SIZE:
            raise FrameError(f"a request id is {ID_SIZE} bytes")
        if not isinstance(self.body, bytes) or len(self.body) > MAX_BODY:
            raise FrameError(f"a body is bytes, at most {MAX_BODY}")
        if self.type in BODILESS and self.body:
            raise FrameError("an ACK or a NAK has no body")


def _frame_type(value: int) -> FrameType:
    try:
        return FrameType(value)
    except ValueError:
        raise FrameError(f"unknown frame type {value}") from None


def _crc(data: bytes, value: int = 0) -> int:
    return int(crc32c.crc32c(data, value))


def _check(data: bytes) -> bytes:
    return _crc(data).to_bytes(CHECK_SIZE, "big")


def _frame_check(head: bytes, body: bytes) -> bytes:
    """CRC-32C of head and body, computed on from the head's without joining them."""
    return _crc(body, _crc(head)).to_bytes(CHECK_SIZE, "big")


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the line."""
    start = bytes([MARKER, VERSION, frame.type]) + frame.request_id
    start += len(frame.body).to_bytes(4, "big")
    head = start + _check(start)
    return head + frame.body + _frame_check(head, frame.body)


def decode_head(head: bytes, max_body: int) -> Head:
    """The head of a frame (its first ``HEAD_SIZE`` bytes), checked before its length is used."""
    if len(head) != HEAD_SIZE:
        raise FrameError(f"a frame head is {HEAD_SIZE} bytes, not {len(head)}")
    if head[-CHECK_SIZE:] != _check(head[:-CHECK_SIZE]):
        raise FrameError("frame head damaged (bad check)")
    if head[0] != MARKER or head[1] != VERSION:
        raise FrameError(f"not a v2 frame (marker {head[0]:#04x}, version {head[1]})")
    length = int.from_bytes(head[3 + ID_SIZE : 7 + ID_SIZE], "big")
    if length > max_body:
        raise FrameError(f"frame declares {length} body bytes, over the {max_body}-byte limit")
    frame_type = _frame_type(head[2])
    if frame_type in BODILESS and length:
        raise FrameError("an ACK or a NAK has no body")
    return Head(frame_type, bytes(head[3 : 3 + ID_SIZE]), length)


def decode_frame(data: bytes, max_body: int = MAX_BODY) -> Frame:
    """A whole frame, every check applied; ``FrameError`` says which failed."""
    head_bytes = bytes(data[:HEAD_SIZE])
    head = decode_head(head_bytes, max_body)
    if len(data) != HEAD_SIZE + head.length + CHECK_SIZE:
        raise FrameError(f"frame of {len(data)} bytes, its head declares {OVERHEAD + head.length}")
    body = bytes(data[HEAD_SIZE : HEAD_SIZE + head.length])
    if data[-CHECK_SIZE:] != _frame_check(head_bytes, body):
        raise FrameError("frame damaged (bad check)")
    return Frame(head.type, head.request_id, body)
