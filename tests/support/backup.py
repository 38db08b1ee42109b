"""Helpers for the backup and integrity tests: a small real CA on disk, gpg keys.

Imported by name by the backup, integrity and system tests (and by the writer
process of the concurrency test, a child that cannot take fixtures). Until signer_core/config.py is in
the tree, ``load`` is a stand-in that reads the same TOML file into objects
with the attribute names the real ``Config`` has.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase

PASSPHRASE = b"root zero passphrase"

try:
    from signer_core.config import load_config as load

    STAND_IN = False
except ImportError:
    STAND_IN = True

    @dataclass(frozen=True)
    class _Signer:
        user: str
        group: str
        database: Path
        state_dir: Path

    @dataclass(frozen=True)
    class _Root:
        key: Path
        certificate: Path
        passphrase_file: Path | None

    @dataclass(frozen=True)
    class _X509:
        roots: dict

    @dataclass(frozen=True)
    class _OpenPGP:
        home: Path | None
        key_file: Path | None
        passphrase_file: Path | None

    @dataclass(frozen=True)
    class _Config:
        path: Path
        spool_dir: Path
        signer: _Signer
        x509: _X509
        openpgp: _OpenPGP | None
        crl: object = None

    def load(path: Path) -> _Config:  # type: ignore[misc]
        """Stand-in for signer_core.config.load_config (same file, same attribute names)."""
        path = Path(path)
        data = tomllib.loads(path.read_text())
        base = path.parent.resolve()

        def opt(value: str | None) -> Path | None:
            return base / value if value else None

        s = data["signer"]
        roots = {
            int(k): _Root(base / r["key"], base / r["certificate"], opt(r.get("passphrase_file")))
            for k, r in data["x509"]["roots"].items()
        }
        pgp = data.get("openpgp")
        openpgp = (
            None
            if pgp is None
            else _OpenPGP(
                opt(pgp.get("home")), opt(pgp.get("key_file")), opt(pgp.get("passphrase_file"))
            )
        )
        return _Config(
            path,
            base / data["spool"]["dir"],
            _Signer(s["user"], s["group"], base / s["database"], base / s["state_dir"]),
            _X509(roots),
            openpgp,
        )


def signer_user() -> str:
    """The signer user if this machine has it, else nobody (both exist as a name to chown to)."""
    try:
        return pwd.getpwnam("_signer").pw_name
    except KeyError:
        return "nobody"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_root(cn: str = "Backup test root") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    db: CADatabase, audit: AuditLog, root_key, root_cert: x509.Certificate, n: int
) -> x509.Certificate:
    """One leaf certificate, recorded as the signer does: reserve, sign, record, audit."""
    serial = x509.random_serial_number()
    digest = os.urandom(32)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"leaf {n}"))
        .issuer_name(root_cert.subject)
        .public_key(root_key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(root_key, hashes.SHA256())
    )
    with db.transaction():
        assert db.reserve(0, serial, digest, 5)
        db.record_issued(digest, cert)
        audit.append("issued", root=0, serial=format(serial, "x"))
    return cert


def config_text(user: str, openpgp: bool = True) -> str:
    text = (
        '[spool]\ndir = "spool"\n\n'
        '[comm]\ndevice = "loop://"\n\n'
        f'[signer]\nuser = "{user}"\ngroup = "{user if user != "nobody" else "nogroup"}"\n'
        'database = "lib/ca.sqlite"\nstate_dir = "lib"\n\n'
        '[x509]\nblocklist_file = "blocked.txt"\n\n'
        '[x509.roots.0]\nname = "test root"\nkey = "keys/root0.key"\n'
        'certificate = "certs/root0.crt"\npassphrase_file = "keys/root0.passphrase"\n'
        'crl_url = "http://crl.example.org/root0.crl"\ndefault_digest = "sha256"\n'
    )
    if openpgp:
        text += (
            '\n[openpgp]\nkey_file = "keys/openpgp.sec"\n'
            'passphrase_file = "keys/openpgp.passphrase"\n'
            f'fingerprint = "{"AB" * 20}"\n'
        )
    return text


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def make_ca(directory: Path, certificates: int = 12) -> Path:
    """A CA laid out as in production, in small; returns its configuration file."""
    keys, certs, lib = directory / "keys", directory / "certs", directory / "lib"
    for d, mode in ((keys, 0o700), (certs, 0o755), (lib, 0o700), (lib / "crl", 0o755)):
        d.mkdir(parents=True)
        d.chmod(mode)
    key, cert = make_root()
    _write(keys / "root0.passphrase", PASSPHRASE + b"\n", 0o600)
    _write(
        keys / "root0.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        ),
        0o600,
    )
    _write(certs / "root0.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / "blocked.txt", os.urandom(32).hex().encode() + b"\n", 0o644)
    _write(
        keys / "openpgp.sec",
        b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n" + os.urandom(300).hex().encode(),
        0o600,
    )
    _write(keys / "openpgp.passphrase", b"openpgp passphrase\n", 0o600)
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    _write(lib / "crl" / "root0.crl", crl.public_bytes(serialization.Encoding.DER), 0o644)
    config = directory / "signer.toml"
    _write(config, config_text(signer_user()).encode(), 0o644)
    db = CADatabase(lib / "ca.sqlite")
    audit = AuditLog(db.connection)
    try:
        for n in range(certificates):
            issue(db, audit, key, cert, n)
    finally:
        db.close()
    return config


def root_material(config: Path):
    """The root key and certificate of a CA made by make_ca."""
    cfg = load(config)
    root = cfg.x509.roots[0]
    assert root.key is not None
    key = serialization.load_pem_private_key(root.key.read_bytes(), PASSPHRASE)
    return key, x509.load_pem_x509_certificate(root.certificate.read_bytes())


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str
    public_file: Path


def make_gpg_key(uid: str, home: Path | None = None) -> GpgKey:
    """An ed25519/cv25519 key pair without passphrase in ``home`` (default: a fresh one)."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="bkt-gpg-"))
    home.mkdir(mode=0o700, exist_ok=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", uid, "ed25519", "cert", "0"], check=True, capture_output=True
    )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr"))
    subprocess.run(
        [*gpg, "--quick-add-key", fpr, "cv25519", "encr", "0"], check=True, capture_output=True
    )
    public = home / "backup-public.asc"
    public.write_bytes(
        subprocess.run([*gpg, "--armor", "--export", fpr], check=True, capture_output=True).stdout
    )
    return GpgKey(home, fpr, public)


def remove_gpg_home(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


def gpg_decrypt(key: GpgKey, data: bytes) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(key.home), "--batch", "--decrypt"],
        input=data,
        check=True,
        capture_output=True,
    ).stdout


def gpg_encrypt(key: GpgKey, data: bytes) -> bytes:
    return subprocess.run(
        [
            "gpg",
            "--homedir",
            str(key.home),
            "--batch",
            "--trust-model",
            "always",
            "--recipient",
            key.fingerprint,
            "--encrypt",
        ],
        input=data,
        check=True,
        capture_output=True,
    ).stdout


def tree_state(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``directory`` with its mode and content: 'unchanged' means equal."""
    state = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        state[str(path.relative_to(directory))] = (
            st.st_mode,
            path.read_bytes() if path.is_file() else None,
        )
    return state
