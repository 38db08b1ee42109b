"""A small process supervisor for running the appliance without systemd.

Operator tooling (the demo, tests); trusted side. It does for the demo what
the systemd units do in production: a daemon that exits is started again
after ``RESTART_DELAY`` (systemd's ``Restart=always``, ``RestartSec``). It
starts the daemons as it runs itself; started as root, each daemon drops to
its own configured user (hardening.process), as it would without systemd.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("signer-supervise")

RESTART_DELAY = 1.0
POLL = 0.1


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
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
                env=service.env or None,
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

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
