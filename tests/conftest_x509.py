"""Test helpers for the X.509 tests: roots on disk, a config, CSRs and SPKACs.

Real keys, real files, the real ``openssl spkac`` tool; nothing mocked.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def pem_key(key, password: bytes | None = None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def make_root(key, name: str, years: int = 20) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    algo = None if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=365))
            .not_valid_after(NOW + timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, algo))


def write_root(directory: Path, rid: int, key, cert, password: bytes | None = None) -> None:
    (directory / f"root{rid}.key").write_bytes(pem_key(key, password))
    (directory / f"root{rid}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if password:
        (directory / f"root{rid}.pass").write_bytes(password + b"\n")


def root_toml(rid: int, password: bool = False, digest: str = "sha256") -> str:
    return f"""
[x509.roots.{rid}]
name = "root {rid}"
key = "root{rid}.key"
certificate = "root{rid}.crt"
passphrase_file = "{f'root{rid}.pass' if password else ''}"
crl_url = "http://crl.example.org/root{rid}.crl"
default_digest = "{digest}"
"""


BASE_TOML = """
[spool]
dir = "spool"

[signer]
database = "ca.sqlite"
state_dir = "state"

[x509]
ocsp_url = "http://ocsp.cacert.org/"
cps_url = "http://www.cacert.org/cps.php"
policy_oid = "1.3.6.1.4.1.18506.4.4"
"""


def csr_pem(key, cn: str = "ignored", algo=None) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, algo if algo is not None else hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def spkac_block(key, directory: Path, lines: list[str], digest: str = "sha256") -> bytes:
    """An SPKAC text block made by the real ``openssl spkac`` tool."""
    keyfile = directory / f"spkac-{id(key)}.pem"
    keyfile.write_bytes(pem_key(key))
    out = subprocess.run(["openssl", "spkac", "-key", str(keyfile), "-challenge", "chal",
                          "-digest", digest], check=True, capture_output=True).stdout
    return ("".join(f"{ln}\n" for ln in lines)).encode() + out
