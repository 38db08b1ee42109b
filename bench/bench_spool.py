"""Spool throughput and latency against the cost of a bare atomic file handoff.

Run from the project root: ``python bench/bench_spool.py [--dir DIR] [--n N] [--repeat R]``.
Baseline: create, write and rename the same bytes (no flush), the floor of
any queue whose readers must never see a half-written file. The spool is a
volatile handoff on a tmpfs (the CA database is the durable state), so
``--dir /dev/shm`` measures what the package runs on. Also printed, for
comparison, the durable commit (write, fsync, rename, directory fsync) the
spool paid per file before. Figures are medians over the repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spool.queue import Spool
from spool.record import Request, Result, encode_request

HEADER = bytes([1, 1, 0, 0, 2, 1, 0x6E, 0, 0])
PAYLOADS = (os.urandom(1200), b"DNS:www.example.org", b"CN=www.example.org")

SERVER = """
import sys
from spool.queue import Spool
from spool.record import Result
from spool.watch import DirWatcher
spool, n = Spool(sys.argv[1]), int(sys.argv[2])
with DirWatcher(spool.incoming) as watcher:
    print("ready", flush=True)
    while n:
        request = spool.claim_next()
        if request is None:
            watcher.wait(None)
            continue
        spool.finish(request, Result(request.id, 1, request.payloads[0], b""))
        n -= 1
"""


def baseline(directory: Path, n: int, *, durable: bool = False) -> float:
    data = encode_request(Request(f"{0:020d}-{0:032x}", 0.0, HEADER, PAYLOADS, True))
    start = time.perf_counter()
    for i in range(n):
        temp, final = directory / f".t{i}", directory / f"f{i}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        if durable:
            os.fsync(fd)
        os.close(fd)
        os.rename(temp, final)
        if durable:
            dfd = os.open(directory, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    return (time.perf_counter() - start) / n


def enqueue(spool: Spool, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        spool.enqueue(HEADER, PAYLOADS, received_at=time.time())
    return (time.perf_counter() - start) / n


def claim_finish(spool: Spool, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        request = spool.claim_next()
        assert isinstance(request, Request), "only requests were enqueued"
        spool.finish(request, Result(request.id, 1, b"x" * 1500, b""))
    return (time.perf_counter() - start) / n


def round_trip(spool: Spool, n: int) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), *sys.path]),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVER), str(spool.root), str(n)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert server.stdout is not None and server.stdout.readline() == b"ready\n"
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        result = spool.wait_result(spool.enqueue(HEADER, PAYLOADS, received_at=time.time()), 10)
        latencies.append(time.perf_counter() - start)
        assert result is not None and result.payload1 == PAYLOADS[0]
    server.wait(10)
    return statistics.median(latencies)


def run_once(base: Path, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        raw, durable = Path(tmp) / "raw", Path(tmp) / "durable"
        raw.mkdir()
        durable.mkdir()
        spool = Spool(Path(tmp) / "spool")
        spool.create_dirs()
        figures = {
            "baseline handoff": baseline(raw, n),
            "durable commit (before)": baseline(durable, n, durable=True),
            "enqueue": enqueue(spool, n),
        }
        figures["claim+finish"] = claim_finish(spool, n)
        figures["round trip (2 processes)"] = round_trip(spool, max(10, n // 10))
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = [run_once(args.dir, args.n) for _ in range(args.repeat)]
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    floor = medians["baseline handoff"]
    print(f"{'operation':28} {'median ms':>10} {'per s':>9} {'x baseline':>11}")
    for key, value in medians.items():
        print(f"{key:28} {value * 1000:10.3f} {1 / value:9.0f} {value / floor:11.2f}")


if __name__ == "__main__":
    main()
