"""Privilege separation under attack, with both daemons running under their own uids.

Root only: the point is two real users. The attacker is the comm user (a
compromised comm handler): it tries to read the signer's secrets, and plants
hostile entries in the spool while the signer runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from signerctl.demo.rig import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run two users")


def as_comm(appliance, *argv: str, **kw) -> subprocess.CompletedProcess:
    name = appliance.users.comm_name
    return subprocess.run(
        ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups", "--", *argv],
        capture_output=True,
        timeout=60,
        **kw,
    )


def entry_name() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.req"


@pytest.mark.parametrize("secret", ["keys/root0.key", "keys/openpgp", "lib/ca.sqlite", "lib"])
def test_comm_user_cannot_read_the_signers_secrets(appliance, secret):
    path = appliance.directory / secret
    assert path.exists()
    done = as_comm(appliance, "cat" if path.is_file() else "ls", str(path))
    assert done.returncode != 0
    assert b"Permission denied" in done.stderr


def test_hostile_spool_entries_go_to_corrupt(appliance, world_dir, write_csr):
    incoming = appliance.directory / "spool" / "incoming"
    corrupt = appliance.directory / "spool" / "corrupt"
    key = appliance.directory / "keys" / "root0.key"
    key_before = key.read_bytes()
    bait = world_dir / "bait"
    bait.write_bytes(b"not for the signer\n")
    bait.chmod(0o666)
    names = {kind: entry_name() for kind in ("symlink", "fifo", "hardlink", "huge", "garbage")}
    script = f"""
import os
d = {str(incoming)!r}
n = {names!r}
os.symlink({str(key)!r}, os.path.join(d, n["symlink"]))
os.mkfifo(os.path.join(d, n["fifo"]))
with open(os.path.join(d, ".own"), "wb") as f: f.write(b"x")
os.link(os.path.join(d, ".own"), os.path.join(d, n["hardlink"]))
with open(os.path.join(d, n["huge"]), "wb") as f: f.truncate(100 * 1024 * 1024)
with open(os.path.join(d, n["garbage"]), "wb") as f: f.write(os.urandom(4096))
"""
    done = as_comm(appliance, sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: all((corrupt / f"{n}.reason").exists() for n in names.values()), 20, "the refusals"
    )
    for kind, name in names.items():
        reason = (corrupt / f"{name}.reason").read_text()
        assert reason.strip(), kind
        assert not (incoming / name).exists() and not os.path.lexists(incoming / name)
    assert os.path.islink(corrupt / names["symlink"])
    assert key.read_bytes() == key_before and bait.read_bytes() == b"not for the signer\n"
    appliance.assert_alive()
    write_csr(world_dir / "after.csr")
    assert appliance.sign(world_dir / "after.csr").returncode == 0


def test_comm_handler_refuses_to_start_when_it_can_read_a_key(appliance):
    keys = appliance.directory / "keys"
    keys.chmod(0o755)
    (keys / "root0.key").chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "comm_handler.daemon", "--config", str(appliance.config)],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"root0.key is readable by this user" in done.stderr
