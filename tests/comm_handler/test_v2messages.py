"""comm_handler.v2messages: request and answer bodies, and their mapping to and from v1.

Round trips of every kind, hostile bodies (every truncation, stray bytes,
random bytes: only ``FrameError``), and the bridge's mapping of a v1 request
and a v2 answer, refusals with their codes included.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.frames import FrameError
from comm_handler.v2messages import (
    KIND_ACTIONS,
    MAX_TEXT,
    Kind,
    V2Answer,
    V2Request,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
)
from spool import codes
from spool.header import V2_ONLY, VERSION_2, Action, HeaderError, RequestHeader, System
from tests.support.examples import examples

RELAXED = settings(max_examples=examples(300), deadline=None)

requests = st.builds(
    V2Request,
    kind=st.sampled_from(Kind),
    root=st.integers(0, 255),
    profile=st.integers(0, 255),
    md=st.integers(0, 255),
    days=st.integers(0, 0xFFFF),
    spkac=st.booleans(),
    payloads=st.tuples(st.binary(max_size=300), st.binary(max_size=30), st.binary(max_size=30)),
)


@RELAXED
@given(requests)
def test_request_round_trip_and_its_spool_header(request: V2Request) -> None:
    assert decode_request(encode_request(request)) == request
    header = request.header()
    assert header.version == VERSION_2
    assert (header.action, header.system) == KIND_ACTIONS[request.kind]
    assert RequestHeader.from_bytes(header.to_bytes(), version=VERSION_2) == header


@RELAXED
@given(st.sampled_from(Kind), st.integers(0, 0xFFFF), st.binary(max_size=300), st.text(max_size=50))
def test_answer_round_trip(kind: Kind, code: int, payload: bytes, text: str) -> None:
    answer = V2Answer(kind, code, payload, text)
    assert decode_answer(encode_answer(answer)) == answer


def test_every_truncation_and_any_stray_byte_is_refused() -> None:
    body = encode_request(V2Request(Kind.SIGN_X509, 1, 5, 8, 365, False, (b"csr", b"san", b"cn")))
    for cut in range(len(body)):
        with pytest.raises(FrameError):
            decode_request(body[:cut])
    with pytest.raises(FrameError, match="stray"):
        decode_request(body + b"\0")
    answer = encode_answer(V2Answer(Kind.NUL, 0, b"x", "t"))
    for cut in range(len(answer)):
        with pytest.raises(FrameError):
            decode_answer(answer[:cut])


def test_unknown_kinds_flags_and_oversized_bodies_are_refused() -> None:
    body = bytearray(encode_request(V2Request(Kind.NUL)))
    body[0] = 6
    with pytest.raises(FrameError, match="kind 6"):
        decode_request(bytes(body))
    body[0], body[6] = 0, 2
    with pytest.raises(FrameError, match="flags"):
        decode_request(bytes(body))
    with pytest.raises(FrameError, match="over 10"):
        decode_request(encode_request(V2Request(Kind.NUL, payloads=(b"x" * 20, b"", b""))), 10)
    long_text = (
        bytes([0, 0, 1]) + bytes(3) + (MAX_TEXT + 1).to_bytes(2, "big") + bytes(MAX_TEXT + 1)
    )
    with pytest.raises(FrameError, match="text"):
        decode_answer(long_text)


@RELAXED
@given(st.binary(max_size=64))
def test_hostile_bodies_raise_only_frame_errors(data: bytes) -> None:
    for decode in (decode_request, decode_answer):
        try:
            decode(data)
        except FrameError:
            pass


def test_a_v1_request_maps_onto_v2_and_back() -> None:
    header = RequestHeader(
        action=Action.SIGN, system=System.X509, root=3, profile=5, md=8, days=730
    )
    request = V2Request.from_v1(header, (b"csr", b"san", b"subject"))
    assert request.kind == Kind.SIGN_X509
    assert request.header() == RequestHeader(
        version=VERSION_2, action=Action.SIGN, system=System.X509, root=3, profile=5, md=8, days=730
    )
    with pytest.raises(HeaderError):
        V2Request.from_v1(RequestHeader(action=Action.NUL, system=System.X509), (b"", b"", b""))
    assert {KIND_ACTIONS[k][0] for k in (Kind.STATUS, Kind.AUDIT)} == V2_ONLY


def test_a_refusal_keeps_its_code_across_the_mapping() -> None:
    answer = V2Answer.from_result(Kind.SIGN_X509, b"", b"ERR bad-csr: the CSR does not parse")
    assert answer.code == codes.number_of("bad-csr") and not answer.ok
    assert answer.text == "the CSR does not parse"
    assert decode_answer(encode_answer(answer)).v1_payloads() == (
        b"",
        b"ERR bad-csr: the CSR does not parse",
    )
    done = V2Answer.from_result(Kind.SIGN_X509, b"PEM", b"")
    assert done.ok and done.v1_payloads() == (b"PEM", b"")
    odd = V2Answer.from_result(Kind.NUL, b"", b"not an ERR line")
    assert odd.ok  # payload 2 is only ever empty or ERR: anything else is not a refusal
