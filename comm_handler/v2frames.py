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
import importlib.machinery
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

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


def _crc32c_extension() -> ModuleType:
    """The ``crc32c`` library's C extension, without the package around it.

    PyPI's releases wrap the extension in a package whose ``__init__`` reads its
    own version through importlib.metadata and imports its command line: 41 ms
    and some 2 MiB of resident memory in the comm daemon, for nothing it uses.
    Debian's python3-crc32c (2.3) is the bare extension, found and loaded as is.
    Either way the function is the library's own C code.
    """
    package = importlib.machinery.PathFinder.find_spec("crc32c")
    if package is not None and package.submodule_search_locations:
        spec = importlib.machinery.PathFinder.find_spec(
            "_crc32c", list(package.submodule_search_locations)
        )
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    import crc32c  # the bare extension (Debian), or a layout we do not know: the package

    return crc32c


_CRC32C: Callable[[bytes, int], int] = _crc32c_extension().crc32c


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


def crc32c(data: bytes, value: int = 0) -> int:
    """CRC-32C of ``data``, continued from ``value``: the CRC of the bytes before it."""
    return int(_CRC32C(data, value))


def _check(data: bytes) -> bytes:
    return crc32c(data).to_bytes(CHECK_SIZE, "big")


def _frame_check(head: bytes, body: bytes) -> bytes:
    """CRC-32C of head and body, computed on from the head's without joining them."""
    return crc32c(body, crc32c(head)).to_bytes(CHECK_SIZE, "big")


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
