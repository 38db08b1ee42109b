"""Import time of an OpenSSL CA index: ``python bench/bench_import.py [--lines N]``.

Builds an OpenSSL CA directory of N index lines (default 1,000,000), one
certificate file per line in ``newcerts/`` and one revocation in 64, then
times ``signerctl.migrate.openssl_ca.import_openssl`` into a fresh database, each run
in a child process so its peak memory (ru_maxrss) is its own.

Certificates are made quickly and for real: one TBSCertificate from
cryptography with a 9-byte serial, whose serial bytes are replaced for each
line and which is signed again by a P-256 root (ECDSA signs fast; its
verification, 70 us here, is slower than an RSA-2048 root's 20 us, so real
RSA roots import faster); every file is a valid certificate that the import
checks (signature, serial, subject, expiry).

The import checks the certificates in ``os.cpu_count()`` worker processes
(``signerctl.migrate.checks``); ``import-1`` is the same import with the
checks in its own process, for the ratio.

Baselines measured in the same run, on the same directory:

- ``parse``: reading and parsing every index line, nothing else;
- ``openssl``: ``openssl ca -updatedb`` loading and rewriting the index.

Figures are medians of ``--repeat`` runs (default 3).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signerctl.migrate.index import format_line, oneline, parse_line

UTC = dt.UTC
FIRST_SERIAL = 1 << 64  # every serial from here to 2**65 is 9 content bytes
REVOKE_EVERY = 64
CNF = """[ca]
default_ca = old
[old]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/cacert.pem
private_key = $dir/cakey.pem
serial = $dir/serial
default_md = default
policy = anything
[anything]
commonName = supplied
"""


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets


def _template(root_key, root_name: x509.Name) -> tuple[bytes, int, bytes]:
    """A leaf's TBS, the offset of its serial's content, and its signature algorithm DER."""
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench user")]))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(FIRST_SERIAL)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=730))
        .sign(root_key, hashes.SHA256())
    )
    tbs = cert.tbs_certificate_bytes
    marker = b"\x02\x09" + FIRST_SERIAL.to_bytes(9, "big")
    offset = tbs.index(marker) + 2
    der = cert.public_bytes(serialization.Encoding.DER)
    at = der.index(tbs) + len(tbs)
    algorithm = der[at : at + 2 + der[at + 1]]  # SEQUENCE { ecdsa-with-SHA256 }
    return tbs, offset, algorithm


def build(directory: Path, lines: int) -> None:
    """The CA directory: root, index.txt, newcerts/, serial."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Root")])
    now = dt.datetime.now(UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    (directory / "newcerts").mkdir(parents=True)
    (directory / "cacert.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (directory / "cakey.pem").write_bytes(
        root_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "openssl.cnf").write_text(CNF.format(dir=directory))
    tbs, offset, algorithm = _template(root_key, name)
    ecdsa = ec.ECDSA(hashes.SHA256())
    first = x509.load_der_x509_certificate(tbs_to_cert(tbs, algorithm, root_key.sign(tbs, ecdsa)))
    expires = getattr(first, "not_valid_after_utc", None) or first.not_valid_after.replace(
        tzinfo=UTC
    )
    subject = oneline(first.subject.public_bytes())
    revoked_at = dt.datetime(2026, 6, 1, tzinfo=UTC)
    newcerts = directory / "newcerts"
    with (directory / "index.txt").open("w") as index:
        for i in range(lines):
            serial = FIRST_SERIAL + i
            body = tbs[:offset] + serial.to_bytes(9, "big") + tbs[offset + 9 :]
            der = tbs_to_cert(body, algorithm, root_key.sign(body, ecdsa))
            text = format(serial, "X")
            text = "0" + text if len(text) % 2 else text
            (newcerts / f"{text}.pem").write_bytes(pem(der))
            revoked = i % REVOKE_EVERY == 0
            index.write(
                format_line(
                    "R" if revoked else "V",
                    expires,
                    revoked_at if revoked else None,
                    None,
                    serial,
                    subject,
                )
            )
            index.write("\n")
    (directory / "serial").write_text(format(FIRST_SERIAL + lines, "X") + "\n")
    (directory / "index.txt.attr").write_text("unique_subject = no\n")


def tbs_to_cert(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    bits = b"\x03" + bytes((len(signature) + 1,)) + b"\x00" + signature
    body = tbs + algorithm + bits
    return _der_header(0x30, len(body)) + body


def pem(der: bytes) -> bytes:
    flat = base64.b64encode(der)
    lines = b"\n".join(flat[i : i + 64] for i in range(0, len(flat), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


# -- the measured runs (each in a child) ---------------------------------


def child_import(directory: Path, database: Path, workers: int | None = None) -> dict:
    from signer_core.store.cadb import CADatabase
    from signerctl.migrate.openssl_ca import import_openssl

    root = x509.load_pem_x509_certificate((directory / "cacert.pem").read_bytes())
    db = CADatabase(database)
    start = time.perf_counter()
    totals = import_openssl(db, 0, directory, root, progress=sys.stderr, workers=workers)
    seconds = time.perf_counter() - start
    db.close()
    return {"seconds": seconds, "lines": totals.lines, "revoked": totals.revoked}


def child_import_alone(directory: Path, database: Path) -> dict:
    return child_import(directory, database, workers=1)


def child_parse(directory: Path, _database: Path) -> dict:
    start = time.perf_counter()
    with (directory / "index.txt").open("rb") as f:
        for number, raw in enumerate(f, 1):
            parse_line(number, raw.rstrip(b"\n").decode("utf-8"))
    return {"seconds": time.perf_counter() - start}


def child_openssl(directory: Path, _database: Path) -> dict:
    start = time.perf_counter()
    subprocess.run(
        ["openssl", "ca", "-config", str(directory / "openssl.cnf"), "-updatedb"],
        check=True,
        capture_output=True,
    )
    return {
        "seconds": time.perf_counter() - start,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


CHILDREN = {
    "import": child_import,
    "import-1": child_import_alone,
    "parse": child_parse,
    "openssl": child_openssl,
}
KINDS = ("parse", "openssl", "import-1", "import")


def run_child(kind: str, directory: Path, database: Path) -> dict:
    if database.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(directory), str(database)],
        stdout=subprocess.PIPE,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="work directory (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated CA directory")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, directory, database = args.child
        result = CHILDREN[kind](Path(directory), Path(database))
        result.setdefault("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        print(json.dumps(result))
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-import-", dir="/tmp"))
    ca_dir, database = work / "ca", work / "ca.sqlite"
    try:
        start = time.perf_counter()
        build(ca_dir, args.lines)
        print(f"built {args.lines} lines and certificates in {time.perf_counter() - start:.1f} s")
        results = {
            kind: [run_child(kind, ca_dir, database) for _ in range(args.repeat)] for kind in KINDS
        }
        median = {
            kind: statistics.median(r["seconds"] for r in runs) for kind, runs in results.items()
        }
        peak = max(r["maxrss_kib"] for r in results["import"])
        print(f"index of {args.lines} lines, {len(results['import'])} runs, medians:")
        for kind in KINDS:
            print(f"  {kind:8s} {median[kind]:8.2f} s  {args.lines / median[kind]:10.0f} lines/s")
        print(
            f"  import peak memory {peak / 1024:.0f} MiB;"
            f" import / parse = {median['import'] / median['parse']:.1f}x,"
            f" import / openssl -updatedb = {median['import'] / median['openssl']:.1f}x,"
            f" import-1 / import = {median['import-1'] / median['import']:.2f}x"
            f" ({os.cpu_count()} cores)"
        )
        print(
            f"  database {database.stat().st_size / 2**20:.0f} MiB,"
            f" revoked {results['import'][0]['revoked']}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
