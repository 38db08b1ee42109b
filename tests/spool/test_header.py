"""The v1 request header that the comm handler copies into the spool (spool.header)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spool.header import V2_ONLY, VERSION_2, Action, HeaderError, RequestHeader, System

RELAXED = settings(deadline=None)


def test_request_header_known_values() -> None:
    openpgp = RequestHeader.from_bytes(bytes.fromhex("01010200000201 6E00".replace(" ", "")))
    assert openpgp == RequestHeader(action=Action.SIGN, system=System.OPENPGP, md=2, days=366)
    assert openpgp.to_bytes() == bytes.fromhex("010102000002016e00")
    nul = RequestHeader(action=Action.NUL, system=System.NONE)
    assert nul.to_bytes() == bytes.fromhex("010000000000000000")
    spkac = RequestHeader.from_bytes(bytes([1, 1, 1, 3, 5, 8, 2, 0xDA, 1]))
    assert (spkac.root, spkac.profile, spkac.md, spkac.days, spkac.spkac) == (3, 5, 8, 730, True)
    assert isinstance(spkac.action, Action) and isinstance(spkac.system, System)


headers = st.builds(
    RequestHeader,
    action=st.sampled_from([a for a in Action if a not in V2_ONLY]),
    system=st.sampled_from(System),
    root=st.integers(0, 255),
    profile=st.integers(0, 255),
    md=st.integers(0, 255),
    days=st.integers(0, 0xFFFF),
    spkac=st.booleans(),
)


@RELAXED
@given(headers)
def test_request_header_round_trip(header: RequestHeader) -> None:
    assert RequestHeader.from_bytes(header.to_bytes()) == header


def test_v2_headers_parse_only_as_v2_and_v2_actions_need_them() -> None:
    status = RequestHeader(version=VERSION_2, action=Action.STATUS, system=System.NONE)
    assert RequestHeader.from_bytes(status.to_bytes(), version=VERSION_2) == status
    with pytest.raises(HeaderError, match="unsupported protocol version 2"):
        RequestHeader.from_bytes(status.to_bytes())  # a v1 message never carries one
    v1 = RequestHeader(action=Action.SIGN, system=System.X509)
    with pytest.raises(HeaderError, match="unsupported protocol version 1"):
        RequestHeader.from_bytes(v1.to_bytes(), version=VERSION_2)
    for action in V2_ONLY:
        with pytest.raises(HeaderError, match="version 2 only"):
            RequestHeader(action=action, system=System.NONE)


@RELAXED
@given(st.binary(max_size=12))
def test_request_header_parser_only_raises_header_error(data: bytes) -> None:
    try:
        header = RequestHeader.from_bytes(data)
    except HeaderError:
        return
    assert header.to_bytes() == data


@pytest.mark.parametrize(
    "data",
    [
        bytes(8),
        bytes(10),
        bytes([2, 0, 0, 0, 0, 0, 0, 0, 0]),  # version 2
        bytes([1, 3, 1, 0, 0, 0, 0, 0, 0]),  # unknown action
        bytes([1, 1, 3, 0, 0, 0, 0, 0, 0]),  # unknown system
        bytes([1, 1, 1, 0, 0, 0, 0, 0, 2]),  # key-type flag 2
    ],
)
def test_request_header_refusals(data: bytes) -> None:
    with pytest.raises(HeaderError):
        RequestHeader.from_bytes(data)


def test_request_header_constructor_validates() -> None:
    with pytest.raises(HeaderError):
        RequestHeader(action=Action.SIGN, system=System.X509, days=70000)
    with pytest.raises(HeaderError):
        RequestHeader(action=Action.SIGN, system=System.X509, root=-1)
