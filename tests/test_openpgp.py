"""OpenPGP certification end to end with the real gpg: certify, re-import the
result into an independent keyring, and check each certification packet by
packet (class, digest, expiry, policy URL, issuer) and cryptographically
(``--check-sigs``); one test per refusal; and after every call, no private
GnuPG home and no gpg-agent left behind."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import gnupg
import pytest
from conftest_openpgp import (
    Ed25519Key,
    Homes,
    assert_clean,
    colon_sigs,
    gen_key,
    gpg,
    packet,
    user_ids,
)

from signer_core.openpgp.certify import (
    DEFAULT_POLICY_URL,
    OpenPGPSigner,
    _workdir,
    certify_key,
    load_signer,
)
from signer_core.openpgp.gpg import private_home
from signer_core.openpgp.packets import walk
from signer_core.refusal import Refusal

CA_PASS = "correct horse battery"
DAY = 86400
PAST = int(time.time()) - 30 * DAY  # user keys are made "30 days ago" so old self-sigs are valid


@dataclasses.dataclass(frozen=True)
class World:
    homes: Homes
    ca_home: Path
    ca_fpr: str
    ca_pass_file: Path
    user_home: Path
    workdir: Path
    signer: OpenPGPSigner


@pytest.fixture(scope="module")
def world():
    homes = Homes()
    ca_home = homes.new()
    ca_fpr = gen_key(ca_home, "Test CA <ca@example.org>", usage="cert", passphrase=CA_PASS)
    pass_file = homes.root / "ca.pass"
    pass_file.write_text(CA_PASS + "\n")
    workdir = homes.root / "w"
    signer = load_signer(
        fingerprint=ca_fpr, home=ca_home, passphrase_file=pass_file, workdir=workdir
    )
    try:
        yield World(homes, ca_home, ca_fpr, pass_file, homes.new(), workdir, signer)
    finally:
        homes.close()


@pytest.fixture
def clean(world):
    """Every test leaves the work directory empty and no agent behind."""
    yield
    assert_clean(world.workdir)


def export(home: Path, fpr: str, *extra: str) -> bytes:
    return gpg(home, "--export", *extra, fpr)


def user_key(
    world: World, name: str, *more_uids: str, algo: str = "ed25519", subkey: bool = False
) -> str:
    fpr = gen_key(world.user_home, f"{name} <{name.lower()}@example.org>", algo=algo, at=PAST)
    if subkey:
        gpg(
            world.user_home,
            "--faked-system-time",
            f"{PAST + 30}!",
            "--passphrase",
            "",
            "--quick-add-key",
            fpr,
            "cv25519",
            "encr",
        )
    for uid in more_uids:
        gpg(
            world.user_home,
            "--faked-system-time",
            f"{PAST + 60}!",
            "--passphrase",
            "",
            "--quick-add-uid",
            fpr,
            uid,
        )
    return fpr


def with_expired_uid(world: World, fpr: str, uid: bytes, *, keep_others: bool = True) -> bytes:
    """The public key ``fpr`` with a user ID whose self-signature expired a week ago."""
    secret = gpg(
        world.user_home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--export-secret-keys",
        fpr,
    )
    key = Ed25519Key.from_secret_export(secret)
    public = walk(export(world.user_home, fpr))
    expired = key.uid_with_self_sig(uid, created=PAST + 3600, expires_after=DAY)
    rest = b"".join(p.raw for p in public[1:]) if keep_others else b""
    return public[0].raw + expired + rest


def ca_certifications(uid, ca_fpr):
    return [s for s in uid.sigs if s.keyid == ca_fpr[-16:] and 0x10 <= s.sigclass <= 0x13]


def check_certified(
    world: World,
    result: bytes,
    fpr: str,
    valid: set[str],
    days: int,
    level: int = 2,
    digest: int = 8,
    policy: str = DEFAULT_POLICY_URL,
) -> None:
    """Import ``result`` into a fresh keyring beside the CA's public key; check every UID."""
    assert result.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert not any(p.tag in (5, 7) for p in walk(gpg(world.homes.new(), "--dearmor", data=result)))
    home = world.homes.new()
    gpg(home, "--import", data=export(world.ca_home, world.ca_fpr))
    gpg(home, "--import", data=result)
    now = time.time()
    uids = user_ids(home, export(home, fpr))
    assert {u.text for u in uids} >= valid
    for uid in uids:
        certs = ca_certifications(uid, world.ca_fpr)
        if uid.text not in valid:
            assert certs == [], uid.text
            continue
        assert len(certs) == 1, uid.text
        cert = certs[0]
        assert cert.sigclass == 0x10 + level
        assert cert.digest_algo == digest
        assert abs(cert.created - now) < 120
        assert cert.expires_after == days * DAY
        assert cert.hashed[26] == f"policy: {policy}"
        assert cert.hashed[33] == f"issuer fpr v4 {world.ca_fpr}"
    # gpg's own verdict: each CA certification verifies, and expires days later.
    checked = [r for r in colon_sigs(home, fpr) if r[0] == "sig" and r[4] == world.ca_fpr[-16:]]
    assert len(checked) == len(valid)
    for record in checked:
        assert record[1] == "!"
        assert int(record[6]) - int(record[5]) == days * DAY
        assert record[10] == f"1{level}x"


