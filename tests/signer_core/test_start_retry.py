"""signer-core that cannot open its database keeps trying, and says why once.

Test tooling, trusted side: the real daemon (as root, as its own user) on a demo
CA whose database path is a directory, made a path it can use after a while.
"""

from __future__ import annotations

import math
import signal
import time

from signer_core.daemon import START_REPORT_INTERVAL, STORAGE_RETRY
from signerctl.demo import rig
from signerctl.demo.ca import create_demo_ca

RUN = 12.0  # s the signer is kept from its database


def test_cannot_start_is_logged_once_per_interval_not_per_attempt(world_dir, users):
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    blocker = world_dir / "ca" / "lib" / "ca.sqlite"
    blocker.mkdir()  # no database opens on a directory
    log_file = world_dir / "signer.log"
    signer = rig.LoneSigner(config, log_file)
    try:
        rig.wait_until(lambda: "cannot start" in log_file.read_text(), 30, "the first failure")
        time.sleep(RUN)
        blocker.rmdir()
        rig.wait_until(
            lambda: "watching " in log_file.read_text(), 3 * STORAGE_RETRY, "the signer to start"
        )
    finally:
        signer.stop()
    failures = [line for line in log_file.read_text().splitlines() if "cannot start" in line]
    assert 1 <= len(failures) <= 1 + math.floor(RUN / START_REPORT_INTERVAL), failures
    assert failures[0].startswith("signer-core: ERROR cannot start: ")
    assert failures[0].endswith(f"{blocker}'; trying again every {STORAGE_RETRY:.0f} s")


def test_a_stop_while_start_up_waits_for_storage_exits_at_once(world_dir, users):
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    (world_dir / "ca" / "lib" / "ca.sqlite").mkdir()  # no database opens on a directory
    log_file = world_dir / "signer.log"
    signer = rig.LoneSigner(config, log_file)
    try:
        rig.wait_until(lambda: "cannot start" in log_file.read_text(), 30, "the first failure")
        signer.proc.send_signal(signal.SIGTERM)
        assert signer.proc.wait(timeout=STORAGE_RETRY) == 0  # not after the next attempt
    finally:
        signer.stop()
    assert "stopping before start-up finished" in log_file.read_text()
