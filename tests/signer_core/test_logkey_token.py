"""The audit log key in a SoftHSM2 token: checkpoints signed there verify with tlog.note, the
key is sensitive and never extractable, and a token that cannot sign (a wrong PIN, no key,
the token pulled out) refuses the audit exchange alone, the signer signing on."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer_core.config import ConfigError, load_config
from signer_core.daemon import build_context
from signer_core.dispatch import SignerContext, dispatch
from signer_core.logkey import public_path
from tests.support import softhsm
from tests.support.audit import audit_request
from tests.support.dispatch import certificate, sign_request
from tests.support.x509 import BASE_TOML, NOW, World
from tlog.exchange import AuditQuery, AuditReply
from tlog.note import Verifier, open_checkpoint

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 or PyKCS11 missing")


@pytest.fixture
def token(tmp_path) -> softhsm.SoftToken:
    # A label of its own: a PIN refused is remembered per (label, PIN) for the process's life,
    # and other tests' tokens are "test-token".
    made = softhsm.SoftToken.create(tmp_path / "hsm", "audit-token")
    made.generate("ed25519", "log", 7)
    return made


def start(directory: Path, toml: str) -> SignerContext:
    directory.mkdir()
    ctx = build_context(World(directory, toml).cfg)
    ctx.now = lambda: NOW
    return ctx


def stop(ctx: SignerContext) -> None:
    ctx.close_keys()
    ctx.db.close()


def ask(ctx: SignerContext) -> tuple[bytes, bytes]:
    answer = dispatch(ctx, audit_request(AuditQuery(0)))
    assert answer is not None
    return answer.payload1, answer.payload2


def test_checkpoints_are_signed_in_the_token_and_a_token_away_refuses_audit_only(tmp_path, token):
    pin = token.write_pin(tmp_path / "pin")
    with softhsm.in_environment(token):
        ctx = start(tmp_path / "a", softhsm.log_key_toml(token, pin))
        try:
            cfg = ctx.config.audit
            assert ctx.log_key is not None and ctx.log_key_missing == ""
            assert not cfg.log_key.exists()  # no key file: only the verifier line beside its name
            line = public_path(cfg).read_text()
            assert line == ctx.log_key.verifier.text() + "\n" and line.startswith("ca.example/log+")
            assert ctx.audit.events("log-key") == [
                {"verifier": line.strip(), "created": False, "reason": ""}
            ]
            reply = AuditReply.decode(ask(ctx)[0])
            checkpoint = open_checkpoint(reply.note, Verifier.parse(line))
            assert checkpoint.size == reply.count == ctx.audit.head()[0] > 0
            assert token.attributes("log") == {
                "CKA_SENSITIVE": True,
                "CKA_EXTRACTABLE": False,
                "CKA_ALWAYS_SENSITIVE": True,
                "CKA_NEVER_EXTRACTABLE": True,
            }
            with pytest.raises(TypeError, match="cannot be exported"):
                ctx.log_key.private.private_bytes_raw()
            token.remove()
            payload1, payload2 = ask(ctx)
            assert payload1 == b"" and b"CKR_" not in payload2
            # SoftHSM2 without its token directory does not start at all.
            assert payload2 == (
                b"ERR audit-unavailable: the audit log's token key cannot sign now: "
                b"the PKCS#11 module "
                + bytes(token.module)
                + b" did not start (is its token there?)"
            )
            certificate(ctx, sign_request())  # the roots sign on
            token.put_back()
            assert open_checkpoint(AuditReply.decode(ask(ctx)[0]).note, Verifier.parse(line))
        finally:
            stop(ctx)


def test_a_wrong_pin_or_no_key_in_the_token_refuses_only_the_audit_exchange(tmp_path, token):
    wrong = token.write_pin(tmp_path / "wrong", "000000")
    pin = token.write_pin(tmp_path / "pin")
    uri = token.uri("log")
    cases = [
        (
            "wrong-pin",
            softhsm.log_key_toml(token, wrong),
            f"the log key {uri}: the token refused the PIN",
        ),
        (
            "no-key",
            softhsm.log_key_toml(token, pin, "absent"),
            f"the log key {token.uri('absent')}: the token holds no private key matching the URI",
        ),
    ]
    with softhsm.in_environment(token):
        for name, toml, why in cases:
            ctx = start(tmp_path / name, toml)
            try:
                assert ctx.log_key is None
                assert ctx.log_key_missing == f"the audit log key is not usable: {why}"
                assert ctx.audit.events("log-key") == [
                    {"verifier": None, "created": False, "reason": ctx.log_key_missing}
                ]
                assert not public_path(ctx.config.audit).exists()
                payload1, payload2 = ask(ctx)
                assert payload1 == b"" and payload2.startswith(b"ERR audit-unavailable: ")
                certificate(ctx, sign_request())
            finally:
                stop(ctx)


def test_the_token_key_is_configured_as_a_roots_is(tmp_path):
    def audit(section: str):
        (tmp_path / "signer.toml").write_text(BASE_TOML + "[audit]\n" + section)
        return load_config(tmp_path / "signer.toml").audit

    cfg = audit('log_key = "pkcs11:token=CA;object=log"\nmodule = "p11.so"\npin_file = "pin"\n')
    assert cfg.token is not None and str(cfg.token.uri) == "pkcs11:token=CA;object=log"
    assert (cfg.token.module, cfg.token.pin_file) == (tmp_path / "p11.so", tmp_path / "pin")
    assert cfg.log_key == tmp_path / "state" / "audit-log.key"  # where its .pub goes
    assert audit('log_key = "log.key"\n').token is None
    with pytest.raises(ConfigError, match=r'only for a key in a token \(log_key = "pkcs11:...'):
        audit('log_key = "log.key"\nmodule = "p11.so"\n')
    with pytest.raises(ConfigError, match="names no key"):
        audit('log_key = "pkcs11:token=CA"\nmodule = "p11.so"\npin_file = "pin"\n')
    with pytest.raises(ConfigError, match="pin_file"):
        audit('log_key = "pkcs11:token=CA;object=log"\nmodule = "p11.so"\n')
