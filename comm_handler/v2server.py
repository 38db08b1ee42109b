"""The server side of link protocol v2 in the comm handler: one exchange, request in, answer out.

Untrusted side, the comm user's. The daemon has read an exchange's first
byte, SYN (0x16); this reads the rest of the request frame, ACKs it at once
by its id, decodes its body (``comm_handler.v2messages``) and hands it to the
spool (``comm_handler.relay``) as a version-2 header with the web host's
request id beside it; the signer keys its retry rule on that id. The answer
goes back by the same id and is resent until the web host ACKs it; only
then does the signer get a delivery receipt. A request sent again because
our ACK was lost is ACKed and answered again, as the signer answers the same
id: with the same answer.

SECURITY: the frame layer bounds every length before it is used (the head
carries its own check) and refuses a frame whose CRC-32C fails; a body that
does not decode is refused (``bad-message``) without reaching the spool.
Refusal codes go out as their numbers (``spool.codes``).
"""

from __future__ import annotations

import logging
import time

from comm_handler.frames import FrameError
from comm_handler.relay import SpoolRelay
from comm_handler.repeats import Repeats
from comm_handler.transfer import LinkTimeout, Pacing, SerialLike
from comm_handler.v2frames import MARKER, Frame
from comm_handler.v2link import NewRequest, V2Timeouts, receive_request, send_answer
from comm_handler.v2messages import Kind, V2Answer, decode_request, encode_answer
from spool import codes
from spool.header import HeaderError
from spool.record import MAX_ANSWER
from spool.settings import LinkTimeouts

log = logging.getLogger("signer-comm")


def v2_timeouts(link: LinkTimeouts, pacing: Pacing | None) -> V2Timeouts:
    """The comm handler's v2 timeouts, from its v1 ones: the same waits for the same things."""
    return V2Timeouts(
        ack=link.verdict,
        chunk=link.chunk,
        max_resends=link.max_resends,
        max_body=link.max_message,
        pacing=pacing,
    )


def _kind_of(body: bytes) -> Kind:
    """Best guess at the kind of a body that did not decode, for the refusal."""
    return Kind(body[0]) if body and body[0] in tuple(Kind) else Kind.NUL


class V2Server:
    """Serves v2 exchanges on a port, for the spool."""

    def __init__(
        self, relay: SpoolRelay, link: LinkTimeouts, pacing: Pacing | None, refusals: Repeats
    ) -> None:
        self.relay, self.refusals = relay, refusals
        self.timeouts = v2_timeouts(link, pacing)
        self.max_body = link.max_message

    def answer(self, frame: Frame) -> tuple[V2Answer, str | None]:
        """The answer to one request frame, and the spool id its delivery names."""
        received_at = time.time()
        try:
            request = decode_request(frame.body, self.max_body)
            header = request.header()
        except (FrameError, HeaderError) as exc:
            self.refusals.warning(f"refused: bad-message: {exc}")
            code = codes.number_of("bad-message")
            return V2Answer(_kind_of(frame.body), code, b"", str(exc)), None
        outcome = self.relay.submit(header, request.payloads, received_at, frame.request_id)
        answer = V2Answer.from_result(request.kind, outcome.payload1, outcome.payload2)
        if len(outcome.payload1) + len(outcome.payload2) > MAX_ANSWER:
            # The signer keeps answers within MAX_ANSWER: a bug, or a forged result file.
            text = f"a result of {len(outcome.payload1)} bytes is over {MAX_ANSWER}"
            self.refusals.warning(f"refused: result-too-large: {text}")
            code = codes.number_of("result-too-large")
            return V2Answer(request.kind, code, b"", text), None
        return answer, outcome.delivers

    def exchange(self, port: SerialLike) -> None:
        """Serve the request whose marker the daemon read, and any that came in its place."""
        try:
            # One frame, hardly a wait for another: the daemon reads the next
            # exchange's first byte, which may be v1's.
            frame: Frame | None = receive_request(
                port, timeouts=self.timeouts, first=bytes([MARKER]), timeout=self.timeouts.quiet
            )
        except LinkTimeout:  # a damaged or stray frame, NAKed or logged: the web host resends
            return
        while frame is not None:
            frame = self._serve(port, frame)

    def _serve(self, port: SerialLike, frame: Frame) -> Frame | None:
        answer, delivers = self.answer(frame)
        try:
            delivered = send_answer(
                port, frame.request_id, encode_answer(answer), timeouts=self.timeouts
            )
        except NewRequest as exc:  # the web host gave up on this one and sent the next
            log.warning("answer %s not acknowledged: a new request came", frame.request_id.hex())
            return exc.frame
        except LinkTimeout as exc:
            log.warning("answer %s not delivered: %s", frame.request_id.hex(), exc)
            return None
        if delivered and delivers is not None:
            self.relay.delivered(delivers)
        return None
