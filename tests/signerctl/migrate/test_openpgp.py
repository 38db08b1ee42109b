"""signerctl import-openpgp with keyrings made by the real gpg.

The old signer's ``secring0.gpg`` is a keyring of OpenPGP secret-key
packets: ``gpg --export-secret-keys`` writes exactly that, and
``pubring0.gpg`` is ``gpg --export`` of the root and one more key.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from signer_core.config import load_config
from signerctl import main as ctl
from signerctl.demo.ca import Users, config_text
from signerctl.migrate.openpgp import OpenPGPImportError, import_openpgp

PASSPHRASE = "the old signer's passphrase"


def gpg(home: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def secret_fingerprint(home: Path) -> str:
    listing = gpg(home, "--with-colons", "--list-secret-keys")
    return next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))


@dataclass(frozen=True)
class OldKeyrings:
    dir: Path
    fingerprint: str
    passphrase_file: Path | None


def make_keyrings(base: Path, passphrase: str) -> OldKeyrings:
    old_home = Path(tempfile.mkdtemp(prefix="oldgpg-", dir="/tmp"))
    try:
        old_home.chmod(0o700)
        gpg(
            old_home,
            "--passphrase",
            passphrase,
            "--quick-gen-key",
            "Old CA OpenPGP root <root@old.example>",
            "ed25519",
            "cert,sign",
            "never",
        )
        fpr = secret_fingerprint(old_home)
        gpg(
            old_home,
            "--passphrase",
            "",
            "--quick-gen-key",
            "A user <user@old.example>",
            "ed25519",
            "sign",
            "never",
        )
        keyrings = base / "keyrings"
        keyrings.mkdir()
        gpg(
            old_home,
            "--passphrase",
            passphrase,
            "--output",
            str(keyrings / "secring0.gpg"),
            "--export-secret-keys",
            fpr,
        )
        gpg(old_home, "--output", str(keyrings / "pubring0.gpg"), "--export")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(old_home), "--kill", "all"], check=False)
        shutil.rmtree(old_home, ignore_errors=True)
    pass_file = None
    if passphrase:
        pass_file = base / "passphrase"
        pass_file.write_text(passphrase + "\n")
    return OldKeyrings(keyrings, fpr, pass_file)


def assert_can_sign(home: Path, fpr: str, passphrase_file: Path | None, work: Path) -> None:
    (work / "msg").write_text("hello")
    secret = (
        ["--passphrase-file", str(passphrase_file)] if passphrase_file else ["--passphrase", ""]
    )
    gpg(
        home,
        *secret,
        "--local-user",
        fpr,
        "--output",
        str(work / "msg.sig"),
        "--detach-sign",
        str(work / "msg"),
    )
    verified = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            str(work / "msg.sig"),
            str(work / "msg"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"VALIDSIG {fpr}" in verified.stdout, verified.stderr


@pytest.mark.parametrize("passphrase", ["", PASSPHRASE])
def test_import_makes_a_working_root_home(tmp_path, passphrase):
    old = make_keyrings(tmp_path, passphrase)
    home = tmp_path / "openpgp"
    try:
        done = import_openpgp(old.dir, 0, home, passphrase_file=old.passphrase_file)
        assert done.fingerprint == old.fingerprint and done.public_keys == 2
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert_can_sign(home, old.fingerprint, old.passphrase_file, tmp_path)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    # The printed lines are a valid [openpgp] section for this root.
    config = tmp_path / "signer.toml"
    text = config_text(Users(), "loop://", "A" * 40, Path("/dev/shm/unused")).split("[openpgp]")[0]
    config.write_text(text + done.config_lines(old.passphrase_file))
    loaded = load_config(config).openpgp
    assert loaded.fingerprint == old.fingerprint and loaded.home == home


def test_protected_key_without_its_passphrase_leaves_nothing(tmp_path):
    old = make_keyrings(tmp_path, PASSPHRASE)
    home = tmp_path / "openpgp"
    with pytest.raises(OpenPGPImportError, match="cannot sign"):
        import_openpgp(old.dir, 0, home)
    assert not home.exists()


def test_refuses_a_home_in_use_and_a_missing_keyring(tmp_path):
    old = make_keyrings(tmp_path, "")
    used = tmp_path / "used"
    used.mkdir()
    (used / "pubring.kbx").write_bytes(b"")
    with pytest.raises(OpenPGPImportError, match="not an empty directory"):
        import_openpgp(old.dir, 0, used)
    assert (used / "pubring.kbx").exists()
    with pytest.raises(OpenPGPImportError, match="secring1.gpg is missing"):
        import_openpgp(old.dir, 1, tmp_path / "new")


def test_signerctl_import_openpgp(tmp_path, capsys):
    old = make_keyrings(tmp_path, "")
    home = tmp_path / "openpgp"
    try:
        code = ctl.main(
            [
                "--json",
                "--config",
                str(tmp_path / "absent.toml"),
                "import-openpgp",
                "--keyring-dir",
                str(old.dir),
                "--home",
                str(home),
                "--force",
            ]
        )
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert code == 0 and data["fingerprint"] == old.fingerprint
    assert f'fingerprint = "{old.fingerprint}"' in err and "[openpgp]" in err
    expected_owner = os.geteuid()
    if expected_owner == 0:
        try:
            expected_owner = pwd.getpwnam("_signer").pw_uid
        except KeyError:
            pass
    assert {p.stat().st_uid for p in (home, *home.rglob("*"))} == {expected_owner}
