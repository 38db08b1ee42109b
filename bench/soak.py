"""Soak: the whole appliance for N minutes, every request kind, random link faults.

Not part of the test suite (30 minutes is the acceptance run). It lays out a
demo CA, joins both daemons (under their own users when run as root, restarted
by the supervisor if they die) to an in-process null-modem cable whose fault
injection damages the line at random (flipped and dropped bytes, noise, a cut
line mended a moment later), and plays the web host: X.509 signing (new
requests and repeats of old ones), OpenPGP certification, revocation, CRL
refresh and keep-alives, each retried as the deployed client does (a link
failure or an empty payload 1 is a failed try; three tries).

At the end it checks what must hold whatever happened: a repeated request got
either a new certificate (a renewal: its last answer was delivered) or the
last one it got (a lost ACK), never an older or a revoked one; the database
holds every certificate received and no reserved row, the audit chain
verifies, the spool holds nothing stuck, the CRL the client holds verifies and
lists every revoked serial, and neither daemon restarted. It prints requests
per second, latency percentiles per kind and each daemon's peak memory.

Usage: python bench/soak.py --minutes 30 [--fault-rate 0.02] [--dir DIR] [--seed N]
Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from signer_core.openpgp.gpg import stop_agent
from signer_core.x509.compat import verify_issued_by
from signerctl.demo.ca import Users, create_demo_ca, system_users
from signerctl.demo.nullmodem import Direction, NullModem
from signerctl.demo.rig import (
    audit_verdict,
    cert_rows,
    deployed_retry,
    peak_kib,
    rss_kib,
    sign_x509,
    spool_names,
    wait_spool_settled,
)
from signerctl.demo.run import daemons, demo_request, wait_until_served
from webhost.client import ClientError, WebClient

KINDS = {"x509": 35, "x509-repeat": 10, "openpgp": 10, "revoke": 10, "refresh": 10, "nul": 25}
RESPONSE_TIMEOUT = 10.0  # an answer takes well under a second; a lost one costs this
QUIET_AFTER_FAILURE = 5.5  # the line stays quiet past the peer's 5 s chunk timeout
OPENPGP_KEYS = 4


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retried: int = 0
    faults: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rss_peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def make_openpgp_keys(home: Path, count: int) -> list[bytes]:
    home.mkdir(mode=0o700)
    gpg = [
        "gpg",
        "--batch",
        "--homedir",
        str(home),
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    keys = []
    for i in range(count):
        uid = f"Soak User {i} <soak{i}@example.org>"
        subprocess.run(
            [*gpg, "--quick-gen-key", uid, "ed25519", "default", "never"],
            check=True,
            capture_output=True,
        )
        keys.append(
            subprocess.run(
                [*gpg, "--armor", "--export", uid], check=True, capture_output=True
            ).stdout
        )
    stop_agent(home)
    return keys


class Fault:
    """Damage the next exchange at random, through the cable's own fault injection."""

    def __init__(self, modem: NullModem, rng: random.Random, rate: float, stats: Stats) -> None:
        self.modem, self.rng, self.rate, self.stats = modem, rng, rate, stats

    def maybe(self) -> None:
        if self.rng.random() >= self.rate:
            return
        direction = self.rng.choice([Direction.A_TO_B, Direction.B_TO_A])
        at = self.modem.position(direction) + self.rng.randint(1, 300)
        kind = self.rng.choice(["flip", "drop", "noise", "cut"])
        self.stats.faults[kind] += 1
        if kind == "flip":
            self.modem.flip(direction, at, self.rng.randint(1, 255))
        elif kind == "drop":
            self.modem.drop(direction, at)
        elif kind == "noise":
            self.modem.inject(direction, self.rng.randbytes(self.rng.randint(1, 64)))
        else:
            self.modem.cut(direction, at)
            threading.Timer(self.rng.uniform(0.05, 2.0), self.modem.mend, (direction,)).start()


