"""CADatabase.close: the write-ahead log folded into the file, so the file alone holds all."""

from __future__ import annotations

import shutil
import sqlite3

from signer_core.store.cadb import CADatabase, certificate_rows


def _reserve_three(db: CADatabase) -> None:
    for serial in (1, 2, 3):
        assert db.reserve(0, serial, bytes([serial]) * 32, 5)


def test_the_file_alone_holds_every_row_after_close(tmp_path):
    path = tmp_path / "lib" / "ca.sqlite"
    db = CADatabase(path)
    _reserve_three(db)
    assert path.with_name("ca.sqlite-wal").stat().st_size > 0  # the rows are in the log
    assert db.close() is True
    assert sorted(p.name for p in path.parent.iterdir()) == ["ca.sqlite"]
    (tmp_path / "copy").mkdir()
    copy = shutil.copyfile(path, tmp_path / "copy" / "ca.sqlite")
    with sqlite3.connect(copy) as conn:
        assert [serial for _, serial, _, _ in certificate_rows(conn)] == ["1", "2", "3"]


def test_a_reader_holding_the_log_makes_close_say_so_and_loses_nothing(tmp_path):
    path = tmp_path / "ca.sqlite"
    db = CADatabase(path)
    _reserve_three(db)
    db.connection.execute("PRAGMA busy_timeout = 100")  # the test need not wait 5 s
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    assert len(certificate_rows(reader)) == 3  # a read transaction pins the log
    assert db.close() is False
    reader.execute("COMMIT")
    reader.close()
    reopened = CADatabase(path)
    assert len(certificate_rows(reopened.connection)) == 3
    assert reopened.close() is True
