"""``signerctl demo``: the whole appliance in small, on a throwaway CA.

Operator tooling; it plays the part of both the installer and the web host.
It lays out a demo CA (signerctl.demo.ca), joins the two daemons to a
virtual null-modem cable (two real pseudo-terminals), runs each daemon as its
own system user when started as root, restarts a daemon that dies, and signs
one real certificate request end to end through ``signer-client``. With
``--serve`` it keeps everything running for other clients on the printed link.
As root it puts the spool on a small tmpfs of its own, as the package does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.x509.compat import verify_issued_by
from signerctl.demo.ca import Users, create_demo_ca, system_users
from signerctl.demo.supervise import Service, Supervisor

DEMO_NAME = "demo.example"
SPOOL_TMPFS = "size=64m,nr_inodes=16384,mode=0755,nosuid,nodev,noexec"


@dataclass(frozen=True)
class Cable:
    process: subprocess.Popen
    appliance_end: str
    web_end: str


def start_cable() -> Cable:
    """A null-modem cable between two new pseudo-terminals, relayed by a child process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "signerctl.demo.nullmodem"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None  # stdout=PIPE
    ends: dict[str, str] = {}
    while len(ends) < 2:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the null-modem relay did not start")
        name, _, path = line.strip().partition(": ")
        ends[name] = path
    return Cable(proc, ends["a"], ends["b"])


def daemons(config: Path, log_dir: Path) -> Supervisor:
    """Both daemons on ``config``; as root each drops to the user the config names."""
    env = dict(os.environ)
    return Supervisor(
        [
            Service(
                name,
                [sys.executable, "-m", module, "--config", str(config)],
                env,
                log_dir / f"{name}.log",
            )
            for name, module in (
                ("signer-core", "signer_core.daemon"),
                ("signer-comm", "comm_handler.daemon"),
            )
        ]
    )


@dataclass(frozen=True)
class Running:
    """A demo CA's two daemons, joined to the appliance end of ``cable``."""

    config: Path
    cable: Cable
    supervisor: Supervisor

    @property
    def link(self) -> str:
        return self.cable.web_end


@contextmanager
def on_cable(
    directory: Path, users: Users, log_dir: Path, extra_toml: str = ""
) -> Iterator[Running]:
    """A demo CA in ``directory`` (its configuration ending with ``extra_toml``), both
    daemons started on a new cable and answering on its web end; stopped afterwards.

    The demo, the system tests and bench/ all start the appliance this way.
    """
    cable = start_cable()
    supervisor = None
    try:
        users.give_to_comm(cable.appliance_end)
        config = create_demo_ca(directory, users, cable.appliance_end)
        with config.open("a") as f:
            f.write(extra_toml)
        log_dir.mkdir(exist_ok=True)
        supervisor = daemons(config, log_dir)
        supervisor.start()
        wait_until_served(cable.web_end)
        yield Running(config, cable, supervisor)
    finally:
        if supervisor is not None:
            supervisor.stop()
        cable.process.terminate()
        cable.process.wait()


def demo_request() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def web_client(link: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``signer-client`` on ``link``: the demo plays the web host, a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", link, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def wait_until_served(link: str, timeout: float = 30.0) -> None:
    """Keep sending keep-alives until one is answered, as the web host's client would.

    A start byte sent before the comm handler has opened its end is lost
    (opening a port flushes its input), so the first exchange must be retried.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = web_client(link, "--ready-timeout", "1", "--timeout", "10", "nul")
        if answer.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                "the appliance did not answer a keep-alive: "
                + answer.stderr.decode(errors="replace").strip()
            )


def sign_one(link: str, directory: Path, out) -> bool:
    """Send one server-certificate request over the link and check the answer."""
    request = directory / "demo-request.csr"
    request.write_bytes(demo_request())
    answer = web_client(
        link,
        "sign-x509",
        "--root",
        "0",
        "--profile",
        "5",
        "--md",
        "8",
        "--days",
        "365",
        "--csr",
        str(request),
        "--san",
        f"DNS:{DEMO_NAME}",
        "--subject",
        f"/CN={DEMO_NAME}",
    )
    if answer.returncode != 0:
        print(answer.stderr.decode(errors="replace").strip(), file=out)
        return False
    cert = x509.load_pem_x509_certificate(answer.stdout)
    root_cert = directory / "certs" / "root0.crt"
    verify_issued_by(cert, x509.load_pem_x509_certificate(root_cert.read_bytes()))
    print("certificate verified against root 0", file=out)
    print(f"subject: {cert.subject.rfc4514_string()}", file=out)
    print(f"serial: {cert.serial_number:x}", file=out)
    print(f"issuer: {cert.issuer.rfc4514_string()}", file=out)
    return True


@contextmanager
def spool_filesystem(directory: Path, out) -> Iterator[None]:
    """As root, ``directory``/spool on a tmpfs of its own while the demo runs.

    The comm user can fill the spool; on a file system of its own that never
    fills the one holding the CA database (docs/reliability.md). Unmounted,
    and so emptied, when the demo stops. Without root, where mounting is
    refused, or on a mount already there, the spool is left as it is.
    """
    spool = directory / "spool"
    if os.geteuid() != 0 or os.path.ismount(spool):
        yield
        return
    spool.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", SPOOL_TMPFS, "signer-demo-spool", str(spool)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        print(f"spool left on disk: no tmpfs ({mounted.stderr.strip()})", file=out)
        yield
        return
    try:
        yield
    finally:
        subprocess.run(["umount", str(spool)], check=False)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run_demo(directory: Path, serve: bool, out=sys.stdout) -> int:
    users = system_users() if os.geteuid() == 0 else Users()
    directory = directory.resolve()
    with spool_filesystem(directory, out), on_cable(directory, users, directory / "log") as running:
        print(f"link: {running.link}", file=out, flush=True)
        ok = sign_one(running.link, directory, out)
        if serve and ok:
            print("serving; interrupt to stop", file=out, flush=True)
            _wait_for_signal()
        return 0 if ok else 1
