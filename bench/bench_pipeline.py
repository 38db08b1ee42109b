"""A certificate's cost through the whole pipeline, against its signature alone.

    python bench/bench_pipeline.py [--requests 100] [--rounds 3] [--prefill 1000000] [--token]

For an RSA-4096 root and a P-256 root: the web-side client sends distinct
PKCS#10 requests one at a time over a pseudo-terminal cable to the comm
daemon, which spools them for the signer daemon, which checks, signs,
records in the CA database and answers. Printed for each root, beside the
same key's signature of a certificate-sized body in this process (the
physical limit), measured in the same run:

- latency: the median time of one request end to end as the web-side
  client sees it, against the median time of one signature, and the
  difference (what the pipeline adds);
- commit: the median time of one durable commit of an audit record in a
  scratch CA database beside the real one (WAL, synchronous=FULL): the cost
  of the one flush a certificate needs, on this disk at this moment; "rest"
  is the latency less the signature and that commit;
- rate: certificates per second, against the raw signing rate, and the ratio;
- flushes: fsync, fdatasync, sync_file_range, msync, sync and syncfs calls
  of both daemons per certificate, counted by ``strace -c`` over one more
  round (not timed: strace slows the daemons). Skipped without strace or,
  when not root, where ptrace is not allowed.

With ``--token``, the same again for an RSA-4096 and a P-256 key held in a
SoftHSM2 token (``bench/pipeline_tokens.py``), beside the file keys of the
same types: the signature column is then the token's.

As root the spool is a tmpfs of its own, as the package and the demo
mount it (``signerctl.demo.run.spool_filesystem``); otherwise it stays on
the disk of ``/tmp``, and the figures then hold a cost the appliance never
pays.

Then the same latency and rate again with ``--prefill`` certificates
already in the database (0: skipped), to show that the cost per certificate
does not grow with it. Medians of ``--rounds`` rounds; the load average is
printed with each line.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from pipeline_tokens import TOKEN_ROOTS, BenchToken  # noqa: E402  (beside this script)

from comm_handler.transfer import LinkError  # noqa: E402
from signer_core.store.audit import AuditLog  # noqa: E402
from signer_core.store.cadb import (  # noqa: E402
    CADatabase,
    SignedElsewhere,
    certificate_summary,
)
from signer_core.store.schema import open_readonly  # noqa: E402
from signerctl.demo.ca import (  # noqa: E402
    Users,
    _ca_certificate,
    _key_pem,
    _name,
    create_demo_ca,
    system_users,
)
from signerctl.demo.run import (  # noqa: E402
    daemons,
    spool_filesystem,
    start_cable,
    wait_until_served,
)
from spool.safeio import commit_file  # noqa: E402
from webhost.client import WebClient  # noqa: E402
from webhost.ptyport import PtyPort  # noqa: E402

ROOTS = {
    "RSA-4096": (0, lambda: rsa.generate_private_key(65537, 4096)),
    "P-256": (1, lambda: ec.generate_private_key(ec.SECP256R1())),
}


def csrs(n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


def install_roots(directory: Path) -> dict[str, object]:
    """Replace the demo roots by one RSA-4096 (root 0) and one P-256 (root 1) self-signed root."""
    keys = {}
    for label, (root_id, make) in ROOTS.items():
        key = make()
        name = _name(f"Bench {label} root")
        cert = _ca_certificate(key, name, key, name, 3650, None)
        commit_file(directory / "keys", f"root{root_id}.key", _key_pem(key), 0o600)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        commit_file(directory / "certs", f"root{root_id}.crt", pem, 0o644)
        keys[label] = key
    return keys


FLUSH_CALLS = "fsync,fdatasync,sync_file_range,msync,sync,syncfs"
STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def signatures(key, seconds: float = 2.0) -> list[float]:
    """Durations of single signatures of a certificate-sized body, for ``seconds``."""
    body = secrets.token_bytes(900)  # about a TBSCertificate
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        if isinstance(key, rsa.RSAPrivateKey):
            key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.sign(body, ec.ECDSA(hashes.SHA256()))
        times.append(time.perf_counter() - start)
    return times


def commit_times(directory: Path, count: int = 200) -> list[float]:
    """Durations of ``count`` durable commits of one audit record, in a scratch CA database."""
    path = directory / "bench-commit.sqlite"
    db = CADatabase(path)
    audit = AuditLog(db.connection)
    try:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            with db.transaction():
                audit.append("bench", filler=secrets.token_hex(700))
            times.append(time.perf_counter() - start)
        return times
    finally:
        db.close()
        for leftover in directory.glob(path.name + "*"):
            leftover.unlink()


def pipeline(link: str | PtyPort, root: int, requests: list[bytes]) -> tuple[float, list[float]]:
    """Certificates per second over ``requests``, and each request's duration."""
    times: list[float] = []
    with WebClient(link) as client:
        first = time.perf_counter()
        for i, csr in enumerate(requests):
            start = time.perf_counter()
            response = client.sign_x509(
                root, 5, 8, 365, csr, f"DNS:h{i}.bench.example", f"/CN=h{i}.bench.example"
            )
            times.append(time.perf_counter() - start)
            assert response.ok, response.reason
        return len(requests) / (time.perf_counter() - first), times


