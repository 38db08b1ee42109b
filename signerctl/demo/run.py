"""``signerctl demo``: the whole appliance in small, on a throwaway CA.

Operator tooling; it plays the part of both the installer and the web host.
It lays out a demo CA (signerctl.demo.ca), joins the two daemons to a
virtual null-modem cable (two real pseudo-terminals), runs each daemon as its
own system user when started as root, restarts a daemon that dies, and signs
one real certificate request end to end through ``signer-client``. With
``--serve`` it keeps everything running for other clients on the printed link.
As root it puts the spool on a small tmpfs of its own, as the package does,
and first asks each daemon user whether it can reach the directory at all.
SIGTERM, SIGINT and SIGHUP stop it at any moment, daemons, cable and tmpfs
included; its logs are for root alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
from signerctl.demo.ca import Users, create_demo_ca, system_users, unreachable
from signerctl.demo.supervise import Service, Supervisor

DEMO_NAME = "demo.example"
SPOOL_TMPFS = "size=64m,nr_inodes=16384,mode=0755,nosuid,nodev,noexec"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DAEMONS = (("signer-core", "signer_core.daemon"), ("signer-comm", "comm_handler.daemon"))


class Stopped(Exception):
    """A stop signal arrived: the demo unwinds through its clean-up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP end the demo wherever it is, through its clean-up.

    Once ``installed``, the first of them raises ``Stopped`` in the main
    thread; later ones are ignored, so that the clean-up runs to its end.
    While a process is started or stopped (``held``), the first waits for the
    end of that: a child started but not yet recorded would be left running.
    Not installed (the tests' and bench/'s appliance), ``held`` does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.raised = False
        self.holding = 0

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            self._raise()

    def _raise(self) -> None:
        if self.signum is not None and not self.raised and not self.holding:
            self.raised = True
            raise Stopped(self.signum)

    @contextmanager
    def installed(self) -> Iterator[None]:
        self.signum, self.raised, self.holding = None, False, 0
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def held(self) -> Iterator[None]:
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        self._raise()

    def wait(self) -> None:
        """Until the first stop signal, which raises ``Stopped``."""
        while True:
            self._raise()
            time.sleep(1.0)  # a signal ends the sleep; one just before it, the next turn


STOP = StopSignals()  # signal handlers are the process's: one for it


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
            proc.wait()
            raise RuntimeError("the null-modem relay did not start")
        name, _, path = line.strip().partition(": ")
        ends[name] = path
    return Cable(proc, ends["a"], ends["b"])


def private_log(path: Path) -> Path:
    """``path``, created if need be, for its owner (root) alone: no daemon user reads a log."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    path.chmod(0o600)
    return path


def daemons(config: Path, log_dir: Path) -> Supervisor:
    """Both daemons on ``config``, logging into ``log_dir`` (made its owner's alone); as
    root each drops to the user the config names."""
    log_dir.mkdir(mode=0o700, exist_ok=True)
    log_dir.chmod(0o700)
    return Supervisor(
        [
            Service(
                name,
                [sys.executable, "-m", module, "--config", str(config)],
                log_file=private_log(log_dir / f"{name}.log"),
            )
            for name, module in DAEMONS
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
    with STOP.held():
        cable = start_cable()
    supervisor = None
    try:
        with STOP.held():
            users.give_to_comm(cable.appliance_end)
            config = create_demo_ca(directory, users, cable.appliance_end)
            with config.open("a") as f:
                f.write(extra_toml)
            supervisor = daemons(config, log_dir)
            supervisor.start()
        wait_until_served(cable.web_end)
        yield Running(config, cable, supervisor)
    finally:
        with STOP.held():
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
    with STOP.held():
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
        with STOP.held():
            subprocess.run(["umount", str(spool)], check=False)


def run_demo(directory: Path, serve: bool, out=sys.stdout) -> int:
    """The demo in ``directory``: 0 once the certificate is verified (and, with
    ``serve``, a stop signal came); 1 if it was not, 2 if the daemon users cannot
    reach ``directory``, 128 + the signal's number when one stopped it earlier."""
    users = system_users() if os.geteuid() == 0 else Users()
    directory = directory.resolve()
    problem = unreachable(directory, users)
    if problem:
        print(f"signerctl demo: {problem}", file=sys.stderr)
        return 2
    with STOP.installed():
        try:
            with (
                spool_filesystem(directory, out),
                on_cable(directory, users, directory / "log") as running,
            ):
                print(f"link: {running.link}", file=out, flush=True)
                ok = sign_one(running.link, directory, out)
                if serve and ok:
                    try:  # from here on a stop signal is how the demo ends
                        print("serving; interrupt to stop", file=out, flush=True)
                        STOP.wait()
                    except Stopped:
                        pass
                return 0 if ok else 1
        except Stopped as exc:
            print(f"stopped by {exc} before the demo was done", file=sys.stderr)
            return 128 + exc.signum
        except RuntimeError as exc:  # our own sentences: the relay or the appliance did not start
            print(f"signerctl demo: {exc}", file=sys.stderr)
            return 1
