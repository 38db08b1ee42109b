"""results/: how the comm handler reads, and waits for, the signer's answers.

Comm (untrusted) side: run as the comm user, which may read results/ (group
comm, setgid) but not write it; only the signer commits there. A result is
trusted as far as the record decoder checks it, and no further: its file is
read with the hostile-file rules and its id must be the one asked for.
"""

from __future__ import annotations

import time
from pathlib import Path

from spool.entry import RESULT_SUFFIX
from spool.record import MAX_RESULT_SIZE, Result, SpoolFormatError, decode_result, is_valid_id
from spool.safeio import UnsafeEntry, read_hostile
from spool.watch import COMMIT_MASK, DirWatcher


def wait_result(results: Path, request_id: str, timeout: float) -> Result | None:
    """The result for ``request_id``, or None if none is committed within ``timeout`` s."""
    if not is_valid_id(request_id):
        raise ValueError(f"bad request id {request_id!r:.80}")
    deadline = time.monotonic() + timeout
    result = read_result(results, request_id)
    if result is not None:
        return result  # spares setting up and tearing down a watch (milliseconds)
    with DirWatcher(results, mask=COMMIT_MASK) as watcher:
        while True:
            result = read_result(results, request_id)
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            watcher.wait(remaining)


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