# --- success -------------------------------------------------------------------


def test_certifies_valid_uids_and_leaves_revoked_and_expired_ones(world, clean):
    fpr = user_key(
        world,
        "Alice",
        "Alice Work <alice@work.example>",
        "Old Alice <old@example.org>",
        subkey=True,
    )
    gpg(
        world.user_home,
        "--faked-system-time",
        f"{PAST + 120}!",
        "--passphrase",
        "",
        "--quick-revoke-uid",
        fpr,
        "Old Alice <old@example.org>",
    )
    key = with_expired_uid(world, fpr, b"Expired Alice <expired@example.org>")
    before = {u.text for u in user_ids(world.user_home, key)}
    assert "Expired Alice <expired@example.org>" in before and len(before) == 4

    result = certify_key(world.signer, key, 366)

    assert [p.tag for p in walk(gpg(world.homes.new(), "--dearmor", data=result))].count(14) == 1
    check_certified(
        world, result, fpr, {"Alice <alice@example.org>", "Alice Work <alice@work.example>"}, 366
    )


def test_armoured_input_level_digest_and_policy_from_the_signer(world, clean):
    fpr = user_key(world, "Bob")
    signer = dataclasses.replace(
        world.signer, cert_level=3, digest="sha512", policy_url="https://ca.example/policy.html"
    )
    result = certify_key(signer, export(world.user_home, fpr, "--armor"), 30)
    check_certified(
        world,
        result,
        fpr,
        {"Bob <bob@example.org>"},
        30,
        level=3,
        digest=10,
        policy="https://ca.example/policy.html",
    )


@pytest.mark.parametrize("algo", ["rsa2048", "nistp384", "ed25519"])
def test_accepted_algorithms(world, clean, algo):
    fpr = user_key(world, f"Algo{algo}", algo=algo)
    result = certify_key(world.signer, export(world.user_home, fpr), 10)
    check_certified(world, result, fpr, {f"Algo{algo} <algo{algo}@example.org>"}, 10)


def test_renewal_replaces_the_earlier_ca_certification(world, clean):
    fpr = user_key(world, "Carol")
    first = certify_key(world.signer, export(world.user_home, fpr), 5)
    time.sleep(1.1)  # a distinct creation time for the new certification
    second = certify_key(world.signer, first, 366)
    check_certified(world, second, fpr, {"Carol <carol@example.org>"}, 366)


def test_without_python_gnupg_quick_sign_key(world, clean, monkeypatch):
    """The path Debian 12's python-gnupg 0.4.9 takes (no GPG.quick_sign_key)."""
    monkeypatch.delattr(gnupg.GPG, "quick_sign_key", raising=False)
    fpr = user_key(world, "Dave")
    result = certify_key(world.signer, export(world.user_home, fpr), 366)
    check_certified(world, result, fpr, {"Dave <dave@example.org>"}, 366)


def test_key_file_signer_and_lazy_secret(world, clean):
    key_file = world.homes.root / "ca.sec.asc"
    key_file.write_bytes(
        gpg(
            world.ca_home,
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            CA_PASS,
            "--armor",
            "--export-secret-keys",
            world.ca_fpr,
        )
    )
    loaded = load_signer(
        fingerprint=world.ca_fpr,
        key_file=key_file,
        passphrase_file=world.ca_pass_file,
        workdir=world.workdir,
    )
    bare = OpenPGPSigner(
        None, key_file, world.ca_fpr.lower(), world.ca_pass_file, workdir=world.workdir
    )
    fpr = user_key(world, "Erin")
    for signer in (loaded, bare):
        result = certify_key(signer, export(world.user_home, fpr), 20)
        check_certified(world, result, fpr, {"Erin <erin@example.org>"}, 20)


