"""What each state directory holds, for the operator: how many entries, how old.

Trusted side, run by the signer's operator tools; it lists directories and
reads no file. Names are the comm user's in incoming/, so they are counted
as they are (dot-temporaries aside) and dated only when they are valid names.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spool.corrupt import REASON_SUFFIX
from spool.entry import REQUEST_SUFFIX, RESULT_SUFFIX, entry_id, id_time


def count(directory: Path, state: str) -> int:
    """Committed entries in ``directory`` (corrupt: refused entries, not their reasons)."""
    names = [n for n in os.listdir(directory) if not n.startswith(".")]
    if state == "corrupt":
        names = [n for n in names if not n.endswith(REASON_SUFFIX)]
    return len(names)


def oldest_age(directory: Path, state: str) -> float | None:
    """Age in seconds of the oldest entry in ``directory``, None if it is empty.

    Queued states use the time in the id; corrupt/ uses when each entry was refused.
    """
    suffix = RESULT_SUFFIX if state == "results" else REQUEST_SUFFIX
    stamps: list[float | None] = []
    for name in os.listdir(directory):
        if state == "corrupt":
            if name.endswith(REASON_SUFFIX) and not name.startswith("."):
                stamps.append(_mtime(directory / name))
        elif (record_id := entry_id(name, suffix)) is not None:
            stamps.append(id_time(record_id))
    known = [stamp for stamp in stamps if stamp is not None]
    return time.time() - min(known) if known else None


def _mtime(path: Path) -> float | None:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return None
