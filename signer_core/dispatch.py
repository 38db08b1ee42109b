"""What the signer accepts, in one table, and the handler for each kind.

Trusted side. Like OpenSSH's privilege-separation monitor, the signer carries
out only the request kinds listed in ``REQUEST_KINDS``; anything else is
refused before any parsing of payloads. Each handler receives a request
read from the spool (hostile: the comm handler may be compromised), returns
payload 1 of the answer, or raises ``Refusal``. ``dispatch`` raises only for
a fault of the signer's own storage (``store.faults``: a full disk, an
I/O error), which the daemon waits out with the request kept in active/: the
machine's fault is never the request's refusal. A bug in a handler becomes
an ``internal`` refusal, logged with its traceback, so that one poisoned
request cannot stop the queue, and each handler runs
within ``[signer] request_budget_seconds`` (``budget``), so that one request
cannot hold it for longer than that. Besides requests, the
spool carries delivery receipts from the comm handler (``handle_receipt``):
they only mark an answer delivered, and are the whole of what the signer
takes from the comm side that is not a request.

Retry or renewal: the same request bytes are answered with the certificate
(or OpenPGP certification) made for them before only while that answer is
undelivered, younger than ``[signer] retry_window_days``, not revoked and not
expired (OpenPGP: not more than a day shorter-lived than a fresh one).
Anything else is a new request. A request that came over link protocol v2
carries the web host's request id, and the id is part of its identity: the
same id is a retry even after its answer was delivered (the web host lost
it on its side), within the same window; a new id is a new request, whatever
its bytes. Each outcome has its own audit record:
``issued``, ``answered-again``, ``openpgp-certified``, ``delivered``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from signer_core.audit_exchange import LogCheck, handle_audit
from signer_core.budget import OverBudget, budget
from signer_core.cakeys import CaKeys
from signer_core.config import Config
from signer_core.crl.revocation import Revocations
from signer_core.logkey import LogKey
from signer_core.openpgp.certify import OpenPGPSigner, certify_key, close_signer
from signer_core.openpgp.keyblock import summarise
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.status import handle_status
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase, CertRow, OpenPGPRow, serial_text
from signer_core.store.faults import storage_fault
from signer_core.timesync import TimeReadings
from signer_core.x509.compat import not_after, not_before
from signer_core.x509.issue import (
    CertificatePlan,
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from spool.crashpoint import crashpoint
from spool.header import VERSION, VERSION_2, Action, HeaderError, RequestHeader, System
from spool.record import MAX_ANSWER, Receipt, Request, Result

log = logging.getLogger("signer-core")

SERIAL_ATTEMPTS = 8
MAX_QUEUE_AGE = 7 * 86400.0
DAY = 86400


@dataclass
class SignerContext:
    """Everything a handler may use; built once at start by the daemon."""

    config: Config
    roots: RootStore
    ca_keys: CaKeys  # every CA public key: never certified for a requester
    db: CADatabase
    audit: AuditLog
    time_readings: TimeReadings
    revocations: Revocations
    openpgp: OpenPGPSigner | None  # None: no OpenPGP root configured or installed
    openpgp_missing: str = "no OpenPGP root is configured"
    log_key: LogKey | None = None  # None: the audit exchange is refused, for log_key_missing
    log_key_missing: str = ""
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    spool_counts: Callable[[], Mapping[str, int]] = dict  # the daemon's Spool.counts
    # (root, serial) reserved by the request in hand: released if it is refused.
    reservation: tuple[int, int] | None = None
    audit_check: LogCheck | None = None  # made by the first audit request

    @property
    def retry_window(self) -> int:
        return self.config.signer.retry_window_days * DAY

    def close_keys(self) -> None:
        """End the token sessions (the roots', the log key's; the module is finalised with
        the last) and the OpenPGP root's agent (its CA home goes)."""
        try:
            self.roots.close()
            if self.log_key is not None:
                self.log_key.close()
        finally:
            if self.openpgp is not None:
                close_signer(self.openpgp)


Handler = Callable[[SignerContext, RequestHeader, Request], bytes]


def request_digest(request: Request) -> bytes:
    """Identity of a request: its bytes, and for v2 the web host's id with them."""
    h = hashlib.sha256()
    if request.link_id is not None:  # no v1 request hashes these 20 leading bytes
        h.update(b"v2id" + request.link_id)
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


def _stale(ctx: SignerContext, row: CertRow, request: Request) -> str | None:
    """Why an issued row may not answer its request's bytes again; None if it may."""
    now = int(ctx.now().timestamp())
    if row.delivered_at is not None and request.link_id is None:
        return "its answer was delivered"
    if row.issued_at is None or now - row.issued_at > ctx.retry_window:
        return "it is older than the retry window"
    if row.not_after is not None and row.not_after <= now:
        return "it has expired"
    if ctx.revocations.is_revoked(row.root, row.serial):
        return "it is revoked"
    return None


