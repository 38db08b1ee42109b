"""The audit log key: made at the signer's first start (PKCS#8, mode 0600, its verifier
line beside it, 0644), the same key at the next, its record in the audit chain, and a
key file that cannot be used refusing the audit exchange alone: the signer still signs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from signer_core.config import Config
from signer_core.daemon import build_context
from signer_core.dispatch import SignerContext
from signer_core.logkey import LogKeyError, load_or_create, public_path
from tests.support.dispatch import certificate, sign_request
from tests.support.x509 import NOW
from tlog.note import Checkpoint, NoteError, Verifier, open_checkpoint


@pytest.fixture
def cfg(world, tmp_path) -> Config:
    """The module's World with a database and state directory of this test's own."""
    state = tmp_path / "state"
    state.mkdir()
    return dataclasses.replace(
        world.cfg,
        signer=dataclasses.replace(
            world.cfg.signer, database=tmp_path / "ca.sqlite", state_dir=state
        ),
        audit=dataclasses.replace(world.cfg.audit, log_key=state / "audit-log.key"),
    )


def start(cfg: Config) -> SignerContext:
    ctx = build_context(cfg)
    ctx.now = lambda: NOW
    return ctx


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_first_start_makes_the_key_and_the_next_start_keeps_it(cfg):
    ctx = start(cfg)
    key_file, pub_file = cfg.audit.log_key, public_path(cfg.audit)
    try:
        assert ctx.log_key is not None and ctx.log_key_missing == ""
        line = ctx.log_key.verifier.text()
        assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
        assert (mode(key_file), key_file.stat().st_uid) == (0o600, os.geteuid())
        assert (pub_file.read_text(), mode(pub_file)) == (line + "\n", 0o644)
        assert line.startswith(cfg.audit.origin + "+")
        assert [r.event for r in ctx.audit.records()][:3] == ["started", "integrity", "log-key"]
        assert ctx.audit.events("log-key") == [{"verifier": line, "created": True, "reason": ""}]
        checkpoint = Checkpoint(cfg.audit.origin, 3, bytes(range(32)))
        note = ctx.log_key.sign(checkpoint)
        assert open_checkpoint(note, Verifier.parse(pub_file.read_text())) == checkpoint
        with pytest.raises(NoteError, match="is of log 'other'"):
            ctx.log_key.sign(Checkpoint("other", 3, bytes(32)))
    finally:
        ctx.db.close()
    renamed = dataclasses.replace(cfg, audit=dataclasses.replace(cfg.audit, origin="ca.example"))
    again = start(renamed)
    try:
        assert again.log_key is not None
        key_part = again.log_key.verifier.text().split("+", 2)[2]
        assert key_part == line.split("+", 2)[2]  # the same key
        assert pub_file.read_text() == again.log_key.verifier.text() + "\n"  # its new name
        assert pub_file.read_text().startswith("ca.example+")
        assert again.audit.events("log-key")[-1]["created"] is False
    finally:
        again.db.close()


def _pem(key) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.write_bytes(b"not a key\n"), "is not an unencrypted PEM private key"),
        (
            lambda p: p.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1()))),
            "is not an Ed25519 key",
        ),
        (
            lambda p: p.write_bytes(
                Ed25519PrivateKey.generate().private_bytes(
                    Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
                )
            ),
            "is not an unencrypted PEM private key",
        ),
        (lambda p: p.mkdir(), "cannot be read: Is a directory"),
    ],
    ids=["garbage", "ec-key", "encrypted", "unreadable"],
)
def test_an_unusable_key_is_named_and_left_alone(cfg, make, why):
    key_file = cfg.audit.log_key
    make(key_file)
    before = key_file.read_bytes() if key_file.is_file() else None
    with pytest.raises(LogKeyError) as caught:
        load_or_create(cfg.audit)
    assert str(caught.value) == f"the log key {key_file} {why}"
    assert (key_file.read_bytes() if key_file.is_file() else None) == before
    assert not public_path(cfg.audit).exists()


def test_an_unusable_key_refuses_only_the_audit_exchange(cfg):
    cfg.audit.log_key.write_bytes(b"not a key\n")
    ctx = start(cfg)
    try:
        assert ctx.log_key is None
        assert ctx.log_key_missing == (
            f"the audit log key is not usable: the log key {cfg.audit.log_key}"
            " is not an unencrypted PEM private key"
        )
        assert ctx.audit.events("log-key") == [
            {"verifier": None, "created": False, "reason": ctx.log_key_missing}
        ]
        certificate(ctx, sign_request())  # the signer signs as before
        assert ctx.audit.verify().ok
    finally:
        ctx.db.close()


def test_a_key_that_cannot_be_made_is_named(cfg, tmp_path):
    audit = dataclasses.replace(cfg.audit, log_key=tmp_path / "absent" / "audit-log.key")
    with pytest.raises(LogKeyError) as caught:
        load_or_create(audit)
    assert str(caught.value) == (
        f"the log key file {audit.log_key} cannot be made: No such file or directory"
    )


def test_a_verifier_line_whose_key_holds_a_plus_reads_back():
    """Half of all keys have a "+" in their base64: the line splits at its first two only."""
    key = Ed25519PrivateKey.generate()
    while "+" not in Verifier("ca.example", key.public_key()).text().split("+", 2)[2]:
        key = Ed25519PrivateKey.generate()
    verifier = Verifier("ca.example", key.public_key())
    assert Verifier.parse(verifier.text()).key_hash == verifier.key_hash
