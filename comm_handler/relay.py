"""The comm handler's way to the signer: a checked request into the spool, its result back.

Untrusted side, the comm user's. ``SpoolRelay`` is the backend of both link
protocols (``comm_handler.v1server`` and ``comm_handler.v2server``): it
commits a request whose header and framing the link layer has checked into
``spool/incoming``, waits for the signer's result and returns it as v1's
payloads 1 and 2, and commits a delivery receipt when the web host ACKed an
answer. Policy is the signer's alone: nothing here reads a payload.

Refusals of its own: ``spool-unavailable`` (the request could not be
committed, or the result not read), ``bad-result`` (the result file does
not decode) and ``timeout`` (no result by ``result_deadline``: the request
stays queued, the client retries, and the retry is answered from the CA
database without a second certificate). A receipt that cannot be written
costs only that the signer answers a later identical v1 request again.
"""

from __future__ import annotations

import logging
import time

from comm_handler.config import CommConfig
from comm_handler.repeats import Repeats
from comm_handler.stopping import whole
from comm_handler.v1server import MAX_REFUSAL, Outcome
from spool.crashpoint import crashpoint
from spool.header import Action, RequestHeader
from spool.queue import Spool
from spool.record import SpoolFormatError, error_payload

log = logging.getLogger("signer-comm")


class SpoolRelay:
    """Requests into the spool, results and receipts; never raises for a request's sake."""

    def __init__(self, cfg: CommConfig, spool: Spool, refusals: Repeats) -> None:
        self.cfg, self.spool, self.refusals = cfg, spool, refusals

    def _refuse(self, code: str, text: str) -> Outcome:
        self.refusals.warning(f"refused: {code}: {text}")
        return Outcome(b"", error_payload(code, text)[:MAX_REFUSAL])

    def submit(
        self,
        header: RequestHeader,
        payloads: tuple[bytes, bytes, bytes],
        received_at: float,
        link_id: bytes | None = None,
    ) -> Outcome:
        reply = header.action != Action.NUL
        try:
            with whole():
                request_id = self.spool.enqueue(
                    header.to_bytes(),
                    payloads,
                    received_at=received_at,
                    reply=reply,
                    link_id=link_id,
                )
            crashpoint("request-committed")
        except OSError as exc:
            return self._refuse("spool-unavailable", exc.strerror or str(exc))
        if not reply:
            return Outcome()
        log.info("request %s: action %d system %d queued", request_id, header.action, header.system)
        return self._result(request_id, received_at)

    def _result(self, request_id: str, received_at: float) -> Outcome:
        """Wait for the signer's result until the deadline counted from ``received_at``."""
        remaining = self.cfg.result_deadline - (time.time() - received_at)
        try:
            result = self.spool.wait_result(request_id, max(remaining, 0.0))
        except SpoolFormatError as exc:
            return self._refuse("bad-result", str(exc))
        except OSError as exc:
            return self._refuse("spool-unavailable", exc.strerror or str(exc))
        if result is None:
            # The request stays in the spool: the signer still handles it, and
            # the client's retry is answered from the CA database.
            deadline = self.cfg.result_deadline
            return self._refuse("timeout", f"no result within {deadline:g} s, retry later")
        return Outcome(result.payload1, result.payload2, request_id)

    def delivered(self, delivers: str) -> None:
        """Tell the signer the web host has this request's answer; a failure only costs a reuse."""
        try:
            with whole():
                self.spool.deliver(delivers)
            crashpoint("receipt-committed")
        except OSError as exc:
            log.warning(
                "request %s: delivery receipt not written: %s", delivers, exc.strerror or exc
            )
