"""The audit exchange's bodies: what the web side asks, what the signer answers.

Pure code, no I/O, shared by both sides; they travel as payload 1 of a link
protocol v2 request and answer of kind ``audit``. Decoding trusts nothing:
fixed fields are checked for length, the proof for its count, the batch is
read by ``tlog.records``, and any fault raises ``ExchangeError``.

Request (integers big-endian)::

    start (8: how many records the web side's copy holds, all verified)
    | nonce (16: fresh random bytes, so that an old answer cannot be replayed)

Answer::

    note length (2) | note (the signed checkpoint of the signer's tree now)
    | damage (8: the first record the signer's own check found bad, 0 = none)
    | proof count (1) | count x 32 (consistency proof from start + record count
      to the checkpoint's size)
    | record count (2) | batch length (4) | batch (``tlog.records``)

Only the note is signed, so the note carries the rest: one extension line,
``answer <base64 SHA-256>``, over the request and every other field of the
answer (``binding``). A field changed on the way, or an answer to another
request, then fails as a whole, and what the web side alarms on is always
something the log key signed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from tlog.merkle import HASH_SIZE
from tlog.note import MAX_NOTE
from tlog.records import MAX_BATCH, Reader

REQUEST_SIZE = 24
NONCE_SIZE = 16
MAX_PROOF = 64  # hashes: a consistency proof of a tree of 2^63 leaves has fewer
BINDING = "answer "


class ExchangeError(ValueError):
    """An audit request or answer that cannot be read; the message says why."""


@dataclass(frozen=True)
class AuditQuery:
    start: int
    nonce: bytes = bytes(NONCE_SIZE)

    def encode(self) -> bytes:
        return struct.pack(">Q", self.start) + self.nonce

    @classmethod
    def decode(cls, body: bytes) -> AuditQuery:
        if len(body) != REQUEST_SIZE:
            raise ExchangeError(f"an audit request is {REQUEST_SIZE} bytes, not {len(body)}")
        (start,) = struct.unpack(">Q", body[:8])
        if start >= 1 << 63:
            raise ExchangeError("an audit request's tree size is out of range")
        return cls(start, body[8:])


def binding(
    query: AuditQuery, damage: int, proof: Sequence[bytes], count: int, batch: bytes
) -> str:
    """The note's extension line that ties the answer's unsigned fields to its signature."""
    digest = hashlib.sha256(query.encode())
    digest.update(struct.pack(">QB", damage, len(proof)) + b"".join(proof))
    digest.update(struct.pack(">HI", count, len(batch)) + batch)
    return BINDING + base64.b64encode(digest.digest()).decode()


@dataclass(frozen=True)
class AuditReply:
    note: bytes
    damage: int
    proof: tuple[bytes, ...]
    count: int
    batch: bytes

    def binds(self, query: AuditQuery, extensions: Sequence[str]) -> bool:
        """Whether ``extensions`` (the signed note's) bind this answer to ``query``."""
        return binding(query, self.damage, self.proof, self.count, self.batch) in extensions

    def encode(self) -> bytes:
        return b"".join(
            (
                struct.pack(">H", len(self.note)),
                self.note,
                struct.pack(">QB", self.damage, len(self.proof)),
                *self.proof,
                struct.pack(">HI", self.count, len(self.batch)),
                self.batch,
            )
        )

    @classmethod
    def decode(cls, body: bytes) -> AuditReply:
        take = (reader := Reader(body, ExchangeError, "the audit answer is cut short")).take
        (note_size,) = struct.unpack(">H", take(2))
        if note_size > MAX_NOTE:
            raise ExchangeError(f"the audit answer's checkpoint is over {MAX_NOTE} bytes")
        note = take(note_size)
        damage, proof_count = struct.unpack(">QB", take(9))
        if proof_count > MAX_PROOF:
            raise ExchangeError(f"the audit answer's proof has over {MAX_PROOF} hashes")
        proof = tuple(take(HASH_SIZE) for _ in range(proof_count))
        count, batch_size = struct.unpack(">HI", take(6))
        if batch_size > MAX_BATCH:
            raise ExchangeError(f"the audit answer's batch is over {MAX_BATCH} bytes")
        batch = take(batch_size)
        reader.end("the audit answer has bytes after its batch")
        return cls(note, damage, proof, count, batch)


EXPORT_MAGIC = b"signer-appliance audit export 2\n"
"""An export file (``signerctl audit export``) is this line, the size it starts from (8), then
the answers to the queries (since), (since + the first batch's count)... with the nonce of
zeros (a file is its own freshness), each as length (4) | body, all under one checkpoint."""


def export_head(since: int) -> bytes:
    return EXPORT_MAGIC + struct.pack(">Q", since)


def export_frame(reply: AuditReply) -> bytes:
    body = reply.encode()
    return struct.pack(">I", len(body)) + body


def read_export_head(stream: BinaryIO) -> int:
    """The size an export file starts from; ExchangeError if it is not one."""
    head = stream.read(len(EXPORT_MAGIC) + 8)
    if len(head) != len(EXPORT_MAGIC) + 8 or not head.startswith(EXPORT_MAGIC):
        raise ExchangeError("the file is not an audit export")
    return int.from_bytes(head[-8:], "big")


def read_export(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The answer bodies after the head, each at most ``limit`` bytes; ExchangeError if cut."""
    while head := stream.read(4):
        if len(head) != 4 or (size := int.from_bytes(head, "big")) > limit:
            raise ExchangeError("the export is cut short or holds an answer over the limit")
        body = stream.read(size)
        if len(body) != size:
            raise ExchangeError("the export is cut short")
        yield body
