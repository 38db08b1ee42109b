"""``signer-client`` against the real appliance: a digest and a profile given by name
issue the same certificate fields as their numbers, a bad input is answered before
anything is sent, and ``nul`` says what time it sent."""

from __future__ import annotations

import datetime
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from signer_core.x509.compat import verify_issued_by


def _fields(cert: x509.Certificate) -> tuple[object, ...]:
    """What the request, the digest and the profile decide: not the serial, not the validity."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (cert.issuer, cert.subject, spki, cert.signature_algorithm_oid, list(cert.extensions))


def test_names_issue_what_numbers_issue(appliance, world_dir, write_csr) -> None:
    csr = world_dir / "req.csr"
    write_csr(csr)
    certs = {}
    # Each with its own days, which only the validity shows: the same header and payloads
    # again may be answered with the certificate already issued (design.md, "Retry or
    # renewal"), and this test wants each certificate issued from its own request.
    for profile, md, days in (
        ("server", "sha256", "365"),
        ("5", "8", "364"),
        ("server", "sha384", "363"),
    ):
        done = appliance.sign(csr, profile=profile, md=md, days=days)
        assert done.returncode == 0, done.stderr
        certs[profile, md] = x509.load_pem_x509_certificate(done.stdout)
    named, numbered = certs["server", "sha256"], certs["5", "8"]
    assert _fields(named) == _fields(numbered)
    assert named.serial_number != numbered.serial_number
    root = x509.load_pem_x509_certificate(appliance.root_cert(0).read_bytes())
    for cert in certs.values():
        verify_issued_by(cert, root)
    assert named.signature_hash_algorithm is not None
    assert named.signature_hash_algorithm.name == "sha256"
    eku = named.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku  # profile 5, server
    sha384 = certs["server", "sha384"].signature_hash_algorithm
    assert sha384 is not None and sha384.name == "sha384"  # the name chose the digest
    with appliance.db() as db:
        assert db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] == 3
    appliance.assert_alive()


def test_bad_input_is_not_sent(appliance, world_dir, write_csr) -> None:
    csr = world_dir / "req.csr"
    write_csr(csr)
    for change, sentence in (
        ({"md": "sha999"}, "argument --md: the digest 'sha999' is neither"),
        ({"root": "300"}, "argument --root: the root number must be a number from 0 to 255"),
        ({"days": "-1"}, "argument --days: the number of days must be a number from 1 to 65535"),
    ):
        done = appliance.sign(csr, **change)
        err = done.stderr.decode()
        assert (done.returncode, done.stdout) == (2, b""), err
        assert "Traceback" not in err and f"error: {sentence}" in err
    done = appliance.sign(world_dir / "missing.csr")
    assert done.returncode == 2
    assert "argument --csr: cannot read" in done.stderr.decode()
    assert "No such file or directory" in done.stderr.decode()
    with appliance.db() as db:
        assert db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] == 0
    appliance.assert_alive()


def test_nul_prints_the_time_sent(appliance) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    done = appliance.client("nul")
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(rb"time sent: (\S+ \S+) UTC \((\d{12}\.\d{2})\)\n", done.stdout)
    assert found, done.stdout
    shown = datetime.datetime.strptime(found[1].decode(), "%Y-%m-%d %H:%M:%S")
    assert before <= shown.replace(tzinfo=datetime.UTC) <= datetime.datetime.now(datetime.UTC)
    assert found[2] == shown.strftime("%m%d%H%M%Y.%S").encode()
