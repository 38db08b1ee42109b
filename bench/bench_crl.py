"""Benchmark: revoke one more certificate in a root holding N revocations.

For each N (10k, 100k, 1M by default), in a fresh child process:
seed N revocations by direct SQL, issue the first CRL (cold cache), then
revoke one more certificate several times, each time timing the whole
``Revocations.revoke`` (record, new CRL, store, xdelta answer), and apart:
building+signing the CRL alone and making the delta alone. Peak memory is
tracemalloc's peak during one warm revoke, xdelta's max RSS, and the child's
max RSS (seeding included). The baseline, measured in the same run, is
``openssl ca -gencrl`` on a real openssl CA directory whose index.txt holds
the same N revoked entries; also cryptography's CertificateRevocationListBuilder
where it finishes in reasonable time, and asn1crypto's entry encoder.

Usage: python bench/bench_crl.py [--sizes 10000,100000,1000000] [--repeat 5]
Run from the repository root (or with it on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crl_baselines import builder_baseline, encoder_comparison, openssl_ca, run_measured  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from signer_core.config.x509 import RootConfig
from signer_core.crl.encode import build_crl, encode_entry  # noqa: E402
from signer_core.crl.revocation import Revocations  # noqa: E402
from signer_core.crl.xdelta import make_delta  # noqa: E402
from signer_core.refusal import Refusal  # noqa: E402
from signer_core.roots import Root  # noqa: E402
from signer_core.store import crls  # noqa: E402
from signer_core.store.cadb import CADatabase  # noqa: E402

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest().encode()


def _load_root(key_pem: bytes, where: Path) -> Root:
    """Root 0 as the signer loads it, from root.key and a self-signed root.pem put in ``where``."""
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey), "the bench root key is RSA"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Root")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (where / "root.key").write_bytes(key_pem)
    (where / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Root.load(
        RootConfig(
            id=0,
            name="bench root",
            key=where / "root.key",
            certificate=where / "root.pem",
            passphrase_file=None,
            crl_url="",
            default_digest="sha256",
        )
    )


def _current_crl(revs: Revocations) -> bytes:
    crl = revs.current_crl(0)
    assert crl is not None, "root 0 has issued no CRL"
    return crl


def _serials(count: int) -> list[int]:
    """Random positive serials as the CA issues them (at least 64 random bits)."""
    return [secrets.randbits(127) | 1 << 126 for _ in range(count)]


def _seed(db: CADatabase, serials: list[int]) -> None:
    revoked_at = int((NOW - dt.timedelta(days=30)).timestamp())
    when = dt.datetime.fromtimestamp(revoked_at, UTC)
    expires = int((NOW + dt.timedelta(days=365)).timestamp())
    with db.transaction() as conn:
        for s in serials:
            crls.add_revocation(conn, 0, s, revoked_at, None, expires, encode_entry(s, when))


_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def _issue(db: CADatabase, root: Root, serial: int) -> bytes:
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(root.certificate.subject)
        .public_key(_LEAF_KEY.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .sign(root.private_key, hashes.SHA256())
    )
    digest = hashlib.sha256(str(serial).encode()).digest()
    db.reserve(0, serial, digest, 5)
    db.record_issued(digest, cert)
    return cert.public_bytes(serialization.Encoding.PEM)


def _timed(call, *args):
    start = time.perf_counter()
    value = call(*args)
    return time.perf_counter() - start, value


def child(count: int, repeat: int, work: Path, key_pem: bytes) -> dict:
    """One size, in its own process so that its max RSS is its own."""
    root = _load_root(key_pem, work)
    db = CADatabase(work / "ca.sqlite")
    revs = Revocations(db)
    serials = _serials(count + repeat + 1)
    seed_s, _ = _timed(_seed, db, serials[:count])
    start = time.perf_counter()
    try:
        revs.refresh(root, EMPTY_SHA1, NOW)
        cold_note = "answered in PEM"
    except Refusal as refusal:  # too large for one message; the CRL is issued all the same
        cold_note = f"answer refused: {refusal.code}"
    cold_s = time.perf_counter() - start
    entries = b"".join(entry for _, entry, _ in crls.entries_after(db.connection, 0, 0))
    revoke_s, build_s, delta_s, patch_sizes = [], [], [], []
    for i in range(repeat):
        pem = _issue(db, root, serials[count + i])
        before = _current_crl(revs)
        client = hashlib.sha1(before).hexdigest().encode()
        elapsed, outcome = _timed(revs.revoke, root, pem, client, NOW + dt.timedelta(seconds=i + 1))
        revoke_s.append(elapsed)
        patch_sizes.append(len(outcome.answer))
        after = _current_crl(revs)
        delta_s.append(_timed(make_delta, before, after)[0])
        build_s.append(
            _timed(
                build_crl,
                root.certificate,
                root.private_key,
                "sha256",
                1,
                NOW,
                NOW + dt.timedelta(days=7),
                entries,
            )[0]
        )
    # Peak Python memory of one more warm revoke.
    pem = _issue(db, root, serials[-1])
    before = _current_crl(revs)
    tracemalloc.start()
    answer = revs.revoke(root, pem, hashlib.sha1(before).hexdigest().encode(), NOW).answer
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = _current_crl(revs)
    check = _check(work, before, answer, after, root, count + repeat + 1)
    db.close()
    return {
        "n": count,
        "seed_s": seed_s,
        "cold_issue_s": cold_s,
        "cold_note": cold_note,
        "revoke_s": revoke_s,
        "build_sign_s": build_s,
        "delta_s": delta_s,
        "patch_bytes": statistics.median(patch_sizes),
        "crl_bytes": len(after),
        "traced_peak": traced_peak,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "check": check,
    }


def _check(work: Path, before: bytes, patch: bytes, after: bytes, root: Root, expected: int) -> str:
    """Apply the last answer with the real tool and verify with openssl."""
    (work / "old.der").write_bytes(before)
    (work / "patch").write_bytes(patch)
    subprocess.run(
        ["xdelta", "patch", str(work / "patch"), str(work / "old.der"), str(work / "new.der")],
        check=True,
        capture_output=True,
    )
    if (work / "new.der").read_bytes() != after:
        return "PATCH MISMATCH"
    (work / "root.pem").write_bytes(root.certificate.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(work / "new.der"),
            "-noout",
            "-verify",
            "-CAfile",
            str(work / "root.pem"),
        ],
        capture_output=True,
        check=False,
    )
    listed = len(x509.load_der_x509_crl(after))
    ok = done.returncode == 0 and listed == expected
    return "ok" if ok else f"FAILED verify={done.returncode} listed={listed}/{expected}"


def _med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--builder-max",
        type=int,
        default=100_000,
        help="largest N timed with cryptography's builder",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        key_pem = sys.stdin.buffer.read()
        print(json.dumps(child(args.child, args.repeat, args.work, key_pem)))
        return

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ours_enc, asn1_enc = encoder_comparison(_serials(100_000), NOW)
    print(
        f"entry encoding, 100k entries: ours {ours_enc:.3f} s, asn1crypto {asn1_enc:.3f} s"
        f" (asn1crypto/ours = {asn1_enc / ours_enc:.1f}x)"
    )
    print(f"root key RSA-4096, sha256; medians of {args.repeat} runs\n")
    header = (
        "N",
        "revoke+CRL+answer s",
        "build+sign s",
        "delta s",
        "CRL MB",
        "patch B",
        "peak py MB",
        "xdelta MB",
        "proc MB",
        "openssl gencrl s",
        "openssl MB",
        "gencrl/ours",
        "builder s",
        "check",
    )
    print(" | ".join(header))
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-crl-") as tmp:
            work = Path(tmp)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(size),
                    "--repeat",
                    str(args.repeat),
                    "--work",
                    str(work),
                ],
                input=key_pem,
                capture_output=True,
                check=True,
            )
            ours = json.loads(done.stdout)
            _, xdelta_kb = run_measured(
                [
                    "xdelta",
                    "delta",
                    str(work / "old.der"),
                    str(work / "new.der"),
                    str(work / "patch2"),
                ],
                ok=(0, 1),
            )
            ca = work / "openssl-ca"
            ca.mkdir()
            _load_root(key_pem, ca)  # root.key and root.pem, as openssl.cnf names them
            repeat = max(1, min(args.repeat, 3 if size >= 10**6 else 5))
            base = openssl_ca(ca, _serials(size), NOW, repeat)
        builder = "-"
        if size <= args.builder_max:
            builder = f"{builder_baseline(_serials(size), NOW):.2f}"
        revoke, gencrl = _med(ours["revoke_s"]), _med(base["gencrl_s"])
        print(
            " | ".join(
                [
                    f"{size:,}",
                    f"{revoke:.3f}",
                    f"{_med(ours['build_sign_s']):.3f}",
                    f"{_med(ours['delta_s']):.3f}",
                    f"{ours['crl_bytes'] / 1e6:.1f}",
                    f"{ours['patch_bytes']:.0f}",
                    f"{ours['traced_peak'] / 2**20:.0f}",
                    f"{xdelta_kb / 1024:.0f}",
                    f"{ours['maxrss_kb'] / 1024:.0f}",
                    f"{gencrl:.3f}",
                    f"{base['maxrss_kb'] / 1024:.0f}",
                    f"{gencrl / revoke:.1f}x",
                    builder,
                    ours["check"],
                ]
            ),
            flush=True,
        )
        print(
            f"    seeding {ours['seed_s']:.1f} s; first CRL after start-up (cold cache):"
            f" {ours['cold_issue_s']:.3f} s ({ours['cold_note']})",
            flush=True,
        )


if __name__ == "__main__":
    main()