class WebHost:
    """The web side: sends one request of a random kind and checks the answer."""

    def __init__(
        self, client: WebClient, ca: Path, work: Path, rng: random.Random, openpgp_keys: list[bytes]
    ) -> None:
        self.client, self.ca, self.work, self.rng = client, ca, work, rng
        self.root_cert = x509.load_pem_x509_certificate((ca / "certs" / "root0.crt").read_bytes())
        self.openpgp_keys = openpgp_keys
        self.crl_path = work / "root0.crl"
        self.issued: dict[bytes, list[bytes]] = {}  # CSR -> certificates received, in order
        self.unrevoked: list[bytes] = []
        self.revoked: set[int] = set()
        self.count = 0
        self.errors: list[
            str
        ] = []  # wrong answers: a second certificate, a CRL that does not apply

    def _check_cert(self, csr: bytes, pem: bytes) -> None:
        cert = x509.load_pem_x509_certificate(pem)
        verify_issued_by(cert, self.root_cert)
        history = self.issued.setdefault(csr, [])
        if pem in history[:-1]:
            raise AssertionError("a repeated request was answered with an older certificate")
        if cert.serial_number in self.revoked:
            raise AssertionError("a repeated request was answered with a revoked certificate")
        if pem not in history:
            history.append(pem)
            self.unrevoked.append(pem)

    def one(self, kind: str) -> tuple[str, int]:
        """Send one request of ``kind``: (kind sent, tries it took; 0 if it failed three times)."""
        if kind == "x509-repeat" and self.issued:
            csr = self.rng.choice(list(self.issued))
        else:
            kind, csr = ("x509", demo_request()) if kind.startswith("x509") else (kind, b"")
        if kind == "revoke" and not self.unrevoked:
            kind = "refresh"
        calls = {
            "x509": lambda: sign_x509(self.client, csr, "soak"),
            "x509-repeat": lambda: sign_x509(self.client, csr, "soak"),
            "openpgp": lambda: self.client.sign_openpgp(self.rng.choice(self.openpgp_keys), 30),
            "nul": self.client.nul,
            "refresh": lambda: self.client.refresh_crl(
                0, self.crl_path, self.ca / "certs" / "root0.crt"
            ),
        }
        if kind == "revoke":
            pem = self.unrevoked.pop(self.rng.randrange(len(self.unrevoked)))
            calls["revoke"] = lambda: self.client.revoke(
                0, pem, self.crl_path, self.ca / "certs" / "root0.crt"
            )
        outcome = deployed_retry(calls[kind], (LinkError, FrameError), pause=QUIET_AFTER_FAILURE)
        self.count += 1
        answer = outcome.response
        if answer is None or not answer.ok:
            if kind == "revoke":
                self.unrevoked.append(pem)
            return kind, 0
        if kind.startswith("x509"):
            self._check_cert(csr, answer.payload1)
        elif kind == "openpgp" and not answer.payload1.startswith(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
        ):
            raise AssertionError("OpenPGP answer is not an armoured key")
        elif kind == "revoke":
            self.revoked.add(x509.load_pem_x509_certificate(pem).serial_number)
        return kind, outcome.tries


def sample_memory(supervisor, stats: Stats, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for name, proc in supervisor.processes.items():
            try:
                stats.rss_peak[name] = max(
                    stats.rss_peak[name], rss_kib(proc.pid), peak_kib(proc.pid)
                )
            except (OSError, ProcessLookupError):
                pass


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"p50 {pick(0.5) * 1000:7.0f}  p90 {pick(0.9) * 1000:7.0f}  "
        f"p99 {pick(0.99) * 1000:7.0f}  max {ordered[-1] * 1000:7.0f} ms"
    )


