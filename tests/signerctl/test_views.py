"""signerctl's read-only views on a real CA database: certificates with their
revocations, the audit records, a root's CRL, every kind of spool entry."""

from __future__ import annotations

import datetime as dt
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from signer_core.store import crls
from signer_core.store.cadb import CADatabase, serial_text
from spool.record import Result, encode_result, error_payload
from spool.safeio import commit_file
from tests.support.backup import load, root_material


def test_certs_show_a_revoked_certificate(site, signerctl):
    where = ["--config", str(site.config)]
    serial = serial_text(site.revoked)
    code, shown, err = signerctl(*where, "certs", "show", serial, "--json")
    assert code == 0, err
    assert shown["status"] == "revoked" and shown["reason"] == "keyCompromise"
    assert shown["revoked"] == site.revoked_at.isoformat()
    cert = x509.load_pem_x509_certificate(shown["pem"].encode())
    assert cert.serial_number == site.revoked
    assert shown["sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    code, text, _ = signerctl(*where, "certs", "show", serial.upper())  # any case, as typed
    assert code == 0 and "status: revoked" in text and "reason: keyCompromise" in text
    assert "  -----BEGIN CERTIFICATE-----" in text
    code, valid, _ = signerctl(*where, "--json", "certs", "show", serial_text(site.serials[1]))
    assert valid["status"] == "valid" and valid["revoked"] is None


def test_certs_find_says_which_are_revoked(site, signerctl):
    code, rows, _ = signerctl("--config", str(site.config), "certs", "find", "--json")
    assert code == 0 and len(rows) == 3
    status = {int(r["serial"], 16): (r["status"], r["reason"]) for r in rows}
    assert status[site.revoked] == ("revoked", "keyCompromise")
    assert {s for s, (st, _) in status.items() if st == "valid"} == set(site.serials[1:])


def test_audit_show_filters(site, signerctl):
    where = ["--config", str(site.config)]
    code, revoked, _ = signerctl(*where, "audit", "show", "--kind", "revoked", "--json")
    assert code == 0 and [r["details"]["serial"] for r in revoked] == [serial_text(site.revoked)]
    code, about, _ = signerctl(*where, "audit", "show", "--serial", serial_text(site.revoked))
    assert code == 0 and about.count("issued") == 1 and about.count("revoked") == 1
    code, everything, _ = signerctl(*where, "audit", "show", "--json")
    assert [r["seq"] for r in everything] == [1, 2, 3, 4]
    code, last, _ = signerctl(*where, "audit", "show", "--limit", "2", "--json")
    assert [r["seq"] for r in last] == [3, 4]
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    code, none, err = signerctl(*where, "audit", "show", "--since", tomorrow, "--json")
    assert code == 1 and none == []
    code, early, _ = signerctl(*where, "audit", "show", "--until", tomorrow, "--json")
    assert len(early) == 4
    code, _, err = signerctl(*where, "audit", "show", "--kind", "revoke")
    assert code == 1 and "no record is of kind 'revoke'" in err and "revoked" in err


def test_crl_show_without_deprecated_times(site, signerctl):
    key, root = root_material(site.config)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(5), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    db = CADatabase(load(site.config).signer.database)
    with db.transaction() as conn:
        crls.add_crl(conn, 0, 5, der, int((now + dt.timedelta(days=7)).timestamp()), 10)
    db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, shown, err = signerctl("crl", "show", "0", "--json", "--config", str(site.config))
    assert code == 0, err
    assert shown["crl_number"] == 5 and shown["this_update"] == now.isoformat()
    assert shown["next_update"] == (now + dt.timedelta(days=7)).isoformat()


def test_spool_show_every_kind(site, signerctl):
    spool = site.spool
    request_id = spool.enqueue(b"\x01" * 9, (b"csr", b"DNS:a.example", b"/CN=a"), received_at=0.0)
    receipt_id = spool.deliver(request_id)
    commit_file(
        spool.results,
        f"{request_id}.res",
        encode_result(Result(request_id, 1, b"", error_payload("bad-request", "no"))),
        0o644,
    )
    where = ["--config", str(site.config), "--json"]
    _, request, _ = signerctl(*where, "spool", "show", f"{request_id}.req")
    assert request["kind"] == "request" and request["readable"] == "yes"
    assert request["subject"] == "/CN=a" and request["state"] == "incoming"
    code, result, err = signerctl(*where, "spool", "show", f"{request_id}.res")
    assert code == 0 and result["state"] == "results" and result["readable"] == "yes", err
    assert result["answer"] == "refused" and result["refusal"] == "ERR bad-request: no"
    _, receipt, _ = signerctl(*where, "spool", "show", f"{receipt_id}.dlv")
    assert receipt["kind"] == "delivery receipt" and receipt["delivered_request"] == request_id
    (spool.corrupt / f"{receipt_id}.res").write_bytes(
        (spool.incoming / f"{receipt_id}.dlv").read_bytes()
    )
    _, wrong, _ = signerctl(*where, "spool", "show", f"{receipt_id}.res")
    assert wrong["state"] == "corrupt" and wrong["readable"].startswith("no: ")