# --- refusals ------------------------------------------------------------------


def refused(world: World, data: bytes, days: int = 366, signer: OpenPGPSigner | None = None) -> str:
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
    fpr = user_key(world, "Nokey")
    uid_only = b"".join(p.raw for p in walk(export(world.user_home, fpr)) if p.tag in (13, 2))
    assert refused(world, uid_only) == "openpgp-no-key"


def test_refuses_two_keys(world, clean):
    a, b = user_key(world, "Twin1"), user_key(world, "Twin2")
    assert (
        refused(world, export(world.user_home, a) + export(world.user_home, b))
        == "openpgp-multiple-keys"
    )
    armoured = export(world.user_home, a, "--armor") + b"\n" + export(world.user_home, b, "--armor")
    assert refused(world, armoured) == "openpgp-multiple-keys"


@pytest.mark.parametrize("armour", [False, True])
def test_refuses_secret_key(world, clean, armour):
    fpr = user_key(world, f"Secret{armour}")
    args = ["--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr]
    data = gpg(world.user_home, *(["--armor"] if armour else []), *args)
    assert refused(world, data) == "openpgp-secret-key"
    if armour:  # a secret key dressed as a public block is still found
        relabelled = data.replace(b"PRIVATE KEY BLOCK", b"PUBLIC KEY BLOCK")
        assert refused(world, relabelled) == "openpgp-secret-key"


def test_refuses_secret_subkey_alone(world, clean):
    fpr = user_key(world, "Subsecret", subkey=True)
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
    public = walk(export(world.user_home, fpr))
    mixed = b"".join(p.raw for p in public if p.tag != 14) + b"".join(
        p.raw for p in secret if p.tag == 7
    )
    assert refused(world, mixed) == "openpgp-secret-key"


def test_refuses_revoked_key(world, clean):
    fpr = user_key(world, "Revoked")
    rev = (world.user_home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    gpg(world.user_home, "--import", data=rev.replace(":-----BEGIN", "-----BEGIN").encode())
    assert refused(world, export(world.user_home, fpr)) == "openpgp-key-revoked"


def test_refuses_expired_key(world, clean):
    fpr = gen_key(world.user_home, "Expired <expired@example.org>", expire="1d", at=PAST)
    assert refused(world, export(world.user_home, fpr)) == "openpgp-key-expired"


@pytest.mark.parametrize("algo", ["rsa1024", "dsa1024"])
def test_refuses_weak_rsa_dsa(world, clean, algo):
    fpr = user_key(world, f"Weak{algo}", algo=algo)
    assert refused(world, export(world.user_home, fpr)) == "openpgp-weak-key"


@pytest.mark.parametrize("algo_id", [16, 20, 18, 99])
def test_refuses_elgamal_ecdh_and_unknown_primary(world, clean, algo_id):
    fpr = user_key(world, f"Odd{algo_id}")
    packets = walk(export(world.user_home, fpr))
    body = bytearray(packets[0].body)
    body[5] = algo_id
    forged = packet(6, bytes(body)) + b"".join(p.raw for p in packets[1:])
    assert refused(world, forged) == "openpgp-weak-key"


def test_refuses_key_without_user_id(world, clean):
    fpr = user_key(world, "Nouid")
    packets = walk(export(world.user_home, fpr))
    assert (
        refused(world, b"".join(p.raw for p in packets if p.tag not in (13, 2))) == "openpgp-no-uid"
    )


def test_refuses_key_whose_only_uid_is_expired(world, clean):
    fpr = user_key(world, "Onlyexpired")
    key = with_expired_uid(world, fpr, b"Gone <gone@example.org>", keep_others=False)
    assert refused(world, key) == "openpgp-no-valid-uid"


def test_refuses_key_whose_uids_lack_self_signatures(world, clean):
    fpr = user_key(world, "Unsigned")
    packets = walk(export(world.user_home, fpr))
    assert refused(world, b"".join(p.raw for p in packets if p.tag != 2)) == "openpgp-no-valid-uid"


def test_refuses_the_ca_key_itself(world, clean):
    assert refused(world, export(world.ca_home, world.ca_fpr)) == "openpgp-ca-key"


@pytest.mark.parametrize("days", [0, -1, 3661, True])
def test_refuses_bad_days(world, clean, days):
    assert refused(world, export(world.ca_home, world.ca_fpr), days=days) == "openpgp-bad-days"


def test_refusal_when_ca_key_no_longer_unlocks(world, clean):
    bad = world.homes.root / "bad.pass"
    bad.write_text("wrong\n")
    signer = dataclasses.replace(
        world.signer,
        passphrase_file=bad,
        ca_secret=dataclasses.replace(world.signer.ca_secret, passphrase="wrong"),
    )
    fpr = user_key(world, "Locked")
    with pytest.raises(Refusal) as info:
        certify_key(signer, export(world.user_home, fpr), 366)
    assert info.value.code == "openpgp-certify-failed"
    assert info.value.text == "0 of 1 user IDs certified: gpg: signing failed: Bad passphrase"


def test_only_verifying_ca_certifications_count(world, clean, monkeypatch):
    """With dropping and signing switched off, an earlier genuine CA certification passes
    the final check, and the same one with a broken signature does not."""
    import signer_core.openpgp.certify as module
    from signer_core.openpgp.gpg import CommandResult
    from signer_core.openpgp.keyblock import summarise

    fpr = user_key(world, "Forged")
    packets = walk(
        gpg(
            world.homes.new(),
            "--dearmor",
            data=certify_key(world.signer, export(world.user_home, fpr), 5),
        )
    )
    [at] = [i for i, p in enumerate(packets) if p.tag == 2 and p.body[1] == 0x12]
    broken = bytearray(packets[at].body)
    broken[-1] ^= 1
    genuine = b"".join(p.raw for p in packets)
    forged = b"".join(packet(2, bytes(broken)) if i == at else p.raw for i, p in enumerate(packets))
    monkeypatch.setattr(module, "summarise", lambda data, drop_certifier, limits: summarise(data))
    monkeypatch.setattr(module, "quick_sign_key", lambda *args: CommandResult(0, ""))
    monkeypatch.setattr(module, "_CLOCK_SLACK", 3600)
    assert certify_key(world.signer, genuine, 5).startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    with pytest.raises(Refusal) as info:
        certify_key(world.signer, forged, 5)
    assert info.value.code == "openpgp-certify-failed"


def test_ca_secret_key_never_reaches_the_logs(world, clean, caplog):
    caplog.set_level(logging.DEBUG)
    fpr = user_key(world, "Logged")
    certify_key(world.signer, export(world.user_home, fpr), 1)
    load_signer(
        fingerprint=world.ca_fpr,
        home=world.ca_home,
        passphrase_file=world.ca_pass_file,
        workdir=world.workdir,
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert CA_PASS not in logged
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

    monkeypatch.setattr(module, "quick_sign_key", boom)
    fpr = user_key(world, "Boom")
    with pytest.raises(OSError):
        certify_key(world.signer, export(world.user_home, fpr), 366)
    assert_clean(world.workdir)


def test_without_a_workdir_each_home_is_a_random_directory_in_the_temp_dir(world, monkeypatch):
    """Nothing of a predictable name another user could create first, and never /dev/shm."""
    temp = world.homes.root / "t"
    temp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    signer = dataclasses.replace(world.signer, workdir=None)
    with private_home(_workdir(signer)) as private:
        assert private.path.parent == temp and private.path.stat().st_mode & 0o777 == 0o700
    fpr = user_key(world, "Default")
    certify_key(signer, export(world.user_home, fpr), 1)
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
    user = user_key(world, "Plain")
    assert certify_key(signer, export(world.user_home, user), 1).startswith(
        b"-----BEGIN PGP PUBLIC"
    )
    old = gen_key(home, "Old CA <old@example.org>", usage="cert", expire="1d", at=PAST)
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
    fpr = user_key(world, "Private")
    shared = Path("/tmp") / f"tpgp-shared-{time.time_ns()}"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    try:
        signer = dataclasses.replace(world.signer, workdir=shared)
        with pytest.raises(RuntimeError):
            certify_key(signer, export(world.user_home, fpr), 1)
    finally:
        shared.rmdir()
