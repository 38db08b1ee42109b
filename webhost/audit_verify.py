"""``signer-client audit verify``: check a copy of the audit log offline, with the public key alone.

Runs anywhere (the web host, an auditor's laptop); trusts only the log key
given to it. Everything in the directory is read as untrusted: every record
is hashed again and linked to the one before, the tree is rebuilt from the
records, and each kept checkpoint must be signed by the key and have the
root of the records up to its size. A checkpoint that does is consistent
with every other that does, and includes every record below its size, so
one pass over the records checks all three. Work: one hash per record and
two per tree level, O(log n) memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tlog.merkle import Frontier, verify_consistency
from tlog.note import NoteError, Verifier, open_checkpoint
from tlog.records import GENESIS
from webhost.audit_copy import AuditCopy, CopyError

MAX_NOTE_FILE = 1 << 16
_NOTE_NAME = re.compile(r"(0|[1-9][0-9]{0,18})\.note")


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0
    size: int = 0  # the largest checkpoint verified
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _checkpoints(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if not (directory / "checkpoints").is_dir():
        return found
    for path in (directory / "checkpoints").iterdir():
        if match := _NOTE_NAME.fullmatch(path.name):
            found[int(match.group(1))] = path
    return found


def verify_copy(directory: Path, verifier: Verifier) -> Report:
    report = Report()
    try:
        copy = AuditCopy(directory, readonly=True)
    except CopyError as exc:
        return Report(problems=[str(exc)])
    with copy:
        if (alarm := copy.alarm) is not None:
            report.problems.append(f"the copy holds an alarm: {alarm}")
        notes = _checkpoints(directory)
        frontier, prev = Frontier(), GENESIS
        pending = sorted(notes)
        try:
            for entry in copy.entries():
                if entry.seq != frontier.size + 1 or entry.prev != prev:
                    report.problems.append(
                        f"record {frontier.size + 1} does not follow the one before it (one of"
                        " them was altered, or records are missing or out of order)"
                    )
                    break
                frontier.append(entry.leaf)
                prev = entry.hash
                while pending and pending[0] == frontier.size:
                    _check(notes[pending.pop(0)], frontier, verifier, report)
        except CopyError as exc:
            report.problems.append(str(exc))
        report.records = frontier.size
        _check_signed(copy, frontier, verifier, report, covered=max(notes, default=0))
        if 0 in notes:
            _check(notes[0], Frontier(), verifier, report)
        for size in pending:
            if size:
                report.problems.append(
                    f"checkpoint {size} is past the {frontier.size} records held"
                )
    return report


def _check_signed(
    copy: AuditCopy, frontier: Frontier, verifier: Verifier, report: Report, covered: int
) -> None:
    """The records past the last kept checkpoint: covered by the last signed one and the
    consistency proof from them to it, both in the state; otherwise not verified."""
    if frontier.size <= covered:
        return
    signed = copy.signed
    try:
        checkpoint = open_checkpoint(signed.note, verifier)
    except NoteError as exc:
        report.problems.append(f"records {covered + 1} to {frontier.size}: {exc}")
        return
    if not verify_consistency(
        frontier.size, checkpoint.size, frontier.root(), checkpoint.root, signed.proof
    ):
        report.problems.append(
            f"records {covered + 1} to {frontier.size} are not in the last signed checkpoint"
        )
    else:
        report.size = max(report.size, frontier.size)


def _check(path: Path, frontier: Frontier, verifier: Verifier, report: Report) -> None:
    try:
        checkpoint = open_checkpoint(path.read_bytes()[:MAX_NOTE_FILE], verifier)
    except (NoteError, OSError) as exc:
        report.problems.append(f"{path.name}: {exc}")
        return
    if checkpoint.size != frontier.size:
        report.problems.append(f"{path.name} is the checkpoint of {checkpoint.size} records")
    elif checkpoint.root != frontier.root():
        report.problems.append(
            f"{path.name}: the records up to {frontier.size} do not hash to its root"
        )
    else:
        report.checkpoints += 1
        report.size = max(report.size, checkpoint.size)
