"""Fixtures of the signer-comm fault tests: both real daemons on a cable the test controls.

Test tooling on both sides of the trust boundary. Each test runs signer-core and signer-comm as separate processes (under two
uids when run as root) on a demo CA, joined to the test by an in-process
NullModem: end "a" is the appliance's, reached through a symlink the test
controls (so the "device" can vanish and come back), end "b" is the web
host's. Faults are injected on the cable at absolute byte offsets; the Rig
tells the tests what the client got back and what reached the CA (database
rows, audit records, spool files).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import pytest
import serial
from cryptography import x509

from comm_handler.frames import (
    Message,
    encode_message,
)
from signer_core.x509.compat import verify_issued_by
from signerctl.demo.ca import Users, create_demo_ca
from signerctl.demo.nullmodem import Direction, NullModem
from signerctl.demo.run import daemons, wait_until_served
from signerctl.demo.supervise import Supervisor
from spool.header import Action, RequestHeader, System
from spool.queue import Spool
from tests.support.bridge import BridgeProcess, start_bridge
from tests.support.link import ClientTimeouts
from webhost.client import Response, WebClient

TO_COMM, TO_WEB = Direction.B_TO_A, Direction.A_TO_B
# The daemon's link timeouts, small so that each fault costs about a second.
COMM = {
    "ready_timeout": 1.0,
    "verdict_timeout": 1.0,
    "chunk_timeout": 0.4,
    "result_deadline": 30.0,
    "max_message": 65536,
}

# The client's: its verdict wait outlasts the daemon's chunk timeout, as deployed.
CLIENT: ClientTimeouts = {
    "ready_timeout": 2.0,
    "verdict_timeout": 1.5,
    "chunk_timeout": 1.0,
    "response_timeout": 40.0,
}
SETTLE = 0.6  # longer than the daemon's chunk timeout plus its quiet time
NOTHING_QUEUED = {"incoming": 0, "active": 0, "results": 0, "corrupt": 0}
SAN, SUBJECT = "DNS:www.example.org", "/CN=www.example.org"
SIGN_HEADER = RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


@pytest.fixture(scope="module")
def ca_template(users) -> Iterator[Path]:
    """Keys and certificates made once per module; each test copies them."""
    path = Path(tempfile.mkdtemp(prefix="signer-comm-ca-", dir="/tmp"))
    path.chmod(0o755)
    create_demo_ca(path / "ca", users, "/dev/null")
    yield path / "ca"
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Rig:
    """The two daemons on a fresh copy of the demo CA, cabled to the test."""

    TO_COMM, TO_WEB = TO_COMM, TO_WEB
    COMM, SETTLE, NOTHING_QUEUED, SIGN_HEADER = COMM, SETTLE, NOTHING_QUEUED, SIGN_HEADER

    base: Path
    users: Users
    modem: NullModem
    ca: Path
    supervisor: Supervisor | None = None

    @property
    def device(self) -> Path:
        return self.base / "ttySIGNER"

    @property
    def web_end(self) -> str:
        return self.modem.b_path

    def plug(self, modem: NullModem) -> None:
        """Point the device symlink at ``modem``'s appliance end (atomically)."""
        self.modem = modem
        self.users.give_to_comm(modem.a_path)
        tmp = self.base / "ttySIGNER.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(modem.a_path)
        os.replace(tmp, self.device)

    def client(self, **options: Unpack[ClientTimeouts]) -> WebClient:
        timeouts: ClientTimeouts = {**CLIENT, **options}
        return WebClient(self.web_end, **timeouts)

    def port(self) -> serial.Serial:
        return serial.serial_for_url(self.web_end, baudrate=115200, timeout=1.0)

    @property
    def running(self) -> Supervisor:
        """The supervisor of both daemons, once start_rig has started them."""
        assert self.supervisor is not None, "the daemons were not started"
        return self.supervisor

    def comm_pid(self) -> int:
        return self.running.pid("signer-comm")

    def core_pid(self) -> int:
        return self.running.pid("signer-core")

    def comm_log(self) -> str:
        return (self.base / "log" / "signer-comm.log").read_text(errors="replace")

    def query(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(f"file:{self.ca}/lib/ca.sqlite?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchall()

    def certificates(self) -> list[str]:
        return [
            row[0] for row in self.query("SELECT serial FROM certificates WHERE state = 'issued'")
        ]

    def audited(self, event: str) -> int:
        return self.query("SELECT count(*) FROM audit WHERE event = ?", event)[0][0]

    def spool(self) -> dict[str, int]:
        return Spool(self.ca / "spool").counts()

    def wait_until_idle(self, timeout: float = 20.0) -> None:
        """Until the signer has taken every queued request (it starts slower than comm)."""
        deadline = time.monotonic() + timeout
        while self.spool()["incoming"] or self.spool()["active"]:
            assert time.monotonic() < deadline, f"the signer left {self.spool()}"
            time.sleep(0.05)

    def assert_alive(self, comm_pid: int) -> None:
        assert self.comm_pid() == comm_pid
        for name, proc in self.running.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        assert self.running.restarts == {"signer-core": 0, "signer-comm": 0}

    def sign(self, csr: bytes, **options: Unpack[ClientTimeouts]) -> Response:
        with self.client(**options) as client:
            return client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT)

    @staticmethod
    def sign_message(csr: bytes) -> bytes:
        """The encoded message of a signing request for ``csr``, as the web host sends it."""
        return encode_message(
            Message(SIGN_HEADER.to_bytes(), (csr, SAN.encode(), SUBJECT.encode()))
        )

    def assert_certificate(self, response: Response) -> x509.Certificate:
        assert response.ok, response.reason
        assert response.header == bytes([1, Action.SIGN, 0, 0]) and response.payload2 == b""
        cert = x509.load_pem_x509_certificate(response.payload1)
        verify_issued_by(
            cert, x509.load_pem_x509_certificate((self.ca / "certs" / "root0.crt").read_bytes())
        )
        assert format(cert.serial_number, "x") in self.certificates()
        return cert

    def assert_spooled(self, requests: int) -> None:
        """Exactly ``requests`` signing requests reached the signer, each handled once.

        The delivery receipt of the last answer may reach incoming/ just after the
        signer went idle: it is waited for too, then the counts must be exact.
        """
        expected = {**NOTHING_QUEUED, "results": requests}
        deadline = time.monotonic() + 10
        self.wait_until_idle()
        while self.spool() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.spool() == expected, self._stall_report()

    def _stall_report(self) -> str:
        """What a spool left unserved holds, and where the signer waits: for a rare stall."""
        entries = {s: sorted(os.listdir(self.ca / "spool" / s)) for s in ("incoming", "active")}
        proc = Path(f"/proc/{self.running.processes['signer-core'].pid}")
        try:
            state = (
                (proc / "wchan").read_text(),
                (proc / "stat").read_text().rpartition(")")[2].split()[0],
            )
        except OSError as exc:
            state = ("unknown", str(exc))
        return f"spool entries {entries}; signer-core in {state[0]} (state {state[1]})"

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.comm_log().count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} not logged {count} times"
            time.sleep(0.05)


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")


