"""A throwaway CA for the demo and the tests: roots, keys, configuration.

Trusted side tooling, run by an operator or a test, never by a daemon. The
keys it makes are for demonstration only: they are written unencrypted under
the demo directory. The layout is the production one in small: keys and the
database readable by the signer user alone, the spool with the modes of
docs/architecture.md, one configuration file for both daemons.
"""

from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from signer_core.openpgp.gpg import stop_agent
from spool.queue import Spool
from spool.safeio import commit_file

COMM_USER = "_signer-comm"
SIGNER_USER = "_signer"
# Roots 2-4 are configured as in production but hold no key yet: the signer
# refuses them with a reason, as it will until an operator installs keys.
ROOT_NAMES = {0: "class 1 root", 1: "class 3 subroot", 2: "class3s", 3: "root 4", 4: "root 5"}
CRL_URLS = {
    0: "http://crl.cacert.org/revoke.crl",
    1: "http://crl.cacert.org/class3-revoke.crl",
    2: "http://crl.cacert.org/class3s-revoke.crl",
    3: "http://crl.cacert.org/root4.crl",
    4: "http://crl.cacert.org/root5.crl",
}


@dataclass(frozen=True)
class Users:
    """Who runs what; all None for a single-user (non-root) demo."""

    comm_uid: int | None = None
    comm_gid: int | None = None
    signer_uid: int | None = None
    signer_gid: int | None = None
    comm_name: str = ""
    signer_name: str = ""

    def give_to_comm(self, path: Path | str) -> None:
        """Make ``path`` the comm user's; nothing in a single-user demo."""
        _chown(path, self.comm_uid, self.comm_gid)

    def give_to_signer(self, path: Path | str) -> None:
        """Make ``path`` the signer user's; nothing in a single-user demo."""
        _chown(path, self.signer_uid, self.signer_gid)


def _chown(path: Path | str, uid: int | None, gid: int | None) -> None:
    if uid is not None:
        os.chown(path, uid, -1 if gid is None else gid)  # -1: the group stays


# Run as a daemon user: the first of the paths given that it may not enter.
_FIRST_CLOSED = """import os, sys
print(next((p for p in sys.argv[1:] if not os.access(p, os.X_OK)), ""))
"""


def unreachable(directory: Path, users: Users) -> str:
    """Why a daemon user could not reach a demo CA in ``directory``; "" if both can.

    The demo makes ``directory`` and all under it with the modes each daemon
    needs, but not the directories above it, which both users must be able to
    enter. Each user is asked itself (a child running as it), so groups and
    ACLs count as they will for its daemon. Nothing to ask in a single-user demo.
    """
    above = [str(p) for p in reversed(directory.parents) if p.exists()]
    for name, uid, gid in (
        (users.signer_name, users.signer_uid, users.signer_gid),
        (users.comm_name, users.comm_uid, users.comm_gid),
    ):
        if uid is None:
            continue
        asked = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _FIRST_CLOSED, *above],
            capture_output=True,
            text=True,
            cwd="/",
            env={},
            user=uid,
            group=gid,
            extra_groups=[],
            check=False,
        )
        if asked.returncode != 0:
            return f"the user {name} cannot run {sys.executable}, so neither can its daemon"
        closed = asked.stdout.strip()
        if closed:
            return (
                f"the user {name} cannot reach {directory} because {closed} does not let it "
                f"in: choose a directory that every user may enter, or run chmod o+x {closed}"
            )
    return ""


