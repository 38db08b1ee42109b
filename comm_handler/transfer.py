"""The v1 transfer handshake (start, ready, frame, verdict), both roles.

Untrusted side: runs in the comm handler and in the web-side client. It
trusts nothing that arrives on the line: bytes before a start byte are
skipped, damaged frames are answered with NAK, a frame that stops arriving is
dropped after ``chunk_timeout`` seconds of silence, and the receiver then
waits for the next start byte. Only a dead port ends a call with LinkClosed.

Both functions work on any pyserial-like object: ``read(n)`` (returns up to
``n`` bytes, fewer when ``timeout`` seconds pass), ``write(b)``, ``flush()``,
a writable ``timeout`` attribute and ``reset_input_buffer()``; ``in_waiting``
is used when present (it makes silence detection exact and reads fast). They
change ``port.timeout`` while they run and restore it before returning.

The comm daemon (server) loop, in outline::

    while running:
        try:
            data = receive_message(port, start_timeout=1.0)   # lets it check `running`
        except LinkTimeout:
            continue                      # no start byte yet
        except LinkClosed:
            reopen the port after a pause; continue
        try:
            request = decode_message(data)                    # FrameError: framed but
        except FrameError:                                    #   not four strings
            log, continue                 # nothing sensible to answer
        ... spool it, wait for the result (well inside the client's 120 s) ...
        reply = Message(response_header(action), (p1, p2, b""))
        try:
            send_message(port, encode_message(reply), pacing=...)
        except LinkError:
            log; the client will retry the request (the spool deduplicates)

After a failed transfer the peer may still be waiting for a resend: leave the
line quiet for longer than its chunk timeout (5 s) before a new start byte.
A LinkTimeout on the verdict does not mean the peer lacks the message: it
may have sent its ACK into a cut line.

Deployed timeouts: 20 s for ready, 5 s for the verdict, 120 s for the start
byte of a response, 5 s between chunks. They are the defaults where they
apply and every one is a parameter.
"""

from __future__ import annotations

import logging
import termios
import time
from dataclasses import dataclass
from typing import Protocol

from .frames import ACK, MAX_STRING, NAK, READY, START, FrameError, FrameReceiver, make_frame

log = logging.getLogger(__name__)

READ_CHUNK = 65536
# pyserial wraps most failures in SerialException (an OSError) but lets
# termios.error through from tcflush/tcdrain/tcsetattr on a dead tty.
PORT_ERRORS = (OSError, termios.error)
DEFAULT_MAX_RESENDS = 5
DEFAULT_MAX_NAKS = 5
DEFAULT_QUIET = 0.1


class SerialLike(Protocol):
    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def flush(self) -> None: ...

    def reset_input_buffer(self) -> None: ...


class LinkError(Exception):
    """A transfer did not complete; the port may still be usable."""


class LinkTimeout(LinkError):
    """The peer did not answer in time (no ready, no verdict, no start byte)."""


class LinkRefused(LinkError):
    """The receiver kept answering NAK after ``max_resends`` resends."""


class LinkClosed(LinkError):
    """The port failed (read/write error, end of file): reopen it."""


@dataclass(frozen=True)
class Pacing:
    """Write ``slice_bytes`` at a time, sleeping per byte and per slice.

    The deployed server used DEPLOYED_PACING so it never outran a 115200-baud
    line; on a pty or a USB link with flow control no pacing is needed.
    """

    slice_bytes: int = 30
    per_byte: float = 270e-6
    per_slice: float = 9e-3

    def __post_init__(self) -> None:
        if self.slice_bytes < 1 or self.per_byte < 0 or self.per_slice < 0:
            raise ValueError(f"invalid pacing {self}")


DEPLOYED_PACING = Pacing()


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def _read(port: SerialLike, size: int, timeout: float | None) -> bytes:
    try:
        if port.timeout != timeout:  # pyserial reconfigures the tty on every set
            port.timeout = timeout
        data = port.read(size)
    except PORT_ERRORS as exc:
        log.warning("link closed: read failed: %s", exc)
        raise LinkClosed(f"read failed: {exc}") from exc
    return bytes(data)


