"""signer-core refuses, in one sentence and with status 2, what it cannot start on."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from signer_core.store.cadb import CADatabase
from signer_core.store.schema import SCHEMA_VERSION
from signerctl.demo.ca import create_demo_ca


def test_a_database_from_a_newer_release_is_named_and_left_alone(world_dir, users):
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    database = world_dir / "ca" / "lib" / "ca.sqlite"
    CADatabase(database).close()
    conn = sqlite3.connect(database)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for path in database.parent.glob("ca.sqlite*"):
        users.give_to_signer(path)
    done = subprocess.run(
        [sys.executable, "-m", "signer_core.daemon", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"signer-core: the CA database has schema version {SCHEMA_VERSION + 1}, made by a"
        f" newer release; this release knows versions up to {SCHEMA_VERSION}"
    )
    assert "Traceback" not in done.stderr
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