def final_checks(host: WebHost, ca: Path, supervisor) -> list[str]:
    problems = list(host.errors)
    db = ca / "lib" / "ca.sqlite"
    try:
        wait_spool_settled(ca / "spool", 60)
    except AssertionError as exc:
        problems.append(str(exc))
    rows = cert_rows(db)
    states = [state for _, _, state, _ in rows]
    if "reserved" in states:
        problems.append(f"{states.count('reserved')} reserved rows left")
    ders = {der for *_, der in rows}
    held = [pem for pems in host.issued.values() for pem in pems]
    for pem in held:
        if x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) not in ders:
            problems.append("a certificate the client holds is not in the database")
            break
    if len(rows) < len(held):
        problems.append(f"{len(rows)} rows for {len(held)} certificates received")
    verdict = audit_verdict(db)
    if not verdict.ok:
        problems.append(f"audit chain: {verdict.problem}")
    if spool_names(ca / "spool", "corrupt"):
        problems.append("entries in spool/corrupt")
    if host.crl_path.exists():
        crl = x509.load_der_x509_crl(host.crl_path.read_bytes())
        listed = {r.serial_number for r in crl}
        if not host.revoked <= listed:
            problems.append(
                f"{len(host.revoked - listed)} revoked serials missing from the CRL held"
            )
    if any(supervisor.restarts.values()):
        problems.append(f"daemon restarts: {supervisor.restarts}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-rate", type=float, default=0.02, help="share of requests damaged")
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: a new one in /tmp)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the link's own warnings on each injected fault
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    work = args.dir or Path(tempfile.mkdtemp(prefix="signer-soak-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    print(
        f"soak: {args.minutes:g} min, fault rate {args.fault_rate:g}, seed {seed}, in {work}",
        flush=True,
    )
    users = system_users() if os.geteuid() == 0 else Users()
    stats = Stats()
    stop = threading.Event()
    with NullModem() as modem:
        users.give_to_comm(modem.a_path)
        config = create_demo_ca(work / "ca", users, modem.a_path)
        (work / "log").mkdir(exist_ok=True)
        supervisor = daemons(config, work / "log")
        supervisor.start()
        sampler = threading.Thread(
            target=sample_memory, args=(supervisor, stats, stop), daemon=True
        )
        try:
            wait_until_served(modem.b_path)
            sampler.start()
            keys = make_openpgp_keys(work / "gnupg", OPENPGP_KEYS)
            fault = Fault(modem, rng, args.fault_rate, stats)
            with WebClient(modem.b_path, response_timeout=RESPONSE_TIMEOUT) as client:
                host = WebHost(client, work / "ca", work, rng, keys)
                started = time.monotonic()
                end = started + args.minutes * 60
                next_report = started + 60
                while time.monotonic() < end:
                    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
                    fault.maybe()
                    t0 = time.monotonic()
                    try:
                        kind, tries = host.one(kind)
                    except (AssertionError, ClientError, ValueError) as exc:
                        host.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                        tries = 0
                    if tries:
                        stats.latencies[kind].append(time.monotonic() - t0)
                        stats.retried += tries > 1
                    else:
                        stats.failed[kind] += 1
                    if time.monotonic() >= next_report:
                        next_report += 60
                        rate = host.count / (time.monotonic() - started)
                        print(
                            f"  {(time.monotonic() - started) / 60:4.1f} min: {host.count} requests, "
                            f"{rate:.1f}/s",
                            flush=True,
                        )
                elapsed = time.monotonic() - started
                modem.mend()
            stop.set()
            problems = final_checks(host, work / "ca", supervisor)
        finally:
            stop.set()
            supervisor.stop()
    report(host, stats, elapsed, problems)
    if not args.keep and args.dir is None and not problems:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


def report(host: WebHost, stats: Stats, elapsed: float, problems: list[str]) -> None:
    answered = sum(len(v) for v in stats.latencies.values())
    print(
        f"\n{host.count} requests in {elapsed:.0f} s: {host.count / elapsed:.2f} requests/s, "
        f"{answered} answered, {sum(stats.failed.values())} failed after 3 tries, "
        f"{stats.retried} needed a retry"
    )
    print(f"faults injected: {dict(stats.faults)}")
    print("latency (end to end, retries included):")
    for kind in KINDS:
        values = stats.latencies.get(kind, [])
        print(f"  {kind:12s} n={len(values):5d}  {percentiles(values)}")
    print(
        f"  {'all':12s} n={answered:5d}  "
        f"{percentiles([v for vs in stats.latencies.values() for v in vs])}"
    )
    for name, kib in sorted(stats.rss_peak.items()):
        print(f"peak memory {name}: {kib / 1024:.1f} MiB")
    print(f"distinct X.509 requests answered: {len(host.issued)}, revoked: {len(host.revoked)}")
    print("checks: " + ("all hold" if not problems else "FAILED\n  " + "\n  ".join(problems)))


if __name__ == "__main__":
    sys.exit(main())
