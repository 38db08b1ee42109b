"""A whole key ceremony: root 2's key made, its CSR, signed as a subroot by root 0,
installed; then a real signer (signer_core in-process, built as the daemon builds it)
issues a leaf under root 2, and openssl verifies leaf -> root 2 -> root 0.

Every assertion is on real output: the files on disk, the certificates parsed, the
CA database and its audit chain, ``openssl verify``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pwd
import sqlite3
import stat
import subprocess
from contextlib import closing
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signer_core.config import load_config
from signer_core.daemon import build_context
from signer_core.dispatch import dispatch
from signer_core.store.audit import AuditLog
from signer_core.x509.compat import not_after
from spool.entry import new_id
from spool.header import Action, RequestHeader, System
from spool.record import Request
from tests.support.x509 import csr_pem, make_root

SUBJECT = "/O=Test CA/CN=root 2 subroot"


def spki_sha256(key) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def signer_uid() -> int | None:
    return pwd.getpwnam("_signer").pw_uid if os.geteuid() == 0 else None


def leaf_request(root: int, name: str) -> Request:
    header = RequestHeader(
        action=Action.SIGN, system=System.X509, root=root, profile=5, md=0, days=365
    ).to_bytes()
    csr = csr_pem(ec.generate_private_key(ec.SECP256R1()))
    return Request(
        new_id(), 0.0, header, (csr, f"DNS:{name}".encode(), f"/CN={name}".encode()), True
    )


def openssl_verify(world_dir: Path, leaf: bytes) -> subprocess.CompletedProcess:
    (world_dir / "leaf.pem").write_bytes(leaf)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(world_dir / "root0.crt")]
        + ["-untrusted", str(world_dir / "root2.crt"), str(world_dir / "leaf.pem")],
        capture_output=True,
        text=True,
    )


def test_whole_ceremony_then_a_leaf_under_the_new_subroot(world, ceremony, tmp_path):
    generated = ceremony("generate", "--root", "2", "--type", "p256")
    key_file = world.dir / "root2.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    if signer_uid() is not None:
        assert key_file.stat().st_uid == signer_uid()
        assert (world.dir / "ca.sqlite").stat().st_uid == signer_uid()
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert generated["key_sha256"] == spki_sha256(key.public_key())
    assert (generated["key"], generated["key_mode"]) == (str(key_file), "0600")

    requested = ceremony("csr", "--root", "2", "--subject", SUBJECT, "--out", tmp_path / "2.csr")
    request = x509.load_pem_x509_csr((tmp_path / "2.csr").read_bytes())
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == "CN=root 2 subroot,O=Test CA"
    assert spki_sha256(request.public_key()) == generated["key_sha256"]
    assert (
        requested["csr_sha256"]
        == hashlib.sha256(request.public_bytes(serialization.Encoding.DER)).hexdigest()
    )

    signed = ceremony(
        *("sign-subroot", "--root", "0", "--csr", tmp_path / "2.csr"),
        *("--out", tmp_path / "2.crt", "--path-length", "0", "--permitted-dns", "example.org"),
    )
    sub = x509.load_pem_x509_certificate((tmp_path / "2.crt").read_bytes())
    root0 = world.root_certs[0]
    assert sub.issuer == root0.subject and sub.subject == request.subject
    assert format(sub.serial_number, "x") == signed["serial"]
    assert signed["certificate_sha256"] == sub.fingerprint(hashes.SHA256()).hex()
    ext = sub.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert ext.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    root0_ski = root0.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert (
        ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        == root0_ski.digest
    )
    nc = ext.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and nc.value.permitted_subtrees == [x509.DNSName("example.org")]
    assert signed["permitted_dns"] == "example.org" and signed["path_length"] == 0
    # profile 11's max_days (3653) would outlive root 0 (ten years from its start): cut
    assert not_after(sub) == not_after(root0) and signed["cut"] == "root 0 expires first"

    installed = ceremony("install", "--root", "2", "--cert", tmp_path / "2.crt")
    assert (world.dir / "root2.crt").read_bytes() == (tmp_path / "2.crt").read_bytes()
    assert installed["issuer_root"] == 0 and installed["replaced_sha256"] is None
    assert installed["certificate_sha256"] == signed["certificate_sha256"]

    # A real signer puts root 2 in service and issues under it.
    ctx = build_context(load_config(world.dir / "signer.toml"))
    try:
        assert 2 in ctx.roots.roots, ctx.roots.missing
        result = dispatch(ctx, leaf_request(2, "www.example.org"))
        assert result is not None and result.payload2 == b"", result
        leaf = x509.load_pem_x509_certificate(result.payload1)
        assert leaf.issuer == sub.subject
        verified = openssl_verify(world.dir, result.payload1)
        assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified
        # the name constraints hold: a leaf outside example.org does not verify
        outside = dispatch(ctx, leaf_request(2, "www.example.net"))
        assert outside is not None and outside.payload2 == b""
        refused = openssl_verify(world.dir, outside.payload1)
        assert refused.returncode != 0 and "subtree" in refused.stdout + refused.stderr

        # The subroot is root 0's certificate like any other: in the database, and revocable.
        row = ctx.db.find_certificate(0, sub.serial_number)
        assert row is not None and (row.state, row.profile) == ("issued", 11)
        assert row.der == sub.public_bytes(serialization.Encoding.DER)
        header = RequestHeader(action=Action.REVOKE, system=System.X509, root=0).to_bytes()
        revoke = Request(
            new_id(),
            0.0,
            header,
            (sub.public_bytes(serialization.Encoding.PEM), b"", b"0" * 40),
            True,
        )
        crl_result = dispatch(ctx, revoke)
        assert crl_result is not None and crl_result.payload2 == b"", crl_result
        crl = x509.load_pem_x509_crl(crl_result.payload1)
        assert [r.serial_number for r in crl] == [sub.serial_number]
    finally:
        ctx.db.close()

    # The audit chain holds the transcript, as printed, and still verifies.
    with closing(sqlite3.connect(world.dir / "ca.sqlite")) as conn:
        audit = AuditLog(conn)
        assert audit.verify().ok
        for step, printed in (
            ("generate", generated),
            ("csr", requested),
            ("sign-subroot", signed),
            ("install", installed),
        ):
            (details,) = audit.events(f"ceremony-{step}")
            assert details == {k: v for k, v in printed.items() if k != "audit_record"}
            assert printed["step"] == step
        # the signer's start names the certificate the install put in place
        assert {"root": 2, "certificate_sha256": installed["certificate_sha256"]} in (
            audit.events("root-loaded")
        )
        kinds = [r.event for r in audit.records()]
        assert kinds.index("ceremony-install") < kinds.index("issued")
        assert kinds.count("issued") == 2 and "revoked" in kinds


def test_generate_writes_an_encrypted_rsa4096_key_when_the_root_has_a_passphrase(world, ceremony):
    generated = ceremony("generate", "--root", "5")
    pem = (world.dir / "root5.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, b"s3cret")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    assert generated["key_type"] == "rsa4096"
    assert generated["key_sha256"] == spki_sha256(key.public_key())
    if signer_uid() is not None:
        assert generated["key_owner"] == "_signer"


def test_install_of_a_self_signed_root_then_its_renewal(world, ceremony, tmp_path):
    ceremony("generate", "--root", "2", "--type", "p256")
    key = serialization.load_pem_private_key((world.dir / "root2.key").read_bytes(), None)
    first = make_root(key, "root 2", end=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    (tmp_path / "first.crt").write_bytes(first.public_bytes(serialization.Encoding.PEM))
    installed = ceremony("install", "--root", "2", "--cert", tmp_path / "first.crt")
    assert installed["issuer_root"] == 2 and installed["replaced_sha256"] is None
    renewed = make_root(key, "root 2")
    (tmp_path / "renewed.crt").write_bytes(renewed.public_bytes(serialization.Encoding.PEM))
    again = ceremony("install", "--root", "2", "--cert", tmp_path / "renewed.crt")
    assert again["replaced_sha256"] == first.fingerprint(hashes.SHA256()).hex()
    assert x509.load_pem_x509_certificate((world.dir / "root2.crt").read_bytes()) == renewed
