"""signer_core.dispatch: retry or renewal, reservations, validity cuts, receipts.

A real signer context (configuration, roots, CA database, audit chain) built
as the daemon builds it, fed spool requests directly; every assertion is on
the answer (parsed back) and on the database and audit chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import sqlite3

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer_core import dispatch as dispatch_module
from signer_core.daemon import build_context
from signer_core.dispatch import dispatch, handle_receipt
from signer_core.refusal import Refusal
from signer_core.x509.compat import not_after, not_before
from spool.entry import new_id
from spool.header import Action, RequestHeader, System
from spool.record import Receipt, Request
from tests.support.dispatch import SAN, SUBJECT, again, audit, certificate, sign_request, states
from tests.support.x509 import NOW, World, csr_pem


def test_undelivered_answer_is_given_again_and_recorded_as_such(ctx):
    first = sign_request()
    cert = certificate(ctx, first)
    retry = again(first)
    assert certificate(ctx, retry) == cert
    assert states(ctx) == ["issued"]
    (record,) = audit(ctx, "answered-again")
    assert record == {
        "answer": retry.id,
        "first_answer": first.id,
        "root": 1,
        "serial": format(cert.serial_number, "x"),
    }
    assert len(audit(ctx, "issued")) == 1


def test_receipt_makes_the_same_bytes_a_new_request(ctx):
    first = sign_request()
    cert = certificate(ctx, first)
    retry = again(first)
    certificate(ctx, retry)
    handle_receipt(ctx, Receipt(new_id(), first.id))  # superseded by the retry's answer
    assert audit(ctx, "delivered") == []
    handle_receipt(ctx, Receipt(new_id(), retry.id))
    assert audit(ctx, "delivered") == [
        {"answer": retry.id, "root": 1, "serial": format(cert.serial_number, "x")}
    ]
    renewal = certificate(ctx, again(first))
    assert renewal.serial_number != cert.serial_number
    assert states(ctx) == ["issued", "issued"]
    handle_receipt(ctx, Receipt(new_id(), retry.id))  # twice: nothing more to say
    assert len(audit(ctx, "delivered")) == 1


def revoke_request(cert_pem: bytes) -> Request:
    """Revoke ``cert_pem`` (empty: refresh) for a web host that holds no CRL we know."""
    header = RequestHeader(action=Action.REVOKE, system=System.X509, root=1).to_bytes()
    return Request(new_id(), NOW.timestamp(), header, (cert_pem, b"", b"0" * 40), True)


def test_revoke_and_refresh_are_audited_with_what_the_answer_carries(ctx):
    cert = certificate(ctx, sign_request())
    result = dispatch(ctx, revoke_request(cert.public_bytes(serialization.Encoding.PEM)))
    crl = x509.load_pem_x509_crl(result.payload1)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert [r.serial_number for r in crl] == [cert.serial_number]
    assert audit(ctx, "revoked") == [
        {"root": 1, "serial": format(cert.serial_number, "x"), "crl_number": number}
    ]
    dispatch(ctx, revoke_request(b""))
    assert audit(ctx, "crl-issued") == [{"root": 1, "crl_number": number + 1}]


@pytest.mark.parametrize("why", ["window", "expired", "revoked"])
def test_stale_answers_are_never_given_again(ctx, why):
    first = sign_request(days=1 if why == "expired" else 365)
    cert = certificate(ctx, first)
    if why == "window":
        ctx.now = lambda: NOW + dt.timedelta(days=7, seconds=1)
    elif why == "expired":
        ctx.now = lambda: NOW + dt.timedelta(days=1, seconds=1)
    else:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        ctx.revocations.revoke(ctx.roots.get(1), pem, b"0" * 40, NOW)
    fresh = certificate(ctx, again(first))
    assert fresh.serial_number != cert.serial_number
    assert audit(ctx, "answered-again") == []


def test_window_edge_still_answers_again(ctx):
    first = sign_request()
    cert = certificate(ctx, first)
    ctx.now = lambda: NOW + dt.timedelta(days=7)
    assert certificate(ctx, again(first)) == cert


def test_refusal_after_reservation_releases_the_serial(ctx, monkeypatch):
    def fails(plan, serial):
        raise Refusal("pre-issuance-check", "extensions differ from the profile")

    # The one step that can refuse after the reservation is the pre-issuance
    # check of the signed certificate, which real requests cannot make fail.
    monkeypatch.setattr(dispatch_module, "sign_certificate", fails)
    result = dispatch(ctx, sign_request())
    assert result.payload2.startswith(b"ERR pre-issuance-check: ")
    assert states(ctx) == ["released"]
    (refused,) = audit(ctx, "refused")
    (serial,) = ctx.db.connection.execute("SELECT serial FROM certificates").fetchone()
    assert refused["released"] == serial and refused["code"] == "pre-issuance-check"
    assert ctx.db.count("reserved") == 0


def test_crash_left_reservation_is_released_when_the_retry_is_refused(ctx):
    """A reserved row (a crash between reservation and signature) whose retry is refused."""
    request = sign_request(profile=42)  # no such profile: refused at plan
    digest = dispatch_module.request_digest(request)
    assert ctx.db.reserve(1, 12345, digest, 4)
    result = dispatch(ctx, request)
    assert result.payload2.startswith(b"ERR unknown-profile: ")
    assert states(ctx) == ["released"]
    assert audit(ctx, "refused")[0]["released"] == format(12345, "x")


def test_crash_left_reservation_is_signed_with_its_serial(ctx):
    request = sign_request()
    assert ctx.db.reserve(1, 12345, dispatch_module.request_digest(request), 5)
    assert certificate(ctx, request).serial_number == 12345
    assert states(ctx) == ["issued"]


def test_cut_validity_is_recorded(ctx):
    cert = certificate(ctx, sign_request(days=5000))
    assert not_after(cert) - not_before(cert) == dt.timedelta(days=730)
    (issued,) = audit(ctx, "issued")
    assert issued["days_requested"] == 5000 and issued["days"] == 730
    assert issued["cut"] == "profile maximum of 730 days"
    uncut = certificate(ctx, sign_request(days=30))
    assert not_after(uncut) - not_before(uncut) == dt.timedelta(days=30)
    assert "cut" not in audit(ctx, "issued")[1]


def test_receipt_for_nothing_is_ignored(ctx):
    handle_receipt(ctx, Receipt(new_id(), new_id()))
    assert audit(ctx, "delivered") == []


def _request(csr: bytes, san: bytes, subject: bytes, profile: int = 5) -> Request:
    header = RequestHeader(
        action=Action.SIGN, system=System.X509, root=1, profile=profile, md=0, days=365
    ).to_bytes()
    return Request(new_id(), NOW.timestamp(), header, (csr, san, subject), True)


NAME_RULES = [
    (b"DNS:www.example.org", b"/CN=other.example.org", 5, "cn-not-in-san"),
    (b"DNS:10.0.0.1", b"/CN=10.0.0.1", 5, "dns-ip-literal"),
    (b"DNS:xn--a.example", b"/CN=xn--a.example", 5, "bad-idna"),
    (b"DNS:*.example.org", b"/CN=host", 3, "wildcard-not-allowed"),
    (b"IP:192.0.2.1", b"/CN=Alice/emailAddress=alice@example.org", 0, "ip-not-allowed"),
    (b"IP:fe80::1%eth0", b"/CN=fe80::1", 5, "bad-san"),
]


@pytest.mark.parametrize("san, subject, profile, code", NAME_RULES)
def test_name_rules_refuse_with_their_code_and_leave_no_row(ctx, san, subject, profile, code):
    csr = csr_pem(ec.generate_private_key(ec.SECP256R1()))
    result = dispatch(ctx, _request(csr, san, subject, profile))
    assert result.payload1 == b"" and result.payload2.startswith(f"ERR {code}: ".encode())
    assert states(ctx) == []
    assert [r["code"] for r in audit(ctx, "refused")] == [code]


@pytest.mark.parametrize("root", [0, 1])
def test_a_root_key_is_never_certified(tmp_path, root):
    world = World(tmp_path)
    context = build_context(world.cfg)
    context.now = lambda: NOW
    try:
        csr = csr_pem(world.root_keys[root])
        result = dispatch(context, _request(csr, SAN, SUBJECT))
        assert result.payload2.startswith(b"ERR ca-key: ")
        assert f"root {root}".encode() in result.payload2
        assert states(context) == []
    finally:
        context.db.close()


@pytest.mark.timing
@pytest.mark.parametrize("work", ["python", "subprocess"])
def test_a_request_over_its_budget_is_refused_and_the_next_is_served(tmp_path, monkeypatch, work):
    """The mechanism, with handlers that hang the two ways a real one could: Python work
    (the timer interrupts between instructions) and a wait for a child process (gpg)."""
    import subprocess
    import time

    world = World(tmp_path, "")
    context = build_context(
        dataclasses.replace(
            world.cfg, signer=dataclasses.replace(world.cfg.signer, request_budget_seconds=0.5)
        )
    )
    context.now = lambda: NOW

    def hangs(ctx, header, request):
        if work == "python":
            while True:
                sum(range(1000))
        subprocess.run(["sleep", "30"], check=False)
        return b"never"

    kinds = dict(dispatch_module.REQUEST_KINDS)
    kinds[(Action.REVOKE, System.X509)] = hangs
    monkeypatch.setattr(dispatch_module, "REQUEST_KINDS", kinds)
    header = RequestHeader(action=Action.REVOKE, system=System.X509, root=1).to_bytes()
    started = time.monotonic()
    result = dispatch(
        context, Request(new_id(), NOW.timestamp(), header, (b"", b"", b"0" * 40), True)
    )
    took = time.monotonic() - started
    try:
        assert result.payload2.startswith(b"ERR over-budget: "), result
        assert 0.5 <= took < 3.0, took
        assert [r["code"] for r in audit(context, "refused")] == ["over-budget"]
        assert certificate(context, sign_request()).serial_number > 0  # the queue goes on
    finally:
        context.db.close()


@pytest.mark.parametrize(
    "fault",
    [
        sqlite3.OperationalError("database or disk is full"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_a_storage_fault_is_not_the_requests_refusal(ctx, monkeypatch, fault):
    """A full disk while a request is served: it raises, for the daemon to wait and retry."""
    real = ctx.db.record_issued

    def full(*args, **kwargs):
        raise fault

    if isinstance(fault, sqlite3.OperationalError):
        fault.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it
    monkeypatch.setattr(ctx.db, "record_issued", full)
    request = sign_request()
    with pytest.raises(type(fault)):
        dispatch(ctx, request)
    assert audit(ctx, "refused") == [] and states(ctx) == ["reserved"]
    monkeypatch.setattr(ctx.db, "record_issued", real)
    (reserved,) = ctx.db.connection.execute("SELECT serial FROM certificates").fetchone()
    cert = certificate(ctx, request)  # the retry, once there is space: the reserved serial
    assert format(cert.serial_number, "x") == reserved and states(ctx) == ["issued"]


def test_a_bug_is_still_a_refusal(ctx, monkeypatch):
    def broken(*args, **kwargs):
        try:  # a real SQL error, with the code SQLite gives it (SQLITE_ERROR)
            ctx.db.connection.execute("SELECT nonsense FROM certificates")
        except sqlite3.OperationalError as exc:
            assert exc.sqlite_errorcode == 1
            raise

    monkeypatch.setattr(ctx.db, "record_issued", broken)
    result = dispatch(ctx, sign_request())
    assert result.payload2.startswith(b"ERR internal: ")
    assert states(ctx) == ["released"]
