"""v2 frames: known answers, every check, and the double flip v1's XOR lets through."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.frames import (
    FrameError,
    Message,
    decode_message,
    encode_message,
    make_frame,
    xor_checksum,
)
from comm_handler.v2frames import (
    BODILESS,
    HEAD_SIZE,
    MARKER,
    OVERHEAD,
    Frame,
    FrameType,
    crc32c,
    decode_frame,
    decode_head,
    encode_frame,
)
from tests.support.examples import examples

ID = bytes(range(16))


def test_known_answer_of_an_ack() -> None:
    # The CRC-32C values were computed independently (RFC 3720's polynomial,
    # bit by bit, below), so a wrong table or seed in the library would show.
    frame = encode_frame(Frame(FrameType.ACK, ID))
    assert frame[:3] == bytes([0x16, 0x02, ord("K")]) and frame[3:19] == ID
    assert frame[19:23] == bytes(4)
    assert frame[23:27] == _crc32c_bitwise(frame[:23]).to_bytes(4, "big")
    assert frame[27:] == _crc32c_bitwise(frame[:27]).to_bytes(4, "big")
    assert len(frame) == OVERHEAD == 31


def test_crc32c_reference_value() -> None:
    assert _crc32c_bitwise(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert crc32c(b"123456789") == 0xE3069283  # the library's extension, loaded on its own


@settings(max_examples=examples(100), deadline=None)
@given(head=st.binary(max_size=200), tail=st.binary(max_size=200))
def test_crc32c_continues_from_a_running_value(head: bytes, tail: bytes) -> None:
    assert crc32c(tail, crc32c(head)) == _crc32c_bitwise(head + tail)


def _crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@settings(max_examples=examples(200), deadline=None)
@given(
    kind=st.sampled_from(list(FrameType)),
    request_id=st.binary(min_size=16, max_size=16),
    body=st.binary(max_size=2000),
)
def test_round_trip(kind: FrameType, request_id: bytes, body: bytes) -> None:
    if kind in BODILESS:
        body = b""
    frame = Frame(kind, request_id, body)
    data = encode_frame(frame)
    assert data[0] == MARKER and len(data) == OVERHEAD + len(body)
    assert decode_frame(data) == frame


@settings(max_examples=examples(300), deadline=None)
@given(body=st.binary(min_size=1, max_size=300), data=st.data())
def test_every_flip_of_one_or_two_bits_is_refused(body: bytes, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(Frame(FrameType.REQUEST, ID, body)))
    bits = data.draw(st.sets(st.integers(0, len(wire) * 8 - 1), min_size=1, max_size=2))
    for bit in bits:
        wire[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameError):
        decode_frame(bytes(wire))


def test_the_double_flip_that_v1_xor_misses_is_caught_by_v2() -> None:
    payload = b"-----BEGIN CERTIFICATE REQUEST-----MIIB"
    v1 = encode_message(Message(bytes([1, 1, 1, 0, 5, 8, 1, 0x6D, 0]), (payload, b"", b"")))
    flipped = bytearray(v1)
    flipped[20] ^= 0x04  # the same bit in two bytes of the payload
    flipped[30] ^= 0x04
    assert xor_checksum(bytes(flipped)) == xor_checksum(v1)  # v1's check passes it
    assert make_frame(bytes(flipped))[-9] == make_frame(v1)[-9]
    assert decode_message(bytes(flipped)).payloads[0] != payload  # and it decodes, wrong
    wire = bytearray(encode_frame(Frame(FrameType.REQUEST, ID, v1)))
    wire[HEAD_SIZE + 20] ^= 0x04
    wire[HEAD_SIZE + 30] ^= 0x04
    with pytest.raises(FrameError, match="bad check"):
        decode_frame(bytes(wire))


def test_a_damaged_length_is_refused_from_the_head_alone() -> None:
    wire = bytearray(encode_frame(Frame(FrameType.ANSWER, ID, b"x" * 10)))
    wire[19] ^= 0x80  # the length now says 2 GiB
    with pytest.raises(FrameError, match="head damaged"):
        decode_head(bytes(wire[:HEAD_SIZE]), max_body=1 << 24)


def test_the_limit_is_applied_before_the_body_is_awaited() -> None:
    wire = encode_frame(Frame(FrameType.REQUEST, ID, b"x" * 100))
    with pytest.raises(FrameError, match="over the 99-byte limit"):
        decode_head(wire[:HEAD_SIZE], max_body=99)
    assert decode_head(wire[:HEAD_SIZE], max_body=100).length == 100


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (lambda: Frame(FrameType.ACK, ID, b"x"), "no body"),
        (lambda: Frame(FrameType.REQUEST, b"short"), "16 bytes"),
        (lambda: Frame(cast(FrameType, ord("R")), ID), "unknown frame type"),
    ],
)
def test_a_frame_that_cannot_be_built_fails_fast(frame, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        frame()


def test_truncated_and_overlong_frames_are_refused() -> None:
    wire = encode_frame(Frame(FrameType.ANSWER, ID, b"answer"))
    for bad in (wire[:-1], wire + b"\x00", wire[: HEAD_SIZE - 1]):
        with pytest.raises(FrameError):
            decode_frame(bad)
