"""Upkeep the signer does between requests: old results, a comm crash's temporaries.

Trusted (signer) side. It removes by name and age only and never reads a
file. results/ is the signer's own; the dot-temporaries of incoming/ are the
comm user's, so there an entry is looked at with ``lstat`` and removed with
``unlink``, which follow no link, and whatever fails is left alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spool.entry import RESULT_SUFFIX, entry_id, id_time


def prune_results(results: Path, max_age: float) -> int:
    """Remove results whose id is older than ``max_age`` seconds; return how many."""
    cutoff = time.time() - max_age
    removed = 0
    for name in os.listdir(results):
        record_id = entry_id(name, RESULT_SUFFIX)
        if record_id is not None and id_time(record_id) < cutoff:
            try:
                os.unlink(results / name)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def prune_temp(incoming: Path, max_age: float) -> int:
    """Remove dot-temporary files in ``incoming`` older than ``max_age`` s; return how many."""
    cutoff = time.time() - max_age
    removed = 0
    for name in os.listdir(incoming):
        path = incoming / name
        try:
            if name.startswith(".") and os.lstat(path).st_mtime < cutoff:
                os.unlink(path)  # unlink never follows a link; a directory just fails
                removed += 1
        except OSError:
            pass
    return removed
