"""The signer's time budget per request: one request delays the queue by at most that long.

Trusted side. The signer serves one request at a time, so a request that
costs minutes (a pathological key, a parser fed its worst case) would make
every request behind it time out. ``budget(seconds)`` arms a real-time timer
(``SIGALRM``) around one handler; when it fires, ``OverBudget`` is raised in
the main thread at the next Python instruction or interrupted system call
(a wait for gpg, a sleep, a read). It derives from ``BaseException`` so that
no ``except Exception`` on the way can swallow it; transactions roll back
on it, and the gpg runner kills gpg and its agent on it.

What a timer cannot interrupt is one long call into C (a regular expression
match, a big-number operation): every parser of hostile input is linear in
its bounded input for that reason (bench/bench_hostile.py measures them),
and the budget only catches what is left. A decision already committed when
the timer fires is refused all the same; the retry then finds it (a
certificate answered again, a revocation answered with the current CRL).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class OverBudget(BaseException):
    """The request in hand has used up its time budget."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise OverBudget


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Raise ``OverBudget`` in the block if it runs longer than ``seconds`` (main thread only)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
