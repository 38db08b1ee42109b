"""signerctl import-openssl / export-openssl, as an operator runs them.

Every command is run through ``signerctl.main.main``; the running-daemon
check is tested against a real process named ``signer-core``. Tests other
than that one pass ``--force`` so that a signer-core started by another test
run on the same machine does not make them fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from signer_core.store.cadb import CADatabase
from signerctl import main as ctl
from signerctl.cli import render
from signerctl.demo.ca import Users, config_text
from signerctl.migrate.openssl_ca import import_openssl
from tests.support.crl import pem


@pytest.fixture
def config(tmp_path: Path, old_ca) -> Path:
    """An appliance configuration whose root 0 is the old CA's root."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "root0.crt").write_bytes(pem(old_ca.root.certificate))
    path = tmp_path / "signer.toml"
    path.write_text(config_text(Users(), "loop://", "A" * 40, Path("/dev/shm/unused")))
    return path


def run(capsys, *argv: str) -> tuple[int, object, str]:
    code = ctl.main(["--json", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def import_args(config: Path, ca) -> list[str]:
    return [
        "--config",
        str(config),
        "import-openssl",
        "--root",
        "0",
        "--ca-dir",
        str(ca.dir),
        "--crl",
        str(ca.current_crl),
        "--crl-dir",
        str(ca.crl_dir),
    ]


def test_import_then_again_then_export(capsys, config, old_ca, tmp_path):
    code, data, _ = run(capsys, *import_args(config, old_ca), "--force")
    assert code == 0 and data["imported"] is True
    assert (data["valid"], data["revoked"], data["expired"], data["crls"]) == (
        len(old_ca.valid),
        len(old_ca.revoked),
        len(old_ca.expired),
        3,
    )
    code, data, _ = run(capsys, *import_args(config, old_ca), "--force")
    assert code == 0 and data["skipped"] == 200 and data["valid"] == 0
    code, data, _ = run(
        capsys,
        "--config",
        str(config),
        "export-openssl",
        "--root",
        "0",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0 and data["next_crl_number"] == "04"
    assert (tmp_path / "out" / "index.txt").read_bytes() == (old_ca.dir / "index.txt").read_bytes()
    code, data, _ = run(capsys, "--config", str(config), "certs", "find", "--serial", "1003")
    assert code == 0 and data[0]["profile"] == -1


def test_import_lists_problems_and_exits_1(capsys, config, old_ca, tmp_path):
    ca_dir = tmp_path / "damaged"
    shutil.copytree(old_ca.dir, ca_dir)
    (ca_dir / "newcerts" / "1009.pem").unlink()
    args = import_args(config, old_ca)
    args[args.index("--ca-dir") + 1] = str(ca_dir)
    code, data, _ = run(capsys, *args, "--force")
    assert code == 1 and data["imported"] is False
    assert [(p["line"], "1009.pem" in p["text"]) for p in data["problems"]] == [(10, True)]
    db = CADatabase(tmp_path / "lib" / "ca.sqlite")
    assert db.count() == 0
    db.close()
    table = io.StringIO()
    render(data, out=table)  # the operator's form: one row per problem
    (row,) = [ln for ln in table.getvalue().splitlines() if "missing" in ln]
    assert row.split()[:2] == [str(ca_dir / "index.txt"), "10"]


def test_import_refuses_while_signer_core_runs(capsys, config, old_ca, tmp_path):
    fake = tmp_path / "signer-core"  # the kernel's process name comes from the file name
    fake.write_text("#!/bin/sh\nsleep 60\n")
    fake.chmod(0o755)
    proc = subprocess.Popen([str(fake), "--config", str(config)])  # a signer of this config
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if Path(f"/proc/{proc.pid}/status").read_text().startswith("Name:\tsigner-core"):
                break
            time.sleep(0.01)
        code, data, err = run(capsys, *import_args(config, old_ca))
        assert code == 2 and data is None
        assert "signer-core is running" in err and str(proc.pid) in err
        assert not (tmp_path / "lib" / "ca.sqlite").exists()
        code, data, _ = run(capsys, *import_args(config, old_ca), "--force")
        assert code == 0 and data["imported"] is True
    finally:
        proc.kill()
        proc.wait()


def test_help_says_to_stop_the_signer(capsys):
    with pytest.raises(SystemExit):
        ctl.main(["import-openssl", "--help"])
    text = re.sub(r"\s+", " ", re.sub(r"-\n\s*", "-", capsys.readouterr().out))
    assert "Stop signer-core first" in text and "unless --force" in text


def test_progress_on_a_terminal_only(old_ca, tmp_path):
    master, slave = os.openpty()
    with open(slave, "w", closefd=True) as tty:
        db = CADatabase(tmp_path / "a.sqlite")
        import_openssl(db, 0, old_ca.dir, old_ca.root.certificate, progress=tty)
        db.close()
    shown = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert b"importing root 0: 100% 200 lines" in shown
    with open(tmp_path / "log", "w") as not_a_tty:
        db = CADatabase(tmp_path / "b.sqlite")
        import_openssl(db, 0, old_ca.dir, old_ca.root.certificate, progress=not_a_tty)
        db.close()
    assert (tmp_path / "log").read_text() == ""
