"""signer-comm: moves requests between the serial cable and the spool.

Untrusted side. It runs as the comm user, holds no key, never opens the CA
database and never imports ``signer_core``. For each frame the web host
sends it checks only what the link protocol defines (frame, four strings, a
nine-byte version-1 header), commits the request to ``spool/incoming``, waits
for the signer's result and sends it back. Policy is the signer's alone.

Every response is a version-1 message with the request's action, payload 1
the result and payload 2 empty or ``ERR <code>: <text>``. When the web host
ACKs a response that carried the signer's result, a delivery receipt for that
request goes into the spool: the signer then knows that an identical request
later is a new one (a renewal), not a retry. Codes of its own:
``bad-message`` (framed but not a v1 request), ``spool-unavailable`` (the
request could not be committed, or the result not read), ``bad-result`` (the
result file does not decode), ``result-too-large`` and ``timeout``.

SECURITY: everything read from the cable is hostile and bounded by the frame
layer (``comm.max_message``); a bad message gets a refusal, a broken cable a
reopen with backoff, and nothing here exits on input. A request the signer
has not answered by ``result_deadline`` is refused so the client (which
gives up after 120 s) retries; the request stays queued, and its retry is
answered from the CA database without a second certificate. A response
whose ACK never arrived gets no receipt: its retry is answered again.

SIGTERM and SIGINT stop it at once (``Stopped``), wherever it is, except
while a spool file is being committed (``_whole``): that is finished first,
so the spool never holds half a file. A request being received, or waiting
for its result, and a response being sent are abandoned: the web host
retries, and the signer answers the retry from its database. Exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import serial

from comm_handler.config import CommConfig, load_comm_config
from comm_handler.frames import (
    FrameError,
    Message,
    decode_message,
    encode_message,
    response_header,
)
from comm_handler.transfer import (
    PORT_ERRORS,
    LinkClosed,
    LinkRefused,
    LinkTimeout,
    SerialLike,
    receive_message,
    send_message,
)
from hardening.process import HardeningError, harden, refuse_readable
from spool.crashpoint import crashpoint
from spool.header import Action, HeaderError, RequestHeader
from spool.queue import Spool
from spool.record import SpoolFormatError, error_payload
from spool.settings import ConfigError

log = logging.getLogger("signer-comm")

REOPEN_BACKOFF = (0.2, 10.0)  # first and longest wait between attempts, seconds
REPEAT_WINDOW = 60.0  # s during which a warning identical to the last is counted, not logged


class _Repeats:
    """Logs a warning, but one identical to the last only once per ``REPEAT_WINDOW``,
    saying how often it came meanwhile: a client retrying against a spool the comm
    user cannot write gets a refusal each time without writing the log full."""

    def __init__(self) -> None:
        self.last = ""
        self.since = 0.0  # monotonic time ``last`` was logged
        self.count = 0  # times ``last`` came again since, not logged

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if message == self.last and now - self.since < REPEAT_WINDOW:
            self.count += 1
            return
        again = message == self.last and self.count > 0
        if self.count:  # what came since the last line: with this one, or before it
            log.warning(
                "%s (the same warning %d times in the last %.0f s)",
                self.last,
                self.count + (1 if again else 0),
                now - self.since,
            )
        if not again:
            log.warning("%s", message)
        self.last, self.since, self.count = message, now, 0


_refusals = _Repeats()

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived: whatever is in progress is abandoned (no ``except Exception``
    on the way catches it) and the daemon exits 0."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextmanager
def _whole() -> Iterator[None]:
    """Hold stop signals back while a spool file is committed: it is there whole or not at all."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a held signal stops us here


def _response(action: int, payload1: bytes = b"", payload2: bytes = b"") -> bytes:
    return encode_message(Message(response_header(action), (payload1, payload2, b"")))


def _refusal(action: int, code: str, text: str) -> bytes:
    _refusals.warning(f"refused: {code}: {text}")
    return _response(action, b"", error_payload(code, text)[:1000])


@dataclass(frozen=True)
class Answer:
    """A response to send, and the request whose result it carries (for the receipt)."""

    message: bytes
    delivers: str | None = None  # request id; None for our own refusals and NUL


def _action_of(data: bytes) -> int:
    """Best guess at the action of a message that did not parse, for the refusal."""
    try:
        header = decode_message(data).header
    except FrameError:
        return Action.NUL
    return header[1] if len(header) > 1 and header[1] in tuple(Action) else Action.NUL


class _NoResult(Exception):
    """No result to send for a request; ``message`` is our refusal instead."""

    def __init__(self, message: bytes) -> None:
        super().__init__("no result")
        self.message = message


class _Backoff:
    """Waits that double from REOPEN_BACKOFF[0] to REOPEN_BACKOFF[1]."""

    def __init__(self) -> None:
        self.wait = REOPEN_BACKOFF[0]

    def reset(self) -> None:
        self.wait = REOPEN_BACKOFF[0]

    def sleep(self) -> None:
        time.sleep(self.wait)
        self.wait = min(self.wait * 2, REOPEN_BACKOFF[1])


