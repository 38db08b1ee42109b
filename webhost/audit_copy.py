"""The web host's verified copy of the appliance's audit log: one state directory.

Runs on the web host. It trusts the log's public key, which the operator
copied from ``signerctl audit key`` at the appliance, and nothing else:
``webhost.audit_sync`` checks every batch of records against a signed
checkpoint before this module keeps it, so everything kept is verified::

    records.jsonl        one record per line, oldest first, as the appliance holds it
    checkpoints/N.note   each checkpoint whose N records the copy holds
    state.json           the records held, their tree's frontier, the last signed checkpoint
                         and the consistency proof from the records held to it
    evidence/T-what/     what an alarm was raised on, kept for whoever investigates
    ALARM                the alarm's sentence; while it is there nothing more is synced
    log.pub              the log's public key, as the operator gave it on the first sync
    lock                 one sync at a time (flock; readers share it)

Records are appended and flushed first, then ``state.json`` is replaced
atomically, naming how many bytes of ``records.jsonl`` count: a crash in
between leaves a tail the next open cuts off. A file shorter than that is
not a crash's doing, and the copy refuses to go on.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spool.safeio import commit_file, fsync_dir
from tlog.merkle import Frontier
from tlog.note import NoteError, Verifier
from tlog.records import GENESIS, Entry

MAX_LINE = 1 << 25  # bytes of one stored record: the largest a batch can carry, and more
MAX_KEY_FILE = 4096


class CopyError(Exception):
    """The state directory cannot be used; the message says why."""


@dataclass(frozen=True)
class Signed:
    """The last checkpoint verified: its note, and the proof from the records held to it."""

    note: str = ""
    size: int = 0
    proof: tuple[bytes, ...] = ()


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
            self._load(readonly)
        except BlockingIOError:
            os.close(self._lock)
            raise CopyError(f"another sync is using {self.dir}") from None
        except BaseException:
            os.close(self._lock)
            raise

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
            proof = tuple(bytes.fromhex(h) for h in state.get("proof", ()))
            self.signed = Signed(state.get("note", ""), state.get("size", 0), proof)
        except (KeyError, TypeError, ValueError) as exc:
            raise CopyError(f"{self.dir}/state.json is not a copy's state ({exc})") from None
        try:
            length = os.stat(self.dir / "records.jsonl").st_size
        except FileNotFoundError:
            length = 0
        except OSError as exc:
            raise CopyError(f"{self.dir}/records.jsonl cannot be read: {exc.strerror}") from None
        if length < self._bytes:
            raise CopyError(
                f"{self.dir}/records.jsonl is shorter than the {self.records} records the copy"
                " verified: it was cut or replaced; the copy cannot go on"
            )
        if length > self._bytes and not readonly:
            os.truncate(self.dir / "records.jsonl", self._bytes)  # a crash's tail

    def _save(self) -> None:
        state = {
            "records": self.records,
            "bytes": self._bytes,
            "head": self.head,
            "frontier": [h.hex() for h in self.frontier.hashes],
            "size": self.signed.size,
            "note": self.signed.note,
            "proof": [h.hex() for h in self.signed.proof],
            "synced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        commit_file(self.dir, "state.json", json.dumps(state, indent=1).encode(), 0o640)

    def verifier(self, given: Path | None) -> Verifier:
        """The log key: the one kept here, or ``given`` on the first sync (then kept)."""
        kept = self.dir / "log.pub"
        try:
            texts = [kept.read_text()[:MAX_KEY_FILE]] if kept.exists() else []
            if given is not None:
                texts.append(given.read_text()[:MAX_KEY_FILE])
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

    def keep(self, entries: Sequence[Entry], frontier: Frontier, signed: Signed) -> None:
        """Add verified records (``frontier`` is the tree with them) under ``signed``."""
        data = "".join(json.dumps(e.__dict__, separators=(",", ":")) + "\n" for e in entries)
        raw = data.encode()
        if raw:
            with open(self.dir / "records.jsonl", "ab") as out:
                out.write(raw)
                out.flush()
                os.fsync(out.fileno())
        name = f"{signed.size}.note"
        if frontier.size == signed.size and not (self.dir / "checkpoints" / name).exists():
            commit_file(self.dir / "checkpoints", name, signed.note.encode(), 0o640)
        self.records, self._bytes, self.frontier = frontier.size, self._bytes + len(raw), frontier
        self.head = entries[-1].hash if entries else self.head
        self.signed = signed
        self._save()

    def lines(self) -> Iterator[str]:
        """The lines of the records held, as stored."""
        if not self._bytes:
            return
        with open(self.dir / "records.jsonl", "rb") as records:
            left, n = self._bytes, 0
            while left > 0 and (line := records.readline(MAX_LINE + 1)):
                n += 1
                if len(line) > MAX_LINE:  # read no further than the bound: the file is untrusted
                    raise CopyError(f"record {n} of {self.dir}/records.jsonl is too long")
                left -= len(line)
                yield line.decode("utf-8", "replace")

    def entries(self) -> Iterator[Entry]:
        """The records held, oldest first."""
        for n, line in enumerate(self.lines(), 1):
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
