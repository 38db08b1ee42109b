"""The spool state machine: a directory queue shared by both daemons.

Each state is a directory; a request's life is a series of atomic moves
between them, each made by one side only::

    comm:   (unnamed file) --link--> incoming/<id>.req         enqueue
    signer: incoming/<id>.req --(validated copy)--> active/<id>.req,
            then incoming/<id>.req removed                      claim_next
    signer: result --> results/<id>.res, then active/<id>.req removed   finish
    comm:   response ACKed --> incoming/<id>.dlv (a receipt)    deliver
    signer: incoming/<id>.dlv read and removed (no active copy: it is a hint)
    signer: active/<id>.req left by a crash --> served again    recover
    signer: anything refused --> corrupt/<name> + corrupt/<name>.reason

A commit is ``safeio.publish``: an unnamed file written, then linked under a
fresh name, so that each entry brings its watcher one event and a reader
never sees it half-written. Nothing here is flushed to disk: the spool is a
volatile handoff (a tmpfs in the package), and what must survive a power cut
is committed to the CA database before its result is published
(docs/reliability.md). Everything else is in modules
named for it: entry names and the checked read (``spool.entry``), the order
of claims under a flood (``spool.scan``), corrupt/'s bounds and drop reports
(``spool.corrupt``), the comm side's wait for results (``spool.results``),
pruning (``spool.upkeep``) and the operator's counts (``spool.census``).

Comm-side methods (``enqueue``, ``deliver``, ``wait_result``) run as the
untrusted comm user; they trust results/ only as far as the record decoder
checks it. Signer-side methods (``claim_next``, ``recover``, ``finish``,
the pruning) treat every entry of incoming/ as hostile: the comm handler may
be compromised and may race the signer on its own files. The signer
therefore works only on its own copy in active/, never follows a link, and
moves what it refuses aside instead of stopping.

What the comm user does to its own entries is never taken for a storage
fault of the signer's: an entry that cannot be read, moved or removed is
refused or skipped, and the queue goes on. Only failures of the signer's own
directories (listing incoming/, writing active/ or results/) propagate as
``OSError``, for the daemon to wait and try again.
"""

from __future__ import annotations

import os
from pathlib import Path

from spool import census, upkeep
from spool.corrupt import DEFAULT_LIMITS, CorruptDir, CorruptLimits, DropReport
from spool.crashpoint import crashpoint
from spool.entry import (
    RECEIPT,
    RECEIPT_SUFFIX,
    REQUEST,
    REQUEST_SUFFIX,
    RESULT_SUFFIX,
    EntryKind,
    R,
    new_id,
    read_entry,
)
from spool.record import (
    MAX_REQUEST_SIZE,
    Receipt,
    Request,
    Result,
    SpoolFormatError,
    encode_receipt,
    encode_request,
    encode_result,
    is_valid_id,
)
from spool.results import ResultWatch, read_result
from spool.safeio import UnsafeEntry, publish, read_hostile, unlink_quietly
from spool.scan import IncomingScan

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


