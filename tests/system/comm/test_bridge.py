"""The deployed v1 client through signer-bridge, over link protocol v2, to the real appliance.

The bridge runs as a process on the web end of the rig's cable; the test is
the deployed client (``webhost.client.WebClient``, v1) on the bridge's pty.
Every request kind, refusals with their codes, the CRL out of sync, the
exact retry rule (an answer lost on the v1 side is given again, one
delivered makes the same bytes a new request), ``status`` over v2, both
protocols on one line, and a cable unplugged and plugged back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from comm_handler.frames import NAK, READY, START, FrameReceiver, Message, encode_message
from comm_handler.transfer import send_message
from signerctl.demo.nullmodem import NullModem
from signerctl.demo.run import demo_request, wait_until_served
from spool.header import Action, RequestHeader, System
from tests.support.bridge import BridgeProcess, start_bridge
from tests.support.crl import serials
from tests.support.openpgp import gen_key, gpg
from webhost.client import Response
from webhost.client_v2 import V2Client

SAN, SUBJECT = "DNS:www.example.org", "/CN=www.example.org"


def sign(bridge: BridgeProcess, csr: bytes) -> Response:
    with bridge.client() as client:
        return client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT)


def test_every_request_kind_through_the_bridge(rig, bridge, world_dir) -> None:
    pid = rig.comm_pid()
    root_cert = rig.ca / "certs" / "root0.crt"
    with bridge.client() as client:
        assert client.nul().ok
        cert = rig.assert_certificate(client.sign_x509(0, 5, 8, 365, demo_request(), SAN, SUBJECT))
        crl_path = world_dir / "root0.crl"
        pem = cert.public_bytes(serialization.Encoding.PEM)
        revoked = client.revoke(0, pem, crl_path, root_cert)  # no CRL held: the whole CRL
        assert revoked.ok and revoked.payload1.startswith(b"-----BEGIN X509 CRL-----")
        assert cert.serial_number in serials(x509.load_der_x509_crl(crl_path.read_bytes()))
        second = rig.assert_certificate(
            client.sign_x509(0, 5, 8, 365, demo_request(), SAN, SUBJECT)
        )
        pem2 = second.public_bytes(serialization.Encoding.PEM)
        delta = client.revoke(0, pem2, crl_path, root_cert)  # the CRL held: an xdelta patch
        assert delta.ok and not delta.payload1.startswith(b"-----BEGIN")
        crl = x509.load_der_x509_crl(crl_path.read_bytes())
        assert {cert.serial_number, second.serial_number} <= set(serials(crl))
        assert client.refresh_crl(0, crl_path, root_cert).ok
        home = world_dir / "user-gnupg"
        home.mkdir(mode=0o700)
        key = gpg(home, "--armor", "--export", gen_key(home, "Alice <alice@example.org>"))
        certified = client.sign_openpgp(key, 30)
        assert certified.ok, certified.reason
        assert certified.payload1.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    for kind in ("nul", "sign-x509", "revoke-x509", "sign-openpgp"):
        assert f" {kind}: " in bridge.log()
    assert rig.audited("revoked") == 2
    rig.assert_alive(pid)


def test_the_out_of_sync_crl_gets_the_whole_crl(rig, bridge, world_dir) -> None:
    crl_path = world_dir / "unknown.crl"
    crl_path.write_bytes(b"a CRL the appliance never issued")
    with bridge.client() as client:
        response = client.refresh_crl(0, crl_path, rig.ca / "certs" / "root0.crt")
    assert response.ok and response.payload1.startswith(b"-----BEGIN X509 CRL-----")
    x509.load_der_x509_crl(crl_path.read_bytes())  # replaced, verified by the client


@pytest.mark.parametrize(
    ("header", "payloads", "code"),
    [
        (
            RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365),
            (b"not a CSR", SAN.encode(), SUBJECT.encode()),
            "bad-csr",
        ),
        (
            RequestHeader(action=Action.REVOKE, system=System.X509, root=7, days=365),
            (b"", b"", b"da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            "unknown-root",
        ),
        (RequestHeader(action=Action.SIGN, system=System.NONE), (b"", b"", b""), "unknown-request"),
        (
            RequestHeader(action=Action.SIGN, system=System.OPENPGP, md=2, days=30),
            (b"no key here", b"", b""),
            "openpgp-bad-armour",
        ),
    ],
)
def test_refusals_keep_their_codes(rig, bridge, header, payloads, code) -> None:
    with bridge.client() as client:
        response = client.exchange(header, *payloads)
    assert not response.ok
    assert response.header == bytes([1, header.action, 0, 0])
    assert response.payload2.startswith(f"ERR {code}: ".encode()), response.payload2


def unacknowledged(port, message: bytes, naks: int = 6) -> None:
    """Send ``message`` and NAK every copy of the response (one and five resends): the
    bridge's v1 server gives up, and the answer never counts as delivered."""
    send_message(port, message)
    port.timeout = 60
    while port.read(1) != bytes([START]):
        pass
    port.write(bytes([READY]))
    for _ in range(naks):
        receiver = FrameReceiver((1 << 24) - 1)
        while receiver.needed:
            receiver.feed(port.read(receiver.needed))
        port.write(bytes([NAK]))


