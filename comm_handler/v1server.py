"""The server side of link protocol v1: one exchange, request in, response out.

Untrusted side. This is the v1 server, byte for byte as the deployed web
host's client expects it, in one place for the two programs that serve v1:
the appliance's comm handler (``comm_handler.daemon``), which hands each
request to the spool, and the web host's bridge (``webhost.bridge``), which
hands it on over link protocol v2. What they do with a request is their
``Backend``; how a request is read, checked and answered is here.

Each request is a framed v1 message: four strings, the first a nine-byte
version-1 header. Anything else is refused (``bad-message``) without
reaching the backend. Every response is a v1 message with the request's
action, payload 1 the result and payload 2 empty or ``ERR <code>: <text>``.
When the client ACKs a response that carried a backend's result, the
backend is told (``delivered``): the comm handler writes a delivery receipt,
the bridge marks the request's v2 id as used. A response whose ACK never
came tells nothing: the client will send the request again.

SECURITY: everything read from the line is hostile and bounded by the frame
layer (``max_message``). Only ``decode_message`` and ``RequestHeader`` parse
it, and a failure of either is a refusal, never an exception out of here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from comm_handler.frames import FrameError, Message, decode_message, encode_message, response_header
from comm_handler.repeats import Repeats
from comm_handler.transfer import (
    DEFAULT_QUIET,
    LinkRefused,
    LinkTimeout,
    Pacing,
    SerialLike,
    receive_message,
    send_message,
)
from spool.crashpoint import crashpoint
from spool.header import V2_ONLY, Action, HeaderError, RequestHeader
from spool.record import error_payload
from spool.settings import LinkTimeouts

log = logging.getLogger("signer-comm")
V1_ACTIONS = tuple(a for a in Action if a not in V2_ONLY)
MAX_REFUSAL = 1000  # bytes of payload 2 in a refusal of ours


@dataclass(frozen=True)
class Outcome:
    """A backend's answer to one request: v1's payloads 1 and 2, and what to tell on delivery."""

    payload1: bytes = b""
    payload2: bytes = b""  # b"" or b"ERR <code>: <text>"
    delivers: str | None = None  # given back to ``Backend.delivered`` once the client ACKs


class Backend(Protocol):
    def submit(
        self, header: RequestHeader, payloads: tuple[bytes, bytes, bytes], received_at: float
    ) -> Outcome:
        """The outcome of one checked v1 request (never raises for the request's sake)."""
        ...

    def delivered(self, delivers: str) -> None:
        """The client ACKed the response that carried ``Outcome.delivers``."""
        ...


@dataclass(frozen=True)
class Answer:
    """A response to send, and what its delivery tells the backend."""

    message: bytes
    delivers: str | None = None  # None for our own refusals


def response(action: int, payload1: bytes = b"", payload2: bytes = b"") -> bytes:
    """An encoded v1 response message."""
    return encode_message(Message(response_header(action), (payload1, payload2, b"")))


def _action_of(data: bytes) -> int:
    """Best guess at the action of a message that did not parse, for the refusal."""
    try:
        header = decode_message(data).header
    except FrameError:
        return Action.NUL
    return header[1] if len(header) > 1 and header[1] in V1_ACTIONS else Action.NUL


class V1Server:
    """Serves v1 exchanges on a port for one backend."""

    def __init__(
        self, backend: Backend, link: LinkTimeouts, pacing: Pacing | None, refusals: Repeats
    ) -> None:
        self.backend, self.link, self.pacing, self.refusals = backend, link, pacing, refusals

    def refusal(self, action: int, code: str, text: str) -> bytes:
        """A v1 response refusing a request with ``code``; logged, repeats counted."""
        self.refusals.warning(f"refused: {code}: {text}")
        return response(action, b"", error_payload(code, text)[:MAX_REFUSAL])

    def answer(self, data: bytes) -> Answer:
        """The response message for one received request message."""
        received_at = time.time()
        try:
            message = decode_message(data)
            header = RequestHeader.from_bytes(message.header)
        except (FrameError, HeaderError) as exc:
            return Answer(self.refusal(_action_of(data), "bad-message", str(exc)))
        outcome = self.backend.submit(header, message.payloads, received_at)
        try:
            return Answer(
                response(header.action, outcome.payload1, outcome.payload2), outcome.delivers
            )
        except FrameError as exc:  # a result over v1's limit: a bug, or a forgery upstream
            return Answer(self.refusal(header.action, "result-too-large", str(exc)))

    def exchange(self, port: SerialLike, *, started: bool) -> None:
        """Receive one request (its start byte already read when ``started``), answer it."""
        link = self.link
        try:
            # After a frame dropped, no waiting here for another start byte: the
            # caller reads the next exchange's first byte, which may be v2's.
            data = receive_message(
                port,
                start_timeout=DEFAULT_QUIET if started else None,
                chunk_timeout=link.chunk,
                max_naks=link.max_naks,
                max_length=link.max_message,
                started=started,
            )
        except LinkTimeout:
            return
        crashpoint("frame-received")
        answer = self.answer(data)
        try:
            resends = send_message(
                port,
                answer.message,
                ready_timeout=link.ready,
                verdict_timeout=link.verdict,
                max_resends=link.max_resends,
                pacing=self.pacing,
            )
            crashpoint("response-sent")
        except (LinkTimeout, LinkRefused) as exc:
            # The client retries; the backend answers the retry again.
            log.warning("response not delivered: %s", exc)
            return
        if resends:
            log.info("response delivered after %d resends", resends)
        if answer.delivers is not None:
            self.backend.delivered(answer.delivers)
