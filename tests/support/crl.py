"""Helpers shared by the CRL and revocation tests: roots, issued certificates,
and a web-host stand-in that applies answers with the real xdelta and checks
CRLs with the real openssl."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from signer_core.config.x509 import RootConfig
from signer_core.roots import Root, RootKey
from signer_core.store.cadb import CADatabase

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest().encode()


def new_key(kind: str) -> RootKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _hash_for(key: RootKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def make_root(
    kind: str,
    root_id: int = 0,
    name: str = "Test Root",
    key: RootKey | None = None,
    digest: str = "sha256",
) -> Root:
    """A self-signed root ``root_id`` of ``kind``, as signer_core.roots loads one.

    It lives in memory only: its configuration names key and certificate files
    that nothing reads.
    """
    key = key or new_key(kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )
    config = RootConfig(
        id=root_id,
        name=name,
        key=Path(f"/nonexistent/root{root_id}.key"),
        certificate=Path(f"/nonexistent/root{root_id}.crt"),
        passphrase_file=None,
        crl_url="",
        default_digest=digest,
    )
    return Root(root_id, config, cert, key)


_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def leaf(
    root: Root,
    serial: int,
    *,
    issuer_name: x509.Name | None = None,
    signing_key: RootKey | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A leaf certificate, by default issued and signed by ``root``."""
    key = signing_key or root.private_key
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"leaf {serial}")]))
        .issuer_name(issuer_name or root.certificate.subject)
        .public_key(_LEAF_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .sign(key, _hash_for(key))
    )


def issue(db: CADatabase, root: Root, serial: int) -> bytes:
    """Record a leaf as issued in the CA database; its PEM."""
    cert = leaf(root, serial)
    digest = hashlib.sha256(f"{root.id}/{serial}".encode()).digest()
    assert db.reserve(root.id, serial, digest, 5)
    db.record_issued(digest, cert)
    return pem(cert)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def xdelta_patch(old: bytes, patch: bytes, work: Path) -> bytes:
    """Apply an xdelta patch the way the web host does."""
    (work / "old").write_bytes(old)
    (work / "patch").write_bytes(patch)
    done = subprocess.run(
        ["xdelta", "patch", str(work / "patch"), str(work / "old"), str(work / "new")],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return (work / "new").read_bytes()


def openssl_verify(der: bytes, root: Root, work: Path) -> None:
    (work / "root.pem").write_bytes(pem(root.certificate))
    (work / "crl.der").write_bytes(der)
    done = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(work / "crl.der"),
            "-noout",
            "-verify",
            "-CAfile",
            str(work / "root.pem"),
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and b"verify OK" in done.stderr, done.stderr


class WebHost:
    """The client side: holds one DER CRL, applies answers, verifies."""

    def __init__(self, root: Root, work: Path) -> None:
        self.root = root
        self.work = work / f"client{root.id}"
        os.makedirs(self.work, exist_ok=True)
        self.der = b""

    @property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der).hexdigest().encode()

    def apply(self, answer: bytes) -> x509.CertificateRevocationList:
        assert answer, "an empty answer is a failure"
        if answer.startswith(b"-----BEGIN X509 CRL-----"):
            self.der = x509.load_pem_x509_crl(answer).public_bytes(serialization.Encoding.DER)
        else:
            assert answer.startswith(b"%XDZ"), answer[:20]
            self.der = xdelta_patch(self.der, answer, self.work)
        openssl_verify(self.der, self.root, self.work)
        return x509.load_der_x509_crl(self.der)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def serials(crl: x509.CertificateRevocationList) -> list[int]:
    return [entry.serial_number for entry in crl]
