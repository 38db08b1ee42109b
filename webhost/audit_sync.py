"""The web host's audit sync: fetch the appliance's log, check it, keep it, or raise the alarm.

Runs on the web host. Trusts only the log key (``Verifier``) and its own
copy (``webhost.audit_copy``); the answers come from the appliance through
the comm handler and are checked before anything is kept:

- the checkpoint must be signed by the log key, for the log it names;
- it must extend the checkpoint verified last: not smaller (a rollback),
  not the same size with another root (a fork), and bigger only with a
  consistency proof (RFC 9162) from the verified one;
- the records must follow on from those held, and once held up to the
  checkpoint's size, hash to its root; every record is then included;
- the appliance's own check of its log must find no bad record.

Any of these failing raises the alarm (``AuditAlarm``): the evidence is kept
(the signed checkpoints are a proof of what the appliance said), the copy
stops syncing until a person removes ``ALARM``, and the first bad record is
located where it can be: by the appliance's own check, or by reading its log
again from the start and comparing with the copy. A link failure or an answer
that does not decode is a ``SyncError``: nothing is kept, the next cycle tries
again, since a damaged or withheld answer proves nothing about the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from comm_handler.v2messages import V2Answer
from spool import codes
from tlog.exchange import AuditQuery, AuditReply, ExchangeError
from tlog.merkle import verify_consistency
from tlog.note import Checkpoint, NoteError, Verifier, open_checkpoint
from tlog.records import Bare, BatchError, decode_batch
from webhost.audit_copy import AuditCopy

Ask = Callable[[AuditQuery], V2Answer]
"""One audit exchange with the appliance (a v2 client's, or the bridge's cable)."""


class SyncError(Exception):
    """This sync could not finish (the link, a refusal, a garbled answer); try again later."""


class AuditAlarm(Exception):
    """The appliance's log is not what it committed to; evidence kept, the copy stopped."""


@dataclass(frozen=True)
class SyncResult:
    size: int  # the verified tree size now
    added: int  # records verified by this sync
    batches: int
    complete: bool  # False: stopped by ``max_batches``, to go on next time


def _reply(ask: Ask, query: AuditQuery) -> tuple[AuditReply, bytes]:
    answer = ask(query)
    if not answer.ok:
        raise SyncError(f"the appliance refused: {codes.name_of(answer.code)}: {answer.text}")
    try:
        return AuditReply.decode(answer.payload), answer.payload
    except ExchangeError as exc:
        raise SyncError(f"the audit answer cannot be read: {exc}") from None


class Sync:
    """One run of the sync over ``copy``; ``run`` it once."""

    def __init__(self, ask: Ask, copy: AuditCopy, verifier: Verifier) -> None:
        self.ask, self.copy, self.verifier = ask, copy, verifier

    def alarm(self, problem: str, kind: str, reply: AuditReply, raw: bytes) -> AuditAlarm:
        evidence: dict[str, str | bytes] = {
            "answer.bin": raw,
            "checkpoint.note": reply.note,
            "verified.note": self.copy.verified.note,
            "proof.txt": "".join(h.hex() + "\n" for h in reply.proof),
        }
        dropped = self.copy.drop_unverified()
        if dropped:
            evidence["unverified.jsonl"] = "".join(dropped)
        where = self.copy.raise_alarm(problem, kind, evidence)
        return AuditAlarm(f"{problem} (evidence in {where})")

    def run(
        self, max_batches: int | None = None, busy: Callable[[], bool] = lambda: False
    ) -> SyncResult:
        """Sync up to the appliance's checkpoint, or stop after ``max_batches`` answers or
        as soon as ``busy`` says so, after the first (the rest comes next time)."""
        if (alarm := self.copy.alarm) is not None:
            raise AuditAlarm(f"the copy is stopped by an earlier alarm: {alarm}")
        start, batches = self.copy.verified.size, 0
        while (max_batches is None or batches < max_batches) and not (batches and busy()):
            reply, raw = _reply(self.ask, AuditQuery(self.copy.verified.size, self.copy.records))
            batches += 1
            checkpoint = self._checkpoint(reply, raw)
            records = self._records(reply)
            if self.copy.records + len(records) > checkpoint.size:
                raise self.alarm(
                    f"the appliance sent records past its own checkpoint of {checkpoint.size}",
                    "overlong",
                    reply,
                    raw,
                )
            self.copy.append(records)
            if self.copy.records == checkpoint.size:
                if self.copy.frontier.root() != checkpoint.root:
                    first = self.copy.verified.size + 1
                    raise self.alarm(
                        f"records {first} to {checkpoint.size} do not hash to the root"
                        " of the appliance's signed checkpoint",
                        "records",
                        reply,
                        raw,
                    )
                self.copy.verify(checkpoint.size, checkpoint.root, reply.note.decode())
                return SyncResult(checkpoint.size, checkpoint.size - start, batches, True)
            if not records:
                raise SyncError("the appliance sent no records although its log holds more")
        return SyncResult(self.copy.verified.size, self.copy.verified.size - start, batches, False)

    def _checkpoint(self, reply: AuditReply, raw: bytes) -> Checkpoint:
        try:
            checkpoint = open_checkpoint(reply.note, self.verifier)
        except NoteError as exc:
            raise self.alarm(
                f"the appliance's checkpoint is not one of its log key: {exc}",
                "signature",
                reply,
                raw,
            ) from None
        if reply.damage:
            raise self.alarm(
                f"the appliance's own check finds its audit log bad from record {reply.damage}"
                " on (edited, deleted or reordered in its database)",
                "damaged",
                reply,
                raw,
            )
        old = self.copy.verified
        held = self.copy.records
        if checkpoint.size < held:
            raise self.alarm(
                f"rollback: the appliance's log has {checkpoint.size} records, and {held} were"
                f" received from it before (an older database restored?); record"
                f" {checkpoint.size + 1} is the first one missing",
                "rollback",
                reply,
                raw,
            )
        if checkpoint.size == old.size and checkpoint.root != old.root:
            first = self._locate()
            raise self.alarm(
                f"fork: the appliance signed two different checkpoints of {old.size} records;"
                f" {first}",
                "fork",
                reply,
                raw,
            )
        if not verify_consistency(
            old.size, checkpoint.size, old.root, checkpoint.root, reply.proof
        ):
            first = self._locate()
            raise self.alarm(
                f"the appliance's checkpoint of {checkpoint.size} records does not extend the one"
                f" of {old.size} verified before (a fork or a rewritten history); {first}",
                "inconsistent",
                reply,
                raw,
            )
        return checkpoint

    def _records(self, reply: AuditReply) -> list[Bare]:
        try:
            return decode_batch(reply.batch, reply.count, self.copy.records + 1)
        except BatchError as exc:
            raise SyncError(f"the audit answer's records cannot be read: {exc}") from None

    def _locate(self) -> str:
        """Read the appliance's records from the first and compare them with the copy's."""
        held = self.copy.entries()
        seq = 0
        while True:
            reply, _ = _reply(self.ask, AuditQuery(0, seq))
            try:
                records = decode_batch(reply.batch, reply.count, seq + 1)
            except BatchError as exc:
                return f"the records could not be compared ({exc})"
            for record in records:
                mine = next(held, None)
                if mine is None:
                    return "the records held all match the appliance's"
                if (mine.at, mine.event, mine.details) != (record.at, record.event, record.details):
                    return f"record {record.seq} is the first that differs from the copy"
            if not records:
                mine = next(held, None)
                if mine is None:
                    return "the records held all match the appliance's"
                return f"record {mine.seq} is the first the appliance no longer has"
            seq += len(records)
