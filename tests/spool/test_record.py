"""Record format: round trips, limits, and a fuzzed decoder that only ever raises SpoolFormatError."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comm_handler.frames import FrameError, Message, encode_message, response_header
from spool.record import (
    MAX_ANSWER,
    MAX_PAYLOAD,
    MAX_REQUEST_SIZE,
    MAX_RESULT_SIZE,
    RECEIPT_SIZE,
    Receipt,
    Request,
    Result,
    SpoolFormatError,
    decode_receipt,
    decode_request,
    decode_result,
    encode_receipt,
    encode_request,
    encode_result,
)
from tests.support.examples import examples

ID = "01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df"

ids = st.builds(
    lambda t, h: f"{t:020d}-{h:032x}",
    st.integers(0, 10**20 - 1),
    st.integers(0, 2**128 - 1),
)
small = st.binary(max_size=300)
requests = st.builds(
    Request,
    id=ids,
    received_at=st.floats(allow_nan=False, allow_infinity=False),
    header=st.binary(min_size=9, max_size=9),
    payloads=st.tuples(small, small, small),
    reply=st.booleans(),
)
results = st.builds(Result, id=ids, action=st.integers(0, 255), payload1=small, payload2=small)
receipts = st.builds(Receipt, id=ids, request_id=ids)


@given(requests)
def test_request_round_trip(request: Request) -> None:
    assert decode_request(encode_request(request)) == request


@given(results)
def test_result_round_trip(result: Result) -> None:
    assert decode_result(encode_result(result)) == result


@given(receipts)
def test_receipt_round_trip(receipt: Receipt) -> None:
    encoded = encode_receipt(receipt)
    assert len(encoded) == RECEIPT_SIZE
    assert decode_receipt(encoded) == receipt


@settings(
    max_examples=examples(300), deadline=None
)  # a loaded CI machine pauses a run now and then
@given(st.data(), receipts)
def test_fuzzed_receipt_decoder_raises_only_spool_format_error(data, receipt: Receipt) -> None:
    encoded = encode_receipt(receipt)
    mutated = data.draw(_mutations(encoded))
    try:
        decoded = decode_receipt(mutated)
    except SpoolFormatError:
        return
    assert mutated == encoded or decoded != receipt


def test_receipts_are_not_requests_or_results() -> None:
    receipt = encode_receipt(Receipt(ID, ID))
    for decode in (decode_request, decode_result):
        with pytest.raises(SpoolFormatError, match="kind"):
            decode(receipt)
    with pytest.raises(SpoolFormatError, match="kind"):
        decode_receipt(encode_result(Result(ID, 0, b"", b"")))
    with pytest.raises(SpoolFormatError, match="bad id"):
        encode_receipt(Receipt(ID, "not-an-id"))


def test_max_answer_is_the_largest_payload_a_response_holds() -> None:
    """One limit for both sides: the signer's check and the comm handler's encoder agree."""
    header = response_header(1)
    encode_message(Message(header, (b"x" * MAX_ANSWER, b"", b"")))
    with pytest.raises(FrameError):
        encode_message(Message(header, (b"x" * (MAX_ANSWER + 1), b"", b"")))


def reseal(body: bytes) -> bytes:
    """Recompute the checksum, so a test reaches the checks behind it."""
    return body + hashlib.sha256(body).digest()


def _mutations(data: bytes):
    return st.one_of(
        st.binary(max_size=400),
        st.integers(0, len(data) - 1).flatmap(
            lambda i: st.integers(0, 255).map(lambda b: data[:i] + bytes([b]) + data[i + 1 :])
        ),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.binary(min_size=1, max_size=20).map(lambda extra: data + extra),
        # edits behind a valid checksum: exercise the framing checks themselves
        st.integers(0, len(data) - 33).flatmap(
            lambda i: st.binary(max_size=8).map(
                lambda b: reseal(data[:i] + b + data[i : len(data) - 32])
            )
        ),
    )


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), requests, results)
def test_fuzzed_decoders_raise_only_spool_format_error(
    data, request: Request, result: Result
) -> None:
    for encoded, decode in (
        (encode_request(request), decode_request),
        (encode_result(result), decode_result),
    ):
        mutated = data.draw(_mutations(encoded))
        try:
            decoded = decode(mutated)
        except SpoolFormatError:
            continue
        # Only a byte-identical record can decode to the same value.
        assert mutated == encoded or decoded != (request if decode is decode_request else result)


@given(requests)
def test_single_bit_flips_are_detected(request: Request) -> None:
    encoded = encode_request(request)
    for i in range(0, len(encoded), max(1, len(encoded) // 40)):
        flipped = encoded[:i] + bytes([encoded[i] ^ 0x01]) + encoded[i + 1 :]
        with pytest.raises(SpoolFormatError):
            decode_request(flipped)


def test_kinds_are_not_interchangeable() -> None:
    with pytest.raises(SpoolFormatError, match="kind"):
        decode_result(encode_request(Request(ID, 0.0, bytes(9), (b"", b"", b""), True)))
    with pytest.raises(SpoolFormatError, match="kind"):
        decode_request(encode_result(Result(ID, 0, b"", b"")))


def test_stray_bytes_behind_a_valid_checksum_are_refused() -> None:
    encoded = encode_result(Result(ID, 1, b"x", b""))
    body = encoded[:-32]
    forged = reseal(body[:-4] + b"\x00" + body[-4:])
    with pytest.raises(SpoolFormatError, match="stray"):
        decode_result(forged)


def test_non_finite_time_and_unknown_flags_are_refused() -> None:
    encoded = encode_request(Request(ID, 1.0, bytes(9), (b"", b"", b""), False))
    start = 4 + 2 + 53
    nan = reseal(encoded[:start] + struct.pack(">d", float("nan")) + encoded[start + 8 : -32])
    with pytest.raises(SpoolFormatError, match="finite"):
        decode_request(nan)
    flags = reseal(encoded[: start + 8] + b"\x04" + encoded[start + 9 : -32])
    with pytest.raises(SpoolFormatError, match="flags"):
        decode_request(flags)


def test_a_v2_request_keeps_its_link_id() -> None:
    request = Request(ID, 1.0, bytes(9), (b"a", b"", b"c"), True, bytes(range(16)))
    assert decode_request(encode_request(request)) == request
    assert (
        decode_request(encode_request(Request(ID, 1.0, bytes(9), (b"", b"", b""), True))).link_id
        is None
    )
    with pytest.raises(SpoolFormatError, match="link id"):
        encode_request(Request(ID, 1.0, bytes(9), (b"", b"", b""), True, bytes(15)))


@pytest.mark.parametrize(
    "bad",
    [
        Request("not-an-id", 0.0, bytes(9), (b"", b"", b""), True),
        Request(ID, 0.0, bytes(8), (b"", b"", b""), True),
        Request(ID, 0.0, bytes(9), (b"", b""), True),  # type: ignore[arg-type]
        Request(ID, float("inf"), bytes(9), (b"", b"", b""), True),
        Request(ID, 0.0, bytes(9), (b"", "text", b""), True),  # type: ignore[arg-type]
        Request(ID, 0.0, bytes(9), (b"", b"", b""), 1),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_bad_requests(bad: Request) -> None:
    with pytest.raises(SpoolFormatError):
        encode_request(bad)


@pytest.mark.parametrize("action", [-1, 256, True, 1.0])
def test_encode_refuses_bad_actions(action) -> None:
    with pytest.raises(SpoolFormatError):
        encode_result(Result(ID, action, b"", b""))


def test_limits_are_exact() -> None:
    big = bytes(MAX_PAYLOAD)
    encoded = encode_request(Request(ID, 0.0, bytes(9), (big, big, big), True, bytes(16)))
    assert len(encoded) == MAX_REQUEST_SIZE
    assert decode_request(encoded).payloads[2] == big
    assert len(encode_result(Result(ID, 0, big, big))) == MAX_RESULT_SIZE
    with pytest.raises(SpoolFormatError, match="exceeds"):
        encode_request(Request(ID, 0.0, bytes(9), (big + b"x", b"", b""), True))
    # Refused on its length alone, before any parsing or hashing.
    with pytest.raises(SpoolFormatError, match="exceeds"):
        decode_request(encoded + b"x")
