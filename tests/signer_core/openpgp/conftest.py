"""Fixtures of the OpenPGP certification tests: a CA key and a user keyring in real gpg.

Test tooling. The world is made once per test module; user keys are made
"30 days ago" so that old self-signatures are valid.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from signer_core.openpgp.certify import OpenPGPSigner, close_signer, load_signer
from signer_core.openpgp.packets import walk
from tests.support.openpgp import Ed25519Key, Homes, assert_clean, gen_key, gpg

CA_PASS = "correct horse battery"
DAY = 86400


@dataclasses.dataclass(frozen=True)
class World:
    homes: Homes
    ca_home: Path
    ca_fpr: str
    ca_pass_file: Path
    user_home: Path
    workdir: Path
    signer: OpenPGPSigner
    ca_pass: str = CA_PASS
    past: int = int(time.time()) - 30 * DAY  # when user keys are made

    def export(self, home: Path, fpr: str, *extra: str) -> bytes:
        return gpg(home, "--export", *extra, fpr)

    def user_key(
        self, name: str, *more_uids: str, algo: str = "ed25519", subkey: bool = False
    ) -> str:
        """A new key in the user keyring (a subkey, more user IDs); its fingerprint."""
        home, past = self.user_home, self.past
        fpr = gen_key(home, f"{name} <{name.lower()}@example.org>", algo=algo, at=past)
        faked = ("--faked-system-time", f"{past + 30}!", "--passphrase", "")
        if subkey:
            gpg(home, *faked, "--quick-add-key", fpr, "cv25519", "encr")
        for uid in more_uids:
            gpg(
                home,
                "--faked-system-time",
                f"{past + 60}!",
                "--passphrase",
                "",
                "--quick-add-uid",
                fpr,
                uid,
            )
        return fpr

    def with_expired_uid(self, fpr: str, uid: bytes, *, keep_others: bool = True) -> bytes:
        """The public key ``fpr`` with a user ID whose self-signature expired a week ago."""
        secret = gpg(
            self.user_home,
            *("--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr),
        )
        key = Ed25519Key.from_secret_export(secret)
        public = walk(self.export(self.user_home, fpr))
        expired = key.uid_with_self_sig(uid, created=self.past + 3600, expires_after=DAY)
        rest = b"".join(p.raw for p in public[1:]) if keep_others else b""
        return public[0].raw + expired + rest


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
        close_signer(signer)
        homes.close()


@pytest.fixture
def clean(world):
    """Every test leaves the work directory empty but for CA homes, and no other agent behind."""
    yield
    assert_clean(world.workdir)
