"""signer-comm: moves requests between the serial cable and the spool.

Untrusted side. It runs as the comm user, holds no key, never opens the CA
database and never imports ``signer_core``. For each frame the web host
sends it checks only what the link protocol defines (frame, four strings, a
nine-byte version-1 header), commits the request to ``spool/incoming``, waits
for the signer's result and sends it back. Policy is the signer's alone.

SECURITY: everything read from the cable is hostile and bounded by the frame
layer; a bad message gets a refusal, a broken cable a reopen with backoff, and
nothing here exits on input. A request the signer has not answered by
``result_deadline`` is refused so the client (which gives up after 120 s)
retries; the request stays queued, and its retry is answered from the CA
database without a second certificate.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import serial

from comm_handler.config import CommConfig, CommConfigError, load_comm_config
from comm_handler.frames import (
    Action, FrameError, Message, RequestHeader, decode_message, encode_message,
    response_header,
)
from comm_handler.transfer import LinkClosed, LinkTimeout, receive_message, send_message
from spool.crashpoint import crashpoint
from spool.hardening import HardeningError, harden, refuse_readable
from spool.queue import Spool

log = logging.getLogger("signer-comm")

REOPEN_BACKOFF = (0.2, 10.0)  # first and longest wait between attempts, seconds


def _response(action: int, payload1: bytes = b"", payload2: bytes = b"") -> bytes:
    return encode_message(Message(response_header(action), (payload1, payload2, b"")))


def _refusal(action: int, code: str, text: str) -> bytes:
    log.warning("refused: %s: %s", code, text)
    return _response(action, b"", f"ERR {code}: {text}".encode())


def _action_of(data: bytes) -> int:
    """Best guess at the action of a message that did not parse, for the refusal."""
    try:
        header = decode_message(data).header
    except FrameError:
        return Action.NUL
    return header[1] if len(header) > 1 and header[1] in tuple(Action) else Action.NUL


class LinkServer:
    def __init__(self, cfg: CommConfig, spool: Spool) -> None:
        self.cfg = cfg
        self.spool = spool

    def answer(self, data: bytes) -> bytes:
        """The response message for one received request message."""
        received_at = time.time()
        try:
            message = decode_message(data)
            header = RequestHeader.from_bytes(message.header)
        except FrameError as exc:
            return _refusal(_action_of(data), "bad-message", str(exc))
        reply = header.action != Action.NUL
        try:
            request_id = self.spool.enqueue(
                message.header, message.payloads, received_at=received_at, reply=reply)
            crashpoint("request-committed")
        except OSError as exc:
            return _refusal(header.action, "spool-unavailable", exc.strerror or str(exc))
        if not reply:
            return _response(Action.NUL)
        remaining = self.cfg.result_deadline - (time.time() - received_at)
        result = self.spool.wait_result(request_id, max(remaining, 0.0))
        if result is None:
            return _refusal(header.action, "timeout",
                            f"no result within {self.cfg.result_deadline:.0f} s, retry later")
        return _response(result.action, result.payload1, result.payload2)

    def serve(self, port) -> None:
        """Answer requests on an open port until the port goes away."""
        while True:
            try:
                data = receive_message(port)
                crashpoint("frame-received")
            except (LinkTimeout, FrameError) as exc:
                log.info("link reset: %s", exc)
                continue
            try:
                send_message(port, self.answer(data))
                crashpoint("response-sent")
            except (LinkTimeout, FrameError) as exc:
                log.warning("response not delivered: %s", exc)

    def run_forever(self) -> None:
        wait = REOPEN_BACKOFF[0]
        while True:
            try:
                port = serial.serial_for_url(self.cfg.device, baudrate=self.cfg.baud)
            except (serial.SerialException, OSError) as exc:
                log.warning("cannot open %s: %s; retrying in %.1f s", self.cfg.device, exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, REOPEN_BACKOFF[1])
                continue
            log.info("link open on %s", self.cfg.device)
            wait = REOPEN_BACKOFF[0]
            try:
                self.serve(port)
            except (LinkClosed, serial.SerialException, OSError) as exc:
                log.warning("link lost: %s", exc)
            finally:
                port.close()


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
    except (CommConfigError, HardeningError) as exc:
        print(f"signer-comm: {exc}", file=sys.stderr)
        return 2
    LinkServer(cfg, Spool(cfg.spool_dir)).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
