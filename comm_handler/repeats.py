"""Warnings that come again and again, logged once a minute with a count.

Untrusted side, no I/O but the log: a web host retrying against a spool the
comm user cannot write, or a client that keeps sending garbage, gets its
refusal each time without writing the log full.
"""

from __future__ import annotations

import logging
import time

REPEAT_WINDOW = 60.0  # s during which a warning identical to the last is counted, not logged


class Repeats:
    """Logs a warning, but one identical to the last only once per ``REPEAT_WINDOW``,
    saying how often it came meanwhile."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.last = ""
        self.since = 0.0  # monotonic time ``last`` was logged
        self.count = 0  # times ``last`` came again since, not logged

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if message == self.last and now - self.since < REPEAT_WINDOW:
            self.count += 1
            return
        again = message == self.last and self.count > 0
        if self.count:  # what came since the last line: with this one, or before it
            self.log.warning(
                "%s (the same warning %d times in the last %.0f s)",
                self.last,
                self.count + (1 if again else 0),
                now - self.since,
            )
        if not again:
            self.log.warning("%s", message)
        self.last, self.since, self.count = message, now, 0
