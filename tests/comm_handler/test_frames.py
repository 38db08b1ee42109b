"""Messages, frames, headers and the incremental receiver (comm_handler.frames)."""

from __future__ import annotations

import functools
import operator
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.frames import (
    MAX_STRING,
    TRAILER,
    XOR_BLOCK,
    FrameError,
    FrameReceiver,
    Message,
    ReceiverState,
    decode_message,
    encode_message,
    make_frame,
    response_header,
    xor_checksum,
)
from spool.header import Action, HeaderError, RequestHeader
from tests.support.examples import examples

# CPU-bound examples; no deadline, as CI machines are slow and shared.
RELAXED = settings(deadline=None)

payload = st.binary(max_size=300)
messages = st.builds(Message, payload, st.tuples(payload, payload, payload))


@RELAXED
@given(messages)
def test_encode_decode_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert decode_message(data) == message
    assert int.from_bytes(data[:3], "big") == len(data) - 3


def test_encoding_matches_the_protocol_page() -> None:
    data = encode_message(Message(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00", (b"ab", b"", b"c")))
    assert data == bytes.fromhex("000018000009010000000000000000000002616200000000000163")
    frame = make_frame(data)
    assert frame == data + bytes([functools.reduce(operator.xor, data)]) + b"rie4Ech7"
    assert len(frame) == 3 + 0x18 + 9


def test_too_long_string_is_refused_not_truncated() -> None:
    with pytest.raises(FrameError):
        encode_message(Message(b"h", (b"x" * (MAX_STRING + 1), b"", b"")))
    # Each string fits, the outer one does not.
    with pytest.raises(FrameError):
        encode_message(Message(b"", (b"x" * (MAX_STRING - 11), b"", b"")))
    assert len(encode_message(Message(b"", (b"x" * (MAX_STRING - 12), b"", b"")))) == MAX_STRING + 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        b"\x00\x00\x00",  # zero strings
        b"\x00\x00\x0c" + b"\x00" * 9,  # three strings only
        b"\x00\x00\x0d" + b"\x00" * 13,  # a byte after the fourth string
        b"\x00\x00\x0c" + b"\x00" * 12 + b"x",  # a byte after the message
        b"\x00\x00\x0c" + b"\x00" * 9 + b"\x00\x00\x05",  # last string overruns
        b"\xff\xff\xff" + b"\x00" * 12,  # outer length overruns
    ],
)
def test_decode_refuses_inconsistent_messages(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_message(data)


@RELAXED
@given(st.binary(max_size=2000))
def test_xor_checksum_matches_naive_fold(data: bytes) -> None:
    assert xor_checksum(data) == functools.reduce(operator.xor, data, 0)


@pytest.mark.parametrize("size", [XOR_BLOCK - 1, XOR_BLOCK, XOR_BLOCK + 1, 3 * XOR_BLOCK + 5])
def test_xor_checksum_across_blocks(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert xor_checksum(data) == functools.reduce(operator.xor, data, 0)


@RELAXED
@given(messages, st.data())
def test_receiver_fed_in_arbitrary_splits(message: Message, data: st.DataObject) -> None:
    frame = make_frame(encode_message(message))
    tail = data.draw(st.binary(max_size=20), label="bytes after the frame")
    stream = frame + tail
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts"))
    receiver = FrameReceiver()
    consumed = 0
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        consumed += receiver.feed(stream[start:end])
    assert consumed == len(frame)
    assert receiver.state is ReceiverState.COMPLETE
    assert decode_message(receiver.message()) == message


@RELAXED
@given(messages, st.integers(min_value=0), st.integers(1, 255))
def test_any_single_flipped_byte_is_detected(message: Message, where: int, mask: int) -> None:
    frame = bytearray(make_frame(encode_message(message)))
    where %= len(frame)
    frame[where] ^= mask
    receiver = FrameReceiver()
    try:
        receiver.feed(bytes(frame))
    except FrameError:
        return  # impossible length
    if receiver.state is ReceiverState.COMPLETE:
        with pytest.raises(FrameError):
            receiver.message()
    else:
        assert receiver.needed > 0  # waits for bytes that never come: timeout


def test_receiver_refuses_length_over_limit_at_once() -> None:
    receiver = FrameReceiver(max_length=100)
    receiver.feed(b"\x00\x00")
    with pytest.raises(FrameError, match="limit"):
        receiver.feed(b"\x65")
    receiver = FrameReceiver(max_length=100)
    assert receiver.feed(make_frame(b"\x00\x00\x64" + bytes(100))) == 3 + 100 + 9


def test_receiver_incomplete_message_is_an_error() -> None:
    receiver = FrameReceiver()
    receiver.feed(b"\x00\x00\x05abc")
    assert receiver.state is ReceiverState.BODY
    assert receiver.needed == 2 + 1 + len(TRAILER)
    with pytest.raises(FrameError, match="incomplete"):
        receiver.message()


def test_make_frame_checks_the_outer_length() -> None:
    with pytest.raises(FrameError):
        make_frame(b"\x00\x00\x05abc")
    with pytest.raises(FrameError):
        make_frame(b"")


def test_response_header() -> None:
    assert response_header(Action.REVOKE) == b"\x01\x02\x00\x00"
    with pytest.raises(FrameError):
        response_header(256)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[pos % len(data)] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:
            del data[pos % len(data)]
        elif choice == 2:
            data[pos:pos] = bytes([rng.randrange(256)])
        elif choice == 3:
            data = data[:pos]
        else:
            data[0:3] = rng.randrange(1 << 24).to_bytes(3, "big")
    return bytes(data)


def _whole_frame(data: bytes) -> None:
    """The receiver fed the whole input at once, at the protocol's own limit."""
    receiver = FrameReceiver()
    receiver.feed(data)
    if receiver.state is ReceiverState.COMPLETE:
        decode_message(receiver.message())


def _decode_everything(data: bytes) -> None:
    """Every decoding path of frames.py, on one hostile input."""
    for parse in (_whole_frame, decode_message, RequestHeader.from_bytes):
        try:
            parse(data)
        except (FrameError, HeaderError):
            pass
    receiver = FrameReceiver(max_length=4096)
    try:
        receiver.feed(data[:7])
        receiver.feed(data[7:])
        if receiver.state is ReceiverState.COMPLETE:
            decode_message(receiver.message())
    except FrameError:
        pass


def test_fuzz_decoders_with_mutated_frames() -> None:
    """100,000 seeded mutations of valid frames: FrameError is the only failure."""
    rng = random.Random(20261128)
    seeds = [
        make_frame(
            encode_message(Message(bytes([1, a, 1, 0, 0, 0, 1, 0x6D, 0]), (p, b"", b"x" * a)))
        )
        for a in range(3)
        for p in (b"", b"payload", bytes(range(200)))
    ]
    for _ in range(100_000):
        _decode_everything(_mutate(rng, rng.choice(seeds)))


@settings(RELAXED, max_examples=examples(500))
@given(st.binary(max_size=200))
def test_fuzz_decoders_with_random_bytes(data: bytes) -> None:
    _decode_everything(data)
