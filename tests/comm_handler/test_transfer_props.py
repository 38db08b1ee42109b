"""Property tests of the receiver and sender state machines on a scripted port.

The scripted port releases the peer's next segment of bytes each time the
code under test writes (the peer reacts to what it hears), and models a
timeout as an empty read, so thousands of hostile conversations run in
seconds. The real-pty behaviour is in test_link_transfer.py.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.frames import ACK, NAK, READY, START, Message, encode_message, make_frame
from comm_handler.transfer import (
    LinkClosed,
    LinkRefused,
    LinkTimeout,
    receive_message,
    send_message,
)
from tests.support.examples import examples

# CPU-bound examples; no deadline, as CI machines are slow and shared.
RELAXED = settings(deadline=None)


class ScriptedPort:
    """pyserial-like; segment k+1 of the peer's bytes arrives after our k-th write.

    An empty read is a timeout. With ``dies=True`` the port fails after a few
    of them in a row (the receiver would otherwise wait for ever); without,
    an empty read waits out ``timeout`` so the sender's deadlines pass.
    """

    MAX_IDLE_READS = 6

    def __init__(self, segments: list[bytes], *, dies: bool = True) -> None:
        self.dies = dies
        self.pending = list(segments[1:])
        self.available = bytearray(segments[0] if segments else b"")
        self.written: list[bytes] = []
        self.timeout: float | None = None
        self._idle = 0

    @property
    def in_waiting(self) -> int:
        return len(self.available)

    def read(self, size: int = 1) -> bytes:
        if not self.available:
            self._idle += 1
            if self.dies and self._idle > self.MAX_IDLE_READS:
                raise OSError("script exhausted")  # what a dead pty gives
            if not self.dies:
                time.sleep(min(self.timeout or 0.0, 0.05))
            return b""
        self._idle = 0
        data = bytes(self.available[:size])
        del self.available[:size]
        return data

    def write(self, data: bytes) -> int:
        self.written.append(bytes(data))
        if self.pending:
            self.available += self.pending.pop(0)
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        self.available.clear()


def message(p1: bytes) -> bytes:
    return encode_message(Message(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00", (p1, b"", b"")))


payloads = st.binary(max_size=200)
noise = st.binary(max_size=50).map(lambda b: b.replace(bytes([START]), b""))


def receive(port: ScriptedPort, **options) -> bytes:
    return receive_message(port, start_timeout=None, chunk_timeout=0.01, quiet=0.0, **options)


@RELAXED
@given(noise, payloads)
def test_noise_then_frame_is_delivered(junk: bytes, p1: bytes) -> None:
    data = message(p1)
    port = ScriptedPort([junk + bytes([START]), make_frame(data)])
    assert receive(port) == data
    assert port.written == [bytes([READY]), bytes([ACK])]


@RELAXED
@given(payloads, st.integers(min_value=0), st.integers(1, 255), st.integers(0, 4))
def test_damaged_frames_are_naked_until_a_good_one(
    p1: bytes, where: int, mask: int, damaged: int
) -> None:
    data = message(p1)
    frame = make_frame(data)
    bad = bytearray(frame)
    where %= len(bad)
    if where < 3:  # a damaged length makes a timeout, tested below
        where = 3 + where % (len(bad) - 3)
    bad[where] ^= mask
    port = ScriptedPort([bytes([START])] + [bytes(bad)] * damaged + [frame])
    assert receive(port, max_naks=4) == data
    assert port.written == [bytes([READY])] + [bytes([NAK])] * damaged + [bytes([ACK])]


@RELAXED
@given(payloads, st.integers(1, 50))
def test_truncated_frame_gets_no_verdict(p1: bytes, cut: int) -> None:
    """A frame that never completes is dropped silently (the pty tests show the next one wins)."""
    frame = make_frame(message(p1))
    port = ScriptedPort([bytes([START]), frame[: max(0, len(frame) - cut)]])
    with pytest.raises(LinkClosed):
        receive(port)
    assert port.written == [bytes([READY])]


@settings(RELAXED, max_examples=examples(500))
@given(st.lists(st.binary(max_size=60), max_size=8), st.lists(payloads, max_size=3))
def test_any_conversation_delivers_only_checked_frames(
    segments: list[bytes], p1s: list[bytes]
) -> None:
    """Hostile input never crashes the receiver; what it returns was really framed."""
    frames = [make_frame(message(p)) for p in p1s]
    script = segments + [bytes([START]) + f for f in frames]
    port = ScriptedPort(script or [b""])
    try:
        data = receive(port, max_length=4096)
    except LinkClosed:
        assert set(b"".join(port.written)) <= {READY, NAK}
        return
    assert make_frame(data) in b"".join(script)
    assert port.written[-1] == bytes([ACK])
    assert set(b"".join(port.written[:-1])) <= {READY, NAK}


# -- sender --


def send(port: ScriptedPort, data: bytes, **options) -> int:
    return send_message(port, data, ready_timeout=0.01, verdict_timeout=0.01, **options)


@RELAXED
@given(payloads, st.integers(0, 3), noise)
def test_sender_resends_on_nak(p1: bytes, naks: int, junk: bytes) -> None:
    data = message(p1)
    junk = junk.replace(bytes([READY]), b"").replace(bytes([NAK]), b"")
    verdicts = [junk + bytes([NAK])] * naks + [junk + bytes([ACK])]
    port = ScriptedPort([b"", junk + bytes([READY])] + verdicts, dies=False)
    assert send(port, data, max_resends=3) == naks
    assert port.written == [bytes([START])] + [make_frame(data)] * (naks + 1)


def test_sender_gives_up_after_max_resends() -> None:
    port = ScriptedPort([b"", bytes([READY])] + [bytes([NAK])] * 4, dies=False)
    with pytest.raises(LinkRefused):
        send(port, message(b"x"), max_resends=2)
    assert len(port.written) == 1 + 3


@pytest.mark.parametrize("script", [[b""], [b"", b"\x11\x13"], [b"", bytes([READY]), b""]])
def test_sender_times_out_without_ready_or_verdict(script: list[bytes]) -> None:
    with pytest.raises(LinkTimeout):
        send(ScriptedPort(script, dies=False), message(b"x"))


def test_stale_input_is_dropped_before_the_start_byte() -> None:
    port = ScriptedPort([bytes([READY, ACK]), bytes([READY]), bytes([ACK])], dies=False)
    assert send(port, message(b"x")) == 0
    # Without the reset, the stale READY/ACK would have passed for answers
    # and the frame would have gone out before the receiver was ready.
    port = ScriptedPort([bytes([READY, ACK])], dies=False)
    with pytest.raises(LinkTimeout):
        send(port, message(b"x"))


class DrainLog(ScriptedPort):
    """Records each drain (``flush``) among the writes."""

    def flush(self) -> None:
        self.written.append(b"<drain>")


def test_only_frames_wait_to_drain() -> None:
    # A UART's drain sleeps a jiffy or more; a control byte is answered first.
    data = message(b"x")
    frame = make_frame(data)
    sender = DrainLog([b"", bytes([READY]), bytes([NAK]), bytes([ACK])], dies=False)
    assert send(sender, data) == 1
    assert sender.written == [bytes([START]), frame, b"<drain>", frame, b"<drain>"]
    damaged = frame[:-1] + b"8"
    receiver = DrainLog([bytes([START]), damaged, frame])
    assert receive(receiver) == data
    assert receiver.written == [bytes([READY]), bytes([NAK]), bytes([ACK])]
