"""``signerctl audit key``: the log key's verifier line, from the private key when this user
can read it and from the ``.pub`` beside it otherwise; one sentence and exit 1 without a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from signer_core.config import load_config
from signer_core.logkey import load_or_create, public_path
from signerctl.demo.rig import CODE_ROOT


@pytest.fixture
def config(world_dir):
    """A configuration whose state directory (and log key) other users can reach."""
    (world_dir / "state").mkdir(mode=0o755)
    path = world_dir / "signer.toml"
    path.write_text(
        '[spool]\ndir = "sp"\n[signer]\nstate_dir = "state"\n[audit]\norigin = "ca.example/log"\n'
    )
    path.chmod(0o644)
    return path


def test_without_a_key_it_says_the_signer_makes_one(config, signerctl):
    key_file = config.parent / "state" / "audit-log.key"
    code, out, err = signerctl("audit", "key", "--config", str(config))
    assert (code, out) == (1, "")
    assert (
        err
        == f"signerctl: there is no log key yet: the signer makes {key_file} at its first start\n"
    )


def test_it_prints_the_verifier_line(config, signerctl):
    cfg = load_config(config).audit
    key, _ = load_or_create(cfg)
    line = key.verifier.text()
    assert signerctl("audit", "key", "--config", str(config)) == (0, line + "\n", "")
    code, shown, _ = signerctl("--json", "audit", "key", "--config", str(config))
    assert (code, shown) == (0, {"verifier": line, "from": str(cfg.log_key)})
    cfg.log_key.write_bytes(b"not a key\n")
    code, out, err = signerctl("audit", "key", "--config", str(config))
    assert (code, out) == (1, "")
    assert err == f"signerctl: the log key {cfg.log_key} is not an unencrypted PEM private key\n"


def test_a_user_who_cannot_read_the_key_gets_the_public_copy(config, users):
    cfg = load_config(config).audit
    key, _ = load_or_create(cfg)
    if os.geteuid() != 0:
        cfg.log_key.chmod(0)  # as root, another user is asked instead
    done = subprocess.run(
        [sys.executable, "-m", "signerctl.main", "--json", "--config", str(config), "audit", "key"],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        user=users.comm_uid,  # None (not root): the caller
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "verifier": key.verifier.text(),
        "from": str(public_path(cfg)),
    }
