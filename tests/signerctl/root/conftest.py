"""Fixtures of the key ceremony tests: a CA on disk with a root waiting for its key, and
``signerctl root`` run in-process on it.

Test tooling. The CA is tests.support.x509's World (root 0 RSA with a
passphrase, root 1 P-384, root 2 configured with no files, root 3 Ed25519),
with root 5 added: no files yet, and a passphrase file, so that its key is
written encrypted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from signer_core.store.audit import AuditLog
from tests.support.x509 import World

ROOT5 = """
[x509.roots.5]
name = "root 5"
key = "root5.key"
certificate = "root5.crt"
passphrase_file = "root0.pass"
crl_url = "http://crl.example.org/root5.crl"
"""


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path, extra_toml=ROOT5)


@pytest.fixture
def ceremony(world, signerctl) -> Callable[..., dict]:
    """``ceremony(*args)``: the transcript of ``signerctl --json root ARGS`` on the
    world's configuration, which must succeed."""

    def run(*args: str | Path) -> dict:
        code, out, err = signerctl(
            "--config", str(world.dir / "signer.toml"), "--json", "root", *map(str, args)
        )
        assert code == 0, err
        assert isinstance(out, dict)
        return out

    return run


@pytest.fixture
def refused(world, signerctl) -> Callable[..., str]:
    """``refused(*args)``: the one sentence ``signerctl root ARGS`` answers with (exit 2),
    after checking that it appended nothing to the audit chain."""

    def run(*args: str | Path) -> str:
        before = audit_count(world.dir / "ca.sqlite")
        code, out, err = signerctl(
            "--config", str(world.dir / "signer.toml"), "root", *map(str, args)
        )
        assert (code, out) == (2, ""), err
        assert err.startswith("signerctl: ") and err.count("\n") == 1, err
        assert audit_count(world.dir / "ca.sqlite") == before
        return err

    return run


def audit_count(database: Path) -> int:
    if not database.exists():
        return 0
    with closing(sqlite3.connect(database)) as conn:
        return AuditLog(conn).head()[0]
