"""A power cut at each step of a certificate's issuance: one certificate, never two.

Power cannot be cut in a test, so the test takes away what a cut takes. The
signer is killed at a step of an X.509 request (``spool.crashpoint``); then
the spool is emptied (it is a tmpfs: nothing in it survives) and, in one
case, the serial's reservation is deleted, the one database commit made
without a flush (``cadb.reserve``), as if its write-ahead log frames had
never reached the disk. The web host keeps every unanswered request and
sends the same bytes again to a restarted signer. They must get exactly one
certificate, the one the database holds, and the audit chain must verify.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.x509.compat import verify_issued_by
from signerctl.demo.ca import create_demo_ca
from signerctl.demo.rig import (
    LoneSigner,
    audit_events,
    audit_verdict,
    cert_rows,
    enqueue_as_comm,
    spool_names,
    wait_spool_settled,
    wait_until,
)
from signerctl.demo.run import demo_request
from spool.queue import Spool

STEPS = ("request-claimed", "serial-reserved", "certificate-signed", "database-committed")
# Issued and committed before the cut: the retry gets that certificate again.
COMMITTED = {"database-committed", "result-committed"}
# A reservation is on record (flushed later by nothing: the cut came first).
RESERVED = {"serial-reserved", "certificate-signed"}


def cut_power(spool_dir, db_path, users, *, lose_reservation: bool) -> None:
    for state in ("incoming", "active", "results"):
        for entry in (spool_dir / state).iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if lose_reservation:
        conn = sqlite3.connect(db_path)
        try:
            with conn:
                conn.execute("DELETE FROM certificates WHERE state = 'reserved'")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for path in db_path.parent.glob(db_path.name + "*"):
            users.give_to_signer(path)


@pytest.mark.parametrize(
    ("step", "lose_reservation"),
    [(step, False) for step in (*STEPS, "result-committed")] + [("certificate-signed", True)],
)
def test_power_cut_then_retry_gives_one_certificate(
    world_dir, users, monkeypatch, step, lose_reservation
):
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    spool_dir = world_dir / "ca" / "spool"
    db_path = world_dir / "ca" / "lib" / "ca.sqlite"
    (world_dir / "log").mkdir()
    csr_file = world_dir / "request.pem"
    csr_file.write_bytes(demo_request())
    csr_file.chmod(0o644)
    plan = [f"sign cut {csr_file}"]
    monkeypatch.setenv("SIGNER_CRASH_AT", step)
    signer = LoneSigner(config, world_dir / "log" / "signer.log")
    enqueue_as_comm(spool_dir, users, plan)
    assert signer.proc.wait(timeout=60) == -9  # killed at the step
    reserved = [row for row in cert_rows(db_path) if row[2] == "reserved"]
    assert bool(reserved) == (step in RESERVED), cert_rows(db_path)

    cut_power(spool_dir, db_path, users, lose_reservation=lose_reservation)
    monkeypatch.delenv("SIGNER_CRASH_AT")
    signer = LoneSigner(config, world_dir / "log" / "signer.log")
    try:
        [retry] = enqueue_as_comm(spool_dir, users, plan)
        spool = Spool(spool_dir)
        wait_until(lambda: spool.read_result(retry) is not None, 60, "the retry's answer")
        wait_spool_settled(spool_dir)
    finally:
        signer.stop()

    result = spool.read_result(retry)
    assert result is not None and result.payload2 == b"", result
    cert = x509.load_pem_x509_certificate(result.payload1)
    root = world_dir / "ca" / "certs" / "root0.crt"
    verify_issued_by(cert, x509.load_pem_x509_certificate(root.read_bytes()))
    der = cert.public_bytes(serialization.Encoding.DER)
    serial = format(cert.serial_number, "x")
    assert cert_rows(db_path) == [(0, serial, "issued", der)]  # one row: no second certificate
    if reserved and not lose_reservation:
        assert serial == reserved[0][1]  # signed again under the serial reserved before the cut
    assert [e["serial"] for e in audit_events(db_path, "issued")] == [serial]
    assert len(audit_events(db_path, "answered-again")) == int(step in COMMITTED)
    assert spool_names(spool_dir, "corrupt") == []
    verdict = audit_verdict(db_path)
    assert verdict.ok, verdict.problem
