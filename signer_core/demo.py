"""``signerctl demo``: the whole appliance in small, on a throwaway CA.

Operator tooling; it plays the part of both the installer and the web host.
It lays out a demo CA (signer_core.democa), joins the two daemons to a
virtual null-modem cable (two real pseudo-terminals), runs each daemon as its
own system user when started as root, restarts a daemon that dies, and signs
one real certificate request end to end through the web-side client. With
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

from comm_handler.client import WebClient
from comm_handler.transfer import LinkError
from signer_core.democa import Users, create_demo_ca, system_users
from signer_core.supervise import Service, Supervisor
from signer_core.x509compat import verify_issued_by

DEMO_NAME = "demo.example"
SPOOL_TMPFS = "size=64m,nr_inodes=16384,mode=0755,nosuid,nodev,noexec"


@dataclass(frozen=True)
class Cable:
    process: subprocess.Popen
    appliance_end: str
    web_end: str


def start_cable() -> Cable:
    """A null-modem cable between two new pseudo-terminals, relayed by a child process."""
    proc = subprocess.Popen([sys.executable, "-m", "comm_handler.nullmodem"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    ends = {}
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
    return Supervisor([
        Service(name, [sys.executable, "-m", module, "--config", str(config)],
                env, log_dir / f"{name}.log")
        for name, module in (("signer-core", "signer_core.daemon"),
                             ("signer-comm", "comm_handler.daemon"))
    ])


def demo_request() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def wait_until_served(link: str, timeout: float = 30.0) -> None:
    """Keep sending keep-alives until one is answered, as the web host's client would.

    A start byte sent before the comm handler has opened its end is lost
    (opening a port flushes its input), so the first exchange must be retried.
    """
    deadline = time.monotonic() + timeout
    with WebClient(link, ready_timeout=1.0, response_timeout=10.0) as client:
        while True:
            try:
                if client.nul().ok:
                    return
            except LinkError:
                if time.monotonic() > deadline:
                    raise


def sign_one(link: str, root_cert: Path, out) -> bool:
    """Send one server-certificate request over the link and check the answer."""
    client = WebClient(link)
    try:
        response = client.sign_x509(0, 5, 8, 365, demo_request(),
                                    f"DNS:{DEMO_NAME}", f"/CN={DEMO_NAME}")
    finally:
        client.close()
    if not response.ok:
        print(f"refused: {response.reason}", file=out)
        return False
    cert = x509.load_pem_x509_certificate(response.payload1)
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
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", SPOOL_TMPFS, "signer-demo-spool",
                              str(spool)], capture_output=True, text=True, check=False)
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
    with spool_filesystem(directory, out):
        cable = start_cable()
        supervisor = None
        try:
            if users.comm_uid is not None:
                os.chown(cable.appliance_end, users.comm_uid, users.comm_gid)
            config = create_demo_ca(directory, users, cable.appliance_end)
            log_dir = directory / "log"
            log_dir.mkdir(exist_ok=True)
            supervisor = daemons(config, log_dir)
            supervisor.start()
            print(f"link: {cable.web_end}", file=out, flush=True)
            wait_until_served(cable.web_end)
            ok = sign_one(cable.web_end, directory / "certs" / "root0.crt", out)
            if serve and ok:
                print("serving; interrupt to stop", file=out, flush=True)
                _wait_for_signal()
            return 0 if ok else 1
        finally:
            if supervisor is not None:
                supervisor.stop()
            cable.process.terminate()
            cable.process.wait()
