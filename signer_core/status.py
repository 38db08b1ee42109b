"""The ``status`` request (link protocol v2): what the web host may know of the appliance.

Trusted side: runs in the signer, on a request the comm handler passed on.
The answer is a small UTF-8 JSON object, and holds only what the web host
can learn anyway by sending requests and watching them answered or refused:
that the signer is up (the comm handler is, or nothing would answer), which
X.509 roots serve, how many entries the spool holds, and the clock drift of
the last keep-alive. No key material, no file paths, no configuration text,
no reasons beyond a state word: a root that is not installed says so, and
why is in the log and ``signerctl status`` for the operator at the machine.
The request's payloads must be empty; nothing of them is read.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from signer_core.refusal import Refusal
from spool.header import RequestHeader
from spool.record import Request

if TYPE_CHECKING:
    from signer_core.dispatch import SignerContext
    from signer_core.roots import Root


def _root_state(root: Root) -> str:
    session = getattr(root.private_key, "token", None)
    if session is not None and not getattr(session, "signing", True):
        return "token-unavailable"
    return "serving"


def handle_status(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    if any(request.payloads):
        raise Refusal("bad-request", "a status request has empty payloads")
    roots = {str(rid): _root_state(root) for rid, root in ctx.roots.roots.items()}
    roots.update({str(rid): "not-installed" for rid in ctx.roots.missing})
    last = ctx.time_readings.last()
    status = {
        "signer": "up",
        "roots": dict(sorted(roots.items(), key=lambda item: int(item[0]))),
        "openpgp": "serving" if ctx.openpgp is not None else "not-installed",
        "spool": dict(ctx.spool_counts()),
        "last_drift_seconds": None if last is None else round(last.drift, 1),
    }
    return json.dumps(status, sort_keys=False).encode("utf-8")
