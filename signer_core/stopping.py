"""signer-core's stop signals: SIGTERM and SIGINT end the loop where it may end.

Trusted side; runs in the signer and trusts nothing but the signals the
kernel delivers. A handler that raised in the middle of a request could cut
a transaction, a spool move or a gpg run short at any bytecode, so the
handler here only records the signal, except while the loop is idle (in
``StopRequest.idle``: a wait for the spool or a pause after a storage
failure, where no request is in hand and no transaction open), which it
cuts short by raising ``_WakeUp`` there. The request in hand is always
finished and answered; the daemon then audits the stop and closes the
database. (``budget`` owns SIGALRM; this module owns the stop signals.)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _WakeUp(BaseException):
    """Raised by the stop handler in an idle wait only, to cut it short."""


class StopRequest:
    """SIGTERM and SIGINT, remembered until the loop reaches a point where it may stop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._idle = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        if self._idle:
            self._idle = False
            raise _WakeUp

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def idle(self, wait: Callable[[float], object], seconds: float) -> bool:
        """``bool(wait(seconds))``, or False at once if a stop is requested before or during it."""
        try:
            try:
                self._idle = True
                if self.signum is None:
                    return bool(wait(seconds))
            finally:
                self._idle = False
        except _WakeUp:  # also when it lands in the finally: the outer try catches it
            pass
        return False
