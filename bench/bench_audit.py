"""The audit log with its Merkle tree: append cost, proof size and time, verify, at 10^3 to 10^6 records.

Run from the project root: ``python bench/bench_audit.py [--sizes 1000,100000,1000000]
[--repeat 300] [--dir DIR]``. For each size a CA database is filled through
``AuditLog.append`` itself (chain and tree, in transactions of 10,000
records without flush), then measured on top of it:

- append inside an open transaction (no flush): the cost a handler pays;
- append as its own durable transaction (the flush at commit), beside the
  baseline measured in the same run, sample for sample in turn with it: a
  line as long as a record appended to a file beside the database and
  flushed (fsync), the floor of any durable log;
- an inclusion proof of a random record in the whole tree, and a
  consistency proof from a random older size: bytes and time;
- ``verify()``, the whole chain and tree (sizes up to --verify-max).

Figures are medians over the repeats; the machine's load is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer_core.store.audit import AuditLog  # noqa: E402
from signer_core.store.auditree import AuditTree  # noqa: E402
from signer_core.store.cadb import CADatabase  # noqa: E402

BATCH = 10_000


def details(i: int) -> dict[str, object]:
    """What an issuance record holds: a root, a serial, a subject, a request digest."""
    return {
        "root": i % 3,
        "serial": format(i * 0x9E3779B97F4A7C15 % 2**127, "x"),
        "subject": f"/CN=host{i}.example.org",
        "request_sha256": format(i, "064x"),
    }


def fill(db: CADatabase, count: int) -> float:
    """Seconds to append ``count`` records by the real path, in unflushed batches."""
    log = AuditLog(db.connection)
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        with db.transaction(durable=False):
            for i in range(first, min(count, first + BATCH)):
                log.append("issued", **details(i))
    return time.perf_counter() - start


def timed(call: Callable[[int], object], arg: int) -> float:
    start = time.perf_counter()
    call(arg)
    return time.perf_counter() - start


def median_of(samples: int, call: Callable[[int], object]) -> float:
    return statistics.median(timed(call, i) for i in range(samples))


def bare_flush(directory: Path) -> tuple[int, Callable[[int], None]]:
    """A record-sized line appended to a file and flushed: the floor of any durable log."""
    fd = os.open(directory / "baseline.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = b"x" * 299 + b"\n"

    def flush(_: int) -> None:
        os.write(fd, line)
        os.fsync(fd)

    return fd, flush


def appends(db: CADatabase, directory: Path, samples: int) -> tuple[float, float, float]:
    """Median append in an open transaction, as its own durable commit, and the bare flush.

    The last two alternate sample by sample, so that both meet the same disk
    (the flush dominates, and a shared disk's latency drifts by the second).
    """
    log = AuditLog(db.connection)
    with db.transaction(durable=False):
        in_transaction = median_of(samples, lambda i: log.append("issued", **details(i)))

    def durable(i: int) -> None:
        with db.transaction():
            log.append("issued", **details(i))

    fd, bare = bare_flush(directory)
    try:
        ours, floor = [], []
        for i in range(samples):
            ours.append(timed(durable, i))
            floor.append(timed(bare, i))
    finally:
        os.close(fd)
    return in_transaction, statistics.median(ours), statistics.median(floor)


def proofs(tree: AuditTree, samples: int, rng: random.Random) -> dict[str, float]:
    size = tree.size()
    cases = [(rng.randrange(size), rng.randrange(1, size)) for _ in range(samples)]
    inclusion = [len(tree.inclusion_proof(i, size)) * 32 for i, _ in cases]
    consistency = [len(tree.consistency_proof(old, size)) * 32 for _, old in cases]
    return {
        "inclusion bytes": statistics.median(inclusion),
        "inclusion max bytes": max(inclusion),
        "inclusion s": median_of(samples, lambda k: tree.inclusion_proof(cases[k][0], size)),
        "consistency bytes": statistics.median(consistency),
        "consistency max bytes": max(consistency),
        "consistency s": median_of(samples, lambda k: tree.consistency_proof(cases[k][1], size)),
        "root s": median_of(samples, lambda k: tree.root(size - k)),
    }


def run_size(base: Path, count: int, samples: int, verify_max: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        db = CADatabase(Path(tmp) / "ca.sqlite")
        try:
            figures = {"fill s": fill(db, count), "load": os.getloadavg()[0]}
            figures["append s"], figures["append durable s"], figures["baseline s"] = appends(
                db, Path(tmp), samples
            )
            figures.update(proofs(AuditTree(db.connection), samples, random.Random(count)))
            if count <= verify_max:
                start = time.perf_counter()
                verdict = AuditLog(db.connection).verify()
                figures["verify s"] = time.perf_counter() - start
                assert verdict.ok, verdict.problem
            figures["file MB"] = (Path(tmp) / "ca.sqlite").stat().st_size / 1e6
        finally:
            db.close()
        return figures


def report(count: int, f: dict[str, float]) -> None:
    us = 1e6
    print(
        f"{count:,} records (filled in {f['fill s']:.1f} s, {f['file MB']:.0f} MB, load {f['load']:.2f})"
    )
    print(f"  append, open transaction:   {f['append s'] * us:8.1f} us")
    print(
        f"  append, durable commit:     {f['append durable s'] * us:8.1f} us"
        f"  = {f['append durable s'] / f['baseline s']:.2f} x one line flushed"
        f" ({f['baseline s'] * us:.1f} us)"
    )
    for kind in ("inclusion", "consistency"):
        print(
            f"  {kind} proof: {f[kind + ' bytes']:5.0f} bytes median,"
            f" {f[kind + ' max bytes']:4.0f} max, {f[kind + ' s'] * us:7.1f} us"
        )
    print(f"  root of a size:             {f['root s'] * us:8.1f} us")
    if "verify s" in f:
        print(
            f"  verify():                   {f['verify s']:8.2f} s"
            f"  ({f['verify s'] / count * us:.1f} us a record)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=300, help="samples per median")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--verify-max", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min), {os.cpu_count()} CPUs"
    )
    for count in (int(s) for s in args.sizes.split(",")):
        report(count, run_size(args.dir, count, args.repeat, args.verify_max))
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