def count_flushes(pids: list[int], work) -> int | None:
    """Flush calls made by ``pids`` (and their threads and children) while ``work()`` runs."""
    if shutil.which("strace") is None:
        return None
    tracers = [
        subprocess.Popen(
            ["strace", "-f", "-c", "-e", f"trace={FLUSH_CALLS}", "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in pids
    ]
    time.sleep(1.0)  # strace attaches
    try:
        work()
    finally:
        outputs = []
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            outputs.append(tracer.communicate(timeout=30)[1])
    if any("Operation not permitted" in out for out in outputs):
        return None
    return sum(
        int(m.group(1))
        for out in outputs
        for m in map(STRACE_ROW.match, out.splitlines())
        if m and m.group(2) != "total"
    )


def prefill(database: Path, count: int, owner: Users) -> None:
    """Add ``count`` issued-certificate rows (synthetic DER) to the CA database."""
    db = CADatabase(database)
    now = int(time.time())
    db.add_signed_elsewhere(
        SignedElsewhere(
            i % 2,
            secrets.randbits(128),
            secrets.token_bytes(32),
            5,
            now,
            f"CN=prefill{i}",
            now,
            now + 86400 * 365,
            secrets.token_bytes(700),
        )
        for i in range(count)
    )
    db.close()
    for path in database.parent.glob(database.name + "*"):
        owner.give_to_signer(path)


@dataclass
class Figures:
    rate: float  # certificates/s, median of the rounds
    latency: float  # s, median over every request of every round
    flushes: float | None  # per certificate, one extra round under strace


def measure(
    directory: Path,
    users: Users,
    root: int,
    work: list[list[bytes]],
    traced: list[bytes] | None,
    token: BenchToken | None = None,
    link: str = "relay",
) -> Figures:
    cable = open_link(link)
    appliance_end, web_end = cable.appliance_end, cable.web_end
    users.give_to_comm(appliance_end)
    config = create_demo_ca(directory, users, appliance_end)
    if token is not None:
        token.configure(config)
    supervisor = daemons(config, directory / "log")
    supervisor.start()
    try:
        if isinstance(web_end, str):
            wait_until_served(web_end)
        else:
            served_on(web_end)
        rounds = [pipeline(web_end, root, batch) for batch in work]
        flushes = None
        if traced:
            pids = [supervisor.pid(name) for name in ("signer-core", "signer-comm")]
            count = count_flushes(pids, lambda: pipeline(web_end, root, traced))
            flushes = None if count is None else count / len(traced)
        return Figures(
            statistics.median(rate for rate, _ in rounds),
            statistics.median(t for _, times in rounds for t in times),
            flushes,
        )
    finally:
        supervisor.stop()
        cable.close()


@dataclass
class BenchLink:
    appliance_end: str  # the device path the comm daemon opens
    web_end: str | PtyPort  # what the client opens: a path, or the pty master itself
    close: Callable[[], None]


def open_link(kind: str) -> BenchLink:
    """The demo's null modem ("relay": two ptys and a relay process, as the tests
    use), or one pty whose master the client holds ("pty": no relay's cost)."""
    if kind == "relay":
        cable = start_cable()

        def stop() -> None:
            cable.process.terminate()
            cable.process.wait()

        return BenchLink(cable.appliance_end, cable.web_end, stop)
    pty = PtyPort()
    return BenchLink(pty.name, pty, pty.close)


def served_on(port: PtyPort, timeout: float = 30.0) -> None:
    """Keep-alives on ``port`` until one is answered (the comm handler's first open
    flushes what came before it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with WebClient(port, ready_timeout=1.0, response_timeout=5.0) as client:
                if client.nul().ok:
                    return
        except LinkError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def main() -> None:
    # The daemons must run this tree, not whichever one the environment installed.
    tree = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (tree, os.getenv("PYTHONPATH"))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefill", type=int, default=1_000_000)
    parser.add_argument("--token", action="store_true", help="also keys in a SoftHSM2 token")
    parser.add_argument(
        "--link",
        choices=("relay", "pty"),
        default="relay",
        help="the demo's null modem (two ptys and a relay process, as the tests use) or one pty"
        " whose master the client holds (no relay: only the daemons' own cost)",
    )
    args = parser.parse_args()
    users = system_users() if os.geteuid() == 0 else Users()
    base = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir="/tmp"))
    base.chmod(0o755)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        directory = base / "ca"
        # As root the spool is a tmpfs of its own, as the package and the demo mount
        # it: on a disk, each of a certificate's four spool commits costs some
        # 150-300 us more, which the appliance never pays.
        cleanup.enter_context(spool_filesystem(directory, sys.stdout))
        create_demo_ca(directory, users, "/dev/null")
        keys = install_roots(directory)
        roots = {label: root for label, (root, _) in ROOTS.items()}
        token = BenchToken(directory, users) if args.token else None
        if token is not None:
            keys.update(token.keys)
            roots.update({label: rid for label, (rid, _, _) in TOKEN_ROOTS.items()})
        (directory / "log").mkdir()
        stages = (0, args.prefill) if args.prefill else (0,)
        needed = len(stages) * len(roots) * (args.rounds + 1)
        print(f"making {needed * args.requests} requests...", flush=True)
        pool = [csrs(args.requests) for _ in range(needed)]
        print(
            f"{'root':14} {'database':>9} {'latency':>8} {'sign':>7} {'commit':>7} {'rest':>6}"
            f" {'certs/s':>8} {'raw/s':>7} {'ratio':>6} {'flushes':>8} {'load':>5}"
        )
        for prefilled in stages:
            if prefilled:
                print(f"prefilling {prefilled} certificates...", flush=True)
                started = time.perf_counter()
                prefill(directory / "lib" / "ca.sqlite", prefilled, users)
                print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
            for label, root in roots.items():
                work = [pool.pop() for _ in range(args.rounds)]
                figures = measure(directory, users, root, work, pool.pop(), token, args.link)
                signs = [t for _ in range(args.rounds) for t in signatures(keys[label])]
                sign = statistics.median(signs)
                raw = 1 / statistics.mean(signs)
                commit = statistics.median(commit_times(directory / "lib"))
                rest = figures.latency - sign - commit
                with closing(open_readonly(directory / "lib" / "ca.sqlite")) as conn:
                    rows = certificate_summary(conn).issued
                flushes = "-" if figures.flushes is None else f"{figures.flushes:.2f}"
                print(
                    f"{label:14} {rows:>9} {figures.latency * 1000:>6.1f}ms {sign * 1000:>5.1f}ms"
                    f" {commit * 1000:>5.2f}ms {rest * 1000:>4.1f}ms {figures.rate:>8.1f}"
                    f" {raw:>7.1f} {figures.rate / raw:>6.3f} {flushes:>8}"
                    f" {os.getloadavg()[0]:>5.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
