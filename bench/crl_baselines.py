"""The baselines bench_crl.py measures our revocation against, in the same run:
``openssl ca -gencrl``, cryptography's CRL builder, asn1crypto's entry encoder."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.crl.encode import encode_entry


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


_OPENSSL_CNF = """
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
certificate = $dir/root.pem
private_key = $dir/root.key
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 7
crl_extensions = crl_ext
unique_subject = no
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def run_measured(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
    """Wall time and max RSS (KiB) of a tool, through GNU time so that the
    RSS is the tool's own and not that of the Python process forking it."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss=%M", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode()[-300:]}")
    last = done.stderr.decode().strip().splitlines()[-1]
    return elapsed, int(last.removeprefix("maxrss="))


def openssl_ca(ca: Path, serials: list[int], now: dt.datetime, repeat: int) -> dict:
    """``openssl ca -gencrl`` in ``ca`` (holding root.key and root.pem) over an
    index.txt that lists ``serials`` as revoked."""
    count = len(serials)
    (ca / "crlnumber").write_text("01\n")
    (ca / "index.txt.attr").write_text("unique_subject = no\n")
    (ca / "openssl.cnf").write_text(_OPENSSL_CNF.format(dir=ca))
    expiry = (now + dt.timedelta(days=365)).strftime("%y%m%d%H%M%SZ")
    revoked = (now - dt.timedelta(days=30)).strftime("%y%m%d%H%M%SZ")
    with open(ca / "index.txt", "w") as index:
        for serial in serials:
            index.write(f"R\t{expiry}\t{revoked}\t{serial:X}\tunknown\t/CN=leaf\n")
    times, peaks = [], []
    for _ in range(repeat):
        elapsed, peak = run_measured(
            [
                "openssl",
                "ca",
                "-config",
                str(ca / "openssl.cnf"),
                "-gencrl",
                "-out",
                str(ca / "crl.pem"),
                "-batch",
            ]
        )
        times.append(elapsed)
        peaks.append(peak)
    listed = len(x509.load_pem_x509_crl((ca / "crl.pem").read_bytes()))
    assert listed == count, (listed, count)
    return {"gencrl_s": times, "maxrss_kb": max(peaks)}


def builder_baseline(serials: list[int], now: dt.datetime) -> float:
    """cryptography's builder, one add_revoked_certificate per entry."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Root")])
    start = time.perf_counter()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    builder.sign(key, hashes.SHA256())
    return time.perf_counter() - start


def encoder_comparison(serials: list[int], now: dt.datetime) -> tuple[float, float]:
    """Seconds to encode an entry for each of ``serials``: ours, then asn1crypto's."""
    from asn1crypto import crl as asn1_crl

    ours = _timed(lambda: [encode_entry(s, now) for s in serials])
    theirs = _timed(
        lambda: [
            asn1_crl.RevokedCertificate(
                {"user_certificate": s, "revocation_date": asn1_crl.Time({"utc_time": now})}
            ).dump()
            for s in serials
        ]
    )
    return ours, theirs
