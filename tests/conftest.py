"""Shared fixtures: a world-readable work directory, the daemon users, a running appliance.

As root, the appliance fixture runs each daemon under its own system user
(created if missing), as production does; otherwise both run as the caller.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from signerctl.demo.ca import Users, create_demo_ca, system_users
from signerctl.demo.run import Cable, daemons, start_cable, wait_until_served
from signerctl.demo.supervise import Supervisor

REPO = Path(__file__).resolve().parent.parent


def pytest_report_header(config):
    import cryptography
    import gnupg

    return (
        f"environment: python {sys.version.split()[0]} at {sys.executable}, "
        f"cryptography {cryptography.__version__}, python-gnupg {gnupg.__version__}, "
        f"uid {os.geteuid()}"
    )


@pytest.fixture
def world_dir():
    """A fresh directory the daemon users can reach (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="signer-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def users() -> Users:
    return system_users() if os.geteuid() == 0 else Users()


@dataclass
class Appliance:
    directory: Path
    config: Path
    cable: Cable
    supervisor: Supervisor
    users: Users

    @property
    def link(self) -> str:
        return self.cable.web_end

    def root_cert(self, root: int = 0) -> Path:
        return self.directory / "certs" / f"root{root}.crt"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.directory}/lib/ca.sqlite?mode=ro", uri=True)

    def client(self, *args: str, input: bytes | None = None, timeout: float = 60):
        """Run ``signer-client --link LINK ARGS`` as a separate process."""
        return subprocess.run(
            [sys.executable, "-m", "webhost.cli", "--link", self.link, *args],
            input=input,
            capture_output=True,
            timeout=timeout,
        )

    def assert_alive(self) -> None:
        for name, proc in self.supervisor.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        assert self.supervisor.restarts == {"signer-core": 0, "signer-comm": 0}


@contextmanager
def running_appliance(world_dir: Path, users: Users, extra_toml: str = "") -> Iterator[Appliance]:
    """A demo CA in ``world_dir/ca`` (its configuration ending with ``extra_toml``), both
    daemons started on a new cable; stopped, and their logs shown, afterwards."""
    cable = start_cable()
    supervisor = None
    try:
        if users.comm_uid is not None:
            os.chown(cable.appliance_end, users.comm_uid, users.comm_gid)
        config = create_demo_ca(world_dir / "ca", users, cable.appliance_end)
        with config.open("a") as f:
            f.write(extra_toml)
        log_dir = world_dir / "log"
        log_dir.mkdir()
        supervisor = daemons(config, log_dir)
        supervisor.start()
        wait_until_served(cable.web_end)
        yield Appliance(world_dir / "ca", config, cable, supervisor, users)
    finally:
        if supervisor is not None:
            supervisor.stop()
        cable.process.terminate()
        cable.process.wait()
        for log in sorted((world_dir / "log").glob("*.log")):
            sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture
def appliance(world_dir, users):
    with running_appliance(world_dir, users) as running:
        yield running
