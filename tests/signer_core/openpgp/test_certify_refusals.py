"""OpenPGP certification with the real gpg: one test per refusal, and the CA key's
loading and settings refused when wrong; after every call, no private GnuPG home and
no gpg-agent left behind."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from signer_core.openpgp.certify import (
    OpenPGPSigner,
    certify_key,
    load_signer,
)
from signer_core.openpgp.gpg import checked_workdir, private_home
from signer_core.openpgp.packets import walk
from signer_core.refusal import Refusal
from tests.support.openpgp import (
    assert_clean,
    gen_key,
    gpg,
    packet,
)

# --- refusals ------------------------------------------------------------------


def refused(world, data: bytes, days: int = 366, signer: OpenPGPSigner | None = None) -> str:
    with pytest.raises(Refusal) as info:
        certify_key(signer or world.signer, data, days)
    assert_clean(world.workdir)
    return info.value.code


def test_refuses_too_large_first(world, clean):
    assert refused(world, b"\x99" + b"\0" * (1 << 20)) == "openpgp-too-large"


def test_refuses_empty_and_non_openpgp(world, clean):
    assert refused(world, b"") == "openpgp-no-key"
    assert refused(world, b"hello world\n") == "openpgp-bad-armour"


def test_refuses_no_public_key(world, clean):
    fpr = world.user_key("Nokey")
    uid_only = b"".join(p.raw for p in walk(world.export(world.user_home, fpr)) if p.tag in (13, 2))
    assert refused(world, uid_only) == "openpgp-no-key"


def test_refuses_two_keys(world, clean):
    a, b = world.user_key("Twin1"), world.user_key("Twin2")
    assert (
        refused(world, world.export(world.user_home, a) + world.export(world.user_home, b))
        == "openpgp-multiple-keys"
    )
    armoured = (
        world.export(world.user_home, a, "--armor")
        + b"\n"
        + world.export(world.user_home, b, "--armor")
    )
    assert refused(world, armoured) == "openpgp-multiple-keys"


@pytest.mark.parametrize("armour", [False, True])
def test_refuses_secret_key(world, clean, armour):
    fpr = world.user_key(f"Secret{armour}")
    args = ["--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr]
    data = gpg(world.user_home, *(["--armor"] if armour else []), *args)
    assert refused(world, data) == "openpgp-secret-key"
    if armour:  # a secret key dressed as a public block is still found
        relabelled = data.replace(b"PRIVATE KEY BLOCK", b"PUBLIC KEY BLOCK")
        assert refused(world, relabelled) == "openpgp-secret-key"


def test_refuses_secret_subkey_alone(world, clean):
    fpr = world.user_key("Subsecret", subkey=True)
    secret = walk(
        gpg(
            world.user_home,
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--export-secret-subkeys",
            fpr,
        )
    )
    public = walk(world.export(world.user_home, fpr))
    mixed = b"".join(p.raw for p in public if p.tag != 14) + b"".join(
        p.raw for p in secret if p.tag == 7
    )
    assert refused(world, mixed) == "openpgp-secret-key"


def test_refuses_revoked_key(world, clean):
    fpr = world.user_key("Revoked")
    rev = (world.user_home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    gpg(world.user_home, "--import", data=rev.replace(":-----BEGIN", "-----BEGIN").encode())
    assert refused(world, world.export(world.user_home, fpr)) == "openpgp-key-revoked"


def test_refuses_expired_key(world, clean):
    fpr = gen_key(world.user_home, "Expired <expired@example.org>", expire="1d", at=world.past)
    assert refused(world, world.export(world.user_home, fpr)) == "openpgp-key-expired"


@pytest.mark.parametrize("algo", ["rsa1024", "dsa1024"])
def test_refuses_weak_rsa_dsa(world, clean, algo):
    fpr = world.user_key(f"Weak{algo}", algo=algo)
    assert refused(world, world.export(world.user_home, fpr)) == "openpgp-weak-key"


@pytest.mark.parametrize("algo_id", [16, 20, 18, 99])
def test_refuses_elgamal_ecdh_and_unknown_primary(world, clean, algo_id):
    fpr = world.user_key(f"Odd{algo_id}")
    packets = walk(world.export(world.user_home, fpr))
    body = bytearray(packets[0].body)
    body[5] = algo_id
    forged = packet(6, bytes(body)) + b"".join(p.raw for p in packets[1:])
    assert refused(world, forged) == "openpgp-weak-key"


def test_refuses_key_without_user_id(world, clean):
    fpr = world.user_key("Nouid")
    packets = walk(world.export(world.user_home, fpr))
    assert (
        refused(world, b"".join(p.raw for p in packets if p.tag not in (13, 2))) == "openpgp-no-uid"
    )


def test_refuses_key_whose_only_uid_is_expired(world, clean):
    fpr = world.user_key("Onlyexpired")
    key = world.with_expired_uid(fpr, b"Gone <gone@example.org>", keep_others=False)
    assert refused(world, key) == "openpgp-no-valid-uid"


def test_refuses_key_whose_uids_lack_self_signatures(world, clean):
    fpr = world.user_key("Unsigned")
    packets = walk(world.export(world.user_home, fpr))
    assert refused(world, b"".join(p.raw for p in packets if p.tag != 2)) == "openpgp-no-valid-uid"


def test_refuses_the_ca_key_itself(world, clean):
    assert refused(world, world.export(world.ca_home, world.ca_fpr)) == "openpgp-ca-key"


@pytest.mark.parametrize("days", [0, -1, 3661, True])
def test_refuses_bad_days(world, clean, days):
    assert (
        refused(world, world.export(world.ca_home, world.ca_fpr), days=days) == "openpgp-bad-days"
    )


def test_refusal_when_ca_key_no_longer_unlocks(world, clean):
    bad = world.homes.root / "bad.pass"
    bad.write_text("wrong\n")
    signer = dataclasses.replace(
        world.signer,
        passphrase_file=bad,
        ca_secret=dataclasses.replace(world.signer.ca_secret, passphrase="wrong"),
    )
    fpr = world.user_key("Locked")
    with pytest.raises(Refusal) as info:
        certify_key(signer, world.export(world.user_home, fpr), 366)
    assert info.value.code == "openpgp-certify-failed"
    assert info.value.text == "no user ID certified: gpg: signing failed: Bad passphrase"


def test_only_certifications_gpg_made_count(world, clean, monkeypatch):
    """With dropping and signing switched off, a genuine CA certification the request
    carries (so, one not made for this request) does not pass the final check."""
    import signer_core.openpgp.certify as module
    from signer_core.openpgp.gpg import GpgRun
    from signer_core.openpgp.keyblock import summarise

    fpr = world.user_key("Forged")
    genuine = certify_key(world.signer, world.export(world.user_home, fpr), 5)
    monkeypatch.setattr(module, "summarise", lambda data, drop_certifier, limits: summarise(data))
    monkeypatch.setattr(module, "run_gpg", lambda *args: GpgRun(0, "", ""))
    monkeypatch.setattr(module, "_CLOCK_SLACK", 3600)
    with pytest.raises(Refusal) as info:
        certify_key(world.signer, genuine, 5)
    assert info.value.code == "openpgp-certify-failed"


def test_ca_secret_key_never_reaches_the_logs(world, clean, caplog):
    caplog.set_level(logging.DEBUG)
    fpr = world.user_key("Logged")
    certify_key(world.signer, world.export(world.user_home, fpr), 1)
    load_signer(
        fingerprint=world.ca_fpr,
        home=world.ca_home,
        passphrase_file=world.ca_pass_file,
        workdir=world.workdir,
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert world.ca_pass not in logged
    encrypted = walk(world.signer.ca_secret.key)[0].body[-48:]
    # a window whose repr is the same whichever quote repr() picks
    window = next(
        encrypted[i : i + 12] for i in range(36) if not set(encrypted[i : i + 12]) & set(b"'\"\\")
    )
    assert repr(window)[2:-1] not in logged


def test_cleanup_after_an_unexpected_error(world, clean, monkeypatch):
    """An exception from deep inside (agent already running) still removes home and agent."""
    import signer_core.openpgp.certify as module

    def boom(*args, **kwargs):
        raise OSError("simulated failure after the CA key was imported")

    monkeypatch.setattr(module, "run_gpg", boom)
    fpr = world.user_key("Boom")
    with pytest.raises(OSError):
        certify_key(world.signer, world.export(world.user_home, fpr), 366)
    assert_clean(world.workdir)


def test_without_a_workdir_each_home_is_a_random_directory_in_the_temp_dir(world, monkeypatch):
    """Nothing of a predictable name another user could create first, and never /dev/shm."""
    temp = world.homes.root / "t"
    temp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    signer = dataclasses.replace(world.signer, workdir=None)
    with private_home(checked_workdir(signer.workdir)) as private:
        assert private.path.parent == temp and private.path.stat().st_mode & 0o777 == 0o700
    fpr = world.user_key("Default")
    certify_key(signer, world.export(world.user_home, fpr), 1)
    assert_clean(temp)


# --- loading the CA key ------------------------------------------------------------


def test_load_signer_refusals(world, clean):
    wrong = world.homes.root / "wrong.pass"
    wrong.write_text("nope\n")
    kw = dict(fingerprint=world.ca_fpr, workdir=world.workdir)
    cases = [
        dict(home=world.ca_home, passphrase_file=wrong),
        dict(home=world.homes.root / "absent"),
        dict(key_file=world.homes.root / "absent.asc"),
        dict(home=world.ca_home, passphrase_file=world.homes.root / "absent.pass"),
        dict(home=world.user_home, passphrase_file=world.ca_pass_file),  # fingerprint not there
    ]
    for case in cases:
        with pytest.raises(Refusal) as info:
            load_signer(**kw, **case)
        assert info.value.code == "openpgp-root-missing", case
        assert_clean(world.workdir)
    # no CA agent left holding the passphrase either
    agents = subprocess.run(["pgrep", "-af", "gpg-agent"], capture_output=True, check=False).stdout
    assert f"--homedir {world.ca_home} ".encode() not in agents


def test_unprotected_ca_key_works_and_an_expired_one_is_refused(world, clean):
    home = world.homes.new()
    fpr = gen_key(home, "Plain CA <plain@example.org>", usage="cert")
    signer = load_signer(fingerprint=fpr, home=home, workdir=world.workdir)
    user = world.user_key("Plain")
    assert certify_key(signer, world.export(world.user_home, user), 1).startswith(
        b"-----BEGIN PGP PUBLIC"
    )
    old = gen_key(home, "Old CA <old@example.org>", usage="cert", expire="1d", at=world.past)
    with pytest.raises(Refusal) as info:
        load_signer(fingerprint=old, home=home, workdir=world.workdir)
    assert info.value.code == "openpgp-root-missing" and "expired" in info.value.text


@pytest.mark.parametrize(
    "change",
    [
        dict(digest="SHA1"),
        dict(digest="SHA224"),
        dict(digest="MD5"),
        dict(cert_level=4),
        dict(fingerprint="ABCD"),
        dict(policy_url="http://x y"),
        dict(key_file=Path("/k")),
        dict(home=None),
        dict(workdir=Path("/tmp/" + "x" * 80)),
    ],
)
def test_construction_rejects_bad_settings(world, change):
    with pytest.raises(ValueError):
        dataclasses.replace(world.signer, **change)


def test_workdir_must_be_private(world):
    fpr = world.user_key("Private")
    shared = Path("/tmp") / f"tpgp-shared-{time.time_ns()}"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    try:
        signer = dataclasses.replace(world.signer, workdir=shared)
        with pytest.raises(RuntimeError):
            certify_key(signer, world.export(world.user_home, fpr), 1)
    finally:
        shared.rmdir()
