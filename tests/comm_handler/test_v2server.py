"""comm_handler.v2server on hostile request bodies (hypothesis), on a real spool.

Every body gets an answer and never an exception: one that does not decode
is ``bad-message`` and reaches no spool; one that does is queued with its
request id beside a version-2 header, and (no signer runs, the deadline is
zero) answered ``timeout``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.daemon import LinkServer
from comm_handler.v2frames import Frame, FrameType
from comm_handler.v2messages import Kind, V2Request, encode_request
from spool import codes
from spool.header import VERSION_2, RequestHeader
from spool.record import decode_request
from tests.support.comm import link_server
from tests.support.examples import examples


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LinkServer:
    return link_server(tmp_path_factory.mktemp("spool"), 0.0)


def incoming(server: LinkServer) -> list[Path]:
    return sorted(server.relay.spool.incoming.glob("*.req"))


well_formed = st.builds(
    lambda kind, payload: encode_request(V2Request(kind, payloads=(payload, b"", b""))),
    st.sampled_from(Kind),
    st.binary(max_size=32),
)
bodies = st.one_of(st.binary(max_size=64), well_formed, well_formed.map(lambda b: b[:-1]))


@settings(max_examples=examples(200), deadline=None)
@given(bodies, st.binary(min_size=16, max_size=16))
def test_every_body_gets_an_answer(server, body, request_id) -> None:
    before = len(incoming(server))
    answer, delivers = server.v2.answer(Frame(FrameType.REQUEST, request_id, body))
    assert delivers is None  # nothing is ever delivered without a signer
    queued = len(incoming(server)) - before
    if answer.code == codes.number_of("bad-message"):
        assert queued == 0
    else:
        # A keep-alive is answered at once (the signer only records its time);
        # anything else waits for a result that, without a signer, never comes.
        assert answer.ok if answer.kind == Kind.NUL else answer.code == codes.number_of("timeout")
        assert queued == 1


def test_a_queued_request_carries_its_id_and_a_v2_header(server) -> None:
    body = encode_request(V2Request(Kind.SIGN_X509, 1, 5, 8, 365, False, (b"csr", b"san", b"cn")))
    before = set(incoming(server))
    answer, _ = server.v2.answer(Frame(FrameType.REQUEST, bytes(range(16)), body))
    assert answer.code == codes.number_of("timeout")
    (path,) = set(incoming(server)) - before
    request = decode_request(path.read_bytes())
    assert request.link_id == bytes(range(16))
    header = RequestHeader.from_bytes(request.header, version=VERSION_2)
    assert (header.root, header.profile, header.md, header.days) == (1, 5, 8, 365)
    assert request.payloads == (b"csr", b"san", b"cn")
