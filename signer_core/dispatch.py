"""What the signer accepts, in one table, and the handler for each kind.

Trusted side. Like OpenSSH's privilege-separation monitor, the signer carries
out only the request kinds listed in ``REQUEST_KINDS``; anything else is
refused before any parsing of payloads. Each handler receives a request
read from the spool (hostile: the comm handler may be compromised), returns
payload 1 of the answer, or raises ``Refusal``. ``dispatch`` never raises: a
bug in a handler becomes an ``internal`` refusal, logged with its traceback,
so that one poisoned request cannot stop the queue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from comm_handler.frames import Action, FrameError, RequestHeader, System
from signer_core.audit import AuditLog
from signer_core.cadb import CADatabase
from signer_core.config import Config
from signer_core.issue import SignRequest, new_serial, plan_certificate, sign_certificate
from signer_core.openpgp import OpenPGPSigner, certify_key
from signer_core.openpgp_packets import summarise
from signer_core.refusal import Refusal
from signer_core.revocation import Revocations
from signer_core.roots import RootStore
from signer_core.timesync import TimeReadings
from spool.crashpoint import crashpoint
from spool.record import Request, Result

log = logging.getLogger("signer-core")

SERIAL_ATTEMPTS = 8
MAX_QUEUE_AGE = 7 * 86400.0


@dataclass
class SignerContext:
    """Everything a handler may use; built once at start by the daemon."""

    config: Config
    roots: RootStore
    db: CADatabase
    audit: AuditLog
    time_readings: TimeReadings
    revocations: Revocations
    openpgp: OpenPGPSigner | None  # None: no OpenPGP root configured or installed
    openpgp_missing: str = "no OpenPGP root is configured"
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)


Handler = Callable[[SignerContext, RequestHeader, Request], bytes]


def request_digest(request: Request) -> bytes:
    """Identity of a request's content: the same bytes seen again are a retry."""
    h = hashlib.sha256()
    for part in (request.header, *request.payloads):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def handle_nul(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    # received_at comes from the comm handler: believed only between a week ago
    # (a backlog) and now, so a lie cannot put an absurd drift in the clock script.
    now = ctx.now().timestamp()
    received_at = min(max(request.received_at, now - MAX_QUEUE_AGE), now)
    ctx.time_readings.record(request.payloads[0], received_at)
    return b""


def _reserve_serial(ctx: SignerContext, root: int, digest: bytes, profile: int) -> int:
    for _ in range(SERIAL_ATTEMPTS):
        serial = new_serial()
        if ctx.db.reserve(root, serial, digest, profile):
            crashpoint("serial-reserved")
            return serial
    raise Refusal("internal", "no free serial number found")


def handle_sign_x509(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    digest = request_digest(request)
    row = ctx.db.find_by_digest(digest)
    if row is not None and row.state == "issued":
        log.info("request seen before: answering with serial %x", row.serial)
        return row.pem()
    sign_request = SignRequest(
        root=header.root, profile=header.profile, md=header.md, days=header.days,
        spkac=header.spkac, payload1=request.payloads[0], payload2=request.payloads[1],
        payload3=request.payloads[2])
    plan = plan_certificate(ctx.config, ctx.roots, sign_request, ctx.now())
    serial = row.serial if row is not None else _reserve_serial(
        ctx, header.root, digest, header.profile)
    cert = sign_certificate(plan, serial)
    crashpoint("certificate-signed")
    with ctx.db.transaction():
        ctx.db.record_issued(digest, cert)
        ctx.audit.append("issued", root=header.root, profile=header.profile,
                         serial=format(serial, "x"), subject=cert.subject.rfc4514_string(),
                         request=digest.hex())
    crashpoint("database-committed")
    log.info("issued serial %x by root %d, profile %d", serial, header.root, header.profile)
    return cert.public_bytes(serialization.Encoding.PEM)


def handle_sign_openpgp(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    if header.root != 0:
        raise Refusal("unknown-root", f"there is no OpenPGP root {header.root}")
    if ctx.openpgp is None:
        raise Refusal("openpgp-root-missing", ctx.openpgp_missing)
    if request.payloads[1] or request.payloads[2]:
        raise Refusal("bad-request", "payloads 2 and 3 must be empty for OpenPGP")
    digest = request_digest(request)
    answered = ctx.db.find_openpgp(digest)
    if answered is not None:
        log.info("OpenPGP request seen before: answering with the key certified then")
        return answered
    armoured = certify_key(ctx.openpgp, request.payloads[0], header.days)
    fingerprint = summarise(request.payloads[0]).fingerprint  # certify_key has checked it
    with ctx.db.transaction():
        ctx.db.record_openpgp(digest, fingerprint, header.days, armoured)
        ctx.audit.append("openpgp-certified", fingerprint=fingerprint, days=header.days,
                         request=digest.hex())
    return armoured


def handle_revoke(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    """Revoke the certificate in payload 1 (none: refresh) and answer with the CRL."""
    cert_pem, extra, client_crl = request.payloads
    if extra:
        raise Refusal("bad-request", "payload 2 must be empty for revoke")
    root = ctx.roots.get(header.root)
    with ctx.db.transaction():
        answer = ctx.revocations.revoke(root, cert_pem, client_crl, ctx.now())
        details = {"root": root.id, "crl_number": ctx.revocations.current_number(root.id)}
        if cert_pem:  # checked by revoke(): a certificate this root issued
            details["serial"] = format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")
        ctx.audit.append("revoked" if cert_pem else "crl-issued", **details)
    return answer


REQUEST_KINDS: Mapping[tuple[int, int], Handler] = {
    (Action.NUL, System.NONE): handle_nul,
    (Action.SIGN, System.X509): handle_sign_x509,
    (Action.SIGN, System.OPENPGP): handle_sign_openpgp,
    (Action.REVOKE, System.X509): handle_revoke,
}


def _outcome(ctx: SignerContext, request: Request) -> tuple[int, bytes, bytes]:
    """(action, payload 1, payload 2) for one request; refusals included."""
    action = request.header[1] if len(request.header) > 1 else Action.NUL
    try:
        header = RequestHeader.from_bytes(request.header)
        handler = REQUEST_KINDS.get((header.action, header.system))
        if handler is None:
            raise Refusal("unknown-request",
                          f"action {header.action} for system {header.system} is not served")
        return header.action, handler(ctx, header, request), b""
    except FrameError as exc:
        refusal = Refusal("bad-header", str(exc))
    except Refusal as exc:
        refusal = exc
    except Exception:  # noqa: BLE001 - one bad request must not stop the signer
        log.exception("request %s failed", request.id)
        refusal = Refusal("internal", "the signer failed on this request; see its log")
    log.warning("request %s refused: %s", request.id, refusal)
    ctx.audit.append("refused", request=request.id, action=action, code=refusal.code,
                     reason=refusal.text)
    return action, b"", refusal.payload2()


def dispatch(ctx: SignerContext, request: Request) -> Result | None:
    """The result to commit for a request; None when the comm handler waits for none."""
    action, payload1, payload2 = _outcome(ctx, request)
    if not request.reply:
        return None
    return Result(id=request.id, action=action, payload1=payload1, payload2=payload2)
