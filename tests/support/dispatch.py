"""A signer context's requests and what they leave: the dispatcher's tests' common parts.

Test tooling, trusted side: spool requests built as the comm handler would
write them, and the database and audit rows they leave behind.
"""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from signer_core.dispatch import SignerContext, dispatch
from spool.entry import new_id
from spool.header import Action, RequestHeader, System
from spool.record import Request
from tests.support.x509 import NOW, csr_pem

SAN = b"DNS:www.example.org"
SUBJECT = b"/CN=www.example.org"


def sign_request(days: int = 365, profile: int = 5, csr: bytes | None = None) -> Request:
    header = RequestHeader(
        action=Action.SIGN, system=System.X509, root=1, profile=profile, md=0, days=days
    ).to_bytes()
    csr = csr or csr_pem(ec.generate_private_key(ec.SECP256R1()))
    return Request(new_id(), NOW.timestamp(), header, (csr, SAN, SUBJECT), True)


def again(request: Request) -> Request:
    """The same bytes in a new spool request, as a retry or a renewal arrives."""
    return Request(new_id(), request.received_at, request.header, request.payloads, True)


def certificate(ctx: SignerContext, request: Request) -> x509.Certificate:
    result = dispatch(ctx, request)
    assert result is not None and result.payload2 == b"", result
    return x509.load_pem_x509_certificate(result.payload1)


def audit(ctx: SignerContext, event: str) -> list[dict]:
    rows = ctx.db.connection.execute(
        "SELECT details FROM audit WHERE event = ? ORDER BY seq", (event,)
    )
    return [json.loads(r[0]) for r in rows]


def states(ctx: SignerContext) -> list[str]:
    return [r[0] for r in ctx.db.connection.execute("SELECT state FROM certificates ORDER BY id")]
