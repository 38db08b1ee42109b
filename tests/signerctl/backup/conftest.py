"""Fixtures of the backup and restore tests: backup keys in real gpg, a backed-up CA.

Test tooling, operator side.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signerctl.backup.archive import make_backup
from tests.support.backup import load, make_ca, make_gpg_key, remove_gpg_home


@pytest.fixture(scope="module")
def backup_key():
    key = make_gpg_key("CA backup <backup@example.org>")
    yield key
    remove_gpg_home(key.home)


@pytest.fixture(scope="module")
def other_key():
    key = make_gpg_key("Someone else <other@example.org>")
    yield key
    remove_gpg_home(key.home)


@pytest.fixture(scope="module")
def made(tmp_path_factory, backup_key):
    """One CA and a backup of it with keys, shared by the refusal tests (read-only)."""
    base = tmp_path_factory.mktemp("made")
    config = make_ca(base / "ca")
    result = make_backup(
        load(config), str(backup_key.public_file), base / "ca.backup", include_keys=True
    )
    return config, result


def _table_rows(db: Path, table: str, limit: int | None = None) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        order = "seq" if table == "audit" else "id"
        query = f"SELECT * FROM {table} ORDER BY {order}"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return conn.execute(query).fetchall()
    finally:
        conn.close()


@pytest.fixture
def table_rows():
    """``table_rows(db, table, limit=None)``: the rows of ``table`` in the order written."""
    return _table_rows
