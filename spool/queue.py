"""The spool state machine: a directory queue shared by both daemons.

A request's life is a series of atomic moves between state directories::

    comm:   .tmp --rename--> incoming/<id>.req
    signer: incoming/<id>.req --(validated copy)--> active/<id>.req
    signer: result --> results/<id>.res, then active/<id>.req removed
    comm:   response ACKed --> incoming/<id>.dlv (a delivery receipt)
    signer: incoming/<id>.dlv read and removed (no active copy: it is a hint)
    signer: anything refused --> corrupt/<name> + corrupt/<name>.reason

Comm-side methods (``enqueue``, ``wait_result``) run as the untrusted comm
user; they trust results/ only as far as the record decoder checks it.
Signer-side methods (``claim_next``, ``recover``, ``finish``,
``prune_results``) treat every entry of incoming/ as hostile: the comm
handler may be compromised and may race the signer on its own files. The
signer therefore works only on its own copy in active/, never follows a
link, and moves what it refuses aside instead of stopping.

What the comm user does to its own entries is never taken for a storage
fault of the signer's: an entry that cannot be read, moved or removed is
refused or skipped, and the queue goes on. Only failures of the signer's own
directories (listing incoming/, writing active/ or results/, their syncs)
propagate as ``OSError``, for the daemon to wait and try again.

corrupt/ is bounded (``CorruptLimits``): past either bound a refused entry
is removed instead of kept, and counted by reason for ``drop_report``. An
entry counts as the space its inode takes when it is moved: what the comm
user writes later through a descriptor it kept is counted when corrupt/ is
counted again, what it puts into a directory it made writable to us is not
counted; the spool's own filesystem bounds both. A flood of bad entries is
cleared at a bounded cost per entry and does not hold back a request
committed behind it (see ``claim_next``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spool.crashpoint import crashpoint
from spool.record import (
    MAX_REQUEST_SIZE,
    MAX_RESULT_SIZE,
    RECEIPT_SIZE,
    Receipt,
    Request,
    Result,
    SpoolFormatError,
    decode_receipt,
    decode_request,
    decode_result,
    encode_receipt,
    encode_request,
    encode_result,
    is_valid_id,
)
from spool.safeio import UnsafeEntry, commit_file, fsync_dir, read_hostile, unlink_quietly
from spool.watch import COMMIT_MASK, DirWatcher

log = logging.getLogger(__name__)

STATES = ("incoming", "active", "results", "corrupt")
# (mode, owner role, group role) per state; see docs/architecture.md.
# results/ carries the setgid bit so the signer's 0640 results belong to the
# comm group without the signer being a member of it.
DIR_LAYOUT = {
    "incoming": (0o1770, "signer", "comm"),
    "active": (0o700, "signer", "signer"),
    "results": (0o2750, "signer", "comm"),
    "corrupt": (0o700, "signer", "signer"),
}
ROOT_MODE = 0o755
REQUEST_MODE = 0o644  # the signer reads comm's files through the "other" bits
RESULT_MODE = 0o640
PRIVATE_MODE = 0o600

_NAME = {
    ".req": re.compile(r"([0-9]{20}-[0-9a-f]{32})\.req"),
    ".res": re.compile(r"([0-9]{20}-[0-9a-f]{32})\.res"),
    ".dlv": re.compile(r"([0-9]{20}-[0-9a-f]{32})\.dlv"),
}
# What an incoming entry of each kind may weigh, and how it is read.
_READERS: dict[str, tuple[int, Callable[[bytes], Request | Receipt]]] = {
    ".req": (MAX_REQUEST_SIZE, decode_request),
    ".dlv": (RECEIPT_SIZE, decode_receipt),
}
_KEEP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_REASON = ".reason"
_REASON_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_REASON_BLOCK = 4096  # space a reason file takes, until corrupt/ is counted again

# A flood of bad entries must not hold back a request committed behind it:
# during a run of refusals the newest pending entry gets a turn every
# PEEK_EVERY refusals, and incoming/ is listed again after RESCAN_EVERY s.
PEEK_EVERY = 64
RESCAN_EVERY = 1.0
RECOUNT_EVERY = 10.0  # s between recounts of a full corrupt/ (an operator may have purged it)
MAX_KINDS = 16  # reasons a drop report tells apart; the rest count as "other"
_PARTICULARS = re.compile(r"[0-9a-f]{8,}|[0-9]+")


@dataclass(frozen=True)
class CorruptLimits:
    """How much corrupt/ keeps; past either bound a refused entry is removed instead."""

    max_entries: int = 1000
    max_bytes: int = 16 * 2**20  # space taken (blocks) by kept entries and their reasons


@dataclass(frozen=True)
class DropReport:
    """Refused entries removed instead of kept, or skipped, since the last report."""

    counts: dict[str, int]  # removed, per kind of reason
    bytes: int  # the space they took
    skipped: int  # entries that could be neither moved aside nor removed


class _IdClock:
    """Strictly increasing nanosecond stamps, so ids sort in enqueue order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next_id(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return f"{self._last:020d}-{uuid.uuid4().hex}"


_CLOCK = _IdClock()


def _id_time(record_id: str) -> float:
    return int(record_id[:20]) / 1e9


class Spool:
    """The spool rooted at ``root``; ``comm_uid`` is the expected owner of incoming files.

    One signer thread per spool: ``claim_next`` keeps the last scan's listing.
    """

    def __init__(
        self,
        root: os.PathLike[str] | str,
        *,
        comm_uid: int | None = None,
        corrupt_limits: CorruptLimits = CorruptLimits(),
    ) -> None:
        self.root = Path(root)
        self.comm_uid = comm_uid
        self.limits = corrupt_limits
        self.incoming = self.root / "incoming"
        self.active = self.root / "active"
        self.results = self.root / "results"
        self.corrupt = self.root / "corrupt"
        self._pending: deque[str] = deque()  # names of the last incoming scan, newest first
        self._scanned_at = -float("inf")
        self._refusals = 0  # entries refused in a row
        self._stuck: set[str] = set()  # entries that could be neither moved aside nor removed
        self._usage: list[int] | None = None  # [entries, bytes] in corrupt/, counted lazily
        self._counted_at = -float("inf")
        self._drops: Counter[str] = Counter()
        self._dropped_bytes = 0
        self._skipped = 0

    def _dir(self, state: str) -> Path:
        if state not in STATES:
            raise ValueError(f"unknown spool state {state!r}")
        return self.root / state

    # -- setup -----------------------------------------------------------

    def create_dirs(
        self,
        signer_uid: int | None = None,
        signer_gid: int | None = None,
        comm_gid: int | None = None,
    ) -> None:
        """Create (or repair) the state directories with their modes and, as root, owners."""
        chown = os.geteuid() == 0
        ids = {"signer": (signer_uid, signer_gid), "comm": (None, comm_gid)}
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, ROOT_MODE)
        if chown:
            os.chown(self.root, _or_keep(signer_uid), _or_keep(signer_gid))
        for state, (mode, owner, group) in DIR_LAYOUT.items():
            path = self._dir(state)
            path.mkdir(exist_ok=True)
            if chown:
                os.chown(path, _or_keep(ids[owner][0]), _or_keep(ids[group][1]))
            os.chmod(path, mode)  # after chown, which clears setgid

    # -- comm side -------------------------------------------------------

    def enqueue(
        self,
        header: bytes,
        payloads: tuple[bytes, bytes, bytes],
        *,
        received_at: float,
        reply: bool = True,
    ) -> str:
        """Commit a request into incoming/ and return its id."""
        request = Request(_CLOCK.next_id(), received_at, header, payloads, reply)
        data = encode_request(request)
        commit_file(self.incoming, f"{request.id}.req", data, REQUEST_MODE)
        return request.id

    def deliver(self, request_id: str) -> str:
        """Commit a receipt: the web host ACKed the result of ``request_id``."""
        receipt = Receipt(_CLOCK.next_id(), request_id)
        commit_file(self.incoming, f"{receipt.id}.dlv", encode_receipt(receipt), REQUEST_MODE)
        return receipt.id

    def wait_result(self, request_id: str, timeout: float) -> Result | None:
        """The result for ``request_id``, or None if none is committed within ``timeout`` s."""
        if not is_valid_id(request_id):
            raise ValueError(f"bad request id {request_id!r:.80}")
        deadline = time.monotonic() + timeout
        result = self.read_result(request_id)
        if result is not None:
            return result  # spares setting up and tearing down a watch (milliseconds)
        with DirWatcher(self.results, mask=COMMIT_MASK) as watcher:
            while True:
                result = self.read_result(request_id)
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                watcher.wait(remaining)

    def read_result(self, request_id: str) -> Result | None:
        """The committed result for ``request_id`` or None; ``SpoolFormatError`` if it is bad."""
        path = self.results / f"{request_id}.res"
        try:
            data = read_hostile(path, max_size=MAX_RESULT_SIZE)
        except FileNotFoundError:
            return None
        except UnsafeEntry as exc:
            raise SpoolFormatError(f"result {request_id}: {exc}") from None
        result = decode_result(data)
        if result.id != request_id:
            raise SpoolFormatError(f"result file {request_id} holds id {result.id}")
        return result

    # -- signer side -----------------------------------------------------

    def claim_next(self) -> Request | Receipt | None:
        """Move the oldest valid incoming request to active/ and return it.

        A delivery receipt met first is removed and returned as it is: losing
        one to a crash only makes its request's retry look undelivered, which
        is the safe side. Invalid entries met on the way go to corrupt/. None
        means a fresh scan of incoming/ found nothing valid: the caller may
        then wait on its watcher (added before this call).

        Entries are taken oldest first. During a run of refusals the newest
        pending entry gets a turn every ``PEEK_EVERY``, and incoming/ is
        listed again every ``RESCAN_EVERY`` s, so that a request committed
        behind (or during) a flood of bad entries waits about a second, not
        for the whole flood.
        """
        for fresh_scan in (False, True):
            if fresh_scan:
                self._scan()
            while (name := self._next_name()) is not None:
                entry = self._take(name)
                if entry is not None:
                    self._refusals = 0
                    return entry
                self._refusals += 1
        return None

    def _scan(self) -> None:
        names = os.listdir(self.incoming)
        if self._stuck:
            self._stuck.intersection_update(names)  # forget the skipped entries that are gone
        fresh = (n for n in names if not n.startswith(".") and n not in self._stuck)
        self._pending = deque(sorted(fresh, reverse=True))
        self._scanned_at = time.monotonic()

    def _next_name(self) -> str | None:
        if self._refusals and self._refusals % PEEK_EVERY == 0:
            if time.monotonic() - self._scanned_at >= RESCAN_EVERY:
                self._scan()
            if self._pending:
                return self._pending.popleft()
        return self._pending.pop() if self._pending else None

    def _take(self, name: str) -> Request | Receipt | None:
        suffix = ".dlv" if name.endswith(".dlv") else ".req"
        entry = self._read_incoming(name, suffix)
        if isinstance(entry, Receipt):
            self._remove_claimed(name)  # not flushed: a receipt lost to a crash is safe
            return entry
        return None if entry is None else self._activate(name, entry)

    def _read_incoming(self, name: str, suffix: str) -> Request | Receipt | None:
        """The decoded entry ``name`` of incoming/, or None (gone, or moved to corrupt/)."""
        match = _NAME[suffix].fullmatch(name)
        if match is None:
            self._to_corrupt(self.incoming, name, f"name does not match <time_ns>-<hex32>{suffix}")
            return None
        size, decode = _READERS[suffix]
        try:
            entry = decode(
                read_hostile(self.incoming / name, max_size=size, expected_uid=self.comm_uid)
            )
            if entry.id != match.group(1):
                raise SpoolFormatError(f"file holds id {entry.id}")
        except FileNotFoundError:
            return None  # its owner removed it before commit was claimed: nothing to do
        except (UnsafeEntry, SpoolFormatError) as exc:
            self._to_corrupt(self.incoming, name, str(exc))
            return None
        return entry

    def _activate(self, name: str, request: Request) -> Request | None:
        data = encode_request(request)
        try:
            existing = read_hostile(self.active / name, max_size=MAX_REQUEST_SIZE)
        except (FileNotFoundError, UnsafeEntry):
            existing = None
        if existing is not None and existing != data:
            self._to_corrupt(
                self.incoming, name, "differs from the active request with the same id"
            )
            return None
        if existing is None:
            commit_file(self.active, name, data, PRIVATE_MODE)
        self._remove_claimed(name)
        fsync_dir(self.incoming)
        # An identical copy already active was left by a crash after the copy
        # and before the unlink; recover() has returned or will return it.
        return request if existing is None else None

    def _remove_claimed(self, name: str) -> None:
        """Remove incoming/``name`` once read; what we read stands whatever is there now."""
        try:
            os.unlink(self.incoming / name)
        except FileNotFoundError:
            pass  # its owner removed it meanwhile
        except (IsADirectoryError, PermissionError) as exc:
            # The comm user swapped in what we may not unlink (a directory)
            # after our read: its doing, not a storage fault; refused as any other.
            self._to_corrupt(self.incoming, name, f"replaced after it was read ({exc.strerror})")

    def recover(self) -> list[Request]:
        """Requests left in active/ by a crash, oldest first; bad ones go to corrupt/.

        Also removes the signer's own torn temporary files in active/ and
        results/ (the incoming original of a torn active copy is still there).
        """
        requests = []
        for name in sorted(os.listdir(self.active)):
            if name.startswith("."):
                unlink_quietly(self.active / name)  # our own torn copy; incoming still has it
                continue
            request = self._read_own(name)
            if request is not None:
                requests.append(request)
        for name in os.listdir(self.results):
            if name.startswith("."):
                unlink_quietly(self.results / name)
        return requests

    def _read_own(self, name: str) -> Request | None:
        match = _NAME[".req"].fullmatch(name)
        if match is None:
            self._to_corrupt(self.active, name, "name does not match <time_ns>-<hex32>.req")
            return None
        try:
            data = read_hostile(
                self.active / name, max_size=MAX_REQUEST_SIZE, expected_uid=os.geteuid()
            )
            request = decode_request(data)
            if request.id != match.group(1):
                raise SpoolFormatError(f"file holds id {request.id}")
        except (UnsafeEntry, SpoolFormatError) as exc:
            self._to_corrupt(self.active, name, str(exc))
            return None
        return request

    def finish(self, request: Request, result: Result | None) -> None:
        """Commit ``result`` (if any) into results/, then drop the active copy."""
        if not is_valid_id(request.id):
            raise ValueError(f"bad request id {request.id!r:.80}")
        if result is not None:
            if result.id != request.id:
                raise ValueError(f"result id {result.id} does not match request {request.id}")
            commit_file(self.results, f"{request.id}.res", encode_result(result), RESULT_MODE)
            crashpoint("result-committed")
        try:
            os.unlink(self.active / f"{request.id}.req")
        except FileNotFoundError:
            return  # already finished once: handling twice is harmless
        fsync_dir(self.active)

    def prune_results(self, max_age: float) -> int:
        """Remove results whose id is older than ``max_age`` seconds; return how many."""
        cutoff = time.time() - max_age
        removed = 0
        for name in os.listdir(self.results):
            match = _NAME[".res"].fullmatch(name)
            if match is not None and _id_time(match.group(1)) < cutoff:
                try:
                    os.unlink(self.results / name)
                    removed += 1
                except FileNotFoundError:
                    pass
        if removed:
            fsync_dir(self.results)
        return removed

    def prune_temp(self, max_age: float) -> int:
        """Remove dot-temporary files in incoming/ older than ``max_age`` s (a comm crash's debris)."""
        cutoff = time.time() - max_age
        removed = 0
        for name in os.listdir(self.incoming):
            path = self.incoming / name
            try:
                if name.startswith(".") and os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)  # unlink never follows a link; a directory just fails
                    removed += 1
            except OSError:
                pass
        return removed

    def _to_corrupt(self, directory: Path, name: str, reason: str) -> None:
        """Move ``directory/name`` aside with its reason, or remove it past corrupt/'s bounds.

        Never raises for what the entry is or becomes meanwhile; only the
        signer's own storage failing (an I/O error, corrupt/ unreadable) does.
        Not flushed: a refusal is not a commit. A move lost to a power cut
        leaves the entry where it was, to be refused again.
        """
        try:
            st = os.lstat(directory / name)
        except FileNotFoundError:
            return
        size = st.st_blocks * 512
        if not self._room_for(size):
            self._drop(directory, name, reason, size)
            return
        target = self._corrupt_name(name)
        try:
            os.rename(directory / name, self.corrupt / target)
        except FileNotFoundError:
            return
        except OSError:
            # A directory the comm user keeps unwritable to us cannot be moved
            # (its ".." cannot change); nor anything when corrupt/ cannot grow.
            self._drop(directory, name, reason, size)
            return
        log.warning("spool: %s/%r refused: %s", directory.name, name, reason)
        self._write_reason(target, f"{reason}\noriginal: {directory.name}/{name!r}\n")
        usage = self._corrupt_usage()
        usage[0] += 1
        usage[1] += size + _REASON_BLOCK

    def _corrupt_name(self, name: str) -> str:
        if (
            not _KEEP_NAME.fullmatch(name)
            or name.endswith(_REASON)
            or os.path.lexists(self.corrupt / name)
        ):
            return f"{_CLOCK.next_id()}.bad"
        return name

    def _write_reason(self, target: str, text: str) -> None:
        try:
            fd = os.open(self.corrupt / (target + _REASON), _REASON_FLAGS, PRIVATE_MODE)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("spool: cannot write the reason for %r: %s", target, exc)

    def _room_for(self, size: int) -> bool:
        """Whether corrupt/ may keep one more entry taking ``size`` bytes."""
        entries, used = self._corrupt_usage()
        return (
            entries < self.limits.max_entries
            and used + size + _REASON_BLOCK <= self.limits.max_bytes
        )

    def _corrupt_usage(self) -> list[int]:
        """[entries, bytes] in corrupt/: counted at first use, again when full now and then."""
        now = time.monotonic()
        if self._usage is None or (
            now - self._counted_at >= RECOUNT_EVERY
            and (
                self._usage[0] >= self.limits.max_entries
                or self._usage[1] + _REASON_BLOCK > self.limits.max_bytes
            )
        ):
            self._usage = self._count_corrupt()
            self._counted_at = now
        return self._usage

    def _count_corrupt(self) -> list[int]:
        entries = used = 0
        for name in os.listdir(self.corrupt):
            try:
                used += os.lstat(self.corrupt / name).st_blocks * 512
            except FileNotFoundError:
                continue
            entries += not name.startswith(".") and not name.endswith(_REASON)
        return [entries, used]

    def _drop(self, directory: Path, name: str, reason: str, size: int) -> None:
        """Remove a refused entry instead of keeping it; counted for ``drop_report``."""
        try:
            _remove(directory / name)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._skip(directory, name, reason, exc)
            return
        if not self._drops:
            log.warning(
                "spool: refused entries are being removed instead of kept (corrupt/ "
                "is at its bounds, or they could not be moved); counts follow"
            )
        kind = _kind(reason)
        if kind not in self._drops and len(self._drops) >= MAX_KINDS:
            kind = "other"
        self._drops[kind] += 1
        self._dropped_bytes += size

    def _skip(self, directory: Path, name: str, reason: str, exc: OSError) -> None:
        log.error(
            "spool: %s/%r refused (%s) but can be neither moved aside nor removed (%s); "
            "skipping it",
            directory.name,
            name,
            reason,
            exc.strerror,
        )
        self._skipped += 1
        if directory == self.incoming:
            self._stuck.add(name)

    def drop_report(self) -> DropReport | None:
        """What was removed instead of kept, or skipped, since the last call; None if nothing."""
        if not self._drops and not self._skipped:
            return None
        report = DropReport(dict(self._drops), self._dropped_bytes, self._skipped)
        self._drops, self._dropped_bytes, self._skipped = Counter(), 0, 0
        return report

    # -- operators -------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Committed entries per state (corrupt: refused entries, not their reasons)."""
        counts = {}
        for state in STATES:
            names = [n for n in os.listdir(self._dir(state)) if not n.startswith(".")]
            if state == "corrupt":
                names = [n for n in names if not n.endswith(_REASON)]
            counts[state] = len(names)
        return counts

    def oldest_age(self, state: str) -> float | None:
        """Age in seconds of the oldest entry in ``state``, None if it is empty.

        Queued states use the time in the id; corrupt/ uses when each entry was refused.
        """
        directory = self._dir(state)
        stamps: list[float | None] = []
        for name in os.listdir(directory):
            if state == "corrupt":
                if name.endswith(_REASON) and not name.startswith("."):
                    stamps.append(_mtime(directory / name))
            else:
                match = _NAME[".res" if state == "results" else ".req"].fullmatch(name)
                if match is not None:
                    stamps.append(_id_time(match.group(1)))
        known = [stamp for stamp in stamps if stamp is not None]
        return time.time() - min(known) if known else None


def _or_keep(value: int | None) -> int:
    return -1 if value is None else value


def _remove(path: Path) -> None:
    try:
        os.unlink(path)  # never follows a link
    except IsADirectoryError:
        os.rmdir(path)  # only an empty one: what a directory holds is left to its owner


def _kind(reason: str) -> str:
    """The reason without its particulars (numbers, ids, quoted values), to count by."""
    head = re.split(r"['\"]", reason, maxsplit=1)[0]
    return _PARTICULARS.sub("N", head).strip()[:60] or "other"


def _mtime(path: Path) -> float | None:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
