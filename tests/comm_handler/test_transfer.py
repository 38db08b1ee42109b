"""The transfer handshake over real pseudo-terminals, with faults on the cable.

Each test runs a sender on end "a" and a receiving thread on end "b" of a
NullModem, and asserts exactly which messages the receiver delivered.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import termios
import threading
import time
from typing import Unpack

import pytest
import serial

from comm_handler.frames import NAK, START, Message, encode_message, make_frame
from comm_handler.transfer import (
    DEPLOYED_PACING,
    LinkClosed,
    LinkRefused,
    LinkTimeout,
    Pacing,
    receive_message,
    send_message,
)
from signerctl.demo.nullmodem import Direction
from tests.support.link import ReceiveOptions, SendTimeouts

A2B, B2A = Direction.A_TO_B, Direction.B_TO_A
CHUNK = 0.5  # receiver's silence limit
# verdict > CHUNK, as deployed (5 s vs 5 s)
FAST: SendTimeouts = {"ready_timeout": 2.0, "verdict_timeout": 2.0}


def msg(tag: bytes, size: int = 0) -> bytes:
    filler = (bytes(range(256)) * (size // 256 + 1))[:size]
    return encode_message(Message(bytes([1, 0, 0, 0, 0, 0, 0, 0, 0]), (tag, filler, b"")))


class Receiver(threading.Thread):
    """Receives until stopped; records delivered messages and the closing error."""

    def __init__(self, port: serial.Serial, **options: Unpack[ReceiveOptions]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.options: ReceiveOptions = {"chunk_timeout": CHUNK, **options}
        self.delivered: list[bytes] = []
        self.closed: LinkClosed | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.delivered.append(receive_message(self.port, start_timeout=0.1, **self.options))
            except LinkTimeout:
                continue
            except LinkClosed as exc:
                self.closed = exc
                return

    def finish(self) -> list[bytes]:
        time.sleep(0.05)
        self._done.set()
        self.join(timeout=10)
        assert not self.is_alive()
        return self.delivered


def start_receiver(port: serial.Serial, **options: Unpack[ReceiveOptions]) -> Receiver:
    receiver = Receiver(port, **options)
    receiver.start()
    return receiver


def test_clean_transfers_of_several_sizes(ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    sent = [msg(b"x", size) for size in (0, 1, 300, 70_000, 1 << 20)]
    for data in sent:
        assert send_message(a, data, **FAST) == 0
    assert receiver.finish() == sent


def test_both_directions_on_one_cable(ends) -> None:
    a, b = ends
    for sender, receiver_port in ((a, b), (b, a), (a, b)):
        receiver = start_receiver(receiver_port)
        send_message(sender, msg(b"ping"), **FAST)
        assert receiver.finish() == [msg(b"ping")]


def test_flipped_byte_is_naked_and_resent(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    data = msg(b"flip me", 1000)
    frame_start = modem.position(A2B) + 1  # after the start byte
    modem.flip(A2B, frame_start + 500, 0x04)
    assert send_message(a, data, **FAST) == 1
    assert receiver.finish() == [data]


def test_length_flipped_smaller_is_naked_and_resent(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    data = msg(b"short length", 1000)
    assert data[:3] == b"\x00\x04\x09"
    modem.flip(A2B, modem.position(A2B) + 1 + 1, 0x04)  # 0x000409 -> 0x000009
    assert send_message(a, data, **FAST) == 1
    assert receiver.finish() == [data]


def test_length_flipped_larger_times_out_then_next_message_succeeds(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    modem.flip(A2B, modem.position(A2B) + 1 + 1, 0x10)  # 0x000409 -> 0x001409
    with pytest.raises(LinkTimeout, match="verdict"):
        send_message(a, msg(b"long length", 1000), **FAST)
    send_message(a, msg(b"next"), **FAST)
    assert receiver.finish() == [msg(b"next")]


def test_dropped_byte_times_out_then_next_message_succeeds(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    modem.drop(A2B, modem.position(A2B) + 1 + 40)
    with pytest.raises(LinkTimeout, match="verdict"):
        send_message(a, msg(b"lost", 100), **FAST)
    send_message(a, msg(b"next"), **FAST)
    assert receiver.finish() == [msg(b"next")]


def test_noise_before_start_byte_is_skipped(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    modem.inject(A2B, bytes([0x00, 0xFF, 0x10, 0x11, 0x7E]) + b"rie4Ech7" + b"\x00\x00\x05")
    modem.inject(B2A, bytes([0x11, 0x10]))  # stale verdicts: the sender drops them first
    time.sleep(0.1)
    send_message(a, msg(b"after noise"), **FAST)
    assert receiver.finish() == [msg(b"after noise")]


def test_noise_holding_a_start_byte_costs_one_transfer_only(modem, ends) -> None:
    """A 0x02 in line noise opens a bogus transfer: that one fails, nothing is
    delivered, and the receiver is back in step for the next message."""
    a, b = ends
    receiver = start_receiver(b)
    modem.inject(A2B, b"\x00\x02abc")
    time.sleep(0.05)
    with pytest.raises(LinkTimeout):
        send_message(a, msg(b"unlucky"), **FAST)
    send_message(a, msg(b"next"), **FAST)
    assert receiver.finish() == [msg(b"next")]


def test_deployed_pacing_is_slow_and_still_works(ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    data = msg(b"paced", 250)
    frame_len = len(make_frame(data))
    slices = -(-frame_len // DEPLOYED_PACING.slice_bytes)
    floor = frame_len * DEPLOYED_PACING.per_byte + slices * DEPLOYED_PACING.per_slice
    started = time.monotonic()
    send_message(a, data, pacing=DEPLOYED_PACING, **FAST)
    assert time.monotonic() - started >= floor
    assert receiver.finish() == [data]


def test_nullmodem_ends_are_raw(modem) -> None:
    for path in (modem.a_path, modem.b_path):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            iflag, oflag, _, lflag, *_ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert not iflag & (termios.IXON | termios.IXOFF | termios.ICRNL)
        assert not oflag & termios.OPOST
        assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)


def test_noise_while_waiting_for_ready_and_verdict(modem, ends) -> None:
    """Bytes other than READY / ACK / NAK reaching the sender are skipped."""
    a, b = ends
    real_write = b.write

    def noisy_write(data: bytes) -> int:
        return real_write(b"\xaa\x55" + data)

    b.write = noisy_write  # the receiver prefixes noise to every answer
    receiver = start_receiver(b)
    send_message(a, msg(b"noisy answers"), **FAST)
    assert receiver.finish() == [msg(b"noisy answers")]


def test_sender_cut_off_mid_frame_then_line_mended(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    modem.cut(A2B, at=modem.position(A2B) + 1 + 2000)
    with pytest.raises(LinkTimeout):
        send_message(a, msg(b"cut", 5000), **FAST)
    modem.mend(A2B)
    send_message(a, msg(b"mended"), **FAST)
    assert receiver.finish() == [msg(b"mended")]


def test_receiver_end_hung_up_mid_frame(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    pacing = Pacing(slice_bytes=500, per_byte=0.0, per_slice=0.02)  # 40 slices: 0.8 s
    result: list[BaseException] = []

    def send() -> None:
        try:
            send_message(a, msg(b"hung up", 20_000), pacing=pacing, **FAST)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            result.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.3)
    modem.hangup("b")
    sender.join(timeout=10)
    receiver.join(timeout=5)
    assert isinstance(receiver.closed, LinkClosed)
    assert receiver.delivered == []
    assert len(result) == 1 and isinstance(result[0], LinkTimeout)


def test_sender_end_hung_up_gives_link_closed(modem, ends) -> None:
    a, _ = ends
    modem.hangup("a")
    with pytest.raises(LinkClosed):
        send_message(a, msg(b"nobody"), **FAST)


@pytest.mark.timing
def test_nobody_answers_the_start_byte(ends) -> None:
    a, _ = ends
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match="ready"):
        send_message(a, msg(b"alone"), ready_timeout=0.5)
    assert 0.45 < time.monotonic() - started < 2.0


def test_verdict_lost_receiver_still_delivered_once(modem, ends) -> None:
    """The receiver goes quiet after READY: the sender cannot know; the message counts once."""
    a, b = ends
    receiver = start_receiver(b)
    modem.cut(B2A, at=modem.position(B2A) + 1)  # READY passes, the verdict does not
    with pytest.raises(LinkTimeout, match="verdict"):
        send_message(a, msg(b"unacknowledged"), **FAST)
    modem.mend(B2A)
    send_message(a, msg(b"second"), **FAST)
    assert receiver.finish() == [msg(b"unacknowledged"), msg(b"second")]


def test_persistent_damage_ends_in_link_refused(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b)
    data = msg(b"always damaged", 100)
    frame_len = len(make_frame(data))
    first = modem.position(A2B) + 1
    for attempt in range(3):
        modem.flip(A2B, first + attempt * frame_len + 50)
    with pytest.raises(LinkRefused):
        send_message(a, data, max_resends=2, **FAST)
    time.sleep(CHUNK + 0.2)  # the receiver still expects a resend until its chunk timeout
    send_message(a, msg(b"clean"), **FAST)
    assert receiver.finish() == [msg(b"clean")]


def test_receiver_stops_naking_after_its_limit(modem, ends) -> None:
    a, b = ends
    receiver = start_receiver(b, max_naks=1)
    data = msg(b"damaged twice", 100)
    frame_len = len(make_frame(data))
    first = modem.position(A2B) + 1
    modem.flip(A2B, first + 50)
    modem.flip(A2B, first + frame_len + 50)
    with pytest.raises(LinkTimeout, match="verdict"):
        send_message(a, data, max_resends=5, **FAST)
    send_message(a, msg(b"clean"), **FAST)
    assert receiver.finish() == [msg(b"clean")]


def test_length_over_limit_is_dropped(ends) -> None:
    a, b = ends
    receiver = start_receiver(b, max_length=1000)
    with pytest.raises(LinkTimeout, match="verdict"):
        send_message(a, msg(b"big", 2000), **FAST)
    send_message(a, msg(b"small"), **FAST)
    assert receiver.finish() == [msg(b"small")]


@pytest.mark.timing
def test_receive_start_timeout(ends) -> None:
    _, b = ends
    b.timeout = 7.0
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match="start"):
        receive_message(b, start_timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    assert b.timeout == 7.0  # restored


def test_raw_peer_sees_the_documented_bytes(ends) -> None:
    """The receiver's answers, byte for byte, against a hand-driven sender."""
    a, b = ends
    receiver = start_receiver(b)
    frame = make_frame(msg(b"raw"))
    a.timeout = 2
    a.write(bytes([START]))
    assert a.read(1) == b"\x10"
    damaged = bytearray(frame)
    damaged[-1] ^= 1  # trailer
    a.write(damaged)
    assert a.read(1) == bytes([NAK])
    a.write(frame)
    assert a.read(1) == b"\x10"
    assert receiver.finish() == [msg(b"raw")]


