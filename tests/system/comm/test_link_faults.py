"""signer-comm under faults on the line, through the real daemons: a request damaged,
cut or delayed on its way in, a response on its way out, and the signer's deadline.

Every test asserts what the client got back and what reached the CA (database
rows, audit records, spool files), and that signer-comm kept its pid.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

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
from signerctl.demo.rig import wait_until
from signerctl.demo.run import demo_request
from spool.header import Action
from webhost.client import Response

# -- receiving (the comm handler takes a request off the line) ----------------


def test_flipped_request_byte_is_naked_resent_and_spooled_once(rig) -> None:
    pid = rig.comm_pid()
    message = rig.sign_message(demo_request())
    with rig.port() as port:
        start = rig.modem.position(rig.TO_COMM)
        rig.modem.flip(rig.TO_COMM, start + 1 + 40)
        resends = send_message(port, message, ready_timeout=2.0, verdict_timeout=1.5)
        sent = rig.modem.position(rig.TO_COMM) - start
        response = decode_message(receive_message(port, start_timeout=30.0))
    assert resends == 1 and sent == 1 + 2 * len(make_frame(message))
    rig.assert_certificate(Response(response.header, *response.payloads[:2]))
    assert len(rig.certificates()) == rig.audited("issued") == 1
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_dropped_request_byte_times_out_then_next_request_succeeds(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.drop(rig.TO_COMM, rig.modem.position(rig.TO_COMM) + 1 + 30)
    with pytest.raises(LinkTimeout, match="verdict"):
        rig.sign(demo_request())
    rig.wait_for_log("frame incomplete")
    time.sleep(rig.SETTLE)
    assert rig.certificates() == [] and rig.spool() == rig.NOTHING_QUEUED
    rig.assert_certificate(rig.sign(demo_request()))
    assert len(rig.certificates()) == rig.audited("issued") == 1
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_noise_before_the_start_byte_is_skipped(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.inject(rig.TO_COMM, b"\x00\xff\x10\x11AT+GARBAGE\r\n" * 5)
    rig.assert_certificate(rig.sign(demo_request()))
    assert len(rig.certificates()) == rig.audited("issued") == 1
    rig.wait_for_log("noise bytes while waiting for start byte")
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_line_cut_mid_frame_then_mended(rig) -> None:
    pid = rig.comm_pid()
    rig.modem.cut(rig.TO_COMM, at=rig.modem.position(rig.TO_COMM) + 1 + 50)
    with pytest.raises(LinkTimeout):
        rig.sign(demo_request())
    rig.modem.mend(rig.TO_COMM)
    rig.wait_for_log("frame incomplete")
    time.sleep(rig.SETTLE)
    assert rig.certificates() == [] and rig.spool() == rig.NOTHING_QUEUED
    rig.assert_certificate(rig.sign(demo_request()))
    assert len(rig.certificates()) == 1
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_client_gone_mid_frame(rig) -> None:
    """The web host writes half a frame and closes its port."""
    pid = rig.comm_pid()
    frame = make_frame(rig.sign_message(demo_request()))
    with rig.port() as port:
        port.write(bytes([START]))
        assert port.read(1) == bytes([READY])
        port.write(frame[: len(frame) // 2])
        port.flush()
    rig.wait_for_log("frame incomplete")
    time.sleep(rig.SETTLE)
    assert rig.spool() == rig.NOTHING_QUEUED
    rig.assert_certificate(rig.sign(demo_request()))
    assert len(rig.certificates()) == 1
    rig.assert_spooled(1)
    rig.assert_alive(pid)


def test_length_over_the_limit_is_dropped(rig) -> None:
    pid = rig.comm_pid()
    big = encode_message(Message(rig.SIGN_HEADER.to_bytes(), (b"x" * 70000, b"", b"")))
    with rig.port() as port, pytest.raises(LinkTimeout, match="verdict"):
        send_message(port, big, ready_timeout=2.0, verdict_timeout=1.5)
    rig.wait_for_log("limit is 65536")
    time.sleep(rig.SETTLE)
    assert rig.spool() == rig.NOTHING_QUEUED
    assert rig.audited("refused") == 0
    rig.assert_certificate(rig.sign(demo_request()))
    rig.assert_spooled(1)
    rig.assert_alive(pid)


# -- sending (the comm handler returns the response) --------------------------


def test_flipped_response_byte_is_resent(rig) -> None:
    pid = rig.comm_pid()
    # Towards the web: READY, ACK, then the response's START and frame.
    rig.modem.flip(rig.TO_WEB, rig.modem.position(rig.TO_WEB) + 3 + 60)
    rig.assert_certificate(rig.sign(demo_request()))
    rig.wait_for_log("response delivered after 1 resends")
    assert len(rig.certificates()) == rig.audited("issued") == 1
    rig.assert_spooled(1)
    rig.assert_alive(pid)


@pytest.mark.parametrize("silent_at", ["ready", "verdict"])
def test_client_silent_during_response(rig, silent_at) -> None:
    """The response is lost; the retry gets the certificate already issued."""
    pid = rig.comm_pid()
    csr = demo_request()
    with rig.port() as port:
        send_message(port, rig.sign_message(csr), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])
        silenced = time.monotonic()
        if silent_at == "verdict":
            port.write(bytes([READY]))
            length = int.from_bytes(port.read(3), "big")
            port.read(length + 9)
        rig.wait_for_log(f"response not delivered: no {silent_at}")
        gave_up = time.monotonic() - silenced
    print(f"gave up on a client silent at {silent_at} after {gave_up:.2f} s")
    assert gave_up < rig.COMM[f"{silent_at}_timeout"] + 2.0
    assert len(rig.certificates()) == 1
    retry = rig.assert_certificate(rig.sign(csr))
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    rig.assert_spooled(2)
    rig.assert_alive(pid)


def test_client_naking_every_response_is_given_up_on(make_rig) -> None:
    rig = make_rig(max_resends=2)
    pid = rig.comm_pid()
    csr = demo_request()
    with rig.port() as port:
        send_message(port, rig.sign_message(csr), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])
        port.write(bytes([READY]))
        for _ in range(3):  # the first send and max_resends resends
            length = int.from_bytes(port.read(3), "big")
            assert len(port.read(length + 9)) == length + 9
            port.write(bytes([NAK]))
        rig.wait_for_log("response not delivered: frame refused 3 times")
        port.timeout = 0.5
        assert port.read(100) == b""  # no fourth copy
    retry = rig.assert_certificate(rig.sign(csr))
    assert rig.certificates() == [format(retry.serial_number, "x")]
    rig.assert_spooled(2)
    rig.assert_alive(pid)


def test_dropped_response_byte_then_retry_gets_the_same_certificate(rig) -> None:
    pid = rig.comm_pid()
    csr = demo_request()
    rig.modem.drop(rig.TO_WEB, rig.modem.position(rig.TO_WEB) + 3 + 60)
    with pytest.raises(LinkTimeout):
        rig.sign(csr, response_timeout=3.0)
    rig.wait_for_log("response not delivered: no verdict")
    retry = rig.assert_certificate(rig.sign(csr))
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    rig.assert_spooled(2)
    rig.assert_alive(pid)


def test_paced_response_takes_line_time(make_rig) -> None:
    """With ``pace = true`` (deployed slices and delays) a response is written slowly."""
    rig = make_rig(pace=True)
    with rig.port() as port:
        send_message(port, rig.sign_message(demo_request()), ready_timeout=2.0, verdict_timeout=1.5)
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
    rig.assert_certificate(Response(message.header, *message.payloads[:2]))
    rig.wait_for_log("pacing Pacing(slice_bytes=30")


# -- the signer's deadline ---------------------------------------------------


@pytest.mark.timing
def test_deadline_refuses_then_retry_gets_the_one_certificate(make_rig) -> None:
    rig = make_rig(result_deadline=2.0)
    pid = rig.comm_pid()
    csr = demo_request()
    os.kill(rig.core_pid(), signal.SIGSTOP)
    try:
        began = time.monotonic()
        refused = rig.sign(csr)
        took = time.monotonic() - began
        assert rig.spool()["incoming"] == 1  # still queued for the signer
    finally:
        os.kill(rig.core_pid(), signal.SIGCONT)
    print(f"timeout refusal after {took:.2f} s (deadline 2 s)")
    assert 2.0 <= took < 6.0
    assert refused.header == bytes([1, Action.SIGN, 0, 0]) and refused.payload1 == b""
    assert refused.payload2.startswith(b"ERR timeout: ")
    retry = rig.assert_certificate(rig.sign(csr))
    assert rig.certificates() == [format(retry.serial_number, "x")]
    assert rig.audited("issued") == 1
    # The retry's delivery receipt is committed after the client's ACK: let the signer take it.
    wait_until(lambda: rig.spool()["incoming"] == rig.spool()["active"] == 0, 10, "a clean spool")
    assert rig.spool()["results"] == 2  # the late result is kept, the retry's is there
    rig.assert_alive(pid)
