"""The web-side client of link protocol v2: the v1 client's requests, with ids and codes.

Runs on the web host, on the untrusted side of the link. ``V2Client`` is a
``WebClient`` whose exchanges go over v2 (``comm_handler.v2link``): every
request method of the v1 client works unchanged, the CRL answer is checked
the same way, and a refusal comes back as its code's name and text in the
v1 shape (``Response.payload2`` = ``ERR <code>: <text>``). What v2 adds:
``exchange_v2`` with an id of the caller's (the same id on a retry gets the
same answer from the signer; a new id, a new decision), and ``status``.

It trusts the appliance's answers only as the v1 client does: signatures
are the caller's to check, a CRL is verified before it replaces the file.
"""

from __future__ import annotations

import json
import os

from comm_handler.frames import response_header
from comm_handler.v2link import V2Timeouts, exchange
from comm_handler.v2messages import Kind, V2Answer, V2Request, decode_answer, encode_request
from spool.header import RequestHeader
from webhost.client import ClientError, Response, WebClient

ID_SIZE = 16


def new_request_id() -> bytes:
    """A fresh request id: 128 random bits, never the same twice in practice."""
    return os.urandom(ID_SIZE)


class V2Client(WebClient):
    """Speaks v2 to the appliance over ``link`` (as ``WebClient``)."""

    def v2_timeouts(self) -> V2Timeouts:
        return V2Timeouts(
            ack=self.verdict_timeout,
            answer=self.response_timeout,
            chunk=self.chunk_timeout,
            pacing=self.pacing,
        )

    def exchange_v2(self, request: V2Request, request_id: bytes | None = None) -> V2Answer:
        """Send one v2 request under ``request_id`` (a new one if None); its answer.

        Raises LinkError subclasses on link failure, FrameError when the
        answer does not decode."""
        request_id = request_id or new_request_id()
        body = exchange(self.port, request_id, encode_request(request), timeouts=self.v2_timeouts())
        return decode_answer(body)

    def exchange(
        self, header: RequestHeader, p1: bytes = b"", p2: bytes = b"", p3: bytes = b""
    ) -> Response:
        """A v1-shaped request over v2, under a new id; the answer in the v1 shape."""
        answer = self.exchange_v2(V2Request.from_v1(header, (p1, p2, p3)))
        payload1, payload2 = answer.v1_payloads()
        return Response(response_header(header.action), payload1, payload2)

    def status(self) -> dict[str, object]:
        """What the appliance says of itself (``signer_core.status``); ClientError if refused."""
        answer = self.exchange_v2(V2Request(Kind.STATUS))
        if not answer.ok:
            raise ClientError(f"the appliance refused the status request: {answer.text}")
        return self.parse_status(answer)

    @staticmethod
    def parse_status(answer: V2Answer) -> dict[str, object]:
        """The JSON object of a status answer; ClientError if it is not one."""
        try:
            status = json.loads(answer.payload)
        except ValueError as exc:
            raise ClientError("the appliance's status is not JSON") from exc
        if not isinstance(status, dict):
            raise ClientError("the appliance's status is not a JSON object")
        return status
