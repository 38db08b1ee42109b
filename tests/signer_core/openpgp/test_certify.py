"""OpenPGP certification end to end with the real gpg: certify, re-import the
result into an independent keyring, and check each certification packet by
packet (class, digest, expiry, policy URL, issuer) and cryptographically
(``--check-sigs``); after every call, no private GnuPG home and no gpg-agent
left behind. The refusals are in test_certify_refusals.py."""

from __future__ import annotations

import dataclasses
import time

import pytest

from signer_core.openpgp.certify import (
    DEFAULT_POLICY_URL,
    OpenPGPSigner,
    certify_key,
    load_signer,
)
from signer_core.openpgp.packets import walk
from tests.support.openpgp import (
    colon_sigs,
    gpg,
    user_ids,
)

DAY = 86400


def ca_certifications(uid, ca_fpr):
    return [s for s in uid.sigs if s.keyid == ca_fpr[-16:] and 0x10 <= s.sigclass <= 0x13]


def check_certified(
    world,
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
    gpg(home, "--import", data=world.export(world.ca_home, world.ca_fpr))
    gpg(home, "--import", data=result)
    now = time.time()
    uids = user_ids(home, world.export(home, fpr))
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
    fpr = world.user_key(
        "Alice",
        "Alice Work <alice@work.example>",
        "Old Alice <old@example.org>",
        subkey=True,
    )
    gpg(
        world.user_home,
        "--faked-system-time",
        f"{world.past + 120}!",
        "--passphrase",
        "",
        "--quick-revoke-uid",
        fpr,
        "Old Alice <old@example.org>",
    )
    key = world.with_expired_uid(fpr, b"Expired Alice <expired@example.org>")
    before = {u.text for u in user_ids(world.user_home, key)}
    assert "Expired Alice <expired@example.org>" in before and len(before) == 4

    result = certify_key(world.signer, key, 366)

    assert [p.tag for p in walk(gpg(world.homes.new(), "--dearmor", data=result))].count(14) == 1
    check_certified(
        world, result, fpr, {"Alice <alice@example.org>", "Alice Work <alice@work.example>"}, 366
    )


def test_armoured_input_level_digest_and_policy_from_the_signer(world, clean):
    fpr = world.user_key("Bob")
    signer = dataclasses.replace(
        world.signer, cert_level=3, digest="sha512", policy_url="https://ca.example/policy.html"
    )
    result = certify_key(signer, world.export(world.user_home, fpr, "--armor"), 30)
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
    fpr = world.user_key(f"Algo{algo}", algo=algo)
    result = certify_key(world.signer, world.export(world.user_home, fpr), 10)
    check_certified(world, result, fpr, {f"Algo{algo} <algo{algo}@example.org>"}, 10)


def test_renewal_replaces_the_earlier_ca_certification(world, clean):
    fpr = world.user_key("Carol")
    first = certify_key(world.signer, world.export(world.user_home, fpr), 5)
    time.sleep(1.1)  # a distinct creation time for the new certification
    second = certify_key(world.signer, first, 366)
    check_certified(world, second, fpr, {"Carol <carol@example.org>"}, 366)


def test_key_file_signer_and_lazy_secret(world, clean):
    key_file = world.homes.root / "ca.sec.asc"
    key_file.write_bytes(
        gpg(
            world.ca_home,
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            world.ca_pass,
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
    fpr = world.user_key("Erin")
    for signer in (loaded, bare):
        result = certify_key(signer, world.export(world.user_home, fpr), 20)
        check_certified(world, result, fpr, {"Erin <erin@example.org>"}, 20)
