"""Named points where a test can kill a daemon outright (SIGKILL), or hold it (SIGSTOP).

Shared by both sides; inert unless the environment arms it. A test sets
``SIGNER_CRASH_AT=<point>`` (and optionally ``SIGNER_CRASH_MARKER=<file>``,
so that only the first process to reach the point dies: the marker is
created exclusively just before the kill) and restarts the daemon, to show
that a crash at that step loses nothing and issues nothing twice. With
``SIGNER_CRASH_SIGNAL=SIGSTOP`` the process is held there instead (any
signal name may be given; SIGKILL by default): a test can then signal it in
the middle of that step and let it go on with SIGCONT. Whoever can
set a daemon's environment can already stop it, so the hook gives no new
power; production units set none of these variables.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "frame-received",
    "request-committed",
    "response-sent",  # comm handler
    "receipt-committed",
    "request-claimed",
    "serial-reserved",
    "certificate-signed",  # signer
    "database-committed",
    "result-committed",
)


def crashpoint(name: str) -> None:
    if os.environ.get("SIGNER_CRASH_AT") != name:
        return
    marker = os.environ.get("SIGNER_CRASH_MARKER")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.Signals[os.environ.get("SIGNER_CRASH_SIGNAL", "SIGKILL")])
