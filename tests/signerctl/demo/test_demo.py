"""``signerctl demo`` run for real: it refuses a directory its users cannot reach,
and a stop signal at start-up or while serving leaves nothing of it behind.

Test tooling, trusted side. As root the daemons run as their own users and the
spool is on a tmpfs, as the demo does it; without root the demo runs as one user.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from signerctl.demo import rig
from signerctl.demo.ca import Users
from signerctl.demo.supervise import DAEMON_ENV

CHILDREN = ("signerctl.demo.nullmodem", "signer_core.daemon", "comm_handler.daemon", "webhost.cli")
LEAK = "SIGNER_DEMO_TEST_LEAK"  # in the demo's environment, never in a daemon's


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(parent: int) -> dict[int, str]:
    """The live processes whose parent is ``parent`` and that are the demo's, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            line = cmdline(int(entry.name))
            if any(f"-m {module}" in line for module in CHILDREN):
                found[int(entry.name)] = line
    return found


def demo_shm() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("signer-demo-*")}


def start_demo(directory: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "signerctl.main", "demo", "--dir", str(directory), "--serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, LEAK: "1"},
    )


def read_until(proc: subprocess.Popen, text: bytes, timeout: float) -> bytes:
    """The demo's output up to and including the line holding ``text``."""
    assert proc.stdout is not None
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"no {text!r} from the demo: {seen!r}"
        if select.select([proc.stdout], [], [], left)[0]:
            seen += os.read(proc.stdout.fileno(), 4096)
    return seen


def assert_nothing_left(pids: dict[int, str], directory: Path, shm_before: set[str]) -> None:
    alive = {pid: line for pid, line in pids.items() if cmdline(pid) == line}
    assert alive == {}, "processes of the demo left running"
    assert demo_shm() <= shm_before
    assert not os.path.ismount(directory / "spool")


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.timing
def test_a_directory_its_users_cannot_reach_is_refused_at_once(users: Users) -> None:
    if users.signer_uid is None:
        pytest.skip("a single-user demo reaches whatever its user reaches")
    parent = Path(tempfile.mkdtemp())  # 0700, as mktemp -d makes it
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "signerctl.main", "demo", "--dir", str(parent / "ca")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - started
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"signerctl demo: the user {users.signer_name} cannot reach {parent}/ca because "
            f"{parent} does not let it in: choose a directory that every user may enter, "
            f"or run chmod o+x {parent}"
        ]
        assert took < 10, f"took {took:.1f} s"
        assert list(parent.iterdir()) == []  # nothing made before the check
    finally:
        parent.rmdir()


def test_a_stop_signal_at_start_up_stops_everything(world_dir: Path) -> None:
    """SIGTERM while the demo still waits for its daemons to answer."""
    shm_before = demo_shm()
    proc = start_demo(world_dir / "ca")
    seen: dict[int, str] = {}
    modem = None

    def daemons_started(count: int) -> bool:
        seen.update(children(proc.pid))
        return sum("daemon" in line for line in seen.values()) >= count

    try:
        # Freeze the cable as soon as a daemon starts: no keep-alive gets through,
        # so the demo is still waiting for its daemons when the signal comes.
        rig.wait_until(lambda: daemons_started(1), 120, "a daemon of the demo", step=0.01)
        modem = next(pid for pid, line in seen.items() if "nullmodem" in line)
        os.kill(modem, signal.SIGSTOP)
        rig.wait_until(lambda: daemons_started(2), 30, "both daemons of the demo")
        proc.send_signal(signal.SIGTERM)
    finally:
        if modem is not None:
            os.kill(modem, signal.SIGCONT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"link:" not in out
    assert b"stopped by SIGTERM before the demo was done" in err
    assert_nothing_left(seen, world_dir / "ca", shm_before)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_stop_signal_while_serving_stops_everything(world_dir: Path, users, sig) -> None:
    shm_before = demo_shm()
    proc = start_demo(world_dir / "ca")
    pids: dict[int, str] = {}
    try:
        out = read_until(proc, b"serving; interrupt to stop", 180)
        assert b"certificate verified against root 0" in out
        pids = children(proc.pid)
        daemons = {pid for pid, line in pids.items() if "daemon" in line}
        assert len(daemons) == 2 and len(pids) == 3, pids
        for pid in daemons:
            names = {
                item.partition(b"=")[0].decode()
                for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if item
            }
            assert names <= set(DAEMON_ENV) and "PATH" in names, names
        log_dir = world_dir / "ca" / "log"
        logs = sorted(log_dir.iterdir())
        assert [p.name for p in logs] == ["signer-comm.log", "signer-core.log"]
        for path in (log_dir, *logs):  # root's alone: the comm user reads none of them
            mode = path.stat()
            assert mode.st_uid == os.geteuid() and stat.S_IMODE(mode.st_mode) & 0o077 == 0
    finally:
        code, err = stop(proc, sig)
    assert code == 0, err
    assert_nothing_left(pids, world_dir / "ca", shm_before)
