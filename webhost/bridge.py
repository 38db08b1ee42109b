"""signer-bridge: link protocol v2 on the cable, v1 on a pty for the deployed client.

Runs on the web host, on the untrusted side of the link, and decides
nothing: every answer comes from the appliance. It opens the real serial
device (or a pyserial URL) and speaks v2 on it (``comm_handler.v2link``);
it makes a pseudo-terminal for the web host's deployed v1 client, prints
``v1 link: /dev/pts/N`` and serves v1 there with the appliance's own v1
server code (``comm_handler.v1server``), so that the client sees exactly the
line it has always seen.

Each v1 request becomes a v2 request with a 128-bit id. A request sent
again with the same bytes while its last answer was not ACKed by the client
keeps its id, so the appliance answers it as a retry; once the client ACKed
an answer, the same bytes get a new id, a new request (a renewal). An answer
the appliance could not give for now (``timeout``, ``spool-unavailable``,
``link-down``...) leaves the id as it was. When the appliance does not
answer, the client gets ``ERR link-down: ...`` and retries as it does on any
refusal; the cable is reopened with backoff, so a cable unplugged and
plugged back costs only the requests sent meanwhile, each refused, none lost.

Each exchange is logged: id, kind, request and answer sizes, time, outcome.

With ``--audit-state DIR``, each keep-alive (the client's cycle) is followed
by an audit sync (``webhost.audit_sync``): up to ``--audit-batches`` answers
of the appliance's audit log, fewer when the client is already sending its
next request, into the verified copy in DIR. An alarm (a rollback, a fork,
records that do not match) is logged as an error on every cycle and kept in
DIR (``ALARM``, ``evidence/``), where ``signer-client audit verify`` finds it
and exits 5 for a monitor; the v1 link is served all the same.
SIGTERM and SIGINT end it with status 0; a bad option is status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import serial

from comm_handler.frames import START, FrameError
from comm_handler.repeats import Repeats
from comm_handler.transfer import PORT_ERRORS, LinkClosed, LinkError, wait_for_start
from comm_handler.v1server import MAX_REFUSAL, Outcome, V1Server
from comm_handler.v2link import V2Timeouts, exchange
from comm_handler.v2messages import Kind, V2Answer, V2Request, decode_answer, encode_request
from spool import codes
from spool.header import Action, HeaderError, RequestHeader, System
from spool.record import error_payload
from spool.settings import LinkTimeouts
from tlog.exchange import AuditQuery
from webhost.audit_copy import AuditCopy, CopyError
from webhost.audit_sync import AuditAlarm, Sync, SyncError
from webhost.client_v2 import new_request_id
from webhost.ptyport import PtyPort

log = logging.getLogger("signer-bridge")

REOPEN_BACKOFF = (0.5, 10.0)  # s: first and longest wait between attempts to open the cable
REMEMBERED = 256  # unACKed requests whose ids are kept for their retries
STOP_GRACE = 5  # s a stop may take to unwind before the bridge exits regardless


@dataclass(frozen=True)
class AuditSettings:
    state: Path  # the verified copy's directory
    key: Path | None  # the log's public key; kept in the copy after the first sync
    batches: int  # answers per cycle at most


class Cable:
    """The serial device to the appliance, opened on demand and again after a failure."""

    def __init__(self, device: str, baud: int, timeouts: V2Timeouts) -> None:
        self.device, self.baud, self.timeouts = device, baud, timeouts
        self.port: serial.Serial | None = None
        self.wait, self.next_try = REOPEN_BACKOFF[0], 0.0

    def _open(self) -> serial.Serial:
        if self.port is not None:
            return self.port
        if time.monotonic() < self.next_try:
            raise LinkClosed(f"{self.device} is not open; next attempt in {self.wait:g} s")
        try:
            self.port = serial.serial_for_url(self.device, baudrate=self.baud, timeout=1.0)
        except (serial.SerialException, ValueError, *PORT_ERRORS) as exc:
            self._failed()
            log.info("cannot open %s: %s", self.device, exc)
            raise LinkClosed(f"cannot open {self.device}") from None
        log.info("cable open on %s", self.device)
        self.wait = REOPEN_BACKOFF[0]
        return self.port

    def _failed(self) -> None:
        self.next_try = time.monotonic() + self.wait
        self.wait = min(self.wait * 2, REOPEN_BACKOFF[1])

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except PORT_ERRORS as exc:  # a vanished device may fail even to close
                log.info("closing %s failed: %s", self.device, exc)

    def exchange(self, request_id: bytes, body: bytes) -> V2Answer:
        """One v2 exchange; LinkError when the appliance did not answer, FrameError on nonsense."""
        port = self._open()
        try:
            return decode_answer(exchange(port, request_id, body, timeouts=self.timeouts))
        except (LinkClosed, *PORT_ERRORS) as exc:
            self.close()
            self._failed()
            log.warning("the cable failed: %s", exc)  # pyserial's words: the log's only
            raise LinkClosed(
                f"the cable to the appliance failed; {self.device} is reopened"
            ) from None


def _request_key(header: RequestHeader, payloads: tuple[bytes, bytes, bytes]) -> bytes:
    h = hashlib.sha256(header.to_bytes())
    for part in payloads:
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


class Bridge:
    """The v1 server's backend: each v1 request over v2, with the id its history calls for."""

    def __init__(self, cable: Cable, audit: AuditSettings | None = None) -> None:
        self.cable = cable
        self.unacked: OrderedDict[bytes, bytes] = OrderedDict()  # request key -> its v2 id
        self.audit = audit
        self.cycle = False  # a keep-alive was served: the audit sync is due

    def _ask_audit(self, query: AuditQuery) -> V2Answer:
        request = V2Request(Kind.AUDIT, payloads=(query.encode(), b"", b""))
        return self.cable.exchange(new_request_id(), encode_request(request))

    def sync_audit(self, busy: Callable[[], bool]) -> None:
        """The audit sync of one cycle; whatever it finds is logged, never raised."""
        self.cycle = False
        if self.audit is None:
            return
        try:
            with AuditCopy(self.audit.state) as copy:
                sync = Sync(self._ask_audit, copy, copy.verifier(self.audit.key))
                result = sync.run(self.audit.batches, busy)
        except AuditAlarm as exc:
            log.error("audit alarm: %s", exc)
            return
        except (SyncError, CopyError, LinkError, FrameError) as exc:
            log.warning("audit sync stopped: %s", exc)
            return
        except Exception:  # a full disk, a bug: the v1 link is served all the same
            log.exception("audit sync failed")
            return
        log.info(
            "audit log: %d records verified (%d new, %d answers)%s",
            result.size,
            result.added,
            result.batches,
            "" if result.complete else ", more next cycle",
        )

    def _id_for(self, key: bytes) -> bytes:
        request_id = self.unacked.pop(key, None) or new_request_id()
        self.unacked[key] = request_id
        while len(self.unacked) > REMEMBERED:
            self.unacked.popitem(last=False)
        return request_id

    def submit(
        self, header: RequestHeader, payloads: tuple[bytes, bytes, bytes], received_at: float
    ) -> Outcome:
        if header.action == Action.NUL:
            self.cycle = header.system == System.NONE
        if header.action == Action.NUL and header.system != System.NONE:
            # v1 answers every keep-alive at once and leaves the rest to the signer,
            # which audits this one as refused; v2 has no kind for it.
            log.info("keep-alive for system %d answered, not passed on", header.system)
            return Outcome()
        try:
            request = V2Request.from_v1(header, payloads)
        except HeaderError as exc:  # a pair no signer serves: refused as the signer would
            text = f"{exc}; it is not served"
            return Outcome(b"", error_payload("unknown-request", text)[:MAX_REFUSAL])
        key = _request_key(header, payloads)
        # A keep-alive is never retried (its time changes): it gets a fresh id, and
        # is not remembered, so that keep-alives cannot push open requests out.
        request_id = new_request_id() if header.action == Action.NUL else self._id_for(key)
        body = encode_request(request)
        started = time.monotonic()
        try:
            answer = self.cable.exchange(request_id, body)
        except (LinkError, FrameError) as exc:
            self._log(request_id, request, len(body), started, f"link-down: {exc}")
            text = f"the appliance did not answer ({exc}); send the request again"
            return Outcome(b"", error_payload("link-down", text)[:MAX_REFUSAL])
        outcome = "done" if answer.ok else f"{codes.name_of(answer.code)}: {answer.text}"
        self._log(request_id, request, len(body), started, outcome, len(answer.payload))
        payload1, payload2 = answer.v1_payloads()
        final = answer.ok or codes.name_of(answer.code) not in codes.TRANSIENT
        if header.action == Action.NUL or not final:
            return Outcome(payload1, payload2)
        return Outcome(payload1, payload2, f"{key.hex()}:{request_id.hex()}")

    def delivered(self, delivers: str) -> None:
        """The client has the answer: its bytes, sent again, are a new request."""
        key, _, request_id = delivers.partition(":")
        if self.unacked.get(bytes.fromhex(key)) == bytes.fromhex(request_id):
            del self.unacked[bytes.fromhex(key)]

    @staticmethod
    def _log(
        request_id: bytes, request: V2Request, size: int, started: float, outcome: str, got: int = 0
    ) -> None:
        took = (time.monotonic() - started) * 1000
        log.info(
            "request %s %s: %d bytes out, %d back, %.1f ms: %s",
            request_id.hex(),
            request.kind.name.lower().replace("_", "-"),
            size,
            got,
            took,
            outcome,
        )


