"""signer-comm: moves requests between the serial cable and the spool.

Untrusted side. It runs as the comm user, holds no key, never opens the CA
database and never imports ``signer_core``. It serves link protocols v1 and
v2 on the same line, telling them apart by the first byte of an exchange
(v1 opens with STX, 0x02; v2 with SYN, 0x16): v1 exactly as the deployed
web host's client speaks it (``comm_handler.v1server``), v2 as
docs/protocol-v2.md specifies (``comm_handler.v2server``). For either it
checks only what the link protocol defines, and ``comm_handler.relay``
commits the request to ``spool/incoming``, waits for the signer's result and
hands it back; when the web host ACKs an answer, a delivery receipt goes
into the spool. Policy is the signer's alone.

SECURITY: everything read from the cable is hostile and bounded by the frame
layers (``comm.max_message``); a bad message gets a refusal, a broken cable a
reopen with backoff, and nothing here exits on input. A request the signer
has not answered by ``result_deadline`` is refused so the client retries;
the request stays queued, and its retry is answered from the CA database
without a second certificate. An answer whose ACK never arrived gets no
receipt: its retry is answered again.

SIGTERM and SIGINT stop it at once (``comm_handler.stopping``), wherever it
is, except while a spool file is being committed; exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import serial

from comm_handler import stopping
from comm_handler.config import CommConfig, load_comm_config
from comm_handler.frames import START
from comm_handler.relay import SpoolRelay
from comm_handler.repeats import Repeats
from comm_handler.transfer import PORT_ERRORS, LinkClosed, SerialLike, wait_for_start
from comm_handler.v1server import V1Server
from comm_handler.v2frames import MARKER
from comm_handler.v2server import V2Server
from hardening.process import HardeningError, harden, refuse_readable
from spool.queue import Spool
from spool.settings import ConfigError

log = logging.getLogger("signer-comm")

REOPEN_BACKOFF = (0.2, 10.0)  # first and longest wait between attempts, seconds


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
    """The comm daemon's loop: tell v1 from v2, serve the exchange, reopen a lost port."""

    def __init__(self, cfg: CommConfig, spool: Spool) -> None:
        self.cfg = cfg
        refusals = Repeats(log)  # one count of repeated refusals, whichever layer refuses
        self.relay = SpoolRelay(cfg, spool, refusals)
        self.v1 = V1Server(self.relay, cfg.link, cfg.pacing, refusals)
        self.v2 = V2Server(self.relay, cfg.link, cfg.pacing, refusals)
        self.received = 0  # exchanges begun since start

    def serve(self, port: SerialLike) -> None:
        """Serve exchanges on an open port until it fails (LinkClosed)."""
        while True:
            first = wait_for_start(port, bytes([START, MARKER]))
            self.received += 1
            if first == START:
                self.v1.exchange(port, started=True)
            else:
                self.v2.exchange(port)

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
    stopping.install()
    try:
        LinkServer(cfg, Spool(cfg.spool_dir)).run_forever()
    except stopping.Stopped as exc:
        log.info("stopping on %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
