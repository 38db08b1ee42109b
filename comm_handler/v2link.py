"""The v2 link transport: frames sent at once, acknowledged, refused and resent.

Untrusted side: it runs in the comm handler, which holds no key, and in the
web host's bridge and client. It trusts nothing that comes off the line: a
frame counts only once its head check and its frame check (CRC-32C,
``v2frames``) hold, and a frame's request id decides what it answers.

Why it looks as it does:

- No start/ready handshake, unlike v1: a frame carries its own marker,
  length and checks, which saves two turnarounds per direction.
- The frame reader never ACKs (it reads the ACKs and NAKs too); the roles
  acknowledge what they accept. It NAKs damage, since only it sees it; a
  damaged head's NAK carries the all-zero id: "resend what you sent last".
- After damage it discards input until ``quiet`` s of silence (at most
  ``DRAIN_LIMIT``), so a frame's tail cannot pose as a new frame; a frame
  that stops for ``chunk`` s is dropped, and the sender's timeout resends it.
- At most ``max_naks`` NAKs per ``read_frame`` call, then bad frames are
  dropped unanswered: a line of garbage cannot keep the peer resending.
- Frames of another id are logged and ignored, never returned or ACKed: a
  late answer to an abandoned request must not pass for the current one, nor
  be recorded as delivered. The requester also discards what is left on the
  line before it sends a request.
- A lost ACK costs nothing twice: an answer with the request's id implies the
  request arrived; a request resent with the same id while its answer waits
  is ACKed again and its answer resent. When every send of a request meets
  only silence, the requester waits for the answer rather than give up: the
  responder reads nothing while the signer works.
- A request with a new id while an answer waits means the requester gave up
  on the old one: ``send_answer`` ACKs it and raises ``NewRequest`` (no
  LinkError, so no ``except LinkError`` swallows it) for the caller to serve.
- ``send_answer`` returns False when its answer was never ACKed: no delivery
  receipt, and a resend of the request gets the same answer from the signer.

Every function works on any pyserial-like port (``transfer.SerialLike``) and
restores ``port.timeout`` before it returns. Only a dead port ends a call
with LinkClosed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .frames import MAX_STRING, FrameError
from .transfer import (
    DEFAULT_MAX_NAKS,
    READ_CHUNK,
    LinkError,
    LinkRefused,
    LinkTimeout,
    Pacing,
    SerialLike,
    _Deadline,
    _drain,
    _read,
    _read_chunk,
    _reset_input,
    _restore_timeout,
    _write,
    _write_paced,
)
from .v2frames import (
    CHECK_SIZE,
    HEAD_SIZE,
    ID_SIZE,
    MARKER,
    MAX_BODY,
    Frame,
    FrameType,
    decode_frame,
    decode_head,
    encode_frame,
)

log = logging.getLogger(__name__)

ZERO_ID = bytes(ID_SIZE)  # the id of a NAK for a frame whose head was damaged
DRAIN_LIMIT = 5.0  # s: the longest a damaged frame's discarding may take on a babbling line


@dataclass(frozen=True)
class V2Timeouts:
    """The waits and limits of one side (seconds; deployed values as defaults).

    ``answer`` (105 s) stays inside the deployed client's 120 s; ``max_body``
    is v1's limit for one message, so v2 carries what v1 did."""

    ack: float = 5.0
    answer: float = 105.0
    chunk: float = 5.0
    quiet: float = 0.1
    max_resends: int = 5
    max_body: int = MAX_STRING
    pacing: Pacing | None = None

    def __post_init__(self) -> None:
        for name in ("ack", "answer", "chunk", "quiet"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number of seconds")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive and finite, not {value}")
        for name, low, high in (("max_resends", 0, 1000), ("max_body", 0, MAX_BODY)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}]")
        if self.pacing is not None and not isinstance(self.pacing, Pacing):
            raise ValueError("pacing must be a transfer.Pacing or None")


