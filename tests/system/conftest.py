"""Fixtures of the system tests: a running appliance, requests for it, signerctl on it.

Test tooling on both sides of the trust boundary. As root, the appliance
runs each daemon under its own system user (created if missing), as
production does; otherwise both run as the caller. Both daemons are started
on a null-modem cable as the demo starts them (signerctl.demo.run.on_cable).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from signerctl.demo import rig
from signerctl.demo.ca import Users
from signerctl.demo.run import Running, on_cable

SUBJECT = "/CN=www.example.org/emailAddress=admin@example.org"


@dataclass
class Appliance:
    directory: Path
    running: Running
    users: Users

    @property
    def config(self) -> Path:
        return self.running.config

    @property
    def supervisor(self):
        return self.running.supervisor

    @property
    def cable(self):
        return self.running.cable

    @property
    def link(self) -> str:
        return self.running.link

    def root_cert(self, root: int = 0) -> Path:
        return self.directory / "certs" / f"root{root}.crt"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.directory}/lib/ca.sqlite?mode=ro", uri=True)

    def client(self, *args: str, input: bytes | None = None, timeout: float = 60):
        """Run ``signer-client --link LINK ARGS`` as a separate process."""
        return subprocess.run(
            [sys.executable, "-m", "webhost.cli", "--link", self.link, *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )

    def sign(
        self,
        csr_path: Path,
        *,
        root="0",
        profile="5",
        md="8",
        days="365",
        san="DNS:www.example.org,DNS:example.org",
        subject=SUBJECT,
    ):
        """``signer-client sign-x509`` of the CSR in ``csr_path``: a server certificate."""
        return self.client(
            *("sign-x509", "--root", root, "--profile", profile, "--md", md, "--days", days),
            *("--csr", str(csr_path), "--san", san, "--subject", subject),
        )

    def pids(self) -> dict[str, int]:
        return {name: self.supervisor.pid(name) for name in ("signer-core", "signer-comm")}

    def assert_alive(self) -> None:
        for name, proc in self.supervisor.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        assert self.supervisor.restarts == {"signer-core": 0, "signer-comm": 0}


@contextmanager
def running_appliance(world_dir: Path, users: Users, extra_toml: str = "") -> Iterator[Appliance]:
    """A demo CA in ``world_dir/ca`` (its configuration ending with ``extra_toml``), both
    daemons started on a new cable; stopped, and their logs shown, afterwards."""
    signer_log = world_dir / "log" / "signer-core.log"
    try:
        with on_cable(world_dir / "ca", users, world_dir / "log", extra_toml) as running:
            # The comm handler answers at once; the signer may still be opening its
            # database, which the tests read: wait for it to watch the spool.
            rig.wait_until(
                lambda: (
                    signer_log.exists() and "watching " in signer_log.read_text(errors="replace")
                ),
                30,
                "signer-core to watch the spool",
            )
            yield Appliance(world_dir / "ca", running, users)
    finally:
        for log in sorted((world_dir / "log").glob("*.log")):
            sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture
def appliance(world_dir, users):
    with running_appliance(world_dir, users) as running:
        yield running


@pytest.fixture
def appliance_with(world_dir, users):
    """``appliance_with(extra_toml)``: the ``appliance`` context, its configuration
    ending with ``extra_toml``."""
    return functools.partial(running_appliance, world_dir, users)


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_csr(path: Path, *, signed_by_another_key: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr-own-subject")]))
        .sign(key, hashes.SHA256())
    )
    der = csr.public_bytes(serialization.Encoding.DER)
    if signed_by_another_key:  # same-size P-256 key in place of the signer's
        der = der.replace(_spki(key), _spki(ec.generate_private_key(ec.SECP256R1())))
        assert not x509.load_der_x509_csr(der).is_signature_valid
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    path.write_bytes(pem)
    return pem


@pytest.fixture
def write_csr():
    """``write_csr(path, signed_by_another_key=False)``: a new P-256 CSR in ``path``, its PEM."""
    return _write_csr


@pytest.fixture
def retry():
    """``retry(call, ...)``: signerctl.demo.rig.deployed_retry on the web client's link errors."""
    return functools.partial(rig.deployed_retry, link_errors=(LinkError, FrameError))


def _ctl(appliance: Appliance, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "signerctl.main", "--config", str(appliance.config), *args],
        capture_output=True,
        timeout=60,
    )


def _ctl_json(appliance: Appliance, *args: str):
    done = _ctl(appliance, "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def ctl():
    """``ctl(appliance, *args)``: signerctl on the appliance's configuration."""
    return _ctl


@pytest.fixture
def ctl_json():
    """``ctl_json(appliance, *args)``: ``signerctl --json``, its output parsed."""
    return _ctl_json
