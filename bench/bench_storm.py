"""The signer against a hostile comm user: a dot-file storm and a flood of bad files.

Not part of the test suite (tests/system/test_spool_flood.py runs the short
versions). It lays out a demo CA, starts both daemons (under their own users
when run as root: the attacker then acts as the comm user) and measures:

- baseline: the signer's CPU seconds (/proc/PID/stat) over ``--seconds`` idle;
- storm: the same over ``--seconds`` of a dot-file created and removed in
  incoming/ in a tight loop, the events generated, the ratio to the baseline,
  how long requests sent during it take, and the ``spool-storm`` audit records;
- flood: ``--flood`` well-named 64-byte files of garbage, then one real
  request: how long it takes to be answered, how long the flood takes to
  clear (files per second), what corrupt/ keeps, the ``spool-dropped`` records;
- queued flood: the same flood and one request behind it committed while no
  signer runs, then a signer started: when the request is answered and how
  fast the flood is cleared (the signer's own rate, not the writer's).

Usage: python bench/bench_storm.py [--seconds 60] [--flood 100000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from signerctl.demo.ca import Users, create_demo_ca, system_users
from signerctl.demo.rig import (
    FLOOD_FILES,
    STORM,
    LoneSigner,
    as_comm,
    audit_events,
    audit_verdict,
    cpu_seconds,
    enqueue_as_comm,
    spool_names,
    timed_sign,
    wait_until,
)
from signerctl.demo.run import on_cable
from webhost.client import WebClient

REQUEST_EVERY = 5.0  # s between the requests sent during the storm
REPORT_WAIT = 70.0  # s: the signer reports once a minute


def measure_idle(pid: int, seconds: float) -> float:
    cpu = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - cpu


def measure_storm(
    pid: int, users: Users, incoming: Path, client: WebClient, seconds: float
) -> tuple[float, int, list[float]]:
    """(signer CPU seconds, create+unlink pairs, latencies of requests sent meanwhile)."""
    storm = as_comm(users, STORM, str(incoming), str(seconds), wait=False)
    cpu, end = cpu_seconds(pid), time.monotonic() + seconds
    latencies: list[float] = []
    while time.monotonic() + REQUEST_EVERY < end:
        time.sleep(REQUEST_EVERY)
        latencies.append(timed_sign(client, f"storm{len(latencies)}"))
    out, err = storm.communicate(timeout=seconds + 60)
    if storm.returncode != 0:
        raise RuntimeError(f"the storm failed: {err.decode(errors='replace')}")
    return cpu_seconds(pid) - cpu, int(out), latencies


def measure_flood(users: Users, spool_dir: Path, client: WebClient, count: int) -> dict:
    started = time.monotonic()
    as_comm(users, FLOOD_FILES, str(spool_dir / "incoming"), str(count))
    made = time.monotonic() - started
    answered = timed_sign(client, "behind-the-flood")
    wait_until(
        lambda: not spool_names(spool_dir, "incoming"), 1800, "the flood to be cleared", step=0.1
    )
    cleared = time.monotonic() - started
    kept = [n for n in spool_names(spool_dir, "corrupt") if not n.endswith(".reason")]
    used = sum(
        os.lstat(spool_dir / "corrupt" / n).st_blocks * 512
        for n in os.listdir(spool_dir / "corrupt")
    )
    return {"made": made, "answered": answered, "cleared": cleared, "kept": len(kept), "used": used}


def measure_queued_flood(work: Path, users: Users, count: int) -> dict:
    config = create_demo_ca(work / "queued", users, "/dev/null")
    spool_dir = work / "queued" / "spool"
    as_comm(users, FLOOD_FILES, str(spool_dir / "incoming"), str(count))
    [request_id] = enqueue_as_comm(spool_dir, users, ["sign behind-the-queued-flood"])
    signer = LoneSigner(config, work / "log" / "queued-signer.log")
    started = time.monotonic()
    try:
        wait_until(
            lambda: (spool_dir / "results" / f"{request_id}.res").exists(),
            600,
            "the request's result",
            step=0.01,
        )
        answered = time.monotonic() - started
        wait_until(
            lambda: not spool_names(spool_dir, "incoming"),
            1800,
            "the flood to be cleared",
            step=0.1,
        )
        cleared = time.monotonic() - started
    finally:
        signer.stop()
    return {"answered": answered, "cleared": cleared}


def records(db_path: Path, event: str, wait: float) -> list[dict]:
    deadline = time.monotonic() + wait
    while not (found := audit_events(db_path, event)) and time.monotonic() < deadline:
        time.sleep(1)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle and storm durations")
    parser.add_argument("--flood", type=int, default=100_000, help="bad files in the flood")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: in /tmp)")
    args = parser.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="signer-storm-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    users = system_users() if os.geteuid() == 0 else Users()
    try:
        with on_cable(work / "ca", users, work / "log") as running:
            status = run(args, work / "ca", users, running.supervisor, running.link)
            queued = measure_queued_flood(work, users, args.flood)
        print(
            f"queued flood: {args.flood} bad files and one request behind them, then a signer "
            f"started: the request answered {queued['answered']:.2f} s after the start, the "
            f"flood cleared in {queued['cleared']:.1f} s "
            f"({args.flood / queued['cleared']:.0f} files/s, start-up included)"
        )
        return status
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args, ca: Path, users: Users, supervisor, link: str) -> int:
    spool_dir, db_path = ca / "spool", ca / "lib" / "ca.sqlite"
    pids = {name: supervisor.pid(name) for name in ("signer-core", "signer-comm")}
    signer = pids["signer-core"]
    print(
        f"as uid {os.geteuid()}: attacker uid {users.comm_uid}, {args.seconds:g} s phases",
        flush=True,
    )
    with WebClient(link, response_timeout=60) as client:
        warm = timed_sign(client, "warm-up")
        idle = measure_idle(signer, args.seconds)
        busy, events, latencies = measure_storm(
            signer, users, spool_dir / "incoming", client, args.seconds
        )
        storms = records(db_path, "spool-storm", REPORT_WAIT)
        flood = measure_flood(users, spool_dir, client, args.flood)
    dropped = records(db_path, "spool-dropped", REPORT_WAIT)
    print(
        f"\nbaseline (idle): signer {idle:.2f} CPU s in {args.seconds:g} s = "
        f"{idle / args.seconds:.2%} of a core (a signing: {warm * 1000:.0f} ms)"
    )
    ratio = f"{busy / idle:.1f} x baseline" if idle else "baseline below the clock tick"
    print(
        f"storm: {events} create+unlink of incoming/.x ({events / args.seconds:.0f}/s); signer "
        f"{busy:.2f} CPU s = {busy / args.seconds:.2%} of a core ({ratio}, "
        f"{busy - idle:+.2f} s)"
    )
    if latencies:
        print(
            f"  {len(latencies)} requests during it: median {statistics.median(latencies):.3f} s,"
            f" max {max(latencies):.3f} s"
        )
    for record in storms:
        print(f"  audit spool-storm: {record}")
    print(
        f"flood: {args.flood} bad files made in {flood['made']:.1f} s; the request behind them "
        f"answered in {flood['answered']:.2f} s; cleared {flood['cleared']:.1f} s after the "
        f"first ({args.flood / flood['cleared']:.0f} files/s); corrupt/ keeps "
        f"{flood['kept']} entries, {flood['used'] / 2**20:.1f} MiB"
    )
    for record in dropped:
        print(f"  audit spool-dropped: {record}")
    same = {name: supervisor.pid(name) for name in pids} == pids
    intact = audit_verdict(db_path).ok
    print(
        f"daemons kept their PIDs: {same}; no restart: {not any(supervisor.restarts.values())}; "
        f"audit verifies: {intact}"
    )
    return 0 if same and intact and not any(supervisor.restarts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
