"""signer-comm under faults, through the real daemons.

Each test runs signer-core and signer-comm as separate processes (under two
uids when run as root) on a demo CA, joined to the test by an in-process
NullModem: end "a" is the appliance's, reached through a symlink the test
controls (so the "device" can vanish and come back), end "b" is the web
host's. Faults are injected on the cable at absolute byte offsets. Every test
asserts what the client got back and what reached the CA (database rows,
audit records, spool files), and that signer-comm kept its pid.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from comm_handler.frames import (
    ACK,
    NAK,
    READY,
    START,
    Message,
    decode_message,
    encode_message,
    make_frame,
)
from comm_handler.transfer import LinkTimeout, receive_message, send_message
from signer_core.x509.compat import verify_issued_by
from signerctl.demo.ca import Users, create_demo_ca
from signerctl.demo.nullmodem import Direction, NullModem
from signerctl.demo.run import daemons, wait_until_served
from signerctl.demo.supervise import Supervisor
from spool.header import Action, RequestHeader, System
from spool.queue import Spool
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
CLIENT = {
    "ready_timeout": 2.0,
    "verdict_timeout": 1.5,
    "chunk_timeout": 1.0,
    "response_timeout": 40.0,
}
SETTLE = 0.6  # longer than the daemon's chunk timeout plus its quiet time
NOTHING_QUEUED = {"incoming": 0, "active": 0, "results": 0, "corrupt": 0}
SAN, SUBJECT = "DNS:www.example.org", "/CN=www.example.org"
SIGN_HEADER = RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365)


def make_csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_message(csr: bytes) -> bytes:
    return encode_message(Message(SIGN_HEADER.to_bytes(), (csr, SAN.encode(), SUBJECT.encode())))


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
        if self.users.comm_uid is not None:
            os.chown(modem.a_path, self.users.comm_uid, self.users.comm_gid)
        tmp = self.base / "ttySIGNER.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(modem.a_path)
        os.replace(tmp, self.device)

    def client(self, **options: float) -> WebClient:
        return WebClient(self.web_end, **{**CLIENT, **options})

    def port(self) -> serial.Serial:
        return serial.serial_for_url(self.web_end, baudrate=115200, timeout=1.0)

    def comm_pid(self) -> int:
        return self.supervisor.pid("signer-comm")

    def core_pid(self) -> int:
        return self.supervisor.pid("signer-core")

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
        for name, proc in self.supervisor.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        assert self.supervisor.restarts == {"signer-core": 0, "signer-comm": 0}


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


def sign(rig: Rig, csr: bytes, **options: float) -> Response:
    with rig.client(**options) as client:
        return client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT)


def assert_certificate(response: Response, rig: Rig) -> x509.Certificate:
    assert response.ok, response.reason
    assert response.header == bytes([1, Action.SIGN, 0, 0]) and response.payload2 == b""
    cert = x509.load_pem_x509_certificate(response.payload1)
    verify_issued_by(
        cert, x509.load_pem_x509_certificate((rig.ca / "certs" / "root0.crt").read_bytes())
    )
    assert format(cert.serial_number, "x") in rig.certificates()
    return cert


def assert_spooled(rig: Rig, requests: int) -> None:
    """Exactly ``requests`` signing requests reached the signer, each handled once.

    The delivery receipt of the last answer may reach incoming/ just after the
    signer went idle: it is waited for too, then the counts must be exact.
    """
    expected = {**NOTHING_QUEUED, "results": requests}
    deadline = time.monotonic() + 10
    rig.wait_until_idle()
    while rig.spool() != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rig.spool() == expected


def wait_for_log(rig: Rig, text: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while rig.comm_log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times"
        time.sleep(0.05)


# -- receiving (the comm handler takes a request off the line) ----------------


def test_flipped_request_byte_is_naked_resent_and_spooled_once(rig) -> None:
    pid = rig.comm_pid()
    message = sign_message(make_csr())
    with rig.port() as port:
        start = rig.modem.position(TO_COMM)
        rig.modem.flip(TO_COMM, start + 1 + 40)
        resends = send_message(port, message, ready_timeout=2.0, verdict_timeout=1.5)
        sent = rig.modem.position(TO_COMM) - start
        response = decode_message(receive_message(port, start_timeout=30.0))
    assert resends == 1 and sent == 1 + 2 * len(make_frame(message))
    assert_certificate(Response(response.header, *response.payloads[:2]), rig)
    assert len(rig.certificates()) == rig.audited("issued") == 1
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_dropped_request_byte_times_out_then_next_request_succeeds(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.drop(TO_COMM, rig.modem.position(TO_COMM) + 1 + 30)
    with pytest.raises(LinkTimeout, match="verdict"):
        sign(rig, make_csr())
    wait_for_log(rig, "frame incomplete")
    time.sleep(SETTLE)
    assert rig.certificates() == [] and rig.spool() == NOTHING_QUEUED
    assert_certificate(sign(rig, make_csr()), rig)
    assert len(rig.certificates()) == rig.audited("issued") == 1
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_noise_before_the_start_byte_is_skipped(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.inject(TO_COMM, b"\x00\xff\x10\x11AT+GARBAGE\r\n" * 5)
    assert_certificate(sign(rig, make_csr()), rig)
    assert len(rig.certificates()) == rig.audited("issued") == 1
    wait_for_log(rig, "noise bytes while waiting for start byte")
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_line_cut_mid_frame_then_mended(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.cut(TO_COMM, at=rig.modem.position(TO_COMM) + 1 + 50)
    with pytest.raises(LinkTimeout):
        sign(rig, make_csr())
    rig.modem.mend(TO_COMM)
    wait_for_log(rig, "frame incomplete")
    time.sleep(SETTLE)
    assert rig.certificates() == [] and rig.spool() == NOTHING_QUEUED
    assert_certificate(sign(rig, make_csr()), rig)
    assert len(rig.certificates()) == 1
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_client_gone_mid_frame(rig) -> None:
    """The web host writes half a frame and closes its port."""
    pid = rig.comm_pid()
    frame = make_frame(sign_message(make_csr()))
    with rig.port() as port:
        port.write(bytes([START]))
        assert port.read(1) == bytes([READY])
        port.write(frame[: len(frame) // 2])
        port.flush()
    wait_for_log(rig, "frame incomplete")
    time.sleep(SETTLE)
    assert rig.spool() == NOTHING_QUEUED
    assert_certificate(sign(rig, make_csr()), rig)
    assert len(rig.certificates()) == 1
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_length_over_the_limit_is_dropped(rig) -> None:
    pid = rig.comm_pid()
    big = encode_message(Message(SIGN_HEADER.to_bytes(), (b"x" * 70000, b"", b"")))
    with rig.port() as port, pytest.raises(LinkTimeout, match="verdict"):
        send_message(port, big, ready_timeout=2.0, verdict_timeout=1.5)
    wait_for_log(rig, "limit is 65536")
    time.sleep(SETTLE)
    assert rig.spool() == NOTHING_QUEUED
    assert rig.audited("refused") == 0
    assert_certificate(sign(rig, make_csr()), rig)
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


# -- sending (the comm handler returns the response) --------------------------


def test_flipped_response_byte_is_resent(rig) -> None:
    pid = rig.comm_pid()
    # Towards the web: READY, ACK, then the response's START and frame.
    rig.modem.flip(TO_WEB, rig.modem.position(TO_WEB) + 3 + 60)
    assert_certificate(sign(rig, make_csr()), rig)
    wait_for_log(rig, "response delivered after 1 resends")
    assert len(rig.certificates()) == rig.audited("issued") == 1
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


@pytest.mark.parametrize("silent_at", ["ready", "verdict"])
def test_client_silent_during_response(rig, silent_at) -> None:
    """The response is lost; the retry gets the certificate already issued."""
    pid = rig.comm_pid()
    csr = make_csr()
    with rig.port() as port:
        send_message(port, sign_message(csr), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])
        silenced = time.monotonic()
        if silent_at == "verdict":
            port.write(bytes([READY]))
            length = int.from_bytes(port.read(3), "big")
            port.read(length + 9)
        wait_for_log(rig, f"response not delivered: no {silent_at}")
        gave_up = time.monotonic() - silenced
    print(f"gave up on a client silent at {silent_at} after {gave_up:.2f} s")
    assert gave_up < COMM[f"{silent_at}_timeout"] + 2.0
    assert len(rig.certificates()) == 1
    retry = assert_certificate(sign(rig, csr), rig)
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    assert_spooled(rig, 2)
    rig.assert_alive(pid)


def test_client_naking_every_response_is_given_up_on(make_rig) -> None:
    rig = make_rig(max_resends=2)
    pid = rig.comm_pid()
    csr = make_csr()
    with rig.port() as port:
        send_message(port, sign_message(csr), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])
        port.write(bytes([READY]))
        for _ in range(3):  # the first send and max_resends resends
            length = int.from_bytes(port.read(3), "big")
            assert len(port.read(length + 9)) == length + 9
            port.write(bytes([NAK]))
        wait_for_log(rig, "response not delivered: frame refused 3 times")
        port.timeout = 0.5
        assert port.read(100) == b""  # no fourth copy
    retry = assert_certificate(sign(rig, csr), rig)
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert_spooled(rig, 2)
    rig.assert_alive(pid)


def test_dropped_response_byte_then_retry_gets_the_same_certificate(rig) -> None:
    pid = rig.comm_pid()
    csr = make_csr()
    rig.modem.drop(TO_WEB, rig.modem.position(TO_WEB) + 3 + 60)
    with pytest.raises(LinkTimeout):
        sign(rig, csr, response_timeout=3.0)
    wait_for_log(rig, "response not delivered: no verdict")
    retry = assert_certificate(sign(rig, csr), rig)
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    assert_spooled(rig, 2)
    rig.assert_alive(pid)


def test_paced_response_takes_line_time(make_rig) -> None:
    """With ``pace = true`` (deployed slices and delays) a response is written slowly."""
    rig = make_rig(pace=True)
    with rig.port() as port:
        send_message(port, sign_message(make_csr()), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])
        port.write(bytes([READY]))
        head = port.read(3)
        began = time.monotonic()
        rest = port.read(int.from_bytes(head, "big") + 9)
        took = time.monotonic() - began
        port.write(bytes([ACK]))
    frame = head + rest
    slices = len(frame) // 30
    print(f"paced response: {len(frame)} bytes in {took:.3f} s")
    assert took >= 0.9 * (len(frame) * 270e-6 + slices * 9e-3), (len(frame), took)
    message = decode_message(frame[:-9])
    assert_certificate(Response(message.header, *message.payloads[:2]), rig)
    wait_for_log(rig, "pacing Pacing(slice_bytes=30")


# -- the signer's deadline ---------------------------------------------------


def test_deadline_refuses_then_retry_gets_the_one_certificate(make_rig) -> None:
    rig = make_rig(result_deadline=2.0)
    pid = rig.comm_pid()
    csr = make_csr()
    os.kill(rig.core_pid(), signal.SIGSTOP)
    try:
        began = time.monotonic()
        refused = sign(rig, csr)
        took = time.monotonic() - began
        assert rig.spool()["incoming"] == 1  # still queued for the signer
    finally:
        os.kill(rig.core_pid(), signal.SIGCONT)
    print(f"timeout refusal after {took:.2f} s (deadline 2 s)")
    assert 2.0 <= took < 6.0
    assert refused.header == bytes([1, Action.SIGN, 0, 0]) and refused.payload1 == b""
    assert refused.payload2.startswith(b"ERR timeout: ")
    retry = assert_certificate(sign(rig, csr), rig)
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    counts = rig.spool()
    assert counts["incoming"] == counts["active"] == 0
    assert counts["results"] == 2  # the late result is kept, the retry's is there
    rig.assert_alive(pid)


# -- responses to what cannot be parsed --------------------------------------


def exchange_raw(port: serial.Serial, message: bytes) -> Message:
    send_message(port, message, ready_timeout=2.0, verdict_timeout=1.5)
    return decode_message(receive_message(port, start_timeout=10.0))


def l3(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


UNPARSABLE = [
    (l3(b"abc"), Action.NUL),  # not four strings
    (l3(l3(b"\x01\x01") + l3(b"") * 3), Action.SIGN),  # short header
    (l3(l3(bytes([2, 2, 1, 0, 0, 0, 1, 109, 0])) + l3(b"") * 3), Action.REVOKE),  # version 2
    (l3(l3(bytes([1, 1, 1, 0, 5, 8, 1, 109, 7])) + l3(b"") * 3), Action.SIGN),  # key flag 7
    (l3(l3(bytes([1, 9, 1, 0, 0, 0, 0, 0, 0])) + l3(b"") * 3), Action.NUL),  # action 9
    (l3(l3(bytes([1, 1, 7, 0, 0, 0, 0, 0, 0])) + l3(b"") * 3), Action.SIGN),  # system 7
]


def test_unparsable_messages_are_refused_with_their_action(rig) -> None:
    pid = rig.comm_pid()
    with rig.port() as port:
        for message, action in UNPARSABLE:
            response = exchange_raw(port, message)
            assert response.header == bytes([1, action, 0, 0]), message
            assert response.payloads[0] == response.payloads[2] == b""
            assert response.payloads[1].startswith(b"ERR bad-message: ")
    assert rig.spool() == NOTHING_QUEUED and rig.certificates() == []
    assert rig.comm_log().count("refused: bad-message") == len(UNPARSABLE)
    rig.assert_alive(pid)


def test_garbage_burst_never_knocks_the_daemon_over(rig) -> None:
    pid = rig.comm_pid()
    rnd = random.Random(20261128)
    with rig.port() as port:
        for _ in range(20):
            port.write(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))))
        frame = bytearray(make_frame(sign_message(make_csr())))
        frame[-10] ^= 0x55  # bad XOR: NAKed until the daemon's limit
        for _ in range(3):
            port.write(bytes([START]) + bytes(frame))
        port.write(bytes([START]) + b"\xff\xff\xff" + b"\x00" * 100)  # length over the limit
        port.flush()
    time.sleep(SETTLE * 3)
    assert rig.spool() == NOTHING_QUEUED and rig.certificates() == []
    assert_certificate(sign(rig, make_csr()), rig)
    with rig.client() as client:
        assert client.nul().ok
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


# -- the spool and the device -------------------------------------------------


def test_unwritable_spool_is_refused_and_nul_still_answered(rig) -> None:
    pid = rig.comm_pid()
    incoming = rig.ca / "spool" / "incoming"
    mode = incoming.stat().st_mode & 0o7777
    incoming.chmod(mode & ~0o222)
    try:
        refused = sign(rig, make_csr())
        with rig.client() as client:
            nul = client.nul()
    finally:
        incoming.chmod(mode)
    assert refused.header == bytes([1, Action.SIGN, 0, 0]) and refused.payload1 == b""
    assert refused.payload2.startswith(b"ERR spool-unavailable: ")
    assert nul.header == bytes([1, Action.NUL, 0, 0])
    assert nul.payload2.startswith(b"ERR spool-unavailable: ")
    assert rig.certificates() == []
    assert_certificate(sign(rig, make_csr()), rig)
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_full_spool_is_refused_and_nul_still_answered(make_rig) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    rig = make_rig(spool_size="512k")
    pid = rig.comm_pid()
    filler = rig.ca / "spool" / "filler"
    with open(filler, "wb") as out, pytest.raises(OSError, match="No space left"):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    refused = sign(rig, make_csr())
    with rig.client() as client:
        nul = client.nul()
    filler.unlink()
    assert refused.payload1 == b"" and refused.payload2.startswith(b"ERR spool-unavailable: ")
    assert nul.header == bytes([1, Action.NUL, 0, 0])
    assert nul.payload2.startswith(b"ERR spool-unavailable: ")
    assert os.listdir(rig.ca / "spool" / "incoming") == []  # no torn temporary file left
    assert_certificate(sign(rig, make_csr()), rig)
    assert_spooled(rig, 1)
    rig.assert_alive(pid)


def test_device_vanishes_and_comes_back(rig) -> None:
    """USB unplugged: the pty hangs up and its path goes; later a new one appears."""
    pid = rig.comm_pid()
    old = rig.modem
    old.hangup("a")
    rig.device.unlink()
    wait_for_log(rig, "link lost")
    wait_for_log(rig, "cannot open", count=1)
    (rig.base / "not-a-tty").write_bytes(b"")
    if rig.users.comm_uid is not None:
        os.chown(rig.base / "not-a-tty", rig.users.comm_uid, rig.users.comm_gid)
    rig.device.symlink_to(rig.base / "not-a-tty")  # a wrong device must not stop it either
    wait_for_log(rig, "cannot open", count=3)
    rig.plug(NullModem().start())
    old.stop()
    wait_until_served(rig.web_end)
    assert_certificate(sign(rig, make_csr()), rig)
    assert rig.comm_log().count("link open on") == 2
    assert_spooled(rig, 1)
    rig.assert_alive(pid)