def _restore_timeout(port: SerialLike, saved: float | None) -> None:
    try:
        port.timeout = saved
    except PORT_ERRORS:  # the port died: the caller gets LinkClosed already
        pass


def _reset_input(port: SerialLike) -> None:
    try:
        port.reset_input_buffer()
    except PORT_ERRORS as exc:
        raise LinkClosed(f"input flush failed: {exc}") from exc


def _write(port: SerialLike, data: bytes, drain: bool = True) -> None:
    try:
        port.write(data)
        if drain:
            port.flush()
    except PORT_ERRORS as exc:
        log.warning("link closed: write failed: %s", exc)
        raise LinkClosed(f"write failed: {exc}") from exc


def _write_control(port: SerialLike, byte: int) -> None:
    """A start byte, ready, ACK or NAK, without waiting for it to leave (no ``flush``).

    A drain after one byte buys nothing: the writer waits for the peer's answer
    next, which cannot come before the byte has left. On a UART it costs: Linux
    polls the transmitter for the drain with sleeps of at least one jiffy (4 ms
    at HZ=250), while the byte takes 87 us, so that each turnaround of the
    handshake would wait milliseconds. A frame is still drained: its verdict
    timeout counts from the moment it has left.
    """
    _write(port, bytes([byte]), drain=False)


def _write_paced(port: SerialLike, data: bytes, pacing: Pacing | None) -> None:
    if pacing is None:
        _write(port, data)
        return
    for pos in range(0, len(data), pacing.slice_bytes):
        piece = data[pos : pos + pacing.slice_bytes]
        _write(port, piece)
        time.sleep(len(piece) * pacing.per_byte + pacing.per_slice)


def _wait_for(port: SerialLike, wanted: bytes, timeout: float | None, what: str) -> int:
    """Return the first byte in ``wanted``; others are logged as noise."""
    deadline = _Deadline(timeout)
    skipped = 0
    try:
        while True:
            byte = _read(port, 1, deadline.remaining())
            if byte and byte[0] in wanted:
                return byte[0]
            if byte:
                skipped += 1
            elif deadline.expired():
                raise LinkTimeout(f"no {what} within {timeout} s")
    finally:
        if skipped:
            log.warning("skipped %d noise bytes while waiting for %s", skipped, what)


def wait_for_start(port: SerialLike, starts: bytes, timeout: float | None = None) -> int:
    """The first byte in ``starts`` (a server that serves more than one protocol
    tells them apart by it); bytes before it are skipped as line noise."""
    return _wait_for(port, starts, timeout, "start byte")


def _drain(port: SerialLike, quiet: float, limit: float | None = None) -> int:
    """Discard input until the line has been silent for ``quiet`` seconds, or for at
    most ``limit`` seconds in all (None: no limit) on a line that never falls silent."""
    deadline = _Deadline(limit)
    dropped = 0
    while not deadline.expired():
        data = _read(port, READ_CHUNK, quiet)
        if not data:
            return dropped
        dropped += len(data)
    return dropped


def send_message(
    port: SerialLike,
    message_bytes: bytes,
    *,
    ready_timeout: float = 20.0,
    verdict_timeout: float = 5.0,
    max_resends: int = DEFAULT_MAX_RESENDS,
    pacing: Pacing | None = None,
) -> int:
    """Send one encoded message; return how many resends it took.

    Raises FrameError (not a valid message), LinkTimeout (no ready or no
    verdict), LinkRefused (NAK after ``max_resends`` resends), LinkClosed.
    Bytes other than ACK/NAK while waiting for the verdict are skipped as
    line noise rather than treated as a protocol error, so that a stray byte
    cannot make the sender retry a message the receiver already holds.
    """
    frame = make_frame(message_bytes)
    saved = port.timeout
    try:
        _reset_input(port)
        _write_control(port, START)
        _wait_for(port, bytes([READY]), ready_timeout, "ready")
        for attempt in range(max_resends + 1):
            _write_paced(port, frame, pacing)
            if _wait_for(port, bytes([ACK, NAK]), verdict_timeout, "verdict") == ACK:
                return attempt
            log.warning("frame of %d bytes refused (NAK), attempt %d", len(frame), attempt + 1)
        raise LinkRefused(f"frame refused {max_resends + 1} times")
    finally:
        _restore_timeout(port, saved)


