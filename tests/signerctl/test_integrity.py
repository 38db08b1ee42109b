"""The integrity report on a copy of the real program tree, a real configuration
and real root certificates: every change is listed, --accept makes it clean,
and the digest the operator writes down moves with any change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import signer_core
from signer_core.integrity import IntegrityError, default_baseline, package_dirs
from signerctl.integrity import LAST_CHECK_NAME, check, last_check
from tests.support.backup import load, make_ca, make_root


@pytest.fixture
def site(tmp_path):
    """A CA, a copy of the installed packages and a units directory, all private to the test."""
    config = make_ca(tmp_path / "ca", certificates=1)
    programs = {
        name: shutil.copytree(
            path, tmp_path / "site" / name, ignore=shutil.ignore_patterns("__pycache__")
        )
        for name, path in package_dirs().items()
    }
    units = tmp_path / "units"
    units.mkdir()
    (units / "signer-core.service").write_text("[Service]\nExecStart=/usr/bin/signer-core\n")
    (units / "unrelated.service").write_text("[Service]\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "signer-core").write_text(
        "#!/usr/bin/python3\nfrom signer_core.daemon import main\n"
    )
    (tmp_path / "bin" / "python3").write_text("not ours\n")
    return config, programs, units


def run(site, **kw):
    config, programs, units = site
    return check(
        load(config), programs=programs, unit_dirs=[units], script_dirs=[units.parent / "bin"], **kw
    )


def test_finds_the_installed_packages():
    dirs = package_dirs()
    assert dirs["signer_core"] == Path(signer_core.__file__).parent
    assert set(dirs) == {
        "spool",
        "tlog",
        "hardening",
        "comm_handler",
        "signer_core",
        "signerctl",
        "webhost",
    }


def test_first_check_has_no_baseline_and_accept_makes_it_clean(site):
    first = run(site)
    assert not first.clean and first.baseline_digest is None
    assert (first.changed, first.added, first.removed) == ((), (), ())  # nothing to compare with
    assert "program:signerctl/integrity.py" in first.files
    assert "unit:" + str(site[2] / "signer-core.service") in first.files
    assert not any("unrelated" in label or "python3" in label for label in first.files)
    assert f"script:{site[2].parent / 'bin' / 'signer-core'}" in first.files
    recorded = last_check(load(site[0]).signer.state_dir)
    assert recorded["clean"] is False and "integrity --accept" in recorded["problem"]
    accepted = run(site, accept=True)
    assert accepted.clean and accepted.digest == first.digest
    again = run(site)
    assert again.clean and again.digest == first.digest == again.baseline_digest
    assert (again.changed, again.added, again.removed) == ((), (), ())
    stored = json.loads(default_baseline(load(site[0]).signer.state_dir).read_text())
    assert stored["digest"] == first.digest and len(stored["files"]) == len(first.files)


def test_changed_program_file_is_listed(site):
    run(site, accept=True)
    config, programs, _ = site
    target = programs["signerctl"] / "backup" / "restore.py"
    target.write_bytes(target.read_bytes().replace(b"force: bool = False", b"force: bool = True"))
    (programs["spool"] / "__pycache__").mkdir()
    (programs["spool"] / "__pycache__" / "evil.cpython-311.pyc").write_bytes(b"\x00" * 16)
    (programs["signer_core"] / "store" / "audit.py").unlink()
    script = site[2].parent / "bin" / "signer-core"
    script.write_text(script.read_text() + "import os; os.system('id')\n")
    report = run(site)
    assert not report.clean
    assert report.changed == ("program:signerctl/backup/restore.py", f"script:{script}")
    assert report.added == ("program:spool/__pycache__/evil.cpython-311.pyc",)
    assert report.removed == ("program:signer_core/store/audit.py",)
    assert report.digest != report.baseline_digest
    assert last_check(load(config).signer.state_dir)["clean"] is False


def test_changed_configuration_and_added_root_are_listed(site):
    config, _, _ = site
    run(site, accept=True)
    _, cert = make_root("A second root")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (config.parent / "certs" / "root1.crt").write_bytes(pem)
    with config.open("a") as f:
        f.write(
            '\n[x509.roots.1]\nname = "second"\nkey = "keys/root1.key"\n'
            'certificate = "certs/root1.crt"\ncrl_url = "http://crl.example.org/1.crl"\n'
            'default_digest = "sha256"\n'
        )
    report = run(site)
    assert report.changed == (f"config:{config}",)
    assert report.added == (f"root-certificate:1:{config.parent / 'certs' / 'root1.crt'}",)
    assert report.removed == ()
    accepted = run(site, accept=True)
    assert accepted.clean and accepted.changed  # what was accepted is still shown
    assert run(site).clean


def test_changed_root_certificate_and_unit_are_listed(site):
    config, _, units = site
    run(site, accept=True)
    cert_path = load(config).x509.roots[0].certificate
    _, other = make_root()
    cert_path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    dropin = units / "signer-core.service.d"
    dropin.mkdir()
    (dropin / "override.conf").write_text("[Service]\nExecStart=\nExecStart=/tmp/evil\n")
    report = run(site)
    assert report.changed == (f"root-certificate:0:{cert_path}",)
    assert report.added == (f"unit:{dropin / 'override.conf'}",)


def test_last_check_records_time_and_result(site):
    state_dir = load(site[0]).signer.state_dir
    assert last_check(state_dir) is None
    run(site, accept=True)
    done = last_check(state_dir)
    assert done["clean"] is True and done["accepted"] is True and done["at"]
    assert done["digest"] == run(site).digest
    (state_dir / LAST_CHECK_NAME).write_text("{not json")
    assert last_check(state_dir)["clean"] is False


def test_edited_baseline_is_refused(site):
    run(site, accept=True)
    path = default_baseline(load(site[0]).signer.state_dir)
    data = json.loads(path.read_text())
    data["files"]["program:signerctl/backup/restore.py"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="digest does not match"):
        run(site)
    failed = last_check(load(site[0]).signer.state_dir)
    assert failed["clean"] is False and "digest does not match" in failed["problem"]
    path.write_text("[]")
    with pytest.raises(IntegrityError, match="not a baseline"):
        run(site)


def test_baseline_elsewhere(site, tmp_path):
    other = tmp_path / "elsewhere.json"
    run(site, accept=True, baseline=other)
    assert other.is_file() and run(site, baseline=other).clean
    assert run(site).baseline_digest is None


def test_command_without_baseline_says_so(site, signerctl):
    config = site[0]
    code, shown, err = signerctl("integrity", "--config", str(config), "--json")
    assert code == 1, err
    assert shown["baseline"] is None and "differences" not in shown and "clean" not in shown
    assert "no baseline yet" in shown["note"] and "signerctl integrity --accept" in shown["note"]
    code, accepted, _ = signerctl("integrity", "--accept", "--config", str(config), "--json")
    assert code == 0 and accepted["clean"] is True and accepted["differences"] == []
    code, again, _ = signerctl("--json", "--config", str(config), "integrity")
    assert code == 0 and again["clean"] is True
