"""Helpers of the stop tests: signal a supervised daemon, see one held at a crash point,
read the CA database file without its write-ahead log.

Test tooling. A daemon held by ``SIGNER_CRASH_SIGNAL=SIGSTOP`` (spool.crashpoint)
sits in the middle of a step; ``stop_held`` queues the stop signal and lets it
go on, so the signal lands exactly there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

STOP_WAIT = 20.0  # s a daemon may take to stop; the supervisor's own limit is 10 s


def signal_and_wait(proc: subprocess.Popen, signum: int) -> int:
    """Send ``signum`` to the daemon ``proc`` and wait for its exit status."""
    os.kill(proc.pid, signum)
    return proc.wait(STOP_WAIT)


def held(pid: int) -> bool:
    """Whether process ``pid`` is stopped (by SIGSTOP at a crash point)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] in "Tt"


def stop_held(proc: subprocess.Popen, signum: int) -> int:
    """Queue ``signum`` for the held daemon ``proc``, continue it, wait for its exit status."""
    os.kill(proc.pid, signum)
    os.kill(proc.pid, signal.SIGCONT)
    return proc.wait(STOP_WAIT)


def database_alone(db_path: Path, into: Path) -> Path:
    """A copy of ``db_path`` made without its -wal and -shm files, as an operator might."""
    into.mkdir(exist_ok=True)
    copy = into / db_path.name
    shutil.copyfile(db_path, copy)
    return copy