class Spool:
    """The spool rooted at ``root``; ``comm_uid`` is the expected owner of incoming files.

    One signer thread per spool: ``claim_next`` keeps the last scan's listing.
    """

    def __init__(
        self,
        root: os.PathLike[str] | str,
        *,
        comm_uid: int | None = None,
        corrupt_limits: CorruptLimits = DEFAULT_LIMITS,
    ) -> None:
        self.root = Path(root)
        self.comm_uid = comm_uid
        self.limits = corrupt_limits
        self.incoming = self.root / "incoming"
        self.active = self.root / "active"
        self.results = self.root / "results"
        self.corrupt = self.root / "corrupt"
        self._scan = IncomingScan(self.incoming)
        self._corrupt = CorruptDir(self.corrupt, corrupt_limits)
        self._results_watch = ResultWatch(self.results)

    def _dir(self, state: str) -> Path:
        if state not in STATES:
            raise ValueError(f"unknown spool state {state!r}")
        return self.root / state

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

    # -- comm side: into incoming/ ----------------------------------------

    def enqueue(
        self,
        header: bytes,
        payloads: tuple[bytes, bytes, bytes],
        *,
        received_at: float,
        reply: bool = True,
        link_id: bytes | None = None,
    ) -> str:
        """Commit a request into incoming/ and return its id."""
        request = Request(new_id(), received_at, header, payloads, reply, link_id)
        publish(
            self.incoming, f"{request.id}{REQUEST_SUFFIX}", encode_request(request), REQUEST_MODE
        )
        return request.id

    def deliver(self, request_id: str) -> str:
        """Commit a receipt: the web host ACKed the result of ``request_id``."""
        receipt = Receipt(new_id(), request_id)
        publish(
            self.incoming, f"{receipt.id}{RECEIPT_SUFFIX}", encode_receipt(receipt), REQUEST_MODE
        )
        return receipt.id

    def wait_result(self, request_id: str, timeout: float) -> Result | None:
        """The result for ``request_id``, or None if none is committed within ``timeout`` s."""
        return self._results_watch.wait(request_id, timeout)

    def read_result(self, request_id: str) -> Result | None:
        """The committed result for ``request_id`` or None; ``SpoolFormatError`` if it is bad."""
        return read_result(self.results, request_id)

    # -- signer side: incoming/ -> active/ -> results/ ---------------------

    def claim_next(self) -> Request | Receipt | None:
        """Move the oldest valid incoming request to active/ and return it.

        A delivery receipt met first is removed and returned as it is: losing
        one to a crash only makes its request's retry look undelivered, which
        is the safe side. Invalid entries met on the way go to corrupt/. None
        means a fresh scan of incoming/ found nothing valid: the caller may
        then wait on its watcher (added before this call). The order, and its
        bounds under a flood of bad entries, are ``spool.scan``'s.
        """
        return self._scan.first(self._take)

    def _take(self, name: str) -> Request | Receipt | None:
        """The entry ``name`` of incoming/, claimed; None if it is gone or refused."""
        if name.endswith(RECEIPT_SUFFIX):
            receipt = self._read_incoming(name, RECEIPT)
            if receipt is not None:
                self._remove_claimed(name)  # not flushed: a receipt lost to a crash is safe
            return receipt
        request = self._read_incoming(name, REQUEST)
        return None if request is None else self._activate(name, request)

    def _read_incoming(self, name: str, kind: EntryKind[R]) -> R | None:
        """The checked entry ``name`` of incoming/, or None (gone, or refused)."""
        try:
            return read_entry(self.incoming, name, kind, expected_uid=self.comm_uid)
        except FileNotFoundError:
            return None  # its owner removed it before commit was claimed: nothing to do
        except (UnsafeEntry, SpoolFormatError) as exc:
            self._refuse(self.incoming, name, str(exc))
            return None

    def _activate(self, name: str, request: Request) -> Request | None:
        """incoming/``name`` --> active/``name``: our own copy committed, then the original removed."""
        data = encode_request(request)
        if os.path.lexists(self.results / f"{request.id}{RESULT_SUFFIX}"):
            # Answered already (its original outlived a crash after its copy): the
            # answer stands; serving it again would make one nobody can collect.
            self._remove_claimed(name)
            return None
        try:
            existing = read_hostile(self.active / name, max_size=MAX_REQUEST_SIZE)
        except FileNotFoundError:
            existing = None
        except UnsafeEntry as exc:  # ours, yet not readable: aside, so the copy can be made
            self._refuse(self.active, name, str(exc))
            existing = None
        if existing is not None and existing != data:
            self._refuse(self.incoming, name, "differs from the active request with the same id")
            return None
        if existing is None:
            publish(self.active, name, data, PRIVATE_MODE)
        self._remove_claimed(name)
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
            self._refuse(self.incoming, name, f"replaced after it was read ({exc.strerror})")

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
            try:
                requests.append(read_entry(self.active, name, REQUEST, expected_uid=os.geteuid()))
            except (UnsafeEntry, SpoolFormatError) as exc:
                self._refuse(self.active, name, str(exc))
        for name in os.listdir(self.results):
            if name.startswith("."):
                unlink_quietly(self.results / name)
        return requests

    def finish(self, request: Request, result: Result | None) -> None:
        """Commit ``result`` (if any) into results/, then drop the active copy."""
        if not is_valid_id(request.id):
            raise ValueError(f"bad request id {request.id!r:.80}")
        if result is not None:
            if result.id != request.id:
                raise ValueError(f"result id {result.id} does not match request {request.id}")
            name = f"{request.id}{RESULT_SUFFIX}"
            try:
                publish(self.results, name, encode_result(result), RESULT_MODE)
            except FileExistsError:
                pass  # answered before a crash, which left the active copy: that answer stands
            crashpoint("result-committed")
        unlink_quietly(self.active / f"{request.id}{REQUEST_SUFFIX}")

    # -- signer side: refusals, corrupt/ -----------------------------------

    def _refuse(self, directory: Path, name: str, reason: str) -> None:
        """``directory/name`` --> corrupt/, or removed past its bounds (``spool.corrupt``)."""
        if not self._corrupt.refuse(directory, name, reason) and directory == self.incoming:
            self._scan.skip(name)  # neither moved nor removed: not to be met again

    def drop_report(self) -> DropReport | None:
        """What was removed instead of kept, or skipped, since the last call; None if nothing."""
        return self._corrupt.drop_report()

    # -- upkeep and operators ----------------------------------------------

    def prune_results(self, max_age: float) -> int:
        """Remove results whose id is older than ``max_age`` seconds; return how many."""
        return upkeep.prune_results(self.results, max_age)

    def prune_temp(self, max_age: float) -> int:
        """Remove dot-temporary files in incoming/ older than ``max_age`` s (a comm crash's debris)."""
        return upkeep.prune_temp(self.incoming, max_age)

    def counts(self) -> dict[str, int]:
        """Committed entries per state (corrupt: refused entries, not their reasons)."""
        return {state: census.count(self._dir(state), state) for state in STATES}

    def oldest_age(self, state: str) -> float | None:
        """Age in seconds of the oldest entry in ``state``, None if it is empty (``spool.census``)."""
        return census.oldest_age(self._dir(state), state)


def _or_keep(value: int | None) -> int:
    return -1 if value is None else value
