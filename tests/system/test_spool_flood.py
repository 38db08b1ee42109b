"""A hostile comm user against the running signer: odd entries, event storms, floods of bad files.

The attacker is the comm user (a compromised comm handler), acting on
incoming/ under its own uid while both daemons run under theirs (root
only). Whatever it does, a well-formed request sent right behind it is
answered at once (a pause would be ``STORAGE_RETRY``, 5 s), both daemons keep
their PIDs, corrupt/ stays within its bounds and what it could not keep is
in the audit chain. Figures are printed; the 60 s storm and the 100,000-file
flood are in bench/bench_storm.py.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from signerctl.demo.ca import create_demo_ca
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
from webhost.client import WebClient

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run two users")

ANSWERED_WITHIN = 3.0  # s: well under the 5 s pause this would be if taken for a storage fault
STORM_SECONDS = 5.0
STORM_CPU_LIMIT = 0.10  # of one core; the bound (measured: see docs/reliability.md)
FLOOD = 10_000

ODD_ENTRIES = """
import os, sys
d, names = sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:])
os.mkdir(os.path.join(d, names["directory"]))
# Filled under a dot name, which the signer ignores, before it takes its own.
os.mkdir(os.path.join(d, "." + names["full-directory"]))
open(os.path.join(d, "." + names["full-directory"], "inside"), "w").close()
os.rename(os.path.join(d, "." + names["full-directory"]), os.path.join(d, names["full-directory"]))
os.mkfifo(os.path.join(d, names["fifo"]))
os.symlink("/etc/passwd", os.path.join(d, names["symlink"]))
"""


@pytest.mark.timing
@needs_root
def test_odd_entries_named_like_requests_do_not_pause_the_signer(appliance):
    spool_dir = appliance.directory / "spool"
    before = appliance.pids()
    names = {
        kind: f"{time.time_ns():020d}-{uuid.uuid4().hex}.req"
        for kind in ("directory", "full-directory", "fifo", "symlink")
    }
    with WebClient(appliance.link, response_timeout=30) as client:
        timed_sign(client, "warm-up")
        as_comm(
            appliance.users,
            ODD_ENTRIES,
            str(spool_dir / "incoming"),
            *(f"{kind}={name}" for kind, name in names.items()),
        )
        took = timed_sign(client, "behind")
    print(f"\nrequest behind a directory, a full directory, a FIFO, a symlink: {took:.2f} s")
    assert took < ANSWERED_WITHIN
    wait_until(
        lambda: all(
            (spool_dir / "corrupt" / f"{names[k]}.reason").exists() for k in ("fifo", "symlink")
        ),
        10,
        "the FIFO and the symlink refused",
    )
    # The comm user's directories cannot be moved aside by the signer (their ".."
    # is not ours to change): the empty one is removed, the full one is skipped.
    assert not os.path.lexists(spool_dir / "incoming" / names["directory"])
    assert (spool_dir / "incoming" / names["full-directory"]).is_dir()
    assert os.path.islink(spool_dir / "corrupt" / names["symlink"])
    assert appliance.pids() == before
    appliance.assert_alive()


@pytest.mark.timing
@needs_root
def test_a_dot_file_storm_costs_the_signer_little(appliance):
    signer = appliance.supervisor.pid("signer-core")
    before = appliance.pids()
    incoming = str(appliance.directory / "spool" / "incoming")
    with WebClient(appliance.link, response_timeout=30) as client:
        timed_sign(client, "warm-up")
        idle_start, idle_cpu = time.monotonic(), cpu_seconds(signer)
        time.sleep(STORM_SECONDS)
        idle = (cpu_seconds(signer) - idle_cpu) / (time.monotonic() - idle_start)
        storm = as_comm(appliance.users, STORM, incoming, str(STORM_SECONDS), wait=False)
        started, cpu = time.monotonic(), cpu_seconds(signer)
        time.sleep(STORM_SECONDS / 2)
        took = timed_sign(client, "during-the-storm")
        out, err = storm.communicate(timeout=60)
        busy = (cpu_seconds(signer) - cpu) / (time.monotonic() - started)
    assert storm.returncode == 0, err
    events = int(out)
    print(
        f"\ndot-file storm: {events} create+unlink in {STORM_SECONDS:.0f} s; signer CPU "
        f"{busy:.1%} of a core (idle {idle:.1%}, one signing included); "
        f"a request during it answered in {took:.2f} s"
    )
    # The storm's own rate depends on the machine (7,000 to 20,000 here and on CI);
    # what matters is the signer's CPU per second of it, bounded below.
    assert events > 1_000  # a storm indeed
    assert busy < STORM_CPU_LIMIT
    assert took < ANSWERED_WITHIN
    assert appliance.pids() == before
    appliance.assert_alive()


@needs_root
def test_a_flood_of_bad_files_does_not_hold_back_a_real_request(appliance):
    spool_dir = appliance.directory / "spool"
    before = appliance.pids()
    with WebClient(appliance.link, response_timeout=60) as client:
        timed_sign(client, "warm-up")
        started = time.monotonic()
        as_comm(appliance.users, FLOOD_FILES, str(spool_dir / "incoming"), str(FLOOD))
        made = time.monotonic() - started
        took = timed_sign(client, "behind-the-flood")
    wait_until(lambda: not spool_names(spool_dir, "incoming"), 120, "the flood to be cleared")
    cleared = time.monotonic() - started
    kept = [n for n in spool_names(spool_dir, "corrupt") if not n.endswith(".reason")]
    print(
        f"\n{FLOOD} bad files made in {made:.1f} s, cleared {cleared:.1f} s after the first; "
        f"the request sent behind them answered in {took:.2f} s; corrupt/ kept {len(kept)}"
    )
    assert took < ANSWERED_WITHIN
    assert len(kept) == 1000  # the default bound
    assert appliance.pids() == before
    appliance.assert_alive()


def test_a_flood_queued_while_the_signer_was_stopped(world_dir, users):
    """10,000 bad files and a request behind them: the request first, corrupt/ bounded, audited."""
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    spool_dir, db_path = world_dir / "ca" / "spool", world_dir / "ca" / "lib" / "ca.sqlite"
    as_comm(users, FLOOD_FILES, str(spool_dir / "incoming"), str(FLOOD))
    [request_id] = enqueue_as_comm(spool_dir, users, ["sign real"])
    (world_dir / "log").mkdir()
    signer = LoneSigner(config, world_dir / "log" / "signer.log")
    started = time.monotonic()
    try:
        wait_until(
            lambda: (spool_dir / "results" / f"{request_id}.res").exists(),
            60,
            "the real request's result",
            step=0.01,
        )
        answered = time.monotonic() - started
        wait_until(lambda: not spool_names(spool_dir, "incoming"), 120, "the flood to be cleared")
        cleared = time.monotonic() - started
        wait_until(lambda: audit_events(db_path, "spool-dropped"), 30, "the drop report")
    finally:
        signer.stop()
    print(
        f"\n{FLOOD} bad files queued before one request: the request answered {answered:.2f} s "
        f"after the signer started, the flood cleared in {cleared:.1f} s "
        f"({FLOOD / cleared:.0f} files/s, signer start-up included)"
    )
    assert answered < ANSWERED_WITHIN + 2.0  # start-up included
    kept = [n for n in spool_names(spool_dir, "corrupt") if not n.endswith(".reason")]
    assert len(kept) == 1000
    [report] = audit_events(db_path, "spool-dropped")
    assert report["removed"] == FLOOD - 1000 and report["skipped"] == 0
    assert report["reasons"] == {"record of N bytes is too short": FLOOD - 1000}
    assert report["bytes"] >= (FLOOD - 1000) * 64
    assert audit_verdict(db_path).ok