def serve(pty: PtyPort, bridge: Bridge) -> None:
    """Serve the deployed client's v1 exchanges for ever."""
    server = V1Server(bridge, LinkTimeouts(), None, Repeats(log))
    while True:
        wait_for_start(pty, bytes([START]))
        try:
            server.exchange(pty, started=True)
        except LinkError as exc:
            log.warning("v1 exchange abandoned: %s", exc)
        except Exception:  # a bug must cost one exchange, not the bridge
            log.exception("unexpected error in a v1 exchange")
        if bridge.cycle:
            bridge.sync_audit(lambda: pty.in_waiting > 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds below an hour")
    return value


def _stop(signum: int, frame: FrameType | None) -> None:
    # Unwind (the v1 link's symlink is removed on the way); should a clean-up block on
    # a dead line, end anyway within STOP_GRACE: every write of the audit copy is atomic.
    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))
    signal.alarm(STOP_GRACE)
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True, help="the cable: a device path or pyserial URL")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--v1-link", type=Path, help="a symlink to make to the v1 pty")
    parser.add_argument(
        "--ack-timeout", type=_seconds, default=5.0, help="s to wait for an ACK (default 5)"
    )
    parser.add_argument(
        "--chunk-timeout",
        type=_seconds,
        default=5.0,
        help="s of silence that abandons a frame (default 5)",
    )
    parser.add_argument(
        "--answer-timeout",
        type=_seconds,
        default=105.0,
        help="s to wait for the appliance's answer (default 105, inside the client's 120)",
    )
    parser.add_argument("--audit-state", type=Path, help="sync the audit log into this copy")
    parser.add_argument("--audit-key", type=Path, help="the log's public key (first sync)")
    parser.add_argument(
        "--audit-batches",
        type=int,
        default=4,
        help="audit answers per cycle at most (default 4)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="signer-bridge: %(levelname)s %(message)s")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    if args.v1_link is not None and os.path.lexists(args.v1_link) and not args.v1_link.is_symlink():
        print(f"signer-bridge: {args.v1_link} exists and is not a symlink", file=sys.stderr)
        return 2
    pty = PtyPort()
    try:
        return _run(args, pty)
    finally:
        pty.close()


def _run(args: argparse.Namespace, pty: PtyPort) -> int:
    if args.v1_link is not None:
        try:
            args.v1_link.unlink(missing_ok=True)  # a symlink of an earlier run
            args.v1_link.symlink_to(pty.name)
        except OSError as exc:
            print(f"signer-bridge: cannot make {args.v1_link}: {exc.strerror}", file=sys.stderr)
            return 2
    print(f"v1 link: {pty.name}", flush=True)
    timeouts = V2Timeouts(
        ack=args.ack_timeout, answer=args.answer_timeout, chunk=args.chunk_timeout
    )
    cable = Cable(args.device, args.baud, timeouts)
    try:
        audit = None
        if args.audit_state is not None:
            audit = AuditSettings(args.audit_state, args.audit_key, max(1, args.audit_batches))
        serve(pty, Bridge(cable, audit))
    finally:
        cable.close()
        if args.v1_link is not None and os.path.realpath(args.v1_link) == pty.name:
            os.unlink(args.v1_link)  # ours still, not one since pointed elsewhere
    return 0


if __name__ == "__main__":
    sys.exit(main())