def test_a_retry_is_answered_again_and_a_delivered_answer_makes_a_new_request(rig, bridge) -> None:
    csr = demo_request()
    header = RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365)
    message = encode_message(Message(header.to_bytes(), (csr, SAN.encode(), SUBJECT.encode())))
    with bridge.client() as client:
        unacknowledged(client.port, message)
        time.sleep(1.0)  # the bridge's v1 server gives up on the response
        first = rig.assert_certificate(client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT))
        assert rig.certificates() == [format(first.serial_number, "x")]
        renewal = rig.assert_certificate(client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT))
    assert renewal.serial_number != first.serial_number
    assert len(rig.certificates()) == 2
    assert rig.audited("answered-again") == 1


def test_a_request_refused_for_now_keeps_its_id(make_rig, world_dir) -> None:
    """The signer is held: the comm handler refuses with ``timeout`` while the request
    stays queued. The client's retry, ACKed refusal or not, keeps the id: when the
    signer comes back, both the queued request and the retry get one certificate."""
    rig = make_rig(result_deadline=1.5)
    bridge = start_bridge(rig.web_end, world_dir / "bridge.log")
    try:
        csr = demo_request()
        os.kill(rig.core_pid(), signal.SIGSTOP)
        try:
            first = sign(bridge, csr)
            assert first.payload2.startswith(b"ERR timeout: "), first.payload2
        finally:
            os.kill(rig.core_pid(), signal.SIGCONT)
        retried = rig.assert_certificate(sign(bridge, csr))
        rig.wait_until_idle()
        assert rig.certificates() == [format(retried.serial_number, "x")]
        ids = re.findall(r"request ([0-9a-f]{32}) sign-x509", bridge.log())
        assert len(ids) == 2 and ids[0] == ids[1], bridge.log()
    finally:
        assert bridge.stop() == 0


def test_signer_client_speaks_v2(rig, world_dir) -> None:
    status = subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", rig.web_end, "--v2", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["signer"] == "up"
    without = subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", rig.web_end, "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert without.returncode == 2 and "add --v2" in without.stderr
    csr = world_dir / "req.csr"
    csr.write_bytes(demo_request())
    signed = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhost.cli",
            "--link",
            rig.web_end,
            "--v2",
            "sign-x509",
            "--root",
            "0",
            "--profile",
            "server",
            "--md",
            "sha256",
            "--days",
            "365",
            "--csr",
            str(csr),
            "--subject",
            SUBJECT,
            "--san",
            SAN,
        ],
        capture_output=True,
        timeout=60,
    )
    assert signed.returncode == 0, signed.stderr
    assert x509.load_pem_x509_certificate(signed.stdout).serial_number


def test_status_over_v2_and_both_protocols_on_one_line(rig) -> None:
    with V2Client(rig.web_end, response_timeout=30) as client:
        status = client.status()
        roots = status["roots"]
        assert isinstance(roots, dict)
        assert status["signer"] == "up" and roots["0"] == "serving"
        assert json.loads(json.dumps(status)) == status
        cert_v2 = rig.assert_certificate(
            client.sign_x509(0, 5, 8, 365, demo_request(), SAN, SUBJECT)
        )
    cert_v1 = rig.assert_certificate(rig.sign(demo_request()))  # v1, the same line
    assert cert_v1.serial_number != cert_v2.serial_number
    with V2Client(rig.web_end, response_timeout=30) as client:
        assert client.nul().ok
    # A stray v1 start byte, then v2; a stray v2 marker, then v1: each exchange is
    # told apart by its own first byte, whatever came before it. (The pause first
    # lets the client's last ACK through the test's relay before the noise.)
    time.sleep(rig.SETTLE)
    rig.modem.inject(rig.TO_COMM, b"\x02")
    time.sleep(rig.SETTLE)
    with V2Client(rig.web_end, response_timeout=30) as client:
        rig.assert_certificate(client.sign_x509(0, 5, 8, 365, demo_request(), SAN, SUBJECT))
    time.sleep(rig.SETTLE)
    rig.modem.inject(rig.TO_COMM, b"\x16\x02Q" + bytes(30))
    time.sleep(rig.SETTLE)
    rig.assert_certificate(rig.sign(demo_request()))
    assert len(rig.certificates()) == 4


def test_a_cable_unplugged_and_plugged_back(rig, bridge, world_dir) -> None:
    device = world_dir / "ttyBRIDGE"
    device.symlink_to(rig.web_end)
    bridge.stop()
    replugged = start_bridge(str(device), world_dir / "bridge2.log")
    try:
        assert sign(replugged, demo_request()).ok
        old = rig.modem
        old.hangup("b")
        device.unlink()
        refused = sign(replugged, demo_request())
        assert refused.payload2.startswith(b"ERR link-down: "), refused.payload2
        new = NullModem().start()
        rig.plug(new)
        old.stop()
        wait_until_served(new.b_path)
        device.symlink_to(new.b_path)
        end = time.monotonic() + 30
        while not (response := sign(replugged, demo_request())).ok:
            assert response.payload2.startswith(b"ERR link-down: "), response.payload2
            assert time.monotonic() < end, "the bridge did not reopen the cable"
            time.sleep(0.5)
        rig.assert_certificate(response)
        assert replugged.log().count("cable open on") == 2
    finally:
        assert replugged.stop() == 0
