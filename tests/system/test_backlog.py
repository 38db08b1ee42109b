"""A backlog after an outage: 4,000 requests queued while the signer was stopped.

The requests are committed straight into the spool by a child running as the
comm user, exactly as the comm handler commits them (``Spool.enqueue``), with
real CSRs for one in two and keep-alives (NUL) for the rest. Then the signer
starts and must serve them all, oldest first, in bounded memory. The spool and
the database live on tmpfs (/dev/shm) so that the figure measured is the
signer's own work, not this machine's disk (docs/reliability.md gives both).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from signerctl.demo.ca import create_demo_ca
from signerctl.demo.rig import (
    LoneSigner,
    audit_events,
    audit_verdict,
    cert_rows,
    enqueue_as_comm,
    rss_kib,
    spool_names,
    wait_spool_settled,
    wait_until,
)

REQUESTS = 4_000
SIGN_EVERY = 2
RSS_BOUND_KIB = 16 * 1024  # growth allowed over the warmed-up signer
WARM_UP = 500  # requests served before the baseline is taken: every code path is loaded
DEADLINE = 180.0


@pytest.fixture
def shm_dir():
    path = Path(tempfile.mkdtemp(prefix="signer-backlog-", dir="/dev/shm"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_backlog_served_in_order_in_flat_memory(shm_dir, users):
    config = create_demo_ca(shm_dir / "ca", users, "/dev/null")
    spool_dir, db_path = shm_dir / "ca" / "spool", shm_dir / "ca" / "lib" / "ca.sqlite"
    plan = [f"sign b{i}" if i % SIGN_EVERY == 0 else "nul" for i in range(REQUESTS)]
    started = time.monotonic()
    ids = enqueue_as_comm(spool_dir, users, plan)
    enqueued = time.monotonic() - started
    assert len(spool_names(spool_dir, "incoming")) == REQUESTS

    (shm_dir / "log").mkdir()
    signer = LoneSigner(config, shm_dir / "log" / "signer.log")
    samples: list[tuple[int, int]] = []  # (requests left, VmRSS KiB)
    started = time.monotonic()
    try:
        while True:
            left = len(os.listdir(spool_dir / "incoming")) + len(os.listdir(spool_dir / "active"))
            samples.append((left, rss_kib(signer.pid)))
            if left == 0:
                break
            assert time.monotonic() - started < DEADLINE, f"{left} requests still queued"
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        signer.stop()

    signs = [f"b{i}" for i in range(0, REQUESTS, SIGN_EVERY)]
    sign_ids = {ids[i] for i in range(0, REQUESTS, SIGN_EVERY)}
    assert {n.removesuffix(".res") for n in spool_names(spool_dir, "results")} == sign_ids
    assert spool_names(spool_dir, "corrupt") == []
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"] * len(signs)
    issued = [
        e["subject"].removeprefix("CN=").removesuffix(".example.org")
        for e in audit_events(db_path, "issued")
    ]
    assert issued == signs  # first in, first out
    assert audit_verdict(db_path).ok

    warm = [rss for left, rss in samples if left <= REQUESTS - WARM_UP]
    baseline, peak = warm[0], max(warm)
    print(
        f"\nbacklog: {REQUESTS} requests ({len(signs)} X.509, {REQUESTS - len(signs)} NUL) "
        f"enqueued in {enqueued:.1f} s, served in {elapsed:.1f} s = {REQUESTS / elapsed:.0f}/s; "
        f"signer RSS {baseline / 1024:.1f} MiB warm, {peak / 1024:.1f} MiB peak"
    )
    assert peak - baseline < RSS_BOUND_KIB, (baseline, peak)


KILLS = 4


def test_backlog_survives_kill_9_at_random_moments(shm_dir, users):
    """1,000 X.509 requests; the signer is killed -9 four times while serving and started again."""
    config = create_demo_ca(shm_dir / "ca", users, "/dev/null")
    spool_dir, db_path = shm_dir / "ca" / "spool", shm_dir / "ca" / "lib" / "ca.sqlite"
    count = 1000
    ids = enqueue_as_comm(spool_dir, users, [f"sign k{i}" for i in range(count)])
    (shm_dir / "log").mkdir()
    rng = random.Random(1234)
    for _ in range(KILLS):
        target = len(spool_names(spool_dir, "incoming")) - rng.randint(20, 150)
        signer = LoneSigner(config, shm_dir / "log" / "signer.log")
        wait_until(
            lambda target=target: len(os.listdir(spool_dir / "incoming")) <= target,
            60,
            "progress",
            step=0.005,
        )
        os.kill(signer.pid, signal.SIGKILL)  # in the middle of serving, wherever it is
        signer.proc.wait()
    assert len(spool_names(spool_dir, "incoming")) > count // 2
    signer = LoneSigner(config, shm_dir / "log" / "signer.log")
    try:
        wait_spool_settled(spool_dir, DEADLINE)
    finally:
        signer.stop()
    assert {n.removesuffix(".res") for n in spool_names(spool_dir, "results")} == set(ids)
    assert spool_names(spool_dir, "corrupt") == []
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"] * count
    issued = [e["request"] for e in audit_events(db_path, "issued")]
    assert len(issued) == len(set(issued)) == count  # one issuance per request
    assert audit_verdict(db_path).ok
