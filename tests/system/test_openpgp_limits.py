"""Hostile OpenPGP keys through both real daemons, each under its own user: a key over a
packet bound (the issue's 16384-bit key with 50 bogus self-signatures among them) is
refused with its code at once; a key that passes the bounds but would keep gpg busy for
minutes is refused when gpg and its agent are killed at the wall-clock limit. Neither
daemon restarts, nothing is left of the private home, and an ordinary request sent right
behind is answered within seconds."""

from __future__ import annotations

import time

import pytest

from signer_core.openpgp.packets import walk
from signerctl.demo.ca import gpg_workdir
from tests.support.openpgp import assert_clean, gen_key, gpg, packet
from webhost.client import WebClient

ANSWERED_WITHIN = 10.0  # s, for a refusal and for the ordinary request behind it
# Keys of any size past the packet checks, gpg held to one second: the limit is what stops it.
TIGHT = "max_key_bits = 16384\nmax_rsa_exponent_bits = 16384\ngpg_wall_seconds = 1.0\n"


def exchange(appliance, key: bytes):
    start = time.monotonic()
    with WebClient(appliance.link) as client:
        response = client.sign_openpgp(key, 30)
    return response, time.monotonic() - start


def ordinary_key(world_dir, name: str) -> bytes:
    home = world_dir / f"{name}-gnupg"
    home.mkdir(mode=0o700)
    return gpg(home, "--export", gen_key(home, f"{name} <{name.lower()}@example.org>"))


def assert_answered_right_behind(appliance, world_dir) -> None:
    response, seconds = exchange(appliance, ordinary_key(world_dir, "Behind"))
    assert response.ok and response.payload1.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert seconds < ANSWERED_WITHIN, seconds


def test_keys_over_a_bound_are_refused_at_once_and_the_next_is_answered(
    appliance, world_dir, rsa_bomb
):
    before = appliance.pids()
    plain = walk(ordinary_key(world_dir, "Plain"))
    many_signatures = b"".join(p.raw for p in plain) + plain[-1].raw * 1000
    cases = [
        ("openpgp-key-too-large", rsa_bomb(16384, 16384, 50)),  # the 109 KB key
        ("openpgp-exponent-too-large", rsa_bomb(4096, 16384, 50)),
        ("openpgp-too-many-signatures", many_signatures),
        ("openpgp-too-many-packets", many_signatures + packet(12, b"") * 2000),
    ]
    for code, key in cases:
        response, seconds = exchange(appliance, key)
        assert response.payload2.startswith(f"ERR {code}:".encode()), response.payload2
        assert seconds < ANSWERED_WITHIN, (code, seconds)
    assert_answered_right_behind(appliance, world_dir)
    assert appliance.pids() == before
    appliance.assert_alive()


@pytest.fixture
def tight_appliance(appliance_with):
    """As ``appliance``, its [openpgp] section ending with TIGHT."""
    with appliance_with(TIGHT) as running:
        yield running


def test_a_key_gpg_cannot_finish_in_time_is_refused_and_the_signer_goes_on(
    tight_appliance,
    world_dir,
    rsa_bomb,
):
    before = tight_appliance.pids()
    response, seconds = exchange(tight_appliance, rsa_bomb(16384, 16384, 50))
    assert response.payload2.startswith(b"ERR openpgp-timeout:"), response.payload2
    assert seconds < ANSWERED_WITHIN, seconds  # gpg alone would need minutes
    assert_clean(gpg_workdir(tight_appliance.directory))  # no home, no gpg, no agent
    assert_answered_right_behind(tight_appliance, world_dir)
    assert tight_appliance.pids() == before
    tight_appliance.assert_alive()
