"""The v2 link transport over real pseudo-terminals, with faults on the cable.

The requester (``exchange``) runs on end "a" of a NullModem, a responder thread on end "b".
Tests assert what was delivered, what came back and, where exact, the bytes on each lane.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comm_handler.frames import (
    FrameReceiver,
    Message,
    ReceiverState,
    decode_message,
    encode_message,
    make_frame,
)
from comm_handler.transfer import LinkClosed, LinkRefused, LinkTimeout
from comm_handler.v2frames import HEAD_SIZE, ID_SIZE, OVERHEAD, Frame, FrameType, encode_frame
from comm_handler.v2link import (
    ZERO_ID,
    NewRequest,
    V2Timeouts,
    exchange,
    read_frame,
    receive_request,
    send_answer,
)
from signerctl.demo.nullmodem import Direction, NullModem
from tests.support.examples import examples

A2B, B2A = Direction.A_TO_B, Direction.B_TO_A
T = V2Timeouts(ack=0.5, answer=3.0, chunk=0.5, quiet=0.1, max_resends=3)


def answer_for(body: bytes) -> bytes:
    return hashlib.sha256(body).digest() + body[::-1]


def new_id() -> bytes:
    return os.urandom(ID_SIZE)


def body_of(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


class Responder(threading.Thread):
    """Serves requests (started at once) until finished: each delivery, and whether it was ACKed."""

    def __init__(self, port: serial.Serial, delay: float = 0.0, timeouts: V2Timeouts = T) -> None:
        super().__init__(daemon=True)
        self.port, self.delay, self.timeouts = port, delay, timeouts
        self.delivered: list[Frame] = []
        self.acked: list[bool] = []
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        pending: Frame | None = None
        while not self._done.is_set():
            try:
                frame = pending or receive_request(self.port, timeouts=self.timeouts, timeout=0.1)
            except LinkTimeout:
                continue
            except LinkClosed:
                return
            pending = None
            self.delivered.append(frame)
            time.sleep(self.delay)
            try:
                answer = answer_for(frame.body)
                self.acked.append(
                    send_answer(self.port, frame.request_id, answer, timeouts=self.timeouts)
                )
            except NewRequest as news:
                self.acked.append(False)
                pending = news.frame

    def wait_acks(self, count: int, limit: float = 5.0) -> None:
        end = time.monotonic() + limit
        while len(self.acked) < count and time.monotonic() < end:
            time.sleep(0.005)
        assert len(self.acked) >= count

    def finish(self, acks: int = 0) -> list[bytes]:
        """The bodies delivered, once ``acks`` answers were settled."""
        self.wait_acks(acks)
        time.sleep(0.05)
        self._done.set()
        self.join(timeout=10)
        assert not self.is_alive()
        return [frame.body for frame in self.delivered]


def lanes(modem: NullModem) -> tuple[int, int]:
    return modem.position(A2B), modem.position(B2A)


def moved(modem: NullModem, before: tuple[int, int]) -> tuple[int, int]:
    after = lanes(modem)
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("size", [0, 1024, 1 << 20])
def test_round_trip(modem, ends, size: int) -> None:
    a, b = ends
    responder = Responder(b)
    body, rid = body_of(size), new_id()
    before = lanes(modem)
    assert exchange(a, rid, body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]
    assert [f.request_id for f in responder.delivered] == [rid] and responder.acked == [True]
    # Q and K one way, K and A the other: no handshake, no resend.
    assert moved(modem, before) == (2 * OVERHEAD + size, 2 * OVERHEAD + size + 32)


def test_flip_in_request_body_is_naked_and_resent_once(modem, ends, caplog) -> None:
    a, b = ends
    responder = Responder(b)
    body = body_of(1024)
    before = lanes(modem)
    modem.flip(A2B, before[0] + HEAD_SIZE + 500, 0x04)
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]
    q = OVERHEAD + len(body)
    assert moved(modem, before) == (2 * q + OVERHEAD, 2 * OVERHEAD + q + 32)  # Q twice; N, K, A
    assert "frame damaged (bad check)" in caplog.text


def test_flip_in_length_is_refused_from_the_head_alone(modem, ends, caplog) -> None:
    """0x00000400 becomes 0x00010400: within max_body, so only the head's check
    stops the reader from waiting for 65 KiB that never come."""
    a, b = ends
    responder = Responder(b)
    body = body_of(1024)
    before = lanes(modem)
    modem.flip(A2B, before[0] + 3 + ID_SIZE + 1, 0x01)  # length's 2nd byte
    started = time.monotonic()
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert time.monotonic() - started < T.chunk  # no chunk timeout was waited out
    assert responder.finish(1) == [body]
    assert "frame head damaged" in caplog.text


def test_double_flip_caught_by_crc_passed_by_v1_xor(modem, ends) -> None:
    a, b = ends
    responder = Responder(b)
    body, k = body_of(1024), 300
    start = modem.position(A2B) + HEAD_SIZE
    modem.flip(A2B, start + k, 0x01)
    modem.flip(A2B, start + k + 1, 0x01)
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]
    # The same damage to the same body in a v1 frame: the XOR check holds.
    message = Message(bytes(9), (body, b"", b""))
    frame = bytearray(make_frame(encode_message(message)))
    at = bytes(frame).index(body) + k
    frame[at] ^= 0x01
    frame[at + 1] ^= 0x01
    receiver = FrameReceiver()
    receiver.feed(bytes(frame))
    assert receiver.state is ReceiverState.COMPLETE
    damaged = decode_message(receiver.message()).payloads[0]
    assert damaged != body and len(damaged) == len(body)


@pytest.mark.parametrize(
    ("lane", "offset"), [(A2B, HEAD_SIZE + 10), (B2A, OVERHEAD + HEAD_SIZE + 10)], ids=["Q", "A"]
)
def test_dropped_byte_costs_a_resend(modem, ends, lane: Direction, offset: int) -> None:
    a, b = ends
    responder = Responder(b)
    body = body_of(1024)
    modem.drop(lane, modem.position(lane) + offset)  # in Q, or in the A after the K
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]
    assert responder.acked == [True]


def test_lost_ack_of_request_answer_implies_it(modem, ends) -> None:
    a, b = ends
    responder = Responder(b)
    body = body_of(100)
    before = lanes(modem)
    for offset in range(OVERHEAD):  # the whole K vanishes
        modem.drop(B2A, before[1] + offset)
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]
    assert responder.acked == [True]
    assert moved(modem, before)[0] == 2 * OVERHEAD + len(body)  # the Q went once


def test_lost_ack_and_slow_answer_resend_the_request_not_the_work(modem, ends) -> None:
    """The K is lost and the answer takes longer than the ACK timeout: the
    requester resends Q, the responder ACKs it again and resends its A, and
    the request is delivered once. The stray second K and A are ignored by
    the next exchange."""
    a, b = ends
    responder = Responder(b, delay=T.ack + 0.3)
    body = body_of(100)
    before = lanes(modem)
    for offset in range(OVERHEAD):
        modem.drop(B2A, before[1] + offset)
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    responder.wait_acks(1)
    assert responder.acked == [True]
    q, answer = OVERHEAD + len(body), OVERHEAD + len(answer_for(body))
    assert moved(modem, before) == (2 * q + OVERHEAD, 2 * (OVERHEAD + answer))
    responder.delay = 0.0
    assert exchange(a, new_id(), b"next", timeouts=T) == answer_for(b"next")
    assert responder.finish(2) == [body, b"next"]


def test_noise_before_a_frame_is_skipped(modem, ends, caplog) -> None:
    a, b = ends
    responder = Responder(b)
    noise = bytes([0x00, 0xFF, 0x02, 0x10, 0x11, 0x51, 0x41]) + b"rie4Ech7"
    before = lanes(modem)
    modem.inject(A2B, noise)
    modem.inject(B2A, noise)
    time.sleep(0.05)
    assert exchange(a, new_id(), b"after noise", timeouts=T) == answer_for(b"after noise")
    assert responder.finish(1) == [b"after noise"]
    assert moved(modem, before)[0] == 2 * OVERHEAD + len(b"after noise")  # no resend
    assert f"skipped {len(noise)} noise bytes" in caplog.text


def test_noise_holding_a_marker_before_a_frame(modem, ends) -> None:
    a, b = ends
    responder = Responder(b)
    modem.inject(A2B, b"\x16\x02Q" + bytes(40))  # a bogus head: NAK, then the real Q
    time.sleep(0.05)
    assert exchange(a, new_id(), b"real", timeouts=T) == answer_for(b"real")
    assert responder.finish(1) == [b"real"]


def test_noise_inside_a_frame_costs_one_resend(modem, ends) -> None:
    a, b = ends
    responder = Responder(b)
    body = body_of(2000)
    real_write = a.write
    calls = itertools.count()

    def noisy_write(data: bytes) -> int | None:
        if next(calls) == 0:  # the first Q: noise in the middle of its body
            data = data[:1000] + b"\x16\xaa\x55" + data[1000:]
        return real_write(data)

    a.write = noisy_write
    assert exchange(a, new_id(), body, timeouts=T) == answer_for(body)
    assert responder.finish(1) == [body]


def test_request_resent_while_answer_waits_for_its_ack(ends) -> None:
    """A hand-driven requester resends Q with the same id instead of ACKing
    the A: the responder ACKs it again and resends the A, delivering it once."""
    a, b = ends
    slow = V2Timeouts(ack=3.0, answer=3.0, chunk=0.5, quiet=0.1, max_resends=3)
    responder = Responder(b, timeouts=slow)
    rid, body = new_id(), b"twice asked"
    q = encode_frame(Frame(FrameType.REQUEST, rid, body))
    k = encode_frame(Frame(FrameType.ACK, rid))
    answer = encode_frame(Frame(FrameType.ANSWER, rid, answer_for(body)))
    a.timeout = 2.0
    for _ in range(2):
        a.write(q)
        assert a.read(len(k) + len(answer)) == k + answer
    a.write(k)
    assert responder.finish(1) == [body] and responder.acked == [True]


def test_new_request_while_answer_waits_is_raised_acked(ends) -> None:
    a, b = ends
    old, new = Frame(FrameType.REQUEST, new_id(), b"old"), Frame(FrameType.REQUEST, new_id())
    a.write(encode_frame(new))
    with pytest.raises(NewRequest) as raised:
        send_answer(b, old.request_id, b"late", timeouts=T)
    assert raised.value.frame == new
    a.timeout = 1.0
    late = encode_frame(Frame(FrameType.ANSWER, old.request_id, b"late"))
    assert a.read(len(late) + OVERHEAD) == late + encode_frame(Frame(FrameType.ACK, new.request_id))


def test_stale_answers_are_never_returned(ends) -> None:
    a, b = ends
    rid, stale = new_id(), new_id()

    def serve() -> None:
        request = read_frame(b, max_body=100, chunk_timeout=0.5, quiet=0.1, timeout=3.0)
        assert request.request_id == rid
        b.write(encode_frame(Frame(FrameType.ANSWER, stale, b"stale before K")))
        b.write(encode_frame(Frame(FrameType.ACK, rid)))
        b.write(encode_frame(Frame(FrameType.ANSWER, stale, b"stale after K")))
        b.write(encode_frame(Frame(FrameType.ANSWER, rid, b"fresh")))

    server = threading.Thread(target=serve)
    server.start()
    assert exchange(a, rid, b"ask", timeouts=T) == b"fresh"
    server.join(timeout=5)
    b.timeout = 0.3
    assert b.read(1000) == encode_frame(Frame(FrameType.ACK, rid))  # only ours is ACKed


@pytest.mark.timing
def test_cut_line_times_out_after_the_resends_and_the_answer_wait(modem, ends) -> None:
    """Silence after every send may be a responder busy with the request (its ACK
    lost): the requester waits for the answer as well before it gives up."""
    a, _ = ends
    modem.cut(A2B)
    short = V2Timeouts(ack=0.5, answer=1.0, chunk=0.5, quiet=0.1, max_resends=2)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match="no answer"):
        exchange(a, new_id(), b"into the void", timeouts=short)
    assert 2.45 < time.monotonic() - started < 3.4  # three waits of 0.5 s, then 1 s
    assert modem.position(A2B) == 3 * (OVERHEAD + len(b"into the void"))


def test_a_lost_ack_while_the_responder_is_busy_still_gets_the_answer(modem, ends) -> None:
    """The responder ACKs, then reads nothing for longer than every resend (it waits
    for the signer); the ACK was lost. The answer still arrives and is taken."""
    a, b = ends
    request_id = new_id()
    short = V2Timeouts(ack=0.3, answer=3.0, chunk=0.5, quiet=0.1, max_resends=2)
    modem.cut(B2A)  # the K goes nowhere
    got: list[bytes] = []
    worker = threading.Thread(
        target=lambda: got.append(exchange(a, request_id, b"slow", timeouts=short))
    )
    worker.start()
    frame = receive_request(b, timeouts=short)
    time.sleep(1.2)  # busier than the three waits of 0.3 s
    modem.mend(B2A)
    b.reset_input_buffer()  # the resent requests, read after the work, as a responder would
    assert send_answer(b, frame.request_id, b"done", timeouts=short)
    worker.join(timeout=10)
    assert got == [b"done"]


def test_persistent_damage_ends_in_link_refused(modem, ends) -> None:
    a, b = ends
    responder = Responder(b)
    body = body_of(100)
    first, size = modem.position(A2B), OVERHEAD + len(body)
    for attempt in range(T.max_resends + 1):
        modem.flip(A2B, first + attempt * size + HEAD_SIZE + 50)
    with pytest.raises(LinkRefused):
        exchange(a, new_id(), body, timeouts=T)
    assert exchange(a, new_id(), b"clean", timeouts=T) == answer_for(b"clean")
    assert responder.finish(1) == [b"clean"]


def test_read_frame_takes_the_callers_first_byte_and_restores_timeout(ends) -> None:
    a, b = ends
    frame = Frame(FrameType.REQUEST, new_id(), b"v2 after the dispatcher")
    a.write(encode_frame(frame)[1:])
    b.timeout = 7.0
    got = read_frame(b, max_body=100, chunk_timeout=0.5, quiet=0.1, timeout=1.0, first=b"\x16")
    assert got == frame and b.timeout == 7.0


def test_bad_head_is_naked_with_the_zero_id(ends) -> None:
    a, b = ends
    frame = bytearray(encode_frame(Frame(FrameType.REQUEST, new_id(), b"x")))
    frame[5] ^= 0x20
    a.write(frame)
    with pytest.raises(LinkTimeout):
        read_frame(b, max_body=100, chunk_timeout=0.5, quiet=0.1, timeout=0.3)
    a.timeout = 1.0
    assert a.read(OVERHEAD) == encode_frame(Frame(FrameType.NAK, ZERO_ID))


@pytest.mark.parametrize(
    "bad",
    [{"ack": 0}, {"answer": -1.0}, {"chunk": float("inf")}, {"quiet": "0.1"}, {"max_resends": -1}],
)
def test_timeouts_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        V2Timeouts(**bad)  # type: ignore[arg-type]


@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=200), where=st.integers(min_value=0), mask=st.integers(1, 255))
def test_single_byte_damage_never_delivers_a_wrong_body(
    modem: NullModem, body: bytes, where: int, mask: int
) -> None:
    with serial.Serial(modem.a_path, 115200) as a, serial.Serial(modem.b_path, 115200) as b:
        responder = Responder(b)
        rid = new_id()
        modem.flip(A2B, modem.position(A2B) + where % (OVERHEAD + len(body)), mask)
        try:
            assert exchange(a, rid, body, timeouts=T) == answer_for(body)
        finally:
            delivered = responder.finish(1)
        assert delivered == [body] and responder.delivered[0].request_id == rid