def start_rig(rig: Rig, template: Path, comm: dict[str, object]) -> None:
    """Lay out the CA in ``rig.ca`` with ``comm`` in [comm], start both daemons, wait for them."""
    for name in ("keys", "certs"):
        shutil.copytree(template / name, rig.ca / name, ignore=shutil.ignore_patterns("S.*"))
    rig.plug(rig.modem)
    config = create_demo_ca(rig.ca, rig.users, str(rig.device))
    settings = "".join(f"{key} = {toml_value(value)}\n" for key, value in comm.items())
    text = config.read_text()
    assert "result_deadline = 100.0\n" in text
    config.write_text(text.replace("result_deadline = 100.0\n", settings))
    (rig.base / "log").mkdir()
    rig.supervisor = daemons(config, rig.base / "log")
    rig.supervisor.start()
    wait_until_served(rig.web_end)
    rig.wait_until_idle()


@pytest.fixture
def make_rig(world_dir, ca_template, users):
    made: list[Rig] = []

    def make(spool_size: str | None = None, **comm: object) -> Rig:
        rig = Rig(world_dir, users, NullModem().start(), world_dir / "ca")
        made.append(rig)  # before anything can fail: teardown stops what was started
        rig.ca.mkdir()
        if spool_size is not None:
            mount_tmpfs(rig.ca / "spool", spool_size)
        start_rig(rig, ca_template, {**COMM, **comm})
        return rig

    yield make
    for rig in made:
        stop_rig(rig)


def stop_rig(rig: Rig) -> None:
    if rig.supervisor is not None:
        for proc in rig.supervisor.processes.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a test may have stopped one
        rig.supervisor.stop()
    rig.modem.stop()
    for log in sorted((rig.base / "log").glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
    if os.path.ismount(rig.ca / "spool"):
        subprocess.run(["umount", "-l", str(rig.ca / "spool")], check=False)


@pytest.fixture
def rig(make_rig) -> Rig:
    return make_rig()


@pytest.fixture
def bridge(rig, world_dir) -> Iterator[BridgeProcess]:
    """signer-bridge on the rig's web end, stopped (status 0) after the test."""
    running = start_bridge(rig.web_end, world_dir / "bridge.log")
    yield running
    assert running.stop() == 0
    print(f"--- bridge.log\n{running.log()[-3000:]}")
