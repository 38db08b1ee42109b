"""A real OpenSSL CA directory, made by ``openssl ca``, as the old signer left it.

``build_old_ca`` issues certificates from CSRs in one ``openssl ca -infiles``
run (one EC key for all of them keeps it fast), revokes some with reasons,
issues CRLs between revocations keeping the older ones by SHA-1 as the web
host's ``currentcrls/<N>/`` does, and marks the back-dated ones expired with
``-updatedb``. Revocation dates are then moved into the past, one distinct
date per serial, so tests can tell original dates from the import's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest_crl import Root, make_root, pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signerctl.migrate.index import format_time, parse_line

UTC = dt.UTC
REASONS = [
    "keyCompromise",
    "superseded",
    "cessationOfOperation",
    "affiliationChanged",
    "unspecified",
    "CACompromise",
    None,
]

CNF = """
[ca]
default_ca = old
[old]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/cacert.pem
private_key = $dir/private/cakey.pem
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
policy = anything
unique_subject = no
preserve = yes
[anything]
commonName = supplied
organizationName = optional
emailAddress = optional
"""


@dataclass(frozen=True)
class OldCA:
    dir: Path
    root: Root
    current_crl: Path  # revoke-root0.crl, DER, as the web host holds it
    crl_dir: Path  # currentcrls/0/<sha1>.crl
    revoked: dict[int, tuple[dt.datetime, str | None]]
    valid: frozenset[int]
    expired: frozenset[int]


def openssl_ca(ca_dir: Path, *args: str) -> str:
    done = subprocess.run(
        ["openssl", "ca", "-config", str(ca_dir / "openssl.cnf"), "-batch", *args],
        capture_output=True,
        text=True,
        cwd=ca_dir,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def write_cnf(ca_dir: Path, root: Root) -> None:
    """An openssl.cnf and root files for a CA directory (old or exported)."""
    (ca_dir / "private").mkdir(exist_ok=True)
    (ca_dir / "newcerts").mkdir(exist_ok=True)
    (ca_dir / "cacert.pem").write_bytes(pem(root.certificate))
    (ca_dir / "private" / "cakey.pem").write_bytes(
        root.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (ca_dir / "openssl.cnf").write_text(CNF.format(dir=ca_dir))


def _csrs(work: Path, count: int, first: int) -> list[str]:
    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for i in range(first, first + count):
        cn = f"J\u00fcrgen {i}" if i % 20 == 0 else f"user {i}"
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Old CA users"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.EMAIL_ADDRESS, f"user{i}@example.org"),
            ]
        )
        csr = (
            x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        )
        path = work / f"req{i}.pem"
        path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
        names.append(str(path))
    return names


def revocation_date(serial: int) -> dt.datetime:
    return dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(
        hours=serial % 5000, seconds=serial % 61
    )


def _backdate_revocations(ca_dir: Path) -> None:
    index = ca_dir / "index.txt"
    lines = index.read_text().splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        entry = parse_line(number, line)
        if entry.status == "R":
            fields = line.split("\t")
            rest = fields[2].split(",", 1)
            rest[0] = format_time(revocation_date(entry.serial))
            fields[2] = ",".join(rest)
            line = "\t".join(fields)
        out.append(line)
    index.write_text("".join(ln + "\n" for ln in out))


def _gencrl(ca_dir: Path, name: str) -> bytes:
    openssl_ca(ca_dir, "-gencrl", "-out", str(ca_dir / f"{name}.pem"))
    der = x509.load_pem_x509_crl((ca_dir / f"{name}.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return der


def build_old_ca(base: Path, *, valid: int = 180, expired: int = 20) -> OldCA:
    ca_dir = base / "oldca"
    ca_dir.mkdir()
    root = make_root("ec", 0, "Old OpenSSL Root")
    write_cnf(ca_dir, root)
    (ca_dir / "index.txt").write_text("")
    (ca_dir / "index.txt.attr").write_text("unique_subject = no\n")
    (ca_dir / "serial").write_text("1000\n")
    (ca_dir / "crlnumber").write_text("01\n")
    work = base / "reqs"
    work.mkdir()
    openssl_ca(ca_dir, "-infiles", *_csrs(work, valid, 0))  # newcerts with a text dump
    openssl_ca(
        ca_dir,
        "-notext",
        "-startdate",
        "200101000000Z",
        "-enddate",
        "210101000000Z",
        "-infiles",
        *_csrs(work, expired, valid),
    )
    openssl_ca(ca_dir, "-updatedb")
    shutil.rmtree(work)
    serials = [0x1000 + i for i in range(valid)]
    to_revoke = serials[3:valid:5][:34]
    revoked: dict[int, tuple[dt.datetime, str | None]] = {}
    web = base / "web"
    crl_dir = web / "currentcrls" / "0"
    crl_dir.mkdir(parents=True)
    batches = [to_revoke[:10], to_revoke[10:20], to_revoke[20:30], to_revoke[30:]]
    for number, batch in enumerate(batches):
        for serial in batch:
            reason = REASONS[serial % len(REASONS)]
            extra = ["-crl_reason", reason] if reason else []
            openssl_ca(ca_dir, "-revoke", str(ca_dir / "newcerts" / f"{serial:X}.pem"), *extra)
            revoked[serial] = (revocation_date(serial), reason)
        _backdate_revocations(ca_dir)
        if number < 3:  # the last batch is revoked after the last CRL
            der = _gencrl(ca_dir, f"crl{number}")
            (crl_dir / f"{hashlib.sha1(der).hexdigest()}.crl").write_bytes(der)
    current = web / "revoke-root0.crl"
    current.write_bytes(der)
    (crl_dir / f"{hashlib.sha1(der).hexdigest()}.crl").unlink()
    return OldCA(
        ca_dir,
        root,
        current,
        crl_dir,
        revoked,
        frozenset(serials) - set(revoked),
        frozenset(0x1000 + valid + i for i in range(expired)),
    )


_TEMPLATE: dict[str, OldCA] = {}


@pytest.fixture
def old_ca(tmp_path_factory) -> OldCA:
    """The old CA, built once per session for every migration test module; tests only read it."""
    if "ca" not in _TEMPLATE:
        _TEMPLATE["ca"] = build_old_ca(tmp_path_factory.mktemp("old"))
    return _TEMPLATE["ca"]
