"""The web host's verified copy of the appliance's audit log: one state directory.

Runs on the web host. It trusts the log's public key, which the operator
copied from ``signerctl audit key`` at the appliance, and nothing else:
``webhost.audit_sync`` checks every record and checkpoint before this
module keeps it as verified. The directory::

    records.jsonl        one record per line, oldest first, as the appliance holds it
    checkpoints/N.note   each verified checkpoint, N its tree size
    state.json           what is verified and held (sizes, root, frontier, last note)
    evidence/T-what/     what an alarm was raised on, kept for whoever investigates
    ALARM                the alarm's sentence; while it is there nothing more is synced
    log.pub              the log's public key, as the operator gave it on the first sync
    lock                 one sync at a time (flock)

``records.jsonl`` may hold records past the verified size: those of a sync
that stopped before the checkpoint's size was reached. ``state.json`` is
replaced atomically and names how many bytes of ``records.jsonl`` count, so
a crash between the two leaves at most a tail that the next open cuts off.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from spool.safeio import commit_file, fsync_dir
from tlog.merkle import EMPTY_ROOT, Frontier
from tlog.note import NoteError, Verifier
from tlog.records import GENESIS, Bare, Entry

MAX_LINE = 1 << 25  # bytes of one stored record: the largest a batch can carry, and more


class CopyError(Exception):
    """The state directory cannot be used; the message says why."""


@dataclass(frozen=True)
class Verified:
    size: int
    root: bytes
    note: str


class AuditCopy:
    """The state directory, locked for this process from ``open`` to ``close``."""

    def __init__(self, directory: Path, *, readonly: bool = False) -> None:
        """Open (and, to write, make) the copy; a reader waits for a sync in progress."""
        self.dir = Path(directory)
        try:
            if not readonly:
                self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
                (self.dir / "checkpoints").mkdir(mode=0o750, exist_ok=True)
            flags = os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT
            self._lock = os.open(self.dir / "lock", flags, 0o640)
        except OSError as exc:
            raise CopyError(
                f"cannot use {self.dir} as the audit log's copy: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_SH if readonly else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise CopyError(f"another sync is using {self.dir}") from None
        self._load(readonly)

    def close(self) -> None:
        os.close(self._lock)

    def __enter__(self) -> AuditCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, readonly: bool) -> None:
        try:
            state = json.loads((self.dir / "state.json").read_bytes())
        except FileNotFoundError:
            state = {"records": 0, "bytes": 0, "frontier": [], "head": GENESIS}
        except (OSError, ValueError) as exc:
            raise CopyError(f"{self.dir}/state.json cannot be read: {exc}") from None
        try:
            self.records: int = state["records"]
            self.frontier = Frontier(self.records, [bytes.fromhex(h) for h in state["frontier"]])
            self.head: str = state["head"]
            self._bytes: int = state["bytes"]
            self.verified = Verified(
                state.get("size", 0),
                bytes.fromhex(state.get("root", EMPTY_ROOT.hex())),
                state.get("note", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CopyError(f"{self.dir}/state.json is not a copy's state ({exc})") from None
        if not readonly:
            with open(self.dir / "records.jsonl", "ab") as records:
                if (
                    records.tell() > self._bytes
                ):  # a crash after records were added, before the state
                    records.truncate(self._bytes)

    def _save(self) -> None:
        state = {
            "size": self.verified.size,
            "root": self.verified.root.hex(),
            "note": self.verified.note,
            "records": self.records,
            "bytes": self._bytes,
            "head": self.head,
            "frontier": [h.hex() for h in self.frontier.hashes],
        }
        commit_file(self.dir, "state.json", json.dumps(state, indent=1).encode(), 0o640)

    def verifier(self, given: Path | None) -> Verifier:
        """The log key: the one kept here, or ``given`` on the first sync (then kept)."""
        kept = self.dir / "log.pub"
        try:
            texts = [kept.read_text()[:4096]] if kept.exists() else []
            if given is not None:
                texts.append(given.read_text()[:4096])
            keys = [Verifier.parse(text) for text in texts]
        except (OSError, UnicodeDecodeError, NoteError) as exc:
            raise CopyError(f"the log's public key cannot be read: {exc}") from None
        if not keys:
            raise CopyError(
                "give the log's public key with --key (signerctl audit key prints it"
                " at the appliance); it is kept in the copy after the first sync"
            )
        if len(keys) == 2 and keys[0].text() != keys[1].text():
            raise CopyError(f"{given} is not the log key this copy was made with ({kept})")
        if not kept.exists():
            commit_file(self.dir, "log.pub", (keys[0].text() + "\n").encode(), 0o644)
        return keys[0]

    @property
    def alarm(self) -> str | None:
        try:
            return (self.dir / "ALARM").read_text(errors="replace").strip() or "an alarm"
        except FileNotFoundError:
            return None

    def append(self, records: list[Bare]) -> None:
        """Add records after those held, their links computed here; kept once ``save``d."""
        lines = []
        for bare in records:
            entry = bare.linked(self.head)
            self.frontier.append(entry.leaf)
            self.head = entry.hash
            lines.append(json.dumps(entry.__dict__, separators=(",", ":")) + "\n")
        data = "".join(lines).encode()
        with open(self.dir / "records.jsonl", "ab") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        self.records += len(records)
        self._bytes += len(data)
        self._save()

    def verify(self, size: int, root: bytes, note: str) -> None:
        """Keep ``note`` as the checkpoint verified last (its records, if any, are all held)."""
        if size != self.verified.size:
            commit_file(self.dir / "checkpoints", f"{size}.note", note.encode(), 0o640)
        self.verified = Verified(size, root, note)
        self._save()

    def drop_unverified(self) -> list[str]:
        """Cut the records past the verified size; their lines, for the evidence."""
        dropped = list(self.lines())[self.verified.size :]
        if dropped:
            self._bytes -= sum(len(line.encode()) for line in dropped)
            self.records = self.verified.size
            with open(self.dir / "records.jsonl", "ab") as records:
                records.truncate(self._bytes)
            self.frontier, self.head = Frontier(), GENESIS
            for entry in self.entries():
                self.frontier.append(entry.leaf)
                self.head = entry.hash
            self._save()
        return dropped

    def lines(self) -> Iterator[str]:
        """The lines of the records held, as stored."""
        if not self._bytes:
            return
        with open(self.dir / "records.jsonl", "rb") as records:
            left = self._bytes
            for line in records:
                if left <= 0:
                    return
                left -= len(line)
                yield line.decode("utf-8", "replace")

    def entries(self) -> Iterator[Entry]:
        """The records held, oldest first; the ones past the verified size too."""
        for n, line in enumerate(self.lines(), 1):
            if len(line) > MAX_LINE:
                raise CopyError(f"record {n} of {self.dir}/records.jsonl is too long")
            try:
                data = json.loads(line)
                yield Entry(data["seq"], data["at"], data["event"], data["details"], data["prev"])
            except (ValueError, KeyError, TypeError):
                raise CopyError(f"record {n} of {self.dir}/records.jsonl is not a record") from None

    def raise_alarm(self, problem: str, kind: str, evidence: Mapping[str, str | bytes]) -> Path:
        """Keep ``evidence`` and set the alarm; the evidence's directory."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        where = self.dir / "evidence" / f"{stamp}-{kind}"
        where.mkdir(mode=0o750, parents=True)
        for name, content in {"problem.txt": problem + "\n", **evidence}.items():
            data = content.encode() if isinstance(content, str) else content
            commit_file(where, name, data, 0o640)
        commit_file(self.dir, "ALARM", f"{problem}\nevidence: {where}\n".encode(), 0o640)
        fsync_dir(self.dir)
        return where
