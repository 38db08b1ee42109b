"""The signer's "integrity" records: what one holds against a fake program set (clean, a
change, capped lists, a bad baseline, a file it cannot read), and the real daemon, as the
signer user, recording one at start and a forced second one after a program file changed."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from signer_core.config import Config, load_config
from signer_core.integrity import (
    NO_BASELINE,
    current_files,
    default_baseline,
    package_names,
    set_digest,
)
from signer_core.integrity_records import (
    MAX_LABELS,
    IntegrityTimer,
    integrity_details,
    record_integrity,
)
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase
from signerctl.demo import rig
from signerctl.demo.ca import create_demo_ca
from signerctl.integrity import check

FILES = 3 + 1 + 1  # the fake program's files, its unit, the configuration (no roots)


@pytest.fixture
def site(tmp_path) -> tuple[Config, dict[str, Any]]:
    """A configuration without roots, and where a fake program set, its units and
    scripts are (the keywords of ``current_files``)."""
    (tmp_path / "state").mkdir()
    (tmp_path / "signer.toml").write_text('[spool]\ndir = "sp"\n[signer]\nstate_dir = "state"\n')
    cfg = load_config(tmp_path / "signer.toml")
    fake = tmp_path / "fake"
    (fake / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "sub/b.py"):
        (fake / name).write_text(f"# {name}\n")
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "signer-core.service").write_text("[Service]\n")
    where: dict[str, Any] = {
        "programs": {"fake": fake},
        "unit_dirs": [tmp_path / "units"],
        "script_dirs": [tmp_path / "bin"],
    }
    return cfg, where


def test_without_a_baseline_the_record_says_so(site):
    cfg, where = site
    details = integrity_details(cfg, **where)
    files = current_files(cfg, **where)
    assert details["files"] == len(files) == FILES
    assert details["digest"] == check(cfg, **where).digest
    assert details["baseline_digest"] is None and details["clean"] is False
    assert details["problem"] == NO_BASELINE
    assert [details[k] for k in ("changed", "added", "removed")] == [[], [], []]


def test_a_changed_program_file_is_in_the_record(site):
    cfg, where = site
    accepted = check(cfg, accept=True, **where)
    clean = integrity_details(cfg, **where)
    assert clean == {
        "digest": accepted.digest,
        "files": len(accepted.files),
        "baseline_digest": accepted.digest,
        "clean": True,
        **{kind: [] for kind in ("changed", "added", "removed")},
        **{f"{kind}_count": 0 for kind in ("changed", "added", "removed")},
    }
    fake = where["programs"]["fake"]
    (fake / "a.py").write_text("import os\n")
    (fake / "sub" / "b.py").unlink()
    for i in range(MAX_LABELS + 10):
        (fake / f"new{i:02d}.py").write_text("")
    details = integrity_details(cfg, **where)
    assert details["clean"] is False and details["baseline_digest"] == accepted.digest
    assert details["digest"] != accepted.digest and "problem" not in details
    assert (details["changed"], details["changed_count"]) == (["program:fake/a.py"], 1)
    assert (details["removed"], details["removed_count"]) == (["program:fake/sub/b.py"], 1)
    assert details["added"] == [f"program:fake/new{i:02d}.py" for i in range(MAX_LABELS)]
    assert details["added_count"] == MAX_LABELS + 10


def test_a_bad_baseline_or_an_unreadable_file_is_the_problem(site, tmp_path):
    cfg, where = site
    check(cfg, accept=True, **where)
    baseline = default_baseline(cfg.signer.state_dir)
    data = json.loads(baseline.read_text())
    data["files"]["program:fake/a.py"] = "0" * 64
    baseline.write_text(json.dumps(data))
    details = integrity_details(cfg, **where)
    assert details == {
        "digest": set_digest(current_files(cfg, **where)),
        "files": FILES,
        "baseline_digest": None,
        "clean": False,
        "problem": f"the baseline cannot be used: {baseline}: malformed, or its digest"
        " does not match its files",
    }
    gone = dataclasses.replace(cfg, path=tmp_path / "gone.toml")
    assert integrity_details(gone, **where) == {
        "clean": False,
        "problem": f"the signer cannot read {tmp_path / 'gone.toml'}: No such file or directory",
    }


def test_the_timer_records_when_due_and_then_waits_an_interval(site, tmp_path):
    cfg, _ = site
    db = CADatabase(tmp_path / "ca.sqlite")
    try:
        audit = AuditLog(db.connection)
        timer = IntegrityTimer(60.0)
        assert 59 < timer.left() <= 60  # the start made one
        timer.due = 0.0  # as if a minute had passed
        assert timer.left() == 0
        timer.run(db, audit, cfg)
        assert 59 < timer.left() <= 60
        record_integrity(audit, cfg)
        (first, second) = audit.events("integrity")
        assert first["files"] == second["files"] > 100  # the real program tree
    finally:
        db.close()


def _changed(database) -> dict | None:
    """The first integrity record that names a change, if any yet."""
    return next((e for e in rig.audit_events(database, "integrity") if e.get("changed")), None)


def _export_and_sync(config, since: int, export, state, key) -> subprocess.CompletedProcess[str]:
    """``signerctl audit export`` at the appliance, ``signer-client audit-sync --from`` at the
    web host: how a site without the bridge carries the log out."""
    done = subprocess.run(
        [sys.executable, "-m", "signerctl.main", "--config", str(config), "audit", "export"]
        + ["--since", str(since), "--out", str(export)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return subprocess.run(
        [sys.executable, "-m", "webhost.cli", "audit-sync", "--state", str(state)]
        + ["--key", str(key), "--from", str(export)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_running_signer_records_a_changed_program_file(world_dir, users, monkeypatch):
    """As the signer user (as root): every file it hashes is readable to it, the record at
    start matches the baseline root accepted, and one interval after a program file of the
    tree it runs from changed, a record names that file, and it reaches the web host's copy
    (by export: the bridge's way is tests/system/comm/test_audit_bridge.py)."""
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    with config.open("a") as f:
        f.write("\n[audit]\nintegrity_interval_seconds = 1\n")
    code = world_dir / "code"  # the signer runs this copy, and so measures it
    for name in package_names():
        shutil.copytree(
            rig.CODE_ROOT / name, code / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(rig.CODE_ROOT / "pyproject.toml", code)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # run as the caller, it could write there
    programs = {name: code / name for name in package_names()}
    accepted = check(load_config(config), programs=programs, accept=True)
    database, log_file = world_dir / "ca" / "lib" / "ca.sqlite", world_dir / "signer.log"
    signer = rig.LoneSigner(config, log_file, code=code)
    try:
        rig.wait_until(lambda: "watching " in log_file.read_text(), 30, "the signer to start")
        (first,) = rig.audit_events(database, "integrity")
        state, key = world_dir / "web" / "copy", world_dir / "ca" / "lib" / "audit-log.key.pub"
        synced = _export_and_sync(config, 0, world_dir / "one.export", state, key)
        assert synced.returncode == 0, synced.stderr
        size = json.loads((state / "state.json").read_text())["records"]
        target = code / "tlog" / "merkle.py"
        target.write_text(target.read_text() + "# changed\n")
        rig.wait_until(lambda: _changed(database) is not None, 10, "a record of the change")
        synced = _export_and_sync(config, size, world_dir / "two.export", state, key)
        assert synced.returncode == 0, synced.stderr
    finally:
        signer.stop()
    copied = [json.loads(line) for line in (state / "records.jsonl").read_text().splitlines()]
    reports = [json.loads(r["details"]) for r in copied if r["event"] == "integrity"]
    assert len(reports) >= 2 and reports[-1]["changed"] == ["program:tlog/merkle.py"]
    assert first["clean"] is True, first
    assert (first["digest"], first["files"]) == (accepted.digest, len(accepted.files))
    second = _changed(database)
    assert second is not None
    assert second["changed"] == ["program:tlog/merkle.py"] and second["clean"] is False
    assert second["baseline_digest"] == accepted.digest != second["digest"]
