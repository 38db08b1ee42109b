"""Wake-ups for spool consumers: an inotify watch on one directory.

Shared by both sides (the signer watches incoming/, the comm handler watches
results/). It carries no data: an event, or a queue overflow, only means
"scan the directory again". The consumer adds the watch first, then scans,
then waits, so no file committed after the scan can be missed. Event names
are never trusted or used.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import TracebackType

from inotify_simple import INotify, flags

WATCH_MASK = (
    flags.MOVED_TO
    | flags.MOVED_FROM
    | flags.CLOSE_WRITE
    | flags.CREATE
    | flags.DELETE
    | flags.ATTRIB
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.Q_OVERFLOW
    | flags.ONLYDIR
)


class DirWatcher:
    """An inotify watch on ``path``, created at construction time."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path)
        self._inotify = INotify()
        try:
            self._inotify.add_watch(os.fspath(self.path), WATCH_MASK)
        except BaseException:
            self._inotify.close()
            raise

    def fileno(self) -> int:
        """The inotify descriptor, readable when ``wait`` would return True."""
        return int(self._inotify.fileno())

    def wait(self, timeout: float | None) -> bool:
        """Block up to ``timeout`` seconds (None: forever) for any event.

        True if something happened in the directory (or events were lost to an
        overflow): the caller must scan again. False on timeout.
        """
        # Round up so that a tiny positive timeout does not become a busy poll.
        millis = None if timeout is None else max(0, math.ceil(timeout * 1000))
        return bool(self._inotify.read(timeout=millis))

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
