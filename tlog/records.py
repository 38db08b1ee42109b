"""The audit log's records as the Merkle tree hashes them and as the cable carries them.

Pure code, no I/O, shared by both sides. The signer keeps each record as a
row (seq, at, event, details, prev, hash), where ``prev`` is the hash of the
record before and ``hash`` covers ``material``; the tree's leaf for record
``seq`` is ``leaf_hash(material)`` at index ``seq - 1``. So one function,
``material``, defines what both the hash chain and the tree commit to.

On the cable a batch of records is compressed and carries neither ``prev``
nor ``hash``: the receiver computes both from the records it already holds,
so a record the signer's database altered cannot bring its own links along.
Decoding trusts nothing: every length is bounded by what is left, the whole
batch by ``MAX_BATCH`` once inflated (a compression bomb stops there), the
text fields must be UTF-8 without line breaks (``material``'s separator,
so that two records can never hash alike), and the numbers must follow on.

Batch (uncompressed), per record::

    seq (8) | at length (1) | at | event length (1) | event | details length (3) | details
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from tlog.merkle import leaf_hash

GENESIS = "0" * 64
"""The ``prev`` of record 1."""

MAX_BATCH = 1 << 20
"""Bytes of one inflated batch, at most; the signer sends far less (``BATCH_TARGET``)."""

BATCH_TARGET = 48 << 10
"""Bytes of records the signer puts in one answer: a few seconds of a 115200-baud line."""


class BatchError(ValueError):
    """A batch of records that cannot be read; the message says why."""


class Reader:
    """Bounded reads of ``data``, for the decoders of both sides' untrusted bytes: a read
    past the end raises ``error(cut)``, and ``end`` checks that nothing is left over."""

    def __init__(self, data: bytes, error: type[ValueError], cut: str) -> None:
        self.data, self.at, self.error, self.cut = data, 0, error, cut

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise self.error(self.cut)
        self.at += n
        return self.data[self.at - n : self.at]

    def end(self, extra: str) -> None:
        if self.at != len(self.data):
            raise self.error(extra)


def material(seq: int, at: str, event: str, details: str, prev: str) -> bytes:
    """What record ``seq``'s hash and its tree leaf cover."""
    return "\n".join((str(seq), at, event, details, prev)).encode("utf-8")


def chain_hash(seq: int, at: str, event: str, details: str, prev: str) -> str:
    return hashlib.sha256(material(seq, at, event, details, prev)).hexdigest()


def leaf(seq: int, at: str, event: str, details: str, prev: str) -> bytes:
    """Record ``seq``'s leaf hash in the tree (index ``seq - 1``)."""
    return leaf_hash(material(seq, at, event, details, prev))


@dataclass(frozen=True)
class Entry:
    """One record as both ends hold it; ``details`` is the stored JSON text, byte for byte."""

    seq: int
    at: str
    event: str
    details: str
    prev: str

    @property
    def hash(self) -> str:
        return chain_hash(self.seq, self.at, self.event, self.details, self.prev)

    @property
    def leaf(self) -> bytes:
        return leaf(self.seq, self.at, self.event, self.details, self.prev)


@dataclass(frozen=True)
class Bare:
    """A record as the cable carries it: its links are the receiver's to compute."""

    seq: int
    at: str
    event: str
    details: str

    def linked(self, prev: str) -> Entry:
        return Entry(self.seq, self.at, self.event, self.details, prev)


def _field(text: str, width: int) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= 1 << (8 * width):
        raise BatchError(f"a record field of {len(raw)} bytes does not fit in {width} bytes")
    return len(raw).to_bytes(width, "big") + raw


def encode_batch(records: list[Bare]) -> bytes:
    """The compressed batch of ``records``."""
    parts = [
        struct.pack(">Q", r.seq) + _field(r.at, 1) + _field(r.event, 1) + _field(r.details, 3)
        for r in records
    ]
    return zlib.compress(b"".join(parts), 6)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, MAX_BATCH)
    except zlib.error:
        raise BatchError("the batch is not zlib data") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise BatchError(f"the batch is longer than {MAX_BATCH} bytes inflated, or cut short")
    if inflater.unused_data:
        raise BatchError("the batch has bytes after its end")
    return raw


def decode_batch(data: bytes, count: int, first: int) -> list[Bare]:
    """``count`` records numbered from ``first`` on, from a compressed batch; BatchError otherwise."""
    reader = Reader(_inflate(data), BatchError, "the batch ends inside a record")
    records = []

    def text(width: int) -> str:
        try:
            value = reader.take(int.from_bytes(reader.take(width), "big")).decode("utf-8")
        except UnicodeDecodeError:
            raise BatchError("a record field is not UTF-8") from None
        if "\n" in value:  # the separator of ``material``: a field must not hold one
            raise BatchError("a record field holds a line break")
        return value

    for expected in range(first, first + count):
        (seq,) = struct.unpack(">Q", reader.take(8))
        if seq != expected:
            raise BatchError(f"the batch holds record {seq} where record {expected} belongs")
        records.append(Bare(seq, text(1), text(1), text(3)))
    reader.end("the batch has bytes after its last record")
    return records
