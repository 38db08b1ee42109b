"""Certificates per second through the whole pipeline, against the raw signing rate.

    python bench/bench_pipeline.py [--requests 200] [--prefill 1000000]

For an RSA-4096 root and a P-256 root: the web-side client sends distinct
PKCS#10 requests one at a time over a pseudo-terminal cable to the comm
daemon, which spools them for the signer daemon, which checks, signs,
records in the CA database and answers. Beside it, the raw rate at which the
same key signs a certificate-sized body in this process: the physical limit.
Then the same pipeline figure again with ``--prefill`` certificates already
in the database, to show that the cost per certificate does not grow with it.
Medians of ``--rounds`` rounds; ratios against the raw rate of the same run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

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
from signerctl.demo.run import daemons, start_cable, wait_until_served  # noqa: E402
from spool.safeio import commit_file  # noqa: E402
from webhost.client import WebClient  # noqa: E402

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


def raw_rate(key, seconds: float = 2.0) -> float:
    body = secrets.token_bytes(900)  # about a TBSCertificate
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if isinstance(key, rsa.RSAPrivateKey):
            key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.sign(body, ec.ECDSA(hashes.SHA256()))
        n += 1
    return n / (time.perf_counter() - start)


def pipeline_rate(link: str, root: int, requests: list[bytes]) -> float:
    with WebClient(link) as client:
        start = time.perf_counter()
        for i, csr in enumerate(requests):
            response = client.sign_x509(
                root, 5, 8, 365, csr, f"DNS:h{i}.bench.example", f"/CN=h{i}.bench.example"
            )
            assert response.ok, response.reason
        return len(requests) / (time.perf_counter() - start)


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


def measure(
    directory: Path, users: Users, label: str, root: int, work: list[list[bytes]]
) -> list[float]:
    cable = start_cable()
    users.give_to_comm(cable.appliance_end)
    config = create_demo_ca(directory, users, cable.appliance_end)
    supervisor = daemons(config, directory / "log")
    supervisor.start()
    try:
        wait_until_served(cable.web_end)
        return [pipeline_rate(cable.web_end, root, batch) for batch in work]
    finally:
        supervisor.stop()
        cable.process.terminate()
        cable.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefill", type=int, default=1_000_000)
    args = parser.parse_args()
    users = system_users() if os.geteuid() == 0 else Users()
    base = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir="/tmp"))
    base.chmod(0o755)
    try:
        directory = base / "ca"
        create_demo_ca(directory, users, "/dev/null")
        keys = install_roots(directory)
        (directory / "log").mkdir()
        needed = 2 * len(ROOTS) * args.rounds
        print(f"making {needed * args.requests} requests...", flush=True)
        pool = [csrs(args.requests) for _ in range(needed)]
        print(f"{'root':9} {'database':>12} {'pipeline/s':>11} {'raw sign/s':>11} {'ratio':>7}")
        for prefilled in (0, args.prefill):
            if prefilled:
                print(f"prefilling {prefilled} certificates...", flush=True)
                started = time.perf_counter()
                prefill(directory / "lib" / "ca.sqlite", prefilled, users)
                print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
            for label, (root, _) in ROOTS.items():
                rates = measure(
                    directory, users, label, root, [pool.pop() for _ in range(args.rounds)]
                )
                raw = statistics.median(raw_rate(keys[label]) for _ in range(args.rounds))
                rate = statistics.median(rates)
                with closing(open_readonly(directory / "lib" / "ca.sqlite")) as conn:
                    rows = certificate_summary(conn).issued
                print(
                    f"{label:9} {rows:>12} {rate:>11.1f} {raw:>11.1f} {rate / raw:>7.3f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
