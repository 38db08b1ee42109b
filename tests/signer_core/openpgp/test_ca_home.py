"""The long-lived CA home: nothing a request brings reaches it, a request's home is removed
whatever happens, it goes with its agent at close, and a stale one is removed at start."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from signer_core.openpgp.cahome import remove_stale
from signer_core.openpgp.certify import certify_key, close_signer, load_signer
from signer_core.openpgp.packets import walk
from signer_core.refusal import Refusal
from tests.support.openpgp import assert_clean, gen_key, gpg


def digests(home: Path) -> dict[str, str]:
    """SHA-256 of every regular file of ``home`` (sockets left out), by relative path."""
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


def agent_running(home: Path) -> bool:
    found = subprocess.run(["pgrep", "-f", f"gpg-agent --homedir {home} "], capture_output=True)
    return found.returncode == 0


def test_the_ca_home_is_byte_identical_after_requests_hostile_or_not(world, clean):
    home = world.signer.ca_home.path
    assert home.parent == world.workdir and home.stat().st_mode & 0o777 == 0o700
    before = digests(home)
    assert any(name.startswith("private-keys-v1.d/") for name in before)
    good = world.user_key("Steady", "Steady Two <two@example.org>")
    unsigned = b"".join(p.raw for p in walk(world.export(world.user_home, good)) if p.tag != 2)
    trust = walk(world.export(world.user_home, good))
    forged_trust = trust[0].raw + trust[1].raw + b"\xb0\x02\x00\x00" + trust[2].raw
    requests = [
        world.export(world.user_home, good),
        unsigned,  # refused: no valid user ID
        world.export(world.ca_home, world.ca_fpr),  # refused: the CA key
        forged_trust,  # a keyring trust packet: not passed on
        b"\x99\x00\x01\x04",  # refused: a key packet alone
    ]
    outcomes = []
    for data in requests:
        try:
            outcomes.append(certify_key(world.signer, data, 30)[:10])
        except Refusal as refusal:
            outcomes.append(refusal.code)
        assert digests(home) == before
        assert_clean(world.workdir)
    assert outcomes[1:3] == ["openpgp-no-valid-uid", "openpgp-ca-key"]
    assert outcomes[0] == outcomes[3] == b"-----BEGIN"
    assert outcomes[4] == "openpgp-no-uid"
    assert agent_running(home)


def test_close_stops_the_agent_and_removes_the_home_and_a_stale_one_goes_at_start(world, clean):
    home = world.homes.new()
    fpr = gen_key(home, "Short CA <short@example.org>", usage="cert")
    signer = load_signer(fingerprint=fpr, home=home, workdir=world.workdir)
    path = signer.ca_home.path
    assert agent_running(path)
    close_signer(signer)
    assert not path.exists() and not agent_running(path)
    close_signer(signer)  # twice: nothing more
    stale = world.workdir / "cstale123"
    stale.mkdir(mode=0o700)
    (stale / "pid").write_text(f"{2**22 + 1}\n")  # above pid_max: no such process
    live = world.workdir / "clive1234"
    live.mkdir(mode=0o700)
    (live / "pid").write_text(f"{os.getpid()}\n")
    remove_stale(world.workdir)
    assert not stale.exists() and live.exists()
    live.joinpath("pid").unlink()
    live.rmdir()


def test_the_result_is_gpg_s_own_armour_of_the_key(world, clean):
    fpr = world.user_key("Armour")
    result = certify_key(world.signer, world.export(world.user_home, fpr), 30)
    home = world.homes.new()
    gpg(home, "--import", data=world.export(world.ca_home, world.ca_fpr))
    gpg(home, "--import", data=result)
    assert gpg(home, "--armor", "--export", fpr) == result
    assert not any(p.tag == 12 for p in walk(gpg(home, "--dearmor", data=result)))


@pytest.mark.parametrize("days", [1, 3660])
def test_expiry_is_what_was_asked(world, clean, days):
    fpr = world.user_key(f"Days{days}")
    certify_key(world.signer, world.export(world.user_home, fpr), days)
