"""Fixtures of the migration tests: a real OpenSSL CA directory, made by ``openssl ca``,
as the old signer left it.

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
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.roots import Root
from signerctl.migrate.index import format_time, parse_line
from tests.support.crl import make_root

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

# What the old signer's openssl.cnf says beyond the common part (tests/conftest.py).
OLD_SETTINGS = "preserve = yes"
OLD_POLICY = "commonName = supplied\norganizationName = optional\nemailAddress = optional"


@dataclass(frozen=True)
class OldCA:
    dir: Path
    root: Root
    current_crl: Path  # revoke-root0.crl, DER, as the web host holds it
    crl_dir: Path  # currentcrls/0/<sha1>.crl
    revoked: dict[int, tuple[dt.datetime, str | None]]
    valid: frozenset[int]
    expired: frozenset[int]


@pytest.fixture(scope="session")
def old_openssl(openssl_ca):
    """``old_openssl(directory, root)``: the old signer's ``openssl ca`` configuration and
    root files written in ``directory`` (an old CA's copy, an export); its OpenSSLCA."""
    return lambda directory, root: openssl_ca(directory, root, OLD_SETTINGS, OLD_POLICY, False)


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


def _gencrl(ca, name: str) -> bytes:
    ca.run("-gencrl", "-out", str(ca.dir / f"{name}.pem"))
    der = x509.load_pem_x509_crl((ca.dir / f"{name}.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return der


def _build_old_ca(openssl_ca, base: Path, *, valid: int = 180, expired: int = 20) -> OldCA:
    ca_dir = base / "oldca"
    root = make_root("ec", 0, "Old OpenSSL Root")
    ca = openssl_ca(ca_dir, root, OLD_SETTINGS, OLD_POLICY)
    work = base / "reqs"
    work.mkdir()
    ca.run("-infiles", *_csrs(work, valid, 0))  # newcerts with a text dump
    ca.run(
        "-notext",
        "-startdate",
        "200101000000Z",
        "-enddate",
        "210101000000Z",
        "-infiles",
        *_csrs(work, expired, valid),
    )
    ca.run("-updatedb")
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
            ca.run("-revoke", str(ca_dir / "newcerts" / f"{serial:X}.pem"), *extra)
            revoked[serial] = (revocation_date(serial), reason)
        _backdate_revocations(ca_dir)
        if number < 3:  # the last batch is revoked after the last CRL
            der = _gencrl(ca, f"crl{number}")
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


@pytest.fixture(scope="session")
def build_old_ca(openssl_ca):
    """``build_old_ca(base, valid=180, expired=20)``: a new old CA under ``base``."""
    return lambda base, **counts: _build_old_ca(openssl_ca, base, **counts)


@pytest.fixture(scope="session")
def old_ca(tmp_path_factory, build_old_ca) -> OldCA:
    """The old CA, built once per session for every migration test module; tests only read it."""
    return build_old_ca(tmp_path_factory.mktemp("old"))
