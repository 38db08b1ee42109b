"""Wake-ups for spool consumers: an inotify watch on one directory.

Shared by both sides (the signer watches incoming/, the comm handler watches
results/). It carries no data: an event, or a queue overflow, only means
"scan the directory again". The consumer adds the watch first, then scans,
then waits, so no file committed after the scan can be missed.

Event names are never trusted for what they say about a file: the scan that
follows reads the directory itself. A name is used for one thing only, to
skip a scan: an event naming a dot-file (a temporary, which every reader
ignores) wakes nobody. Nothing is lost by that even if the name lies,
because consumers also scan on a timeout (the signer every ``IDLE_WAKEUP``, 5 s).

Entries are published by linking an unnamed file (``safeio.publish``), which
the kernel reports as ``IN_CREATE`` of the final name, or, where the file
system cannot, by a rename (``IN_MOVED_TO``, an operator's requeue too).
``COMMIT_MASK`` (what the signer and the comm handler watch) asks for those
two, so an entry made in place by a misbehaving writer (a link, a FIFO, a
file written under its final name) is refused at once rather than at the
next timeout. Deletions, writes and attribute changes bring nothing to read
and are not watched. ``min_interval`` bounds the rate of reads: ``burst``
reads may follow each other at once, then one per interval, each taking all
the events queued meanwhile (a read that brought work is given back by its
owner, ``credit_back``); so a storm costs one read per interval.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from inotify_simple import Event, INotify, flags

# Events that concern the watch itself (the directory gone, events lost): always a scan.
_SELF = flags.Q_OVERFLOW | flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED

COMMIT_MASK = flags.MOVED_TO | flags.CREATE | _SELF | flags.ONLYDIR

WATCH_MASK = (  # everything that changes the directory's entries
    COMMIT_MASK | flags.MOVED_FROM | flags.CLOSE_WRITE | flags.DELETE | flags.ATTRIB
)


class DirWatcher:
    """An inotify watch on ``path``, created at construction time.

    ``ignored`` counts the events that named a dot-file and so woke nobody
    (``take_ignored`` reads and resets it): a storm's measure. ``gone`` is
    set once the kernel dropped the watch (the directory was removed or
    its file system unmounted): a long-lived owner then makes a new one.
    """

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        mask: int = WATCH_MASK,
        min_interval: float = 0.0,
        burst: int = 8,
    ) -> None:
        self.path = Path(path)
        self.min_interval, self.burst = min_interval, burst
        self.ignored = 0
        self.gone = False
        self._credit, self._credited_at = float(burst), time.monotonic()  # reads allowed now
        self._inotify = INotify()
        try:
            self._inotify.add_watch(os.fspath(self.path), mask)
        except BaseException:
            self._inotify.close()
            raise

    def fileno(self) -> int:
        """The inotify descriptor, readable when an event is queued."""
        return int(self._inotify.fileno())

    def wait(self, timeout: float | None) -> bool:
        """Block up to ``timeout`` seconds (None: forever) for an event worth a scan.

        True if an entry may have appeared in the directory (or events were
        lost to an overflow): the caller must scan again. False on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._pace(deadline)
            events = self._inotify.read(timeout=_millis(deadline))
            if not events:
                return False
            self.gone = self.gone or any(e.mask & flags.IGNORED for e in events)
            if _worth_a_scan(events):
                return True
            self.ignored += len(events)
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def credit_back(self) -> None:
        """The last read brought work: it does not count against ``min_interval``'s pace.

        The pace is for reads that bring nothing (a storm); without this, a
        steady stream of real requests would wait up to an interval each.
        """
        self._credit = min(float(self.burst), self._credit + 1)

    def take_ignored(self) -> int:
        """The events ignored since the last call."""
        count, self.ignored = self.ignored, 0
        return count

    def _pace(self, deadline: float | None) -> None:
        """Take one read's credit, sleeping until there is one (never past ``deadline``)."""
        if self.min_interval <= 0:
            return
        now = time.monotonic()
        earned = (now - self._credited_at) / self.min_interval
        self._credit, self._credited_at = min(float(self.burst), self._credit + earned), now
        pause = (1 - self._credit) * self.min_interval
        if deadline is not None:
            pause = min(pause, deadline - now)
        if pause > 0:
            time.sleep(pause)
            self._credit, self._credited_at = self._credit + pause / self.min_interval, now + pause
        self._credit -= 1

    def close(self) -> None:
        self._inotify.close()

    def __enter__(self) -> DirWatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _millis(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    # Round up so that a tiny positive timeout does not become a busy poll.
    return max(0, math.ceil((deadline - time.monotonic()) * 1000))


def _worth_a_scan(events: Iterable[Event]) -> bool:
    return any(e.mask & _SELF or not e.name.startswith(".") for e in events)
