"""import-openssl's certificate checks in worker processes, and its progress meter.

The checks spread over worker processes must change nothing of what lands
in the database, of its order, or of the problems listed and their order.
The progress line shows lines per second and the time left on a terminal,
and nothing with ``--json``.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest

from signer_core.store.cadb import CADatabase
from signerctl import main as ctl
from signerctl.demo.ca import Users, config_text
from signerctl.migrate.oldca import Progress
from signerctl.migrate.openssl_ca import MigrationError, Problem, import_openssl
from tests.support.crl import pem


def rows(database: Path) -> list[str]:
    """The database's rows, but the audit chain, its tree and the import's own time."""
    db = CADatabase(database)
    try:
        return [
            line
            for line in db.connection.iterdump()
            if '"audit"' not in line
            and '"audit_tree"' not in line
            and '"openssl_state"' not in line
        ]
    finally:
        db.close()


def imported(tmp_path: Path, ca_dir: Path, root, workers: int, name: str):
    db = CADatabase(tmp_path / name)
    try:
        return import_openssl(db, 0, ca_dir, root, progress=None, workers=workers)
    finally:
        db.close()


def problems(tmp_path: Path, ca_dir: Path, root, workers: int, name: str) -> list[Problem]:
    with pytest.raises(MigrationError) as info:
        imported(tmp_path, ca_dir, root, workers, name)
    return list(info.value.problems)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 16 lines: the 200-line old CA makes 13 tasks for the workers."""
    monkeypatch.setattr("signerctl.migrate.openssl_ca.CHUNK", 16)


@pytest.mark.usefixtures("small_chunks")
def test_workers_write_what_one_process_writes(old_ca, tmp_path):
    root = old_ca.root.certificate
    alone = imported(tmp_path, old_ca.dir, root, 1, "one.sqlite")
    spread = imported(tmp_path, old_ca.dir, root, 2, "two.sqlite")
    assert alone == spread and alone.lines == 200
    assert rows(tmp_path / "one.sqlite") == rows(tmp_path / "two.sqlite")


@pytest.mark.usefixtures("small_chunks")
def test_workers_list_the_same_problems_in_the_same_order(old_ca, tmp_path):
    ca_dir = tmp_path / "ca"
    shutil.copytree(old_ca.dir, ca_dir)
    (ca_dir / "newcerts" / "1010.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    (ca_dir / "newcerts" / "1009.pem").unlink()
    index = ca_dir / "index.txt"
    lines = index.read_text().splitlines()
    lines[99] = "garbage"
    lines.append(lines[150])  # a duplicate serial, last
    index.write_text("".join(ln + "\n" for ln in lines))
    root = old_ca.root.certificate
    alone = problems(tmp_path, ca_dir, root, 1, "one.sqlite")
    assert alone == problems(tmp_path, ca_dir, root, 2, "two.sqlite")
    assert [p.line for p in alone] == [10, 17, 100, 201]
    unreadable = alone[1].text
    assert unreadable.startswith("unreadable certificate 1010.pem: ")
    assert "not a certificate" in unreadable and "ParseError" not in unreadable


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_rate_and_time_left():
    screen = Terminal()
    meter = Progress(screen, 1000, "importing root 0")
    meter.update(100, 10)  # too soon after the start: not drawn
    assert screen.getvalue() == ""
    time.sleep(0.3)
    meter.update(250, 2500)
    meter.update(260, 2600)  # within a quarter of a second: not drawn again
    meter.done(10000)
    drawn = screen.getvalue().split("\r")[1:]
    assert len(drawn) == 2, drawn
    assert drawn[0].startswith("importing root 0: 25% 2500 lines, ")
    assert " lines/s, " in drawn[0] and drawn[0].rstrip().endswith(" s left")
    assert drawn[1].startswith("importing root 0: 100% 10000 lines in ")
    assert drawn[1].endswith("\n")


def test_no_progress_with_json(old_ca, tmp_path, monkeypatch, capsys):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "root0.crt").write_bytes(pem(old_ca.root.certificate))
    config = tmp_path / "signer.toml"
    config.write_text(config_text(Users(), "loop://", "A" * 40, Path("/dev/shm/unused")))
    argv = ["--config", str(config), "import-openssl", "--root", "0"]
    argv += ["--ca-dir", str(old_ca.dir), "--force"]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert ctl.main(["--json", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] is True
    assert terminal.getvalue() == ""
    assert ctl.main(argv) == 0  # again, as a person runs it: every line is skipped
    assert "importing root 0: 100% 200 lines" in terminal.getvalue()
