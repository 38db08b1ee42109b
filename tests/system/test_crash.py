"""Kill -9 at every step of a request's life: nothing lost, nothing issued twice.

The whole appliance runs (both daemons under the supervisor, a pty cable) with
one crash point armed (spool.crashpoint). The marker file that disarms it
exists while the appliance starts, since the start-up keep-alives pass the
comm-side points too, and is removed just before the one request that must
die on the way. The web side then behaves as the deployed client: a link
failure or an empty payload 1 is a failure and the same request is sent
again, three tries at most. Every assertion is on what the client received,
the CA database, the audit chain and the spool, never on log text.
"""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.x509.compat import verify_issued_by
from signerctl.demo.rig import (
    audit_events,
    audit_verdict,
    cert_rows,
    open_db,
    sign_x509,
    spool_names,
    wait_spool_settled,
    wait_until,
)
from signerctl.demo.run import demo_request
from webhost.client import WebClient

COMM_POINTS = ("frame-received", "request-committed", "response-sent", "receipt-committed")
SIGNER_POINTS = (
    "request-claimed",
    "serial-reserved",
    "certificate-signed",
    "database-committed",
    "result-committed",
)
# Before the response is sent, a dead comm handler answers nothing: the client
# must time out and try again. Everywhere else the first try is answered.
RETRIED = {"frame-received", "request-committed"}
# Killed between the client's ACK and the delivery receipt: the lost-ACK case,
# in which the answer counts as undelivered and the same bytes get it again.
NO_RECEIPT = {"response-sent"}
# Where the certificate was committed before a request was done with (the
# comm handler's copy, or the signer's own after its restart): the second
# pass answers with the same certificate, and the audit chain says so.
ANSWERED_AGAIN = NO_RECEIPT | {"request-committed", "database-committed", "result-committed"}
RESPONSE_TIMEOUT = 10.0  # the signer restarts (1 s) and finishes well within it
READY_TIMEOUT = 5.0  # a start byte sent while the comm handler restarts is lost: try again sooner
# The fixture's last keep-alive returns when the client has written its ACK;
# the comm handler passes "response-sent" only once it has read it.
SETTLE = 0.5


@pytest.fixture
def armed(request, monkeypatch, world_dir):
    """(appliance, point, marker): the appliance with ``point`` armed but disarmed by ``marker``."""
    point = request.param
    markers = world_dir / "crash"
    markers.mkdir()
    markers.chmod(0o1777)  # each daemon, under its own uid, creates the marker when it fires
    marker = markers / "fired"
    marker.touch()
    monkeypatch.setenv("SIGNER_CRASH_AT", point)
    monkeypatch.setenv("SIGNER_CRASH_MARKER", str(marker))
    appliance = request.getfixturevalue("appliance")
    time.sleep(SETTLE)
    return appliance, point, marker


@pytest.mark.parametrize("armed", COMM_POINTS + SIGNER_POINTS, indirect=True)
def test_crash_loses_nothing_and_issues_once(armed, retry):
    appliance, point, marker = armed
    db_path = appliance.directory / "lib" / "ca.sqlite"
    spool_dir = appliance.directory / "spool"
    victim = "signer-comm" if point in COMM_POINTS else "signer-core"
    csr = demo_request()
    marker.unlink()  # armed: the first process to reach the point dies
    with WebClient(
        appliance.link, response_timeout=RESPONSE_TIMEOUT, ready_timeout=READY_TIMEOUT
    ) as client:
        outcome = retry(lambda: sign_x509(client, csr, "crash"))
        assert outcome.response is not None and outcome.response.ok, outcome.failures
        assert outcome.tries == (2 if point in RETRIED else 1), outcome.failures
        cert = x509.load_pem_x509_certificate(outcome.response.payload1)
        verify_issued_by(cert, x509.load_pem_x509_certificate(appliance.root_cert(0).read_bytes()))

        wait_until(marker.exists, 5, "the crash point to be reached")  # after the client's ACK
        wait_until(lambda: appliance.supervisor.restarts[victim] == 1, 10, f"{victim} to restart")
        others = {name: n for name, n in appliance.supervisor.restarts.items() if name != victim}
        assert set(others.values()) == {0}, appliance.supervisor.restarts

        wait_spool_settled(spool_dir)
        der = cert.public_bytes(serialization.Encoding.DER)
        assert cert_rows(db_path) == [(0, format(cert.serial_number, "x"), "issued", der)]
        issued = audit_events(db_path, "issued")
        assert [e["serial"] for e in issued] == [format(cert.serial_number, "x")]
        assert spool_names(spool_dir, "corrupt") == []
        verdict = audit_verdict(db_path)
        assert verdict.ok, verdict.problem

        # Service goes on. The same bytes again are a renewal once the answer
        # was delivered (a new certificate), the same certificate if the
        # receipt was lost with the comm handler; a new request gets its own.
        again = retry(lambda: sign_x509(client, csr, "crash")).response
        fresh = retry(lambda: sign_x509(client, demo_request(), "after")).response
    assert again is not None and again.ok
    reused = point in NO_RECEIPT
    assert (again.payload1 == outcome.response.payload1) == reused, point
    assert (
        fresh is not None
        and fresh.ok
        and fresh.payload1 not in (again.payload1, outcome.response.payload1)
    )
    states = [state for _, _, state, _ in cert_rows(db_path)]
    assert states == ["issued"] * (2 if reused else 3)
    wait_spool_settled(spool_dir)
    assert audit_verdict(db_path).ok
    assert len(audit_events(db_path, "answered-again")) == int(point in ANSWERED_AGAIN)


def revocation_rows(db_path) -> list[tuple[int, str]]:
    conn = open_db(db_path)
    try:
        return conn.execute("SELECT root, serial FROM revocations ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "armed", ("request-committed", "request-claimed", "result-committed"), indirect=True
)
def test_crash_during_revocation_revokes_once(armed, world_dir, retry):
    """A revocation is idempotent: done again after a crash, it answers with the same CRL."""
    appliance, point, marker = armed
    db_path = appliance.directory / "lib" / "ca.sqlite"
    crl_path, root_cert = world_dir / "root0.crl", appliance.root_cert(0)
    victim = "signer-comm" if point in COMM_POINTS else "signer-core"
    with WebClient(
        appliance.link, response_timeout=RESPONSE_TIMEOUT, ready_timeout=READY_TIMEOUT
    ) as client:
        issued = sign_x509(client, demo_request(), "revoked")  # the marker still disarms the point
        assert issued.ok
        time.sleep(SETTLE)
        marker.unlink()
        outcome = retry(lambda: client.revoke(0, issued.payload1, crl_path, root_cert))
    assert outcome.response is not None and outcome.response.ok, outcome.failures
    assert outcome.tries == (2 if point in RETRIED else 1), outcome.failures
    wait_until(marker.exists, 5, "the crash point to be reached")
    wait_until(lambda: appliance.supervisor.restarts[victim] == 1, 10, f"{victim} to restart")
    serial = x509.load_pem_x509_certificate(issued.payload1).serial_number
    crl = x509.load_der_x509_crl(crl_path.read_bytes())  # verified by the client on the way
    assert [entry.serial_number for entry in crl] == [serial]
    assert revocation_rows(db_path) == [(0, format(serial, "x"))]
    wait_spool_settled(appliance.directory / "spool")
    assert audit_verdict(db_path).ok
