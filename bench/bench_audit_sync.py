"""The audit log's sync over a line paced as a real 115200-baud UART: time against line time.

    python bench/bench_audit_sync.py [--records 100000]

A demo CA's two daemons (as their system users when run as root, the spool
on a tmpfs) on one end of bench_paced's relay, which holds each byte for its
10-bit time; ``webhost.audit_sync`` on the other end, over link protocol v2,
into a fresh copy. The log is first filled with ``--records`` records shaped
like ``issued`` records (root, profile, serial, subject, the request's
SHA-256 and the answer's id: the digests do not compress), by a second
writer under the signer's user. Printed: the records, the answers, the bytes
each way and per record, the line time of those bytes, the sync's wall time
and its ratio to the line time, the signer's answer time (wall less line),
and the machine's load. Then the offline check of the copy, timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_paced import BYTE_TIME, COMM, WEB, Relay  # noqa: E402

from signerctl.demo.ca import Users, create_demo_ca, system_users  # noqa: E402
from signerctl.demo.run import daemons, spool_filesystem, wait_until_served  # noqa: E402

FILL = """import hashlib, sys, uuid
from signer_core.store.cadb import CADatabase
from signer_core.store.audit import AuditLog
from pathlib import Path
db = CADatabase(Path(sys.argv[1]))
audit = AuditLog(db.connection)
with db.transaction():
    for n in range(int(sys.argv[2])):
        audit.append("issued", root=0, profile=5, serial=format(0x1000 + n * 7919, "x"),
                     subject=f"CN=host-{n}.example.org", days=365, days_requested=365,
                     request=hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
                     answer=f"{1764000000000000000 + n:020d}-{uuid.uuid4().hex}")
"""


def fill(database: Path, count: int, users: Users) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", FILL, str(database), str(count)],
        check=True,
        user=users.signer_uid,
        group=users.signer_gid,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.getenv("PYTHONPATH"))))
    base = Path(tempfile.mkdtemp(prefix="bench-audit-", dir="/tmp"))
    base.chmod(0o755)
    line = Relay()
    users = system_users() if os.geteuid() == 0 else Users()
    directory = base / "ca"
    try:
        directory.mkdir()
        with spool_filesystem(directory, sys.stdout):
            users.give_to_comm(line.comm_end)
            config = create_demo_ca(directory, users, line.comm_end)
            supervisor = daemons(config, directory / "log")
            supervisor.start()
            try:
                wait_until_served(line.web_end)
                took = fill(directory / "lib" / "ca.sqlite", args.records, users)
                print(f"filled: {args.records} records in {took:.1f} s", flush=True)
                measure(line, directory, base / "copy")
            finally:
                supervisor.stop()
    finally:
        line.close()
        shutil.rmtree(base, ignore_errors=True)


def measure(line: Relay, directory: Path, state: Path) -> None:
    from comm_handler.v2messages import Kind, V2Request
    from tlog.exchange import AuditQuery
    from tlog.note import Verifier
    from webhost.audit_copy import AuditCopy
    from webhost.audit_sync import Sync
    from webhost.audit_verify import verify_copy
    from webhost.client_v2 import V2Client

    verifier = Verifier.parse((directory / "lib" / "audit-log.key.pub").read_text())
    load = os.getloadavg()[0]
    with V2Client(line.web_end, response_timeout=300) as client, AuditCopy(state) as copy:

        def ask(query: AuditQuery):
            return client.exchange_v2(V2Request(Kind.AUDIT, payloads=(query.encode(), b"", b"")))

        line.mark()
        started = time.monotonic()
        result = Sync(ask, copy, verifier).run()
        wall = time.monotonic() - started
    events = line.log()
    sent = {
        lane: sum(n for name, kind, _, n, _ in events if name == lane and kind == "out")
        for lane in (WEB, COMM)
    }
    line_time = (sent[WEB] + sent[COMM]) * BYTE_TIME
    print(f"synced: {result.size} records in {result.batches} answers (load {load:.2f})")
    print(
        f"bytes: {sent[COMM]} appliance to web host ({sent[COMM] / result.size:.1f} per record),"
        f" {sent[WEB]} the other way"
    )
    print(
        f"time: {wall:.1f} s wall against {line_time:.1f} s of line time at 115200 baud:"
        f" {wall / line_time:.2f}x; beyond the line: {wall - line_time:.1f} s"
        f" ({(wall - line_time) / result.batches * 1000:.0f} ms an answer)"
    )
    started = time.monotonic()
    report = verify_copy(state, verifier)
    print(
        f"offline check: {'ok' if report.ok else report.problems[:1]}, {report.records} records"
        f" in {time.monotonic() - started:.2f} s"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
