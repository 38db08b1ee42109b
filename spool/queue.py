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
link, and moves what it refuses aside instead of deleting it or stopping.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path

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
from spool.crashpoint import crashpoint
from spool.safeio import UnsafeEntry, commit_file, fsync_dir, read_hostile, unlink_quietly
from spool.watch import DirWatcher

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
_KEEP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_REASON = ".reason"


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

    def __init__(self, root: os.PathLike[str] | str, *, comm_uid: int | None = None) -> None:
        self.root = Path(root)
        self.comm_uid = comm_uid
        self.incoming = self.root / "incoming"
        self.active = self.root / "active"
        self.results = self.root / "results"
        self.corrupt = self.root / "corrupt"
        self._pending: list[str] = []  # names of the last incoming scan, newest first
        self._stuck: set[str] = set()  # entries that could not even be moved aside

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
        with DirWatcher(self.results) as watcher:
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
        """
        for fresh_scan in (False, True):
            if fresh_scan:
                self._pending = sorted(self._listing(self.incoming), reverse=True)
            while self._pending:
                request = self._take(self._pending.pop())
                if request is not None:
                    return request
        return None

    def _listing(self, directory: Path) -> list[str]:
        return [n for n in os.listdir(directory) if not n.startswith(".") and n not in self._stuck]

    def _take(self, name: str) -> Request | Receipt | None:
        if name.endswith(".dlv"):
            return self._take_receipt(name)
        match = _NAME[".req"].fullmatch(name)
        if match is None:
            self._to_corrupt(self.incoming, name, "name does not match <time_ns>-<hex32>.req")
            return None
        try:
            data = read_hostile(self.incoming / name, max_size=MAX_REQUEST_SIZE, expected_uid=self.comm_uid)
            request = decode_request(data)
            if request.id != match.group(1):
                raise SpoolFormatError(f"file holds id {request.id}")
        except FileNotFoundError:
            return None  # its owner removed it before commit was claimed: nothing to do
        except (UnsafeEntry, SpoolFormatError) as exc:
            self._to_corrupt(self.incoming, name, str(exc))
            return None
        return self._activate(name, request)

    def _take_receipt(self, name: str) -> Receipt | None:
        match = _NAME[".dlv"].fullmatch(name)
        if match is None:
            self._to_corrupt(self.incoming, name, "name does not match <time_ns>-<hex32>.dlv")
            return None
        try:
            data = read_hostile(self.incoming / name, max_size=RECEIPT_SIZE, expected_uid=self.comm_uid)
            receipt = decode_receipt(data)
            if receipt.id != match.group(1):
                raise SpoolFormatError(f"file holds id {receipt.id}")
        except FileNotFoundError:
            return None
        except (UnsafeEntry, SpoolFormatError) as exc:
            self._to_corrupt(self.incoming, name, str(exc))
            return None
        unlink_quietly(self.incoming / name)
        return receipt

    def _activate(self, name: str, request: Request) -> Request | None:
        data = encode_request(request)
        try:
            existing = read_hostile(self.active / name, max_size=MAX_REQUEST_SIZE)
        except (FileNotFoundError, UnsafeEntry):
            existing = None
        if existing is not None and existing != data:
            self._to_corrupt(self.incoming, name, "differs from the active request with the same id")
            return None
        if existing is None:
            commit_file(self.active, name, data, PRIVATE_MODE)
        try:
            os.unlink(self.incoming / name)
        except FileNotFoundError:
            pass  # its owner removed it meanwhile; our copy is what counts
        fsync_dir(self.incoming)
        # An identical copy already active was left by a crash after the copy
        # and before the unlink; recover() has returned or will return it.
        return request if existing is None else None

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
            data = read_hostile(self.active / name, max_size=MAX_REQUEST_SIZE, expected_uid=os.geteuid())
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
        """Move ``directory/name`` aside with its reason; never delete it, never raise."""
        target = name
        if not _KEEP_NAME.fullmatch(name) or name.endswith(_REASON) or os.path.lexists(self.corrupt / name):
            target = f"{_CLOCK.next_id()}.bad"
        log.warning("spool: %s/%r refused: %s", directory.name, name, reason)
        try:
            os.rename(directory / name, self.corrupt / target)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("spool: cannot move %s/%r aside: %s; ignoring it", directory.name, name, exc)
            self._stuck.add(name)
            return
        text = f"{reason}\noriginal: {directory.name}/{name!r}\n"
        try:
            commit_file(self.corrupt, target + _REASON, text.encode("utf-8", "replace"), PRIVATE_MODE)
            fsync_dir(directory)
        except OSError as exc:
            log.error("spool: cannot write the reason for %r: %s", target, exc)

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


def _mtime(path: Path) -> float | None:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
