"""signer-comm against what it cannot parse, a garbage burst, a spool it cannot write
to or that is full, and its device vanishing: refused with reasons, keep-alives still
answered, and the daemon keeps its pid.
"""

from __future__ import annotations

import os
import random
import time

import pytest
import serial

from comm_handler.frames import (
    START,
    Message,
    decode_message,
    make_frame,
)
from comm_handler.transfer import receive_message, send_message
from signerctl.demo.nullmodem import NullModem
from signerctl.demo.run import demo_request, wait_until_served
from spool.header import Action

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
    assert rig.spool() == rig.NOTHING_QUEUED and rig.certificates() == []
    assert rig.comm_log().count("refused: bad-message") == len(UNPARSABLE)
    rig.assert_alive(pid)


def test_garbage_burst_never_knocks_the_daemon_over(rig) -> None:
    pid = rig.comm_pid()
    rnd = random.Random(20261128)
    with rig.port() as port:
        for _ in range(20):
            port.write(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))))
        frame = bytearray(make_frame(rig.sign_message(demo_request())))
        frame[-10] ^= 0x55  # bad XOR: NAKed until the daemon's limit
        for _ in range(3):
            port.write(bytes([START]) + bytes(frame))
        port.write(bytes([START]) + b"\xff\xff\xff" + b"\x00" * 100)  # length over the limit
        port.flush()
    time.sleep(rig.SETTLE * 3)
    assert rig.spool() == rig.NOTHING_QUEUED and rig.certificates() == []
    rig.assert_certificate(rig.sign(demo_request()))
    with rig.client() as client:
        assert client.nul().ok
    rig.assert_spooled(1)
    rig.assert_alive(pid)


# -- the spool and the device -------------------------------------------------


def test_unwritable_spool_is_refused_and_nul_still_answered(rig) -> None:
    pid = rig.comm_pid()
    incoming = rig.ca / "spool" / "incoming"
    mode = incoming.stat().st_mode & 0o7777
    incoming.chmod(mode & ~0o222)
    try:
        refused = rig.sign(demo_request())
        with rig.client() as client:
            nul = client.nul()
    finally:
        incoming.chmod(mode)
    assert refused.header == bytes([1, Action.SIGN, 0, 0]) and refused.payload1 == b""
    assert refused.payload2.startswith(b"ERR spool-unavailable: ")
    assert nul.header == bytes([1, Action.NUL, 0, 0])
    assert nul.payload2.startswith(b"ERR spool-unavailable: ")
    assert rig.certificates() == []
    rig.assert_certificate(rig.sign(demo_request()))
    rig.assert_spooled(1)
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
    refused = rig.sign(demo_request())
    with rig.client() as client:
        nul = client.nul()
    filler.unlink()
    assert refused.payload1 == b"" and refused.payload2.startswith(b"ERR spool-unavailable: ")
    assert nul.header == bytes([1, Action.NUL, 0, 0])
    assert nul.payload2.startswith(b"ERR spool-unavailable: ")
    assert os.listdir(rig.ca / "spool" / "incoming") == []  # no torn temporary file left
    rig.assert_certificate(rig.sign(demo_request()))
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_device_vanishes_and_comes_back(rig) -> None:
    """USB unplugged: the pty hangs up and its path goes; later a new one appears."""
    pid = rig.comm_pid()
    old = rig.modem
    old.hangup("a")
    rig.device.unlink()
    rig.wait_for_log("link lost")
    rig.wait_for_log("cannot open", count=1)
    (rig.base / "not-a-tty").write_bytes(b"")
    if rig.users.comm_uid is not None:
        os.chown(rig.base / "not-a-tty", rig.users.comm_uid, rig.users.comm_gid)
    rig.device.symlink_to(rig.base / "not-a-tty")  # a wrong device must not stop it either
    rig.wait_for_log("cannot open", count=3)
    rig.plug(NullModem().start())
    old.stop()
    wait_until_served(rig.web_end)
    rig.assert_certificate(rig.sign(demo_request()))
    assert rig.comm_log().count("link open on") == 2
    rig.assert_spooled(1)
    rig.assert_alive(pid)
