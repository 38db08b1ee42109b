"""The audit log leaves the appliance every cycle: signer-bridge syncs it over the real cable.

Both daemons under their own users on a demo CA, the bridge on the web end
of the rig's cable, the deployed v1 client on the bridge's pty. Each
keep-alive of the client starts a cycle, after which the bridge fetches a
few batches of the audit log into its verified copy; ``signer-client audit
verify`` then checks that copy offline with the public key alone.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.audit import fill_as_signer
from tests.support.bridge import start_bridge


def _verify(state, key) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhost.cli",
            "audit",
            "verify",
            "--log",
            str(state),
            "--key",
            str(key),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_bridge_syncs_ten_thousand_records_in_bounded_batches(rig, world_dir):
    users = rig.users
    fill_as_signer(rig.ca / "lib" / "ca.sqlite", 10_000, users.signer_uid, users.signer_gid)
    key = world_dir / "log.pub"
    key.write_bytes((rig.ca / "lib" / "audit-log.key.pub").read_bytes())
    state = world_dir / "copy"
    bridge = start_bridge(
        rig.web_end,
        world_dir / "bridge.log",
        "--audit-state",
        str(state),
        "--audit-key",
        str(key),
        "--audit-batches",
        "8",
    )
    try:
        with bridge.client() as client:
            cycles = 0
            while cycles < 60:
                assert client.nul().ok
                cycles += 1
                bridge.wait_for_log("audit log: ", count=cycles, timeout=60)
                if json.loads((state / "state.json").read_text())["records"] >= 10_000:
                    break
    finally:
        stopped = bridge.stop()
        print(f"--- bridge.log\n{bridge.log()[-4000:]}")
    assert stopped == 0
    log = bridge.log()
    assert cycles > 1 and "more next cycle" in log  # bounded: not all in one cycle
    size = json.loads((state / "state.json").read_text())["records"]
    assert size >= 10_000 and size <= rig.query("SELECT count(*) FROM audit")[0][0]
    done = _verify(state, key)
    assert done.returncode == 0, done.stderr
    assert f"{size} records" in done.stdout
    records = (state / "records.jsonl").read_text().splitlines()
    assert sum('"event":"test-record"' in line for line in records) == 10_000
