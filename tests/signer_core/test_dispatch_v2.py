"""signer_core.dispatch for requests that came over link protocol v2: the exact retry rule, status.

The same real signer context as test_dispatch.py. A v2 request carries the
web host's id: the same id is the same request (answered again, even after
its answer was delivered); a new id is a new request, whatever its bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os

from signer_core.dispatch import dispatch, handle_receipt
from spool.entry import new_id
from spool.header import VERSION_2, Action, RequestHeader, System
from spool.record import Receipt, Request
from tests.support.audit import audit_request
from tests.support.dispatch import again, audit, certificate, sign_request, states
from tests.support.x509 import NOW
from tlog.exchange import AuditQuery, AuditReply
from tlog.note import open_checkpoint


def v2(request: Request, link_id: bytes) -> Request:
    header = dataclasses.replace(RequestHeader.from_bytes(request.header), version=VERSION_2)
    return dataclasses.replace(request, header=header.to_bytes(), link_id=link_id)


def test_same_id_gets_the_same_certificate_even_after_delivery(ctx):
    link_id = os.urandom(16)
    first = v2(sign_request(), link_id)
    cert = certificate(ctx, first)
    handle_receipt(ctx, Receipt(new_id(), first.id))
    assert len(audit(ctx, "delivered")) == 1
    retry = dataclasses.replace(again(first), link_id=link_id)
    assert certificate(ctx, retry) == cert
    assert states(ctx) == ["issued"]
    assert [r["first_answer"] for r in audit(ctx, "answered-again")] == [first.id]


def test_new_id_with_the_same_bytes_is_a_new_certificate(ctx):
    first = v2(sign_request(), os.urandom(16))
    cert = certificate(ctx, first)
    renewal = dataclasses.replace(again(first), link_id=os.urandom(16))
    assert certificate(ctx, renewal).serial_number != cert.serial_number
    assert states(ctx) == ["issued", "issued"]


def test_a_v1_request_and_a_v2_request_of_the_same_bytes_are_distinct(ctx):
    v1 = sign_request()
    cert = certificate(ctx, v1)
    as_v2 = v2(again(v1), os.urandom(16))
    assert certificate(ctx, as_v2).serial_number != cert.serial_number


def refusal(ctx, request: Request) -> bytes:
    result = dispatch(ctx, request)
    assert result is not None and result.payload1 == b""
    return result.payload2


def test_headers_and_link_ids_must_agree(ctx):
    v1_header_with_id = dataclasses.replace(sign_request(), link_id=os.urandom(16))
    assert refusal(ctx, v1_header_with_id).startswith(
        b"ERR bad-header: unsupported protocol version 1"
    )
    v2_header_without_id = dataclasses.replace(v2(sign_request(), os.urandom(16)), link_id=None)
    assert refusal(ctx, v2_header_without_id).startswith(
        b"ERR bad-header: unsupported protocol version 2"
    )


def status_request(payloads=(b"", b"", b"")) -> Request:
    header = RequestHeader(version=VERSION_2, action=Action.STATUS, system=System.NONE)
    return Request(new_id(), NOW.timestamp(), header.to_bytes(), payloads, True, os.urandom(16))


def test_status_says_what_serves_and_nothing_more(ctx):
    ctx.spool_counts = lambda: {"incoming": 3, "active": 1}
    result = dispatch(ctx, status_request())
    assert result is not None and result.payload2 == b""
    status = json.loads(result.payload1)
    assert status["signer"] == "up"
    assert status["spool"] == {"incoming": 3, "active": 1}
    assert status["last_drift_seconds"] is None
    assert set(status["roots"].values()) <= {"serving", "not-installed", "token-unavailable"}
    assert status["roots"][str(1)] == "serving"
    assert str(ctx.config.signer.state_dir) not in result.payload1.decode()
    assert b"PRIVATE" not in result.payload1


def test_status_refuses_payloads_and_is_unknown_to_v1(ctx):
    assert refusal(ctx, status_request((b"x", b"", b""))).startswith(b"ERR bad-request:")
    v1_status = dataclasses.replace(
        status_request(), header=bytes([1, Action.STATUS, 0, 0, 0, 0, 0, 0, 0]), link_id=None
    )
    assert refusal(ctx, v1_status).startswith(b"ERR bad-header:")


def test_an_audit_request_gets_a_signed_checkpoint_of_the_whole_log(ctx):
    answer = dispatch(ctx, audit_request(AuditQuery(0)))
    assert answer is not None and answer.payload2 == b""
    reply = AuditReply.decode(answer.payload1)
    assert ctx.log_key is not None
    checkpoint = open_checkpoint(reply.note, ctx.log_key.verifier)
    assert checkpoint.size == reply.count == ctx.audit.head()[0] > 0  # an audit request adds none
    assert reply.damage == 0 and reply.proof == ()


def test_a_bad_audit_request_is_refused_and_without_a_key_audit_is_unavailable(ctx):
    bad = dataclasses.replace(audit_request(AuditQuery(0)), payloads=(b"x" * 15, b"", b""))
    assert refusal(ctx, bad).startswith(b"ERR bad-request: an audit request is 24 bytes")
    ctx.log_key = None
    assert refusal(ctx, audit_request(AuditQuery(0))).startswith(b"ERR audit-unavailable:")