def receive_message(
    port: SerialLike,
    *,
    start_timeout: float | None = None,
    chunk_timeout: float = 5.0,
    max_naks: int = DEFAULT_MAX_NAKS,
    max_length: int = MAX_STRING,
    quiet: float = DEFAULT_QUIET,
    started: bool = False,
) -> bytes:
    """Wait for a start byte, receive one frame, return its checked message bytes.

    ``started``: the caller has read the start byte already (a server that
    tells v1 from v2 by an exchange's first byte); it is answered at once.

    ``start_timeout`` bounds the wait for a start byte (None: for ever), also
    across resets; it raises LinkTimeout when it passes. A frame that is
    damaged gets NAK (at most ``max_naks`` times, then it is dropped without
    an answer); one that stops arriving for ``chunk_timeout`` seconds, or
    declares more than ``max_length`` bytes, is dropped. Each drop is logged
    and the receiver goes back to waiting for a start byte. After a damaged
    frame the input is discarded until ``quiet`` seconds of silence, so the
    tail of a frame with a damaged length cannot pose as the resend.
    The message bytes still need ``decode_message``.
    """
    deadline = _Deadline(start_timeout)
    saved = port.timeout
    try:
        while True:
            if not started:
                _wait_for(port, bytes([START]), deadline.remaining(), "start byte")
            started = False
            _write_control(port, READY)
            message = _receive_frame(port, chunk_timeout, max_naks, max_length, quiet)
            if message is not None:
                return message
            if deadline.expired():
                raise LinkTimeout(f"no complete frame within {start_timeout} s")
    finally:
        _restore_timeout(port, saved)


def _receive_frame(
    port: SerialLike, chunk_timeout: float, max_naks: int, max_length: int, quiet: float
) -> bytes | None:
    """One frame with its resends: the message, or None after a logged drop."""
    for naks in range(max_naks + 1):
        receiver = FrameReceiver(max_length)
        try:
            if not _collect(port, receiver, chunk_timeout):
                log.warning(
                    "frame incomplete after %.1f s of silence (%d of %s bytes): reset",
                    chunk_timeout,
                    receiver.received,
                    receiver.expected,
                )
                _reset_input(port)
                return None
            message = receiver.message()
        except FrameError as exc:
            dropped = _drain(port, quiet)
            if receiver.expected is None:  # length over the limit
                log.warning("%s (%d more bytes discarded): reset", exc, dropped)
                return None
            log.warning("%s (%d more bytes discarded)", exc, dropped)
            if naks == max_naks:
                break
            _write_control(port, NAK)
            continue
        _write_control(port, ACK)
        return message
    log.warning("frame still damaged after %d NAKs: dropped unanswered", max_naks)
    return None


def _collect(port: SerialLike, receiver: FrameReceiver, chunk_timeout: float) -> bool:
    """Feed the receiver until its frame is complete; False on silence."""
    while receiver.needed:
        data = _read_chunk(port, min(receiver.needed, READ_CHUNK), chunk_timeout)
        if not data:
            return False
        receiver.feed(data)
    return True


def _read_chunk(port: SerialLike, size: int, timeout: float) -> bytes:
    """Up to ``size`` bytes, or b"" after ``timeout`` seconds of silence."""
    if not hasattr(port, "in_waiting"):
        return _read(port, size, timeout)
    # One byte with the timeout measures silence exactly; then whatever is
    # already buffered, without waiting for more.
    data = _read(port, 1, timeout)
    if data and size > 1:
        try:
            buffered = min(int(port.in_waiting), size - 1)
        except PORT_ERRORS as exc:
            raise LinkClosed(f"input query failed: {exc}") from exc
        if buffered:
            data += _read(port, buffered, timeout)
    return data
