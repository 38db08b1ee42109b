"""signer-bridge as a process, for the tests: its v1 pty, its log, its stop.

Test tooling, web host side. The bridge runs as the web host would run it
(``python -m webhost.bridge``), on the web end of a rig's cable, with the
rig's short timeouts, so that a fault on the cable costs about a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.link import ClientTimeouts
from webhost.client import WebClient

BRIDGE_TIMEOUTS = ("--ack-timeout", "1.0", "--chunk-timeout", "0.4", "--answer-timeout", "40")
V1_CLIENT: ClientTimeouts = {"ready_timeout": 5.0, "verdict_timeout": 5.0, "chunk_timeout": 2.0}


@dataclass
class BridgeProcess:
    process: subprocess.Popen[bytes]
    v1_link: str
    log_path: Path

    def client(self, response_timeout: float = 60.0) -> WebClient:
        """The deployed client's library on the bridge's v1 pty."""
        timeouts: ClientTimeouts = {**V1_CLIENT, "response_timeout": response_timeout}
        return WebClient(self.v1_link, **timeouts)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while self.log().count(text) < count:
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not logged {count} times:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


def start_bridge(device: str, log_path: Path, *extra: str) -> BridgeProcess:
    """Start the bridge on ``device``; return once it has printed its v1 link."""
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "webhost.bridge", "--device", device, *BRIDGE_TIMEOUTS, *extra],
        stdout=subprocess.PIPE,
        stderr=log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log_file.close()
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("v1 link: "):
        process.kill()
        raise AssertionError(f"the bridge printed {line!r}:\n{log_path.read_text()}")
    return BridgeProcess(process, line.removeprefix("v1 link: ").strip(), log_path)