def system_users() -> Users:
    """The two daemon users, created as system users if missing (needs root)."""
    for name in (COMM_USER, SIGNER_USER):
        try:
            pwd.getpwnam(name)
        except KeyError:
            os.spawnvp(
                os.P_WAIT,
                "useradd",
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
            )
    comm, signer = pwd.getpwnam(COMM_USER), pwd.getpwnam(SIGNER_USER)
    return Users(
        comm.pw_uid,
        grp.getgrnam(COMM_USER).gr_gid,
        signer.pw_uid,
        grp.getgrnam(SIGNER_USER).gr_gid,
        COMM_USER,
        SIGNER_USER,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Demo CA (not trusted)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject_key,
    subject: x509.Name,
    issuer_key,
    issuer: x509.Name,
    days: int,
    path_length: int | None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_roots(keys: Path, certs: Path) -> None:
    """Root 0 (RSA, self-signed) and root 1 (P-256, signed by root 0)."""
    key0 = rsa.generate_private_key(65537, 2048)
    name0 = _name("Demo class 1 root")
    cert0 = _ca_certificate(key0, name0, key0, name0, 3650, None)
    key1 = ec.generate_private_key(ec.SECP256R1())
    cert1 = _ca_certificate(key1, _name("Demo class 3 subroot"), key0, name0, 3000, 0)
    for root, key, cert in ((0, key0, cert0), (1, key1, cert1)):
        commit_file(keys, f"root{root}.key", _key_pem(key), 0o600)
        commit_file(certs, f"root{root}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_openpgp_root(home: Path) -> str:
    """The demo's OpenPGP root: an Ed25519 key in its own GnuPG home; returns its fingerprint."""
    home.mkdir(mode=0o700, exist_ok=True)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--passphrase", ""]
    subprocess.run(
        [
            *gpg,
            "--quick-gen-key",
            "Demo CA OpenPGP root <openpgp-root@demo.example>",
            "ed25519",
            "cert,sign",
            "10y",
        ],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True
    ).stdout
    stop_agent(home)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def gpg_workdir(directory: Path) -> Path:
    """Where the demo signer makes its per-request GnuPG homes: in its own state directory.

    lib/ belongs to the signer user, mode 0700, so no other user can create
    this directory first; the signer creates it at start (openpgp.load_signer).
    """
    return directory / "lib" / "gpg"


def config_text(users: Users, device: str, openpgp_fingerprint: str, gpg_workdir: Path) -> str:
    roots = "".join(
        f'\n[x509.roots.{i}]\nname = "{ROOT_NAMES[i]}"\nkey = "keys/root{i}.key"\n'
        f'certificate = "certs/root{i}.crt"\ncrl_url = "{CRL_URLS[i]}"\n'
        'default_digest = "sha256"\n'
        for i in sorted(ROOT_NAMES)
    )
    return (
        "# Demo CA: throwaway keys, not for production.\n"
        '[spool]\ndir = "spool"\n\n'
        f'[comm]\ndevice = "{device}"\nbaud = 115200\nuser = "{users.comm_name}"\n'
        f'group = "{users.comm_name}"\nresult_deadline = 100.0\n\n'
        f'[signer]\nuser = "{users.signer_name}"\ngroup = "{users.signer_name}"\n'
        'database = "lib/ca.sqlite"\nstate_dir = "lib"\n\n'
        '[x509]\nocsp_url = "http://ocsp.cacert.org/"\n'
        'cps_url = "http://www.cacert.org/cps.php"\n'
        'policy_oid = "1.3.6.1.4.1.18506.4.4"\n'
        + roots
        + f'\n[openpgp]\nhome = "keys/openpgp"\nfingerprint = "{openpgp_fingerprint}"\n'
        f'workdir = "{gpg_workdir}"\n'
    )


def create_demo_ca(directory: Path, users: Users, device: str) -> Path:
    """Lay out a demo CA in ``directory``; return the configuration file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    keys, certs, lib = directory / "keys", directory / "certs", directory / "lib"
    for path, mode in ((keys, 0o700), (certs, 0o755), (lib, 0o700)):
        path.mkdir(exist_ok=True)
        path.chmod(mode)
    if not (keys / "root0.key").exists():
        make_roots(keys, certs)
        (keys / "openpgp.fpr").write_text(make_openpgp_root(keys / "openpgp"))
    fingerprint = (keys / "openpgp.fpr").read_text()
    for path in (lib, keys, *keys.rglob("*")):
        users.give_to_signer(path)
    Spool(directory / "spool").create_dirs(
        signer_uid=users.signer_uid, signer_gid=users.signer_gid, comm_gid=users.comm_gid
    )
    text = config_text(users, device, fingerprint, gpg_workdir(directory))
    commit_file(directory, "signer.toml", text.encode(), 0o644)
    return directory / "signer.toml"
