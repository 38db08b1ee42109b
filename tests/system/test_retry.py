"""Retry or renewal, through the link with both daemons running under their own users.

The web host retries a request whose answer it never got, and renews a
certificate by sending the very same bytes again. The comm handler's delivery
receipt (written when the web side ACKs a response) tells the two apart: an
undelivered answer is given again, anything else is a new certificate. Every
assertion is on what the web side received and on the CA database.
"""

from __future__ import annotations

import time

import serial
from cryptography import x509

from comm_handler.frames import READY, START, FrameReceiver, Message, decode_message, encode_message
from comm_handler.transfer import send_message
from signer_core.x509.compat import not_before
from spool.header import Action, RequestHeader, System
from tests.support.openpgp import gen_key, gpg, user_ids
from webhost.client import WebClient

# The comm handler's wait for a verdict (the demo keeps the deployed 5 s),
# and a margin so that it has given up before the web side speaks again.
VERDICT_TIMEOUT = 5.0
VERDICT_MARGIN = 1.0
SIGN_HEADER = RequestHeader(
    action=Action.SIGN, system=System.X509, root=0, profile=5, md=8, days=365
)
SAN = b"DNS:www.example.org,DNS:example.org"
SUBJECT = b"/CN=www.example.org"


def answer_without_ack(
    link: str, header: RequestHeader, payloads: tuple[bytes, bytes, bytes]
) -> Message:
    """Send a request, read the whole response frame, and never give a verdict: a lost ACK."""
    port = serial.serial_for_url(link, baudrate=115200, timeout=1.0)
    try:
        send_message(port, encode_message(Message(header.to_bytes(), payloads)))
        deadline = time.monotonic() + 60
        while port.read(1) != bytes([START]):
            assert time.monotonic() < deadline, "no response start byte"
        port.write(bytes([READY]))
        receiver = FrameReceiver()
        while receiver.needed:
            receiver.feed(port.read(receiver.needed))
            assert time.monotonic() < deadline, "response frame incomplete"
        message = decode_message(receiver.message())
    finally:
        port.close()
    time.sleep(VERDICT_TIMEOUT + VERDICT_MARGIN)  # the comm handler gives up on the verdict
    return message


def serials(appliance) -> list[tuple[str, str]]:
    with appliance.db() as db:
        return db.execute("SELECT serial, state FROM certificates ORDER BY id").fetchall()


def events(appliance, event: str) -> int:
    with appliance.db() as db:
        return db.execute("SELECT count(*) FROM audit WHERE event = ?", (event,)).fetchone()[0]


def wait_for_event(appliance, event: str, count: int) -> None:
    """Receipts are handled after the answer has left: wait until the signer has seen it."""
    deadline = time.monotonic() + 10
    while events(appliance, event) < count:
        assert time.monotonic() < deadline, f"no {count} {event} records"
        time.sleep(0.05)


def test_undelivered_answer_is_given_again(appliance, world_dir, write_csr):
    csr = write_csr(world_dir / "req.csr")
    lost = answer_without_ack(appliance.link, SIGN_HEADER, (csr, SAN, SUBJECT))
    assert lost.payloads[1] == b"" and lost.payloads[0].startswith(b"-----BEGIN CERTIFICATE")
    with WebClient(appliance.link) as client:
        retry = client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT)
    assert retry.ok and retry.payload1 == lost.payloads[0]
    assert len(serials(appliance)) == 1
    assert events(appliance, "issued") == 1 and events(appliance, "answered-again") == 1
    wait_for_event(appliance, "delivered", 1)  # the retry's answer was ACKed
    appliance.assert_alive()


def test_delivered_answer_makes_the_same_bytes_a_renewal(appliance, world_dir, write_csr):
    write_csr(world_dir / "req.csr")
    first = appliance.sign(world_dir / "req.csr")
    assert first.returncode == 0, first.stderr
    wait_for_event(appliance, "delivered", 1)
    renewal = appliance.sign(world_dir / "req.csr")
    assert renewal.returncode == 0, renewal.stderr
    old, new = (x509.load_pem_x509_certificate(p.stdout) for p in (first, renewal))
    assert old.serial_number != new.serial_number
    assert not_before(new) >= not_before(old)
    assert serials(appliance) == [
        (format(old.serial_number, "x"), "issued"),
        (format(new.serial_number, "x"), "issued"),
    ]
    assert events(appliance, "answered-again") == 0
    appliance.assert_alive()


def test_revoked_certificate_is_never_given_again(appliance, world_dir, write_csr):
    """Sign (answer lost), revoke it, send the same bytes: a new certificate, not the revoked one."""
    csr = write_csr(world_dir / "req.csr")
    lost = answer_without_ack(appliance.link, SIGN_HEADER, (csr, SAN, SUBJECT))
    revoked = x509.load_pem_x509_certificate(lost.payloads[0])
    with WebClient(appliance.link) as client:
        crl = client.revoke(0, lost.payloads[0], world_dir / "root0.crl", appliance.root_cert(0))
        assert crl.ok, crl.reason
        again = client.sign_x509(0, 5, 8, 365, csr, SAN, SUBJECT)
    assert again.ok
    renewed = x509.load_pem_x509_certificate(again.payload1)
    assert renewed.serial_number != revoked.serial_number
    listed = x509.load_der_x509_crl((world_dir / "root0.crl").read_bytes())
    assert [e.serial_number for e in listed] == [revoked.serial_number]
    assert events(appliance, "answered-again") == 0 and events(appliance, "issued") == 2
    appliance.assert_alive()


def _ca_certification(home, answer: bytes, own_keyid: str):
    (uid,) = user_ids(home, answer)
    (sig,) = [s for s in uid.sigs if s.keyid != own_keyid]
    return sig


def test_openpgp_retry_and_recertification(appliance, world_dir):
    home = world_dir / "user-gnupg"
    home.mkdir(mode=0o700)
    fpr = gen_key(home, "Carol <carol@example.org>")
    key = gpg(home, "--export", fpr)
    header = RequestHeader(
        action=Action.SIGN, system=System.OPENPGP, md=2, days=30
    )  # as the client
    lost = answer_without_ack(appliance.link, header, (key, b"", b""))
    with WebClient(appliance.link) as client:
        retry = client.sign_openpgp(key, 30)
        assert retry.ok and retry.payload1 == lost.payloads[0]
        wait_for_event(appliance, "delivered", 1)
        time.sleep(1.1)  # certification times count in seconds
        renewal = client.sign_openpgp(key, 30)
    assert renewal.ok and renewal.payload1 != retry.payload1
    first = _ca_certification(home, retry.payload1, fpr[-16:])
    second = _ca_certification(home, renewal.payload1, fpr[-16:])
    assert first.keyid == second.keyid
    assert second.created > first.created
    assert second.expires_after == first.expires_after == 30 * 86400
    assert second.created + second.expires_after > first.created + first.expires_after
    wait_for_event(appliance, "delivered", 2)
    with appliance.db() as db:
        rows = db.execute(
            "SELECT fingerprint, days, delivered_at IS NOT NULL"
            " FROM openpgp_certifications ORDER BY id"
        ).fetchall()
    assert rows == [(fpr, 30, 1), (fpr, 30, 1)]
    assert events(appliance, "openpgp-certified") == 2
    assert events(appliance, "answered-again") == 1
    appliance.assert_alive()
