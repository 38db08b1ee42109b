"""Faults on the v2 cable between signer-bridge and the appliance, under the deployed v1 client.

The rig's null modem flips, drops and inserts bytes at chosen offsets of the
bridge's request frames (to the comm handler) and of the appliance's answer
frames (to the bridge). Each fault must be detected by a check and repaired
by a resend: the v1 client gets the certificate for its own request, the CA
issues exactly one per request, and both daemons keep their pids.
"""

from __future__ import annotations

import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from comm_handler.v2frames import HEAD_SIZE, OVERHEAD
from signerctl.demo.run import demo_request
from tests.support.bridge import BridgeProcess

SAN, SUBJECT = "DNS:www.example.org", "/CN=www.example.org"
ACK_SIZE = OVERHEAD  # a K frame: a head and a check, no body


def signed(rig, bridge: BridgeProcess) -> x509.Certificate:
    """One request through the bridge; its certificate, checked to be for this request's key."""
    csr_pem = demo_request()
    with bridge.client() as client:
        response = client.sign_x509(0, 5, 8, 365, csr_pem, SAN, SUBJECT)
    cert = rig.assert_certificate(response)
    csr = x509.load_pem_x509_csr(csr_pem)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert cert.public_key().public_bytes(der, spki) == csr.public_key().public_bytes(der, spki)
    return cert


def request_body(rig, offset: int) -> int:
    """The absolute offset of byte ``offset`` of the next request frame's body."""
    return rig.modem.position(rig.TO_COMM) + HEAD_SIZE + offset


def answer_body(rig, offset: int) -> int:
    """The absolute offset of byte ``offset`` of the next answer's body (after the K)."""
    return rig.modem.position(rig.TO_WEB) + ACK_SIZE + HEAD_SIZE + offset


FAULTS = {
    "flip in the request": lambda rig: rig.modem.flip(rig.TO_COMM, request_body(rig, 60), 0x04),
    # The same bit of two neighbouring bytes: v1's XOR sum cannot see it (test_v2frames.py).
    "double flip in the request": lambda rig: (
        rig.modem.flip(rig.TO_COMM, request_body(rig, 80), 0x01),
        rig.modem.flip(rig.TO_COMM, request_body(rig, 81), 0x01),
    ),
    "flip in the request's length": lambda rig: rig.modem.flip(
        rig.TO_COMM, rig.modem.position(rig.TO_COMM) + 20, 0x10
    ),
    "byte dropped from the request": lambda rig: rig.modem.drop(rig.TO_COMM, request_body(rig, 30)),
    "flip in the answer": lambda rig: rig.modem.flip(rig.TO_WEB, answer_body(rig, 200), 0x20),
    "double flip in the answer": lambda rig: (
        rig.modem.flip(rig.TO_WEB, answer_body(rig, 300), 0x80),
        rig.modem.flip(rig.TO_WEB, answer_body(rig, 301), 0x80),
    ),
    "byte dropped from the answer": lambda rig: rig.modem.drop(rig.TO_WEB, answer_body(rig, 100)),
    "the request's ACK lost": lambda rig: rig.modem.drop(
        rig.TO_WEB, rig.modem.position(rig.TO_WEB) + 5
    ),
    "noise before the request": lambda rig: rig.modem.inject(rig.TO_COMM, b"\x16\x02Qnoise" * 3),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_on_the_cable_is_detected_and_resent(rig, bridge, fault) -> None:
    pid = rig.comm_pid()
    FAULTS[fault](rig)
    cert = signed(rig, bridge)
    assert rig.certificates() == [format(cert.serial_number, "x")]
    assert "WARNING" in rig.comm_log() + bridge.log(), "the fault went unseen"
    signed(rig, bridge)  # and the line is in step again
    assert len(rig.certificates()) == 2
    rig.assert_alive(pid)


def test_random_damage_never_gives_the_client_a_wrong_answer(rig, bridge) -> None:
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    requests = 8
    for _ in range(requests):
        if chance.random() < 0.5:
            rig.modem.flip(
                rig.TO_COMM, request_body(rig, chance.randrange(300)), 1 << chance.randrange(8)
            )
        else:
            rig.modem.flip(
                rig.TO_WEB, answer_body(rig, chance.randrange(1200)), 1 << chance.randrange(8)
            )
        signed(rig, bridge)
    assert len(rig.certificates()) == requests, f"seed {seed}"
