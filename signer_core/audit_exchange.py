"""The ``audit`` request (link protocol v2): the audit log's checkpoint, proof and records.

Trusted side: runs in the signer, on a request the comm handler passed on
(hostile: only its 16 bytes of sizes are read, ``tlog.exchange``). The
answer is public by design: a checkpoint of the whole log signed with the
log key (``signer_core.logkey``; never a root key), the consistency proof
from the size the web side verified last, and the records after those it
holds, about ``BATCH_TARGET`` bytes at a time, each as stored. Records
hold what the web host sent or can know (docs/audit.md); this module adds
nothing to them. Work per request is bounded: O(log n) lookups for the root
and the proof, one batch of rows.

The answer also carries the signer's own check of its log (``LogCheck``):
the first record whose row no longer matches its chain or its tree leaf,
so that a row edited, deleted or reordered in the database is named to the
web host on its next sync even when the tree was left alone. The whole
check reads every record, so it runs when another connection has written
the database since the last one (SQLite's ``data_version``), and daily.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from signer_core.refusal import Refusal
from signer_core.store.audit import AuditLog
from signer_core.store.auditree import AuditTree
from spool.header import RequestHeader
from spool.record import Request
from tlog.exchange import AuditQuery, AuditReply, ExchangeError
from tlog.merkle import consistency_proof
from tlog.note import Checkpoint
from tlog.records import BATCH_TARGET, Bare, Entry, encode_batch

if TYPE_CHECKING:
    from signer_core.dispatch import SignerContext
    from signer_core.logkey import LogKey

log = logging.getLogger("signer-core")

CHECK_INTERVAL = 86400.0  # s: the whole log is checked again at least this often
MAX_BATCH_RECORDS = 4096  # rows read for one batch at most (the bytes usually stop it first)


class LogCheck:
    """The first bad record of the log, or 0; the whole log read again only when it may have changed."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self.bad = 0
        self._version: int | None = None
        self._at = 0.0

    def first_bad(self) -> int:
        version = int(self.audit.conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version and time.monotonic() - self._at < CHECK_INTERVAL:
            return self.bad
        verdict = self.audit.verify()
        self._version, self._at = version, time.monotonic()
        found = 0 if verdict.ok else (verdict.bad_seq or 1)
        if found and found != self.bad:
            log.error("the audit log is damaged: %s", verdict.problem)
            self.audit.append("audit-damaged", first_bad=found, problem=verdict.problem)
        self.bad = found
        return found


def _batch(audit: AuditLog, tree: AuditTree, start: int, size: int) -> tuple[list[Bare], int]:
    """The records after ``start`` up to ``size``, about BATCH_TARGET bytes; and the first
    of them whose row does not give its tree leaf (0 if none)."""
    records: list[Bare] = []
    taken, damaged = 0, 0
    limit = min(MAX_BATCH_RECORDS, max(size - start, 0))
    for seq, at, event, details, prev, _ in audit.entries(start, limit):
        if seq > size or taken >= BATCH_TARGET:
            break
        if not damaged and Entry(seq, at, event, details, prev).leaf != tree.leaf(seq - 1):
            damaged = seq
        records.append(Bare(seq, at, event, details))
        taken += 8 + len(at) + len(event) + len(details)
    return records, damaged


def build_reply(audit: AuditLog, key: LogKey, query: AuditQuery, damage: int) -> AuditReply:
    """The answer to ``query`` from the log as it is now; ``damage``: the self-check's finding."""
    tree = AuditTree(audit.conn)
    size = tree.size()
    note = key.sign(Checkpoint(key.origin, size, tree.root(size)))
    proof = consistency_proof(tree.lookup, query.have, size) if query.have < size else []
    records, damaged = _batch(audit, tree, query.start, size)
    first_bad = min(d for d in (damage, damaged) if d) if damage or damaged else 0
    return AuditReply(note.encode(), first_bad, tuple(proof), len(records), encode_batch(records))


def handle_audit(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    if request.payloads[1] or request.payloads[2]:
        raise Refusal("bad-request", "an audit request has only its sizes, in payload 1")
    try:
        query = AuditQuery.decode(request.payloads[0])
    except ExchangeError as exc:
        raise Refusal("bad-request", str(exc)) from None
    if ctx.log_key is None:
        raise Refusal(
            "audit-unavailable",
            "the appliance has no audit log key; signerctl status says why",
        )
    if ctx.audit_check is None:
        ctx.audit_check = LogCheck(ctx.audit)
    return build_reply(ctx.audit, ctx.log_key, query, ctx.audit_check.first_bad()).encode()