class LinkServer:
    """The comm daemon's loop: receive a request, answer it, reopen a lost port."""

    def __init__(self, cfg: CommConfig, spool: Spool) -> None:
        self.cfg = cfg
        self.spool = spool
        self.received = 0  # requests taken off the line since start

    def answer(self, data: bytes) -> Answer:
        """The response message for one received request message."""
        received_at = time.time()
        try:
            message = decode_message(data)
            header = RequestHeader.from_bytes(message.header)
        except (FrameError, HeaderError) as exc:
            return Answer(_refusal(_action_of(data), "bad-message", str(exc)))
        reply = header.action != Action.NUL
        try:
            with _whole():
                request_id = self.spool.enqueue(
                    message.header, message.payloads, received_at=received_at, reply=reply
                )
            crashpoint("request-committed")
        except OSError as exc:
            return Answer(_refusal(header.action, "spool-unavailable", exc.strerror or str(exc)))
        if not reply:
            return Answer(_response(Action.NUL))
        log.info("request %s: action %d system %d queued", request_id, header.action, header.system)
        return self._result(header.action, request_id, received_at)

    def _result(self, action: int, request_id: str, received_at: float) -> Answer:
        try:
            return Answer(self._result_message(action, request_id, received_at), request_id)
        except _NoResult as exc:
            return Answer(exc.message)

    def _result_message(self, action: int, request_id: str, received_at: float) -> bytes:
        """Wait for the signer's result; the response carries the request's action."""
        remaining = self.cfg.result_deadline - (time.time() - received_at)
        try:
            result = self.spool.wait_result(request_id, max(remaining, 0.0))
        except SpoolFormatError as exc:
            raise _NoResult(_refusal(action, "bad-result", str(exc))) from None
        except OSError as exc:
            raise _NoResult(
                _refusal(action, "spool-unavailable", exc.strerror or str(exc))
            ) from None
        if result is None:
            # The request stays in the spool: the signer still handles it, and
            # the client's retry is answered from the CA database.
            raise _NoResult(
                _refusal(
                    action,
                    "timeout",
                    f"no result within {self.cfg.result_deadline:g} s, retry later",
                )
            )
        try:
            return _response(action, result.payload1, result.payload2)
        except FrameError as exc:  # the signer keeps answers within MAX_ANSWER: a bug or a forgery
            raise _NoResult(_refusal(action, "result-too-large", str(exc))) from None

    def _receipt(self, request_id: str) -> None:
        """Tell the signer the web host has this request's answer; a failure only costs a reuse."""
        try:
            with _whole():
                self.spool.deliver(request_id)
            crashpoint("receipt-committed")
        except OSError as exc:
            log.warning(
                "request %s: delivery receipt not written: %s", request_id, exc.strerror or exc
            )

    def serve(self, port: SerialLike) -> None:
        """Answer requests on an open port until it fails (LinkClosed)."""
        link = self.cfg.link
        while True:
            data = receive_message(
                port, chunk_timeout=link.chunk, max_naks=link.max_naks, max_length=link.max_message
            )
            crashpoint("frame-received")
            self.received += 1
            answer = self.answer(data)
            try:
                resends = send_message(
                    port,
                    answer.message,
                    ready_timeout=link.ready,
                    verdict_timeout=link.verdict,
                    max_resends=link.max_resends,
                    pacing=self.cfg.pacing,
                )
                crashpoint("response-sent")
            except (LinkTimeout, LinkRefused) as exc:
                # The client retries; the signer answers the retry from its database.
                log.warning("response not delivered: %s", exc)
                continue
            if resends:
                log.info("response delivered after %d resends", resends)
            if answer.delivers is not None:
                self._receipt(answer.delivers)

    def _open(self) -> serial.Serial | None:
        try:
            return serial.serial_for_url(self.cfg.device, baudrate=self.cfg.baud)
        except (serial.SerialException, ValueError, *PORT_ERRORS) as exc:
            log.warning("cannot open %s: %s", self.cfg.device, exc)
            return None

    def run_forever(self) -> None:
        """Open the device, serve it, and reopen it with backoff whenever it fails."""
        backoff = _Backoff()
        while True:
            port = self._open()
            if port is None:
                backoff.sleep()
                continue
            log.info("link open on %s", self.cfg.device)
            received = self.received
            try:
                self.serve(port)
            except (LinkClosed, *PORT_ERRORS) as exc:
                log.warning("link lost: %s", exc)
            except Exception:  # a bug must cost one exchange, not the daemon
                log.exception("unexpected error; reopening the link")
            finally:
                _close(port)
            if self.received > received:  # it worked for a while: reopen quickly
                backoff.reset()
            backoff.sleep()


def _close(port: serial.Serial) -> None:
    try:
        port.close()
    except PORT_ERRORS as exc:  # a vanished device may fail even to close
        log.info("closing the port failed: %s", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-comm", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="signer-comm: %(levelname)s %(message)s")
    try:
        cfg = load_comm_config(args.config)
        harden("signer-comm", cfg.user, cfg.group, dumpable=True)
        if cfg.user:  # with one user for both daemons (development) there is nothing to check
            refuse_readable(cfg.forbidden)
    except (ConfigError, HardeningError) as exc:
        print(f"signer-comm: {exc}", file=sys.stderr)
        return 2
    pacing = "off" if cfg.pacing is None else f"{cfg.pacing}"
    log.info(
        "link timeouts %s; pacing %s; result deadline %g s", cfg.link, pacing, cfg.result_deadline
    )
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        LinkServer(cfg, Spool(cfg.spool_dir)).run_forever()
    except Stopped as exc:
        log.info("stopping on %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
