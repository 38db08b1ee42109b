"""A small process supervisor for running the appliance without systemd.

Operator tooling (the demo, tests); trusted side. It does for the demo what
the systemd units do in production: a daemon that exits is started again
after ``RESTART_DELAY`` (systemd's ``Restart=always``, ``RestartSec``). It
starts the daemons as it runs itself; started as root, each daemon drops to
its own configured user (hardening.process), as it would without systemd. A
daemon gets only the few variables of ``DAEMON_ENV`` from our environment, as
a unit's daemon gets only what the unit sets.

``stop()`` is ``systemctl stop``: it ends the watch first, so that nothing
it stops is started again, then sends each daemon SIGTERM and waits for it
(``STOP_TIMEOUT``, systemd's ``TimeoutStopSec`` in small) before SIGKILL;
each daemon exits 0 once it has finished or abandoned the work in hand
(signer-core finishes it, then closes its database). A daemon stopped by
anyone else's signal, even cleanly, is started again, as ``Restart=always``
does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("signer-supervise")

RESTART_DELAY = 1.0
POLL = 0.1
# All a daemon gets of the caller's environment: the search paths, the locale,
# and what tests set (spool.crashpoint's crash points, tests/system/test_imports.py's
# import log), and SoftHSM2's configuration (tests/support/softhsm.py's tokens).
DAEMON_ENV = (
    *("PATH", "LANG", "LC_ALL", "PYTHONPATH"),
    *("SIGNER_CRASH_AT", "SIGNER_CRASH_MARKER", "SIGNER_CRASH_SIGNAL"),
    "PYTHONPROFILEIMPORTTIME",
    "SOFTHSM2_CONF",
)
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def daemon_environment(ours: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables of ``DAEMON_ENV`` that ``ours`` has; PATH always."""
    env = {name: ours[name] for name in DAEMON_ENV if name in ours}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


STOP_TIMEOUT = 10.0  # s a daemon has to stop after SIGTERM before it is killed


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=daemon_environment)
    log_file: Path | None = None


class Supervisor:
    """Starts services, restarts those that die, stops them all on ``stop()``."""

    def __init__(self, services: list[Service]) -> None:
        self.services = services
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {s.name: 0 for s in services}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def _start(self, service: Service) -> None:
        with contextlib.ExitStack() as stack:
            out: IO[bytes] | int = subprocess.DEVNULL
            if service.log_file:
                out = stack.enter_context(open(service.log_file, "ab"))
            self.processes[service.name] = subprocess.Popen(
                service.argv,
                env=service.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        for service in self.services:
            self._start(service)
        self._thread.start()

    def _watch(self) -> None:
        died: dict[str, float] = {}
        while not self._stopping.wait(POLL):
            for service in self.services:
                proc = self.processes[service.name]
                if proc.poll() is None:
                    continue
                first_seen = died.setdefault(service.name, time.monotonic())
                if time.monotonic() - first_seen < RESTART_DELAY:
                    continue
                log.warning("%s exited with %s; restarting", service.name, proc.returncode)
                del died[service.name]
                self.restarts[service.name] += 1
                self._start(service)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def stop(self) -> dict[str, int]:
        """SIGTERM to every daemon, none restarted; their exit statuses (negative: the signal)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop within %g s of SIGTERM; killing it", name, STOP_TIMEOUT
                )
                proc.kill()
                proc.wait()
        return {name: proc.returncode for name, proc in self.processes.items()}
