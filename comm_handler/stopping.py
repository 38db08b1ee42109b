"""How signer-comm stops: at once, except while a spool file is committed.

Untrusted side. SIGTERM and SIGINT raise ``Stopped`` wherever the daemon is
(no ``except Exception`` on the way catches it): a request being received,
a result being awaited or a response being sent is abandoned, and the web
host retries. ``whole`` holds the signals back while a spool file is
committed, so that the spool never holds half a file.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived: whatever is in progress is abandoned and the daemon exits 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def install() -> None:
    """Make the stop signals raise ``Stopped``."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


@contextmanager
def whole() -> Iterator[None]:
    """Hold stop signals back while a spool file is committed: it is there whole or not at all."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a held signal stops us here