class NewRequest(Exception):
    """A request with a new id came while an answer waited for its ACK (already ACKed)."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"new request {frame.request_id.hex()} while answering")
        self.frame = frame


def _describe(frame: Frame) -> str:
    return f"{chr(frame.type)} {frame.request_id.hex()} ({len(frame.body)} bytes)"


class _Input:
    """The port, read after the bytes a caller already took off it."""

    def __init__(self, port: SerialLike, first: bytes) -> None:
        self.port = port
        self.held = bytearray(first)

    def byte(self, timeout: float | None) -> bytes:
        if self.held:
            byte = bytes(self.held[:1])
            del self.held[:1]
            return byte
        return _read(self.port, 1, timeout)

    def exact(self, size: int, chunk: float) -> bytes | None:
        """``size`` bytes, or None after ``chunk`` seconds of silence."""
        data = bytearray(self.held[:size])
        del self.held[:size]
        while len(data) < size:
            piece = _read_chunk(self.port, min(size - len(data), READ_CHUNK), chunk)
            if not piece:
                return None
            data += piece
        return bytes(data)

    def drain(self, quiet: float) -> int:
        dropped = len(self.held)
        self.held.clear()
        return dropped + _drain(self.port, quiet, DRAIN_LIMIT)


def _await_marker(source: _Input, deadline: _Deadline) -> bool:
    """Skip to a marker byte (True), or False when the deadline passes; noise logged once."""
    skipped = 0
    try:
        while True:
            byte = source.byte(deadline.remaining())
            if byte and byte[0] == MARKER:
                return True
            if byte:
                skipped += 1
            if deadline.expired():  # after noise too: a babbling line must not hold us
                return False
    finally:
        if skipped:
            log.warning("skipped %d noise bytes before a frame", skipped)


def _one_frame(source: _Input, max_body: int, chunk: float, quiet: float) -> Frame | bytes | None:
    """After a marker: the frame, the id to NAK it with (damaged), or None (it stopped)."""
    rest = source.exact(HEAD_SIZE - 1, chunk)
    if rest is None:
        log.warning("frame head incomplete after %.1f s of silence: dropped", chunk)
        return None
    head_bytes = bytes([MARKER]) + rest
    try:
        head = decode_head(head_bytes, max_body)
    except FrameError as exc:
        log.warning("%s (%d more bytes discarded)", exc, source.drain(quiet))
        return ZERO_ID
    tail = source.exact(head.length + CHECK_SIZE, chunk)
    if tail is None:
        log.warning("frame body incomplete after %.1f s of silence: dropped", chunk)
        return None
    try:
        return decode_frame(head_bytes + tail, max_body)
    except FrameError as exc:
        log.warning("%s (%d more bytes discarded)", exc, source.drain(quiet))
        return head.request_id


def read_frame(
    port: SerialLike,
    *,
    max_body: int,
    chunk_timeout: float,
    quiet: float,
    timeout: float | None,
    first: bytes = b"",
    max_naks: int = DEFAULT_MAX_NAKS,
) -> Frame:
    """The next good frame of any type; damaged ones are NAKed here and skipped.

    ``first``: bytes the caller already read (the comm handler's 0x16 that
    told it v2 from v1). ``timeout`` bounds the wait for a frame's start, also
    across drops (None: for ever); LinkTimeout when it passes. A frame that
    has started is read to its end or its ``chunk_timeout`` of silence.
    """
    deadline = _Deadline(timeout)
    source = _Input(port, first)
    saved = port.timeout
    naks = 0
    try:
        while True:
            if not _await_marker(source, deadline):
                raise LinkTimeout(f"no frame within {timeout} s")
            outcome = _one_frame(source, max_body, chunk_timeout, quiet)
            if isinstance(outcome, Frame):
                return outcome
            if outcome is not None and naks < max_naks:
                naks += 1
                _send_control(port, FrameType.NAK, outcome)
            elif outcome is not None:
                log.warning("damaged frame dropped unanswered after %d NAKs", max_naks)
            if deadline.expired():
                raise LinkTimeout(f"no good frame within {timeout} s")
    finally:
        _restore_timeout(port, saved)


def write_frame(port: SerialLike, frame: Frame, pacing: Pacing | None = None) -> None:
    """Write a frame, paced, and wait until it has left (its ACK timeout counts from then)."""
    _write_paced(port, encode_frame(frame), pacing)


def _send_control(port: SerialLike, kind: FrameType, request_id: bytes) -> None:
    """An ACK or NAK, unpaced and undrained: 31 bytes, and the writer waits for the peer next."""
    _write(port, encode_frame(Frame(kind, request_id)), drain=False)


def _read_for(port: SerialLike, t: V2Timeouts, timeout: float | None) -> Frame:
    return read_frame(
        port, max_body=t.max_body, chunk_timeout=t.chunk, quiet=t.quiet, timeout=timeout
    )


_Verdict = Literal["ack", "nak", "silent"]


def _await_verdict(
    port: SerialLike, request_id: bytes, t: V2Timeouts, accept: Callable[[Frame], bool]
) -> _Verdict | Frame:
    """Up to ``t.ack`` s: our ACK or NAK, or a frame ``accept`` takes; others are ignored."""
    deadline = _Deadline(t.ack)
    while True:
        try:
            frame = _read_for(port, t, deadline.remaining())
        except LinkTimeout:
            return "silent"
        if frame.type is FrameType.ACK and frame.request_id == request_id:
            return "ack"
        if frame.type is FrameType.NAK and frame.request_id in (request_id, ZERO_ID):
            return "nak"
        if accept(frame):
            return frame
        log.warning(
            "ignored %s while waiting for the ACK of %s", _describe(frame), request_id.hex()
        )


def _give_up(what: str, last: _Verdict | Frame, t: V2Timeouts) -> LinkError:
    if last == "nak":
        return LinkRefused(f"{what} refused (NAK) after {t.max_resends} resends")
    return LinkTimeout(f"{what} not acknowledged within {t.ack} s, {t.max_resends} resends")


def _deliver_request(port: SerialLike, request: Frame, t: V2Timeouts) -> Frame | None:
    """Send the request until ACKed (None), or the answer if it came first."""
    rid = request.request_id

    def is_our_answer(frame: Frame) -> bool:
        return frame.type is FrameType.ANSWER and frame.request_id == rid

    verdict: _Verdict | Frame = "silent"
    for attempt in range(t.max_resends + 1):
        if attempt:
            log.warning("request %s: resend %d (%s)", rid.hex(), attempt, verdict)
        write_frame(port, request, t.pacing)
        verdict = _await_verdict(port, rid, t, is_our_answer)
        if isinstance(verdict, Frame):
            return verdict  # its ACK was lost; the answer says the request arrived
        if verdict == "ack":
            return None
    if verdict == "silent":
        # Only silence: the responder may hold the request (our ACK lost) and be
        # waiting for the signer, reading nothing. Its answer is due within
        # ``answer``; if none comes, ``_await_answer`` says so.
        log.warning("request %s never acknowledged: waiting for its answer", rid.hex())
        return None
    raise _give_up(f"request {rid.hex()}", verdict, t)


def _await_answer(port: SerialLike, request_id: bytes, t: V2Timeouts) -> Frame:
    deadline = _Deadline(t.answer)
    while True:
        try:
            frame = _read_for(port, t, deadline.remaining())
        except LinkTimeout:
            raise LinkTimeout(f"no answer to {request_id.hex()} within {t.answer} s") from None
        if frame.type is FrameType.ANSWER and frame.request_id == request_id:
            return frame
        log.warning("ignored %s while waiting for the answer", _describe(frame))


def exchange(port: SerialLike, request_id: bytes, body: bytes, *, timeouts: V2Timeouts) -> bytes:
    """Requester (web side): send one request, return its answer's body.

    Raises FrameError (bad id or body), LinkRefused (NAKed after
    ``max_resends`` resends), LinkTimeout (no ACK, or no answer within
    ``timeouts.answer`` s), LinkClosed. A LinkTimeout does not mean that the
    responder lacks the request: retry with the same id to get its answer.
    """
    request = Frame(FrameType.REQUEST, request_id, body)
    if len(body) > timeouts.max_body:
        raise FrameError(f"request body of {len(body)} bytes over {timeouts.max_body}")
    saved = port.timeout
    try:
        # What is still on the line belongs to exchanges given up on: an old
        # answer of this very id (a refusal for now, say) must not pass for the new one.
        _reset_input(port)
        answer = _deliver_request(port, request, timeouts)
        if answer is None:
            answer = _await_answer(port, request_id, timeouts)
        _send_control(port, FrameType.ACK, request_id)
        return answer.body
    finally:
        _restore_timeout(port, saved)


def receive_request(
    port: SerialLike, *, timeouts: V2Timeouts, first: bytes = b"", timeout: float | None = None
) -> Frame:
    """Responder (comm side): the next request, ACKed at once; stray K/A/N are logged.

    ``timeout`` bounds the wait (None: for ever; LinkTimeout when it passes),
    so that a daemon loop can look at its stop flag between waits.
    """
    deadline = _Deadline(timeout)
    while True:
        frame = read_frame(
            port,
            max_body=timeouts.max_body,
            chunk_timeout=timeouts.chunk,
            quiet=timeouts.quiet,
            timeout=deadline.remaining(),
            first=first,
        )
        first = b""
        if frame.type is FrameType.REQUEST:
            _send_control(port, FrameType.ACK, frame.request_id)
            return frame
        log.warning("ignored stray %s while waiting for a request", _describe(frame))


def send_answer(port: SerialLike, request_id: bytes, body: bytes, *, timeouts: V2Timeouts) -> bool:
    """Responder: send the answer until ACKed (True) or ``max_resends`` pass (False).

    A NAK or silence resends it; so does the same request again (its ACK was
    lost: it is ACKed again). A request with another id is ACKed and raised as
    NewRequest. Raises FrameError (bad id or body) and LinkClosed.
    """
    answer = Frame(FrameType.ANSWER, request_id, body)
    saved = port.timeout
    try:
        for attempt in range(timeouts.max_resends + 1):
            if attempt:
                log.warning("answer %s: resend %d", request_id.hex(), attempt)
            write_frame(port, answer, timeouts.pacing)
            verdict = _await_verdict(
                port, request_id, timeouts, lambda f: f.type is FrameType.REQUEST
            )
            if verdict == "ack":
                return True
            if isinstance(verdict, Frame):
                _send_control(port, FrameType.ACK, verdict.request_id)
                if verdict.request_id != request_id:
                    raise NewRequest(verdict)
                if attempt == timeouts.max_resends:  # ACKed: the requester now waits for it
                    write_frame(port, answer, timeouts.pacing)
        log.warning("answer %s never acknowledged: no delivery", request_id.hex())
        return False
    finally:
        _restore_timeout(port, saved)
