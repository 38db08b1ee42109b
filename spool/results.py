"""results/: how the comm handler reads, and waits for, the signer's answers.

Comm (untrusted) side: run as the comm user, which may read results/ (group
comm, setgid) but not write it; only the signer commits there. A result is
trusted as far as the record decoder checks it, and no further: its file is
read with the hostile-file rules and its id must be the one asked for.

The watch on results/ is opened once and kept (``ResultWatch``): closing an
inotify descriptor waits for the kernel's grace period, which cost a median
14 ms per request (up to 24) when each wait had a watch of its own. Events
that arrive between waits only cost one spare look for the file.
"""

from __future__ import annotations

import time
from pathlib import Path

from spool.entry import RESULT_SUFFIX
from spool.record import MAX_RESULT_SIZE, Result, SpoolFormatError, decode_result, is_valid_id
from spool.safeio import UnsafeEntry, read_hostile
from spool.watch import COMMIT_MASK, DirWatcher


class ResultWatch:
    """Waits for results in ``results``, on one watch kept from the first wait to ``close``."""

    def __init__(self, results: Path) -> None:
        self.results = results
        self._watcher: DirWatcher | None = None

    def wait(self, request_id: str, timeout: float) -> Result | None:
        """The result for ``request_id``, or None if none is committed within ``timeout`` s."""
        if not is_valid_id(request_id):
            raise ValueError(f"bad request id {request_id!r:.80}")
        deadline = time.monotonic() + timeout
        if self._watcher is not None and self._watcher.gone:
            self.close()  # results/ was made anew: watch the new one
        if self._watcher is None:
            self._watcher = DirWatcher(self.results, mask=COMMIT_MASK)
        # The watch exists before this first look: a result committed after it wakes us.
        while True:
            result = read_result(self.results, request_id)
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._watcher.wait(remaining)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None


def read_result(results: Path, request_id: str) -> Result | None:
    """The committed result for ``request_id`` or None; ``SpoolFormatError`` if it is bad."""
    path = results / f"{request_id}{RESULT_SUFFIX}"
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
