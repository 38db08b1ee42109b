"""The order in which the signer takes the entries of incoming/, bounded under a flood.

Trusted (signer) side. It handles names only, never contents, and trusts
a name for nothing but its place in the order: every name here is a
directory entry the comm user (untrusted) made, and the caller's ``take``
checks the entry itself. Valid names sort in the order their entries were
made, so entries are taken oldest first.

A flood of bad entries must not hold back a request committed behind it:
during a run of refusals the newest pending entry gets a turn every
``PEEK_EVERY`` refusals, and incoming/ is listed again after
``RESCAN_EVERY`` s, so that such a request waits about a second, not for
the whole flood. An entry that could be neither moved aside nor removed is
skipped until it is gone, so that it is not met again at every listing.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PEEK_EVERY = 64
RESCAN_EVERY = 1.0


class IncomingScan:
    """The listing of ``incoming`` the signer works through; one signer thread per spool."""

    def __init__(self, incoming: Path) -> None:
        self.incoming = incoming
        self._pending: deque[str] = deque()  # names of the last listing, newest first
        self._listed_at = -float("inf")
        self._refusals = 0  # entries refused in a row
        self._stuck: set[str] = set()  # entries that could be neither moved aside nor removed

    def first(self, take: Callable[[str], T]) -> T | None:
        """The first entry ``take`` makes of a name, trying names in the order above.

        ``take`` returns None for a name it refused or found gone. The last
        listing is worked through first, then a fresh one; None means the
        fresh one held nothing ``take`` accepted. Listing incoming/ is the
        signer's own storage: its ``OSError`` propagates.
        """
        for fresh_listing in (False, True):
            if fresh_listing:
                self._list()
            while (name := self._next_name()) is not None:
                entry = take(name)
                if entry is not None:
                    self._refusals = 0
                    return entry
                self._refusals += 1
        return None

    def skip(self, name: str) -> None:
        """Leave ``name`` out of the listings for as long as it is there."""
        self._stuck.add(name)

    def _list(self) -> None:
        names = os.listdir(self.incoming)
        if self._stuck:
            self._stuck.intersection_update(names)  # forget the skipped entries that are gone
        fresh = (n for n in names if not n.startswith(".") and n not in self._stuck)
        self._pending = deque(sorted(fresh, reverse=True))
        self._listed_at = time.monotonic()

    def _next_name(self) -> str | None:
        if self._refusals and self._refusals % PEEK_EVERY == 0:
            if time.monotonic() - self._listed_at >= RESCAN_EVERY:
                self._list()
            if self._pending:
                return self._pending.popleft()
        return self._pending.pop() if self._pending else None