def test_nullmodem_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "signerctl.demo.nullmodem"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None  # stdout=PIPE
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines[0].startswith("a: /dev/pts/") and lines[1].startswith("b: /dev/pts/")
        a = serial.Serial(lines[0][3:], 115200)
        b = serial.Serial(lines[1][3:], 115200)
        receiver = start_receiver(b)
        payload = msg(b"\x02\x10\x11\x13\x0d\x0a", 3000)  # control bytes pass untouched
        send_message(a, payload, **FAST)
        assert receiver.finish() == [payload]
        a.close()
        b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_soak_with_random_faults_delivers_each_message_exactly_once(modem, ends) -> None:
    """A sender that retries after link errors, over a cable with seeded faults:
    flips (NAK and resend), noise before the start byte, and a few dropped
    bytes (timeout, reset, retry). Nothing is lost, nothing arrives twice."""
    rng = random.Random(7)
    a, b = ends
    receiver = start_receiver(b)
    sent = [msg(b"soak %d" % n, rng.randrange(0, 3000)) for n in range(24)]
    faults = ["none"] * 10 + ["flip"] * 8 + ["noise"] * 4 + ["drop"] * 2
    rng.shuffle(faults)
    retries = 0
    for data, fault in zip(sent, faults, strict=True):
        frame_start = modem.position(A2B) + 1
        if fault == "flip":
            modem.flip(A2B, frame_start + rng.randrange(3, len(data) + 9), 1 << rng.randrange(8))
        elif fault == "drop":
            modem.drop(A2B, frame_start + rng.randrange(len(data) + 9))
        elif fault == "noise":
            modem.inject(A2B, bytes(rng.choice([0, 1, 3, 0x10, 0x11, 0xFF]) for _ in range(20)))
            time.sleep(0.02)
        while True:
            try:
                send_message(a, data, **FAST)
                break
            except LinkTimeout:
                retries += 1
                time.sleep(CHUNK + 0.1)  # let the receiver give up the broken frame
    assert retries == 2
    assert receiver.finish() == sent
