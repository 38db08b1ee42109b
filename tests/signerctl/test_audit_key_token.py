"""``signerctl audit key`` with the log key in a SoftHSM2 token: ``--generate`` makes it there
(Ed25519, sensitive, never extractable) and the verifier line printed is the token key's,
the one the signer's checkpoints verify with."""

from __future__ import annotations

import os
import pwd

import pytest

from signer_core.config import load_config
from signer_core.logkey import load_or_create
from tests.support import softhsm
from tlog.note import Checkpoint, Verifier, open_checkpoint

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 or PyKCS11 missing")


def test_generate_makes_the_key_in_the_token_and_key_prints_its_verifier(tmp_path, signerctl):
    token = softhsm.SoftToken.create(tmp_path / "hsm")
    # As root signerctl opens the token for the signer user: the PIN file must be that user's.
    signer = pwd.getpwnam("_signer") if os.geteuid() == 0 else None
    pin = token.write_pin(tmp_path / "pin", uid=signer.pw_uid if signer else -1)
    config = tmp_path / "signer.toml"
    config.write_text(
        '[spool]\ndir = "sp"\n[signer]\nstate_dir = "state"\n' + softhsm.log_key_toml(token, pin)
    )
    (tmp_path / "state").mkdir()
    uri = token.uri("log")
    with softhsm.in_environment(token):
        code, out, err = signerctl("audit", "key", "--config", str(config))
        assert (code, out) == (1, "")
        assert (
            err
            == f"signerctl: the log key {uri}: the token holds no private key matching the URI\n"
        )
        code, shown, err = signerctl(
            "--json", "audit", "key", "--generate", "--config", str(config)
        )
        assert code == 0 and shown["from"] == uri and err == ""
        assert token.attributes("log")["CKA_SENSITIVE"] is True
        assert token.attributes("log")["CKA_EXTRACTABLE"] is False
        assert signerctl("audit", "key", "--config", str(config)) == (
            0,
            shown["verifier"] + "\n",
            "",
        )
        code, _, err = signerctl("audit", "key", "--generate", "--config", str(config))
        assert (code, err) == (
            2,
            f"signerctl: the log key {uri}: the token already holds a key under the URI\n",
        )
        # The signer's key signs checkpoints that the printed line verifies, and writes it
        # (the signer reads its PIN file as its own user: this one here).
        os.chown(pin, os.geteuid(), -1)
        key, created = load_or_create(load_config(config).audit)
        try:
            assert created is False
            checkpoint = Checkpoint("ca.example/log", 1, bytes(32))
            verifier = Verifier.parse(shown["verifier"])
            assert open_checkpoint(key.sign(checkpoint), verifier) == checkpoint
        finally:
            key.close()
    assert (tmp_path / "state" / "audit-log.key.pub").read_text() == shown["verifier"] + "\n"


def test_generate_is_for_a_token_key_only(tmp_path, signerctl):
    config = tmp_path / "signer.toml"
    config.write_text('[spool]\ndir = "sp"\n[signer]\nstate_dir = "state"\n')
    code, out, err = signerctl("audit", "key", "--generate", "--config", str(config))
    assert (code, out) == (2, "")
    assert err == (
        'signerctl: --generate is for a log key in a token (log_key = "pkcs11:..."):'
        " the signer makes a key file itself\n"
    )
