"""The ``audit`` request (link protocol v2): the audit log's checkpoint, proof and records.

Trusted side: runs in the signer, on a request the comm handler passed on
(hostile: only its 16 bytes of sizes are read, ``tlog.exchange``). The
answer is public by design: a checkpoint of the whole log signed with the
log key (``signer_core.logkey``; never a root key), the consistency proof
from the size the web side will hold after this answer, and the records
after those it holds, about ``BATCH_TARGET`` bytes at a time, each as stored. Records
hold what the web host sent or can know (docs/audit.md); this module adds
nothing to them. Work per request is bounded: O(log n) lookups for the root
and the proof, one batch of rows.

The answer also carries the signer's own check of its log (``LogCheck``):
the first record whose row no longer matches its chain or its tree leaf,
so that a row edited, deleted or reordered in the database is named to the
web host on its next sync even when the tree was left alone. The whole
check reads every record, so it runs between requests, in the daemon's loop,
when another connection has written the database since the last one
(SQLite's ``data_version``), and daily; an answer carries its last finding,
and the records of each batch are checked against their leaves on the way.
The checkpoint's note binds every other field of the answer and the
request's nonce (``tlog.exchange.binding``), so that the web side alarms
only on what the log key signed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from signer_core.refusal import Refusal
from signer_core.store.audit import AuditLog
from signer_core.store.auditree import AuditTree, TreeError
from spool.header import RequestHeader
from spool.record import Request
from tlog.exchange import AuditQuery, AuditReply, ExchangeError, binding
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
    """The first bad record of the log, or 0; the whole log read again only when it may have
    changed. ``refresh`` runs between requests (the daemon's loop), never inside one."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self.bad = 0
        self._version: int | None = None
        self._at = 0.0

    def refresh(self) -> None:
        version = int(self.audit.conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version and time.monotonic() - self._at < CHECK_INTERVAL:
            return
        verdict = self.audit.verify()
        self._version, self._at = version, time.monotonic()
        found = 0 if verdict.ok else (verdict.bad_seq or 1)
        if found and found != self.bad:
            log.error("the audit log is damaged: %s", verdict.problem)
            try:
                self.audit.append("audit-damaged", first_bad=found, problem=verdict.problem)
            except TreeError as exc:  # the tree itself is damaged: the answer still says so
                log.error("the damage cannot be recorded: %s", exc)
        self.bad = found

    def first_bad(self) -> int:
        if self._version is None:
            self.refresh()
        return self.bad


def _batch(audit: AuditLog, tree: AuditTree, start: int, size: int) -> tuple[list[Bare], int]:
    """The records after ``start`` up to ``size``, about BATCH_TARGET bytes; and the first
    of them whose row does not give its tree leaf (0 if none)."""
    records: list[Bare] = []
    taken, damaged = 0, 0
    limit = min(MAX_BATCH_RECORDS, max(size - start, 0))
    for seq, at, event, details, prev, _ in audit.entries(start, limit):
        if seq != start + len(records) + 1 or taken >= BATCH_TARGET:
            break  # a gap (a row deleted) ends the batch: the next one starts at the gap
        if not damaged and Entry(seq, at, event, details, prev).leaf != tree.leaf(seq - 1):
            damaged = seq
        records.append(Bare(seq, at, event, details))
        taken += 8 + len(at) + len(event) + len(details)
    return records, damaged


def build_reply(audit: AuditLog, key: LogKey, query: AuditQuery, damage: int) -> AuditReply:
    """The answer to ``query`` from the log as it is now; ``damage``: the check's finding."""
    tree = AuditTree(audit.conn)
    size = tree.size()
    records, damaged = _batch(audit, tree, query.start, size)
    held = query.start + len(records)
    proof = tuple(consistency_proof(tree.lookup, held, size)) if held <= size else ()
    first_bad = min(d for d in (damage, damaged) if d) if damage or damaged else 0
    batch = encode_batch(records)
    line = binding(query, first_bad, proof, len(records), batch)
    note = key.sign(Checkpoint(key.origin, size, tree.root(size), (line,)))
    return AuditReply(note.encode(), first_bad, proof, len(records), batch)


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