def _cut(plan: CertificatePlan, days: int) -> str | None:
    """Why the validity granted is shorter than the days asked for, if it is."""
    if plan.not_after - plan.not_before >= dt.timedelta(days=days):
        return None
    if days > plan.profile.max_days:
        return f"profile maximum of {plan.profile.max_days} days"
    return f"root {plan.root.id} expires first"


def handle_sign_x509(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    digest = request_digest(request)
    row = ctx.db.find_by_digest(digest)
    if row is not None and row.state == "issued":
        why = _stale(ctx, row, request)
        if why is None:
            return _answer_again(ctx, row, request)
        log.info(
            "request bytes seen before (serial %x), but %s: a new certificate", row.serial, why
        )
    elif row is not None:  # reserved, and never signed: a crash came between
        ctx.reservation = (row.root, row.serial)
    sign_request = SignRequest(
        root=header.root,
        profile=header.profile,
        md=header.md,
        days=header.days,
        spkac=header.spkac,
        payload1=request.payloads[0],
        payload2=request.payloads[1],
        payload3=request.payloads[2],
    )
    plan = plan_certificate(ctx.config, ctx.roots, sign_request, ctx.now())
    ctx.ca_keys.check_x509(plan.public_key)
    if ctx.reservation is None:
        ctx.reservation = (header.root, _reserve_serial(ctx, header.root, digest, header.profile))
    serial = ctx.reservation[1]
    cert = sign_certificate(plan, serial)
    crashpoint("certificate-signed")
    cut = _cut(plan, header.days)
    with ctx.db.transaction():
        ctx.db.record_issued(digest, cert, request.id, int(ctx.now().timestamp()))
        ctx.audit.append(
            "issued",
            root=header.root,
            profile=header.profile,
            serial=format(serial, "x"),
            subject=cert.subject.rfc4514_string(),
            request=digest.hex(),
            answer=request.id,
            days_requested=header.days,
            days=(not_after(cert) - not_before(cert)).days,
            **({"cut": cut} if cut else {}),
        )
    ctx.reservation = None
    crashpoint("database-committed")
    if cut:
        log.warning("serial %x: validity cut from %d days: %s", serial, header.days, cut)
    log.info("issued serial %x by root %d, profile %d", serial, header.root, header.profile)
    return cert.public_bytes(serialization.Encoding.PEM)


def _answer_again(ctx: SignerContext, row: CertRow, request: Request) -> bytes:
    with ctx.db.transaction():
        ctx.db.answer_again("certificates", row.id, request.id)
        ctx.audit.append(
            "answered-again",
            root=row.root,
            serial=format(row.serial, "x"),
            answer=request.id,
            first_answer=row.answer_id,
        )
    log.info("retry of an undelivered answer: serial %x again", row.serial)
    return row.pem()


def _stale_openpgp(ctx: SignerContext, row: OpenPGPRow, request: Request, days: int) -> str | None:
    """Why a certification may not answer its request's bytes again; None if it may."""
    now = int(ctx.now().timestamp())
    if row.delivered_at is not None and request.link_id is None:
        return "its answer was delivered"
    if now - row.certified_at > ctx.retry_window:
        return "it is older than the retry window"
    # A fresh certification would expire at now + days; allow one day short,
    # the unit the request counts its lifetime in.
    if row.certified_at + row.days * DAY < now + days * DAY - DAY:
        return "it would expire sooner than a fresh one"
    return None


def handle_sign_openpgp(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    if header.root != 0:
        raise Refusal("unknown-root", f"there is no OpenPGP root {header.root}")
    if ctx.openpgp is None:
        raise Refusal("openpgp-root-missing", ctx.openpgp_missing)
    if request.payloads[1] or request.payloads[2]:
        raise Refusal("bad-request", "payloads 2 and 3 must be empty for OpenPGP")
    digest = request_digest(request)
    row = ctx.db.find_openpgp(digest)
    if row is not None:
        why = _stale_openpgp(ctx, row, request, header.days)
        if why is None:
            with ctx.db.transaction():
                ctx.db.answer_again("openpgp_certifications", row.id, request.id)
                ctx.audit.append("answered-again", fingerprint=row.fingerprint, answer=request.id)
            log.info("retry of an undelivered answer: OpenPGP key %s again", row.fingerprint)
            return row.armoured
        log.info("OpenPGP key %s seen before, but %s: certifying again", row.fingerprint, why)
    started = int(ctx.now().timestamp())
    armoured = certify_key(ctx.openpgp, request.payloads[0], header.days, ca_keys=ctx.ca_keys)
    fingerprint = summarise(request.payloads[0], limits=ctx.openpgp.limits).fingerprint  # checked
    with ctx.db.transaction():
        ctx.db.record_openpgp(digest, fingerprint, header.days, armoured, request.id, started)
        ctx.audit.append(
            "openpgp-certified",
            fingerprint=fingerprint,
            days=header.days,
            request=digest.hex(),
            answer=request.id,
        )
    return armoured


def handle_receipt(ctx: SignerContext, receipt: Receipt) -> None:
    """The web host ACKed the answer to ``receipt.request_id``: that answer is delivered.

    Not flushed to disk on its own: a receipt lost to a power cut is a lost
    ACK, the one ambiguous case, which errs towards answering again.
    """
    with ctx.db.transaction(durable=False):
        what = ctx.db.mark_delivered(receipt.request_id, int(ctx.now().timestamp()))
        if what is not None:
            ctx.audit.append("delivered", answer=receipt.request_id, **what)
    if what is None:
        log.info("receipt %s names no undelivered answer", receipt.id)


def handle_revoke(ctx: SignerContext, header: RequestHeader, request: Request) -> bytes:
    """Revoke the certificate in payload 1 (none: refresh) and answer with the CRL."""
    cert_pem, extra, client_crl = request.payloads
    if extra:
        raise Refusal("bad-request", "payload 2 must be empty for revoke")
    root = ctx.roots.get(header.root)
    with ctx.db.transaction():
        outcome = ctx.revocations.revoke(root, cert_pem, client_crl, ctx.now())
        details: dict[str, object] = {"root": root.id, "crl_number": outcome.crl_number}
        if outcome.serial is not None:
            details["serial"] = serial_text(outcome.serial)
        ctx.audit.append("revoked" if outcome.serial is not None else "crl-issued", **details)
    if outcome.serial is None:
        log.info("CRL refresh for root %d: CRL %d", root.id, outcome.crl_number)
    else:
        log.info(
            "serial %x of root %d revoked: CRL %d", outcome.serial, root.id, outcome.crl_number
        )
    return outcome.answer


REQUEST_KINDS: Mapping[tuple[int, int], Handler] = {
    (Action.NUL, System.NONE): handle_nul,
    (Action.SIGN, System.X509): handle_sign_x509,
    (Action.SIGN, System.OPENPGP): handle_sign_openpgp,
    (Action.REVOKE, System.X509): handle_revoke,
    (Action.STATUS, System.NONE): handle_status,  # v2 only (spool.header.V2_ONLY)
    (Action.AUDIT, System.NONE): handle_audit,  # v2 only
}


def _outcome(ctx: SignerContext, request: Request) -> tuple[int, bytes, bytes]:
    """(action, payload 1, payload 2) for one request; refusals included."""
    action = request.header[1] if len(request.header) > 1 else Action.NUL
    ctx.reservation = None
    try:
        version = VERSION if request.link_id is None else VERSION_2
        header = RequestHeader.from_bytes(request.header, version=version)
        handler = REQUEST_KINDS.get((header.action, header.system))
        if handler is None:
            raise Refusal(
                "unknown-request",
                f"action {header.action} for system {header.system} is not served",
            )
        seconds = ctx.config.signer.request_budget_seconds
        try:
            with budget(seconds):
                answer = handler(ctx, header, request)
        except OverBudget:
            raise Refusal(
                "over-budget",
                f"the request needed more than the signer's {seconds:g} s per request",
            ) from None
        if len(answer) > MAX_ANSWER:
            raise Refusal(
                "answer-too-large",
                f"the answer of {len(answer)} bytes does not fit"
                f" in a message ({MAX_ANSWER} at most)",
            )
        return header.action, answer, b""
    except HeaderError as exc:
        refusal = Refusal("bad-header", str(exc))
    except Refusal as exc:
        refusal = exc
    except Exception as exc:  # noqa: BLE001 - one bad request must not stop the signer
        if storage_fault(exc):
            raise
        log.exception("request %s failed", request.id)
        refusal = Refusal("internal", "the signer failed on this request; see its log")
    log.warning("request %s refused: %s", request.id, refusal)
    with ctx.db.transaction():
        if ctx.reservation is not None:
            ctx.db.release(*ctx.reservation)
            log.info("serial %x of root %d released", ctx.reservation[1], ctx.reservation[0])
        ctx.audit.append(
            "refused",
            request=request.id,
            action=action,
            code=refusal.code,
            reason=refusal.text,
            **({"released": format(ctx.reservation[1], "x")} if ctx.reservation else {}),
        )
    ctx.reservation = None
    return action, b"", refusal.payload2()


def dispatch(ctx: SignerContext, request: Request) -> Result | None:
    """The result to commit for a request; None when the comm handler waits for none."""
    action, payload1, payload2 = _outcome(ctx, request)
    if not request.reply:
        return None
    return Result(id=request.id, action=action, payload1=payload1, payload2=payload2)
