"""Migration from a real OpenSSL CA: import, the web host's next CRL, export back.

The old CA is made by ``openssl ca`` itself (conftest.py); CRL answers
are applied with the real ``xdelta patch`` and checked with ``openssl crl
-verify``; the export is read back by ``openssl ca``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from signer_core.crl.revocation import Revocations
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase, serial_text
from signer_core.x509.compat import crl_last_update
from signerctl.migrate.export import ExportError, export_openssl
from signerctl.migrate.openssl_ca import IMPORTED_PROFILE, import_openssl, imported_digest
from tests.support.crl import NOW, WebHost, crl_number


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CADatabase]:
    database = CADatabase(tmp_path / "ca.sqlite")
    yield database
    database.close()


def do_import(db: CADatabase, ca):
    return import_openssl(
        db, 0, ca.dir, ca.root.certificate, crl=ca.current_crl, crl_dir=ca.crl_dir, progress=None
    )


def crl_entries(crl: x509.CertificateRevocationList) -> dict[int, tuple[dt.datetime, str | None]]:
    out = {}
    for item in crl:
        when = getattr(item, "revocation_date_utc", None) or item.revocation_date
        try:
            reason = item.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        out[item.serial_number] = (
            when.replace(tzinfo=dt.UTC),
            None if reason is None else reason.value,
        )
    return out


def expected_entries(ca) -> dict[int, tuple[dt.datetime, str | None]]:
    names = {"CACompromise": "cACompromise"}  # OpenSSL's spelling vs RFC 5280's
    return {s: (when, names.get(r, r)) for s, (when, r) in ca.revoked.items()}


def test_import_keeps_every_certificate(db, old_ca):
    totals = do_import(db, old_ca)
    assert (totals.lines, totals.valid, totals.revoked, totals.expired, totals.skipped) == (
        200,
        len(old_ca.valid),
        len(old_ca.revoked),
        len(old_ca.expired),
        0,
    )
    assert totals.crls == 3 and totals.crl_number == 4 and totals.next_serial == "10c8"
    for serial in old_ca.valid | old_ca.expired | set(old_ca.revoked):
        row = db.find_certificate(0, serial)
        on_disk = x509.load_pem_x509_certificate(
            (old_ca.dir / "newcerts" / f"{serial:X}.pem").read_bytes()
        )
        assert row is not None and row.state == "issued" and row.profile == IMPORTED_PROFILE
        assert row.certificate() == on_disk
        assert db.find_by_digest(imported_digest(0, serial)).serial == serial
    assert db.count() == 200
    subject = db.connection.execute("SELECT subject FROM certificates WHERE serial = '1014'")
    assert subject.fetchone()[0].endswith(",CN=J\u00fcrgen 20")
    ((event, details),) = db.connection.execute("SELECT event, details FROM audit").fetchall()
    assert event == "openssl-imported"
    assert json.loads(details)["revoked"] == len(old_ca.revoked)
    assert AuditLog(db.connection).verify().ok
    numbers = [n for (n,) in db.connection.execute("SELECT number FROM crls ORDER BY id")]
    assert numbers == [1, 2, 3], "the current CRL must be the last pruned"


def test_next_crl_continues_the_old_one_as_a_delta(db, old_ca, tmp_path):
    do_import(db, old_ca)
    revs = Revocations(db)
    web = WebHost(old_ca.root, tmp_path)
    web.der = old_ca.current_crl.read_bytes()
    old = x509.load_der_x509_crl(web.der)
    answer = revs.refresh(old_ca.root, web.sha1, NOW)
    assert answer.startswith(b"%XDZ"), "the web host must get a delta, not the whole CRL"
    crl = web.apply(answer)  # real xdelta patch + openssl crl -verify
    assert crl_number(crl) == crl_number(old) + 1 == 4
    assert crl_entries(crl) == expected_entries(old_ca)
    assert crl_last_update(crl) == NOW
    # The old CRL's entries are a subset: revocations after its issue are added.
    assert set(crl_entries(old)) < set(crl_entries(crl))


def test_first_revoke_after_migration_is_a_delta_from_any_known_crl(db, old_ca, tmp_path):
    do_import(db, old_ca)
    revs = Revocations(db)
    oldest = min(
        old_ca.crl_dir.iterdir(), key=lambda p: crl_number(x509.load_der_x509_crl(p.read_bytes()))
    )
    web = WebHost(old_ca.root, tmp_path)
    web.der = oldest.read_bytes()
    victim = min(old_ca.valid)
    cert_pem = (old_ca.dir / "newcerts" / f"{victim:X}.pem").read_bytes()
    when = NOW + dt.timedelta(minutes=3)
    answer = revs.revoke(
        old_ca.root, cert_pem, web.sha1, when, reason=x509.ReasonFlags.key_compromise
    ).answer
    assert answer.startswith(b"%XDZ")
    crl = web.apply(answer)
    expected = expected_entries(old_ca)
    expected[victim] = (when, "keyCompromise")
    assert crl_entries(crl) == expected
    assert crl_number(crl) == 4
    assert hashlib.sha1(web.der).digest() == hashlib.sha1(revs.current_crl(0)).digest()


def dump(db: CADatabase) -> str:
    return "\n".join(db.connection.iterdump())


def test_importing_again_skips_everything(db, old_ca):
    do_import(db, old_ca)
    before = dump(db)
    totals = do_import(db, old_ca)
    assert (totals.valid, totals.revoked, totals.expired, totals.skipped) == (0, 0, 0, 200)
    after = dump(db)
    audit = ('INSERT INTO "audit"', 'INSERT INTO "audit_tree"')  # the import's record, its leaf
    strip = [ln for ln in after.splitlines() if not ln.startswith(audit)]
    assert strip == [ln for ln in before.splitlines() if not ln.startswith(audit)]
    assert db.connection.execute("SELECT count(*) FROM audit").fetchone()[0] == 2


def test_more_revocations_in_the_old_ca_are_added_on_a_second_import(
    db, old_ca, tmp_path, old_openssl
):
    do_import(db, old_ca)
    ca_dir = tmp_path / "later"
    shutil.copytree(old_ca.dir, ca_dir)
    later = old_openssl(ca_dir, old_ca.root)
    victim = max(old_ca.valid)
    later.run("-revoke", str(ca_dir / "newcerts" / f"{victim:X}.pem"), "-crl_reason", "superseded")
    totals = import_openssl(db, 0, ca_dir, old_ca.root.certificate, progress=None)
    assert (totals.revoked, totals.skipped) == (1, 199)
    row = db.connection.execute(
        "SELECT reason FROM revocations WHERE serial = ?", (serial_text(victim),)
    ).fetchone()
    assert row[0] == "superseded"


def test_export_is_the_old_index_and_openssl_ca_reads_it(db, old_ca, tmp_path):
    do_import(db, old_ca)
    out = tmp_path / "export"
    totals = export_openssl(db.connection, 0, out, now=NOW)
    assert (out / "index.txt").read_text() == (old_ca.dir / "index.txt").read_text()
    assert (out / "serial").read_text() == (old_ca.dir / "serial").read_text()
    assert (out / "crlnumber").read_text() == (old_ca.dir / "crlnumber").read_text()
    assert (totals.valid, totals.revoked, totals.expired) == (
        len(old_ca.valid),
        len(old_ca.revoked),
        len(old_ca.expired),
    )
    with pytest.raises(ExportError):
        export_openssl(db.connection, 0, out)


def test_openssl_ca_accepts_the_export_after_new_revocations(db, old_ca, tmp_path, old_openssl):
    do_import(db, old_ca)
    revs = Revocations(db)
    victim = min(old_ca.valid)
    cert_pem = (old_ca.dir / "newcerts" / f"{victim:X}.pem").read_bytes()
    revs.revoke(
        old_ca.root,
        cert_pem,
        WebHost(old_ca.root, tmp_path).sha1,
        NOW,
        reason=x509.ReasonFlags.superseded,
    )
    out = tmp_path / "export"
    export_openssl(db.connection, 0, out)
    exported = old_openssl(out, old_ca.root)

    def status(serial: int) -> str:
        return exported.run("-status", f"{serial:X}", check=False)

    assert "Revoked" in status(victim)
    assert "Valid" in status(max(old_ca.valid))
    assert "Expired" in status(min(old_ca.expired))
    exported.run("-updatedb")
    exported.run("-gencrl", "-out", str(out / "crl.pem"))
    crl = x509.load_pem_x509_crl((out / "crl.pem").read_bytes())
    assert crl.is_signature_valid(old_ca.root.certificate.public_key())
    expected = expected_entries(old_ca)
    expected[victim] = (NOW, "superseded")
    assert crl_entries(crl) == expected
    assert crl_number(crl) == revs.current_number(0) + 1
