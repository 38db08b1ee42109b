"""Helpers shared by the X.509 tests: roots on disk, a config, CSRs and SPKACs.

Real keys, real files, real TOML, the real ``openssl`` tool; nothing mocked.
Test tooling, imported by name (pyproject puts ``tests/`` on pytest's path): the
X.509 tests need these at import time (module constants, parametrize arguments);
the fixtures built on them are in tests/conftest.py and tests/signer_core/conftest.py.
"""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
ROOT_END = NOW + timedelta(days=3650)


def pem_key(key, password: bytes | None = None) -> bytes:
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def make_root(key, name: str, end: datetime = ROOT_END, ski: bool = True) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    algo = (
        hashes.SHA256()
        if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        else None
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    return builder.sign(key, algo)


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
passphrase_file = "{f"root{rid}.pass" if password else ""}"
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

ENABLE_ALL = """
[x509.profiles.10]
enabled = true
[x509.profiles.11]
enabled = true
"""


def csr_pem(key, cn: str = "ignored", algo=None) -> bytes:
    if algo is None and isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        algo = hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, algo)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def spkac_line(key, directory: Path, digest: str = "sha256") -> bytes:
    """``SPKAC=...`` made by the real ``openssl spkac`` tool."""
    keyfile = directory / f"spkac-{id(key)}.pem"
    keyfile.write_bytes(pem_key(key))
    return subprocess.run(
        ["openssl", "spkac", "-key", str(keyfile), "-challenge", "chal", "-digest", digest],
        check=True,
        capture_output=True,
    ).stdout


def spkac_block(line: bytes, subject_lines: list[str]) -> bytes:
    return "".join(f"{ln}\n" for ln in subject_lines).encode() + line


class World:
    """Roots 0 (RSA 2048, passphrase), 1 (EC P-384, default sha384),
    3 (Ed25519); root 2 configured with no files; profiles 10 and 11
    enabled; RSA and EC subject keys. Built once per test module."""

    def __init__(self, directory: Path, extra_toml: str = "") -> None:
        from signer_core.config import load_config
        from signer_core.roots import RootStore

        self.dir = directory
        self.root_keys = {
            0: rsa.generate_private_key(65537, 2048),
            1: ec.generate_private_key(ec.SECP384R1()),
            3: ed25519.Ed25519PrivateKey.generate(),
        }
        self.root_certs = {rid: make_root(k, f"root {rid}") for rid, k in self.root_keys.items()}
        for rid, key in self.root_keys.items():
            write_root(directory, rid, key, self.root_certs[rid], b"s3cret" if rid == 0 else None)
        toml = (
            BASE_TOML
            + extra_toml
            + root_toml(0, password=True)
            + root_toml(1, digest="sha384")
            + root_toml(2)
            + root_toml(3)
            + ENABLE_ALL
        )
        (directory / "signer.toml").write_text(toml)
        (directory / "state").mkdir(exist_ok=True)  # as the package makes it: the log key's
        self.cfg = load_config(directory / "signer.toml")
        self.store = RootStore.load(self.cfg.x509)
        self.rsa_key = rsa.generate_private_key(65537, 2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.spkac = {
            "rsa": spkac_line(self.rsa_key, directory),
            "ec": spkac_line(self.ec_key, directory),
        }


BASE_REQUEST = {
    "root": 0,
    "profile": 5,
    "md": 0,
    "days": 365,
    "spkac": False,
    "payload2": b"DNS:www.example.org",
    "payload3": b"/CN=www.example.org",
}


def der_of(pem: bytes) -> bytes:
    body = b"".join(ln for ln in pem.splitlines() if not ln.startswith(b"-----"))
    return base64.b64decode(body)


def csr_pem_of(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + b"\n".join(lines)
        + b"\n-----END CERTIFICATE REQUEST-----\n"
    )


# The subject of the issuance tests, as the web side sends it (CN first).
PAYLOAD3 = (
    b"/CN=Alice Ex\\xC3\\xa4mple\\x2c Jr./emailAddress=alice@example.org"
    b"/organizationName=Example e.V./OU=Unit 1/OU=Unit 2/countryName=DE"
)


# -- subject attributes, for the subject tests' tables and strategies ---------------

LONG_NAMES = {
    "CN": "commonName",
    "O": "organizationName",
    "OU": "organizationalUnitName",
    "L": "localityName",
    "ST": "stateOrProvinceName",
    "C": "countryName",
    "emailAddress": "emailAddress",
}
OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
BOUNDS = {"CN": 64, "O": 64, "OU": 64, "L": 128, "ST": 128, "emailAddress": 255}


def attrs(name):
    return [(a.oid, a.value) for a in name]


# The old CA's `openssl ca` policy section, written out here by hand.
POLICY = [
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
    NameOID.EMAIL_ADDRESS,
]
