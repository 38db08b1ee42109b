"""The web host's audit sync: fetch the appliance's log, check it, keep it, or raise the alarm.

Runs on the web host. Trusts only the log key (``Verifier``) and its own
copy (``webhost.audit_copy``). Each request carries a fresh nonce, and each
answer's signed checkpoint binds the nonce and every other field of the
answer (``tlog.exchange.binding``). An answer that is not signed by the log
key, or not bound to the request just sent, proves nothing about the log: a
comm handler can garble, drop or replay answers. It is a ``SyncError``,
nothing is kept, and the next cycle tries again.

What the log key signed is then checked, and a failure raises the alarm
(``AuditAlarm``: evidence kept, the copy stopped until a person removes
``ALARM``):

- the appliance's own check of its log finds no bad record;
- the checkpoint is not smaller than the records held (a rollback);
- the records of the batch follow on from those held, and the tree of the
  records held with them is the checkpoint's, or is extended by it (the
  RFC 9162 consistency proof in the answer); otherwise it is a fork or a
  rewritten history, and the first record that differs from the copy's is
  looked for, within ``LOCATE_ANSWERS`` answers.

Only records that passed are kept, so the copy never holds an unverified
record, and a sync stopped half way (``max_batches``, ``busy``) goes on
from a verified size the next time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from comm_handler.v2messages import V2Answer
from spool import codes
from tlog.exchange import NONCE_SIZE, AuditQuery, AuditReply, ExchangeError
from tlog.merkle import Frontier, verify_consistency
from tlog.note import Checkpoint, NoteError, Verifier, open_checkpoint
from tlog.records import BatchError, Entry, decode_batch
from webhost.audit_copy import AuditCopy, Signed

Ask = Callable[[AuditQuery], V2Answer]
"""One audit exchange with the appliance (a v2 client's, or the bridge's cable)."""

LOCATE_ANSWERS = 64  # answers read to find the first record that differs, at most


class SyncError(Exception):
    """This sync could not finish (the link, a refusal, an answer that proves nothing)."""


class AuditAlarm(Exception):
    """The appliance signed a log that is not what it committed to; evidence kept."""


@dataclass(frozen=True)
class SyncResult:
    size: int  # the records held, all verified
    added: int  # records added by this sync
    batches: int
    complete: bool  # False: stopped by ``max_batches`` or ``busy``, to go on next time


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


@dataclass(frozen=True)
class _Answer:
    reply: AuditReply
    raw: bytes
    checkpoint: Checkpoint


class Sync:
    """One run of the sync over ``copy``; ``run`` it once."""

    def __init__(
        self,
        ask: Ask,
        copy: AuditCopy,
        verifier: Verifier,
        nonce: Callable[[], bytes] = fresh_nonce,
    ) -> None:
        self.ask, self.copy, self.verifier, self.nonce = ask, copy, verifier, nonce

    def _exchange(self, start: int) -> _Answer:
        query = AuditQuery(start, self.nonce())
        answer = self.ask(query)
        if not answer.ok:
            raise SyncError(f"the appliance refused: {codes.name_of(answer.code)}: {answer.text}")
        try:
            reply = AuditReply.decode(answer.payload)
            checkpoint = open_checkpoint(reply.note, self.verifier)
        except (ExchangeError, NoteError) as exc:
            raise SyncError(f"the audit answer proves nothing: {exc}") from None
        if not reply.binds(query, checkpoint.extensions):
            raise SyncError("the audit answer is not the signed answer to the request sent")
        return _Answer(reply, answer.payload, checkpoint)

    def run(
        self, max_batches: int | None = None, busy: Callable[[], bool] = lambda: False
    ) -> SyncResult:
        """Sync up to the appliance's checkpoint, or stop after ``max_batches`` answers or
        as soon as ``busy`` says so, after the first (the rest comes next time)."""
        if (alarm := self.copy.alarm) is not None:
            raise AuditAlarm(f"the copy is stopped by an earlier alarm: {alarm}")
        start, batches = self.copy.records, 0
        while (max_batches is None or batches < max_batches) and not (batches and busy()):
            answer = self._exchange(self.copy.records)
            batches += 1
            entries, frontier = self._check(answer)
            cp = answer.checkpoint
            self.copy.keep(
                entries, frontier, Signed(answer.reply.note.decode(), cp.size, answer.reply.proof)
            )
            if frontier.size == cp.size:
                return SyncResult(cp.size, cp.size - start, batches, True)
            if not entries:
                raise SyncError("the appliance sent no records although its log holds more")
        return SyncResult(self.copy.records, self.copy.records - start, batches, False)

    def _check(self, answer: _Answer) -> tuple[list[Entry], Frontier]:
        """The batch's records linked, and the tree with them; the alarm if the log key
        signed something the copy contradicts."""
        reply, cp, held = answer.reply, answer.checkpoint, self.copy.records
        if reply.damage:
            raise self.alarm(
                f"the appliance's own check finds its audit log bad from record {reply.damage}"
                " on (edited, deleted or reordered in its database)",
                "damaged",
                answer,
            )
        if cp.size < held:
            raise self.alarm(
                f"rollback: the appliance's log has {cp.size} records, and {held} were verified"
                f" before (an older database restored?); record {cp.size + 1} is the first one"
                " missing",
                "rollback",
                answer,
            )
        try:
            bare = decode_batch(reply.batch, reply.count, held + 1)
        except BatchError as exc:
            raise SyncError(f"the audit answer's records cannot be read: {exc}") from None
        entries, head = [], self.copy.head
        frontier = Frontier(held, self.copy.frontier.hashes)
        for record in bare:
            entries.append(entry := record.linked(head))
            frontier.append(entry.leaf)
            head = entry.hash
        if frontier.size > cp.size or not verify_consistency(
            frontier.size, cp.size, frontier.root(), cp.root, reply.proof
        ):
            kind = "fork" if frontier.size == cp.size == held else "inconsistent"
            sent = f" with the {len(entries)} records it sent now" if entries else ""
            raise self.alarm(
                f"{kind}: the appliance's signed checkpoint of {cp.size} records does not extend"
                f" the {held} records verified before{sent} (a fork, or a rewritten history);"
                f" {self._locate()}",
                kind,
                answer,
            )
        return entries, frontier

    def alarm(self, problem: str, kind: str, answer: _Answer) -> AuditAlarm:
        evidence: dict[str, str | bytes] = {
            "answer.bin": answer.raw,
            "checkpoint.note": answer.reply.note,
            "verified.note": self.copy.signed.note,
            "proof.txt": "".join(h.hex() + "\n" for h in answer.reply.proof),
        }
        where = self.copy.raise_alarm(problem, kind, evidence)
        return AuditAlarm(f"{problem} (evidence in {where})")

    def _locate(self) -> str:
        """Read the appliance's records from the first and compare them with the copy's."""
        held, seq = self.copy.entries(), 0
        try:
            for _ in range(LOCATE_ANSWERS):
                reply = self._exchange(seq).reply
                records = decode_batch(reply.batch, reply.count, seq + 1)
                for record in records:
                    mine = next(held, None)
                    if mine is None:
                        return "the records held all match the appliance's"
                    if (mine.at, mine.event, mine.details) != (
                        record.at,
                        record.event,
                        record.details,
                    ):
                        return f"record {record.seq} is the first that differs from the copy"
                if not records:
                    mine = next(held, None)
                    if mine is None:
                        return "the records held all match the appliance's"
                    return f"record {mine.seq} is the first the appliance no longer has"
                seq += len(records)
        except (SyncError, BatchError, LinkError, FrameError, OSError) as exc:
            return f"the first record that differs could not be found ({exc})"
        return f"the first {seq} records match; the first that differs is further on"
